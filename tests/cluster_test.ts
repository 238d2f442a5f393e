/**
 * Three servers on one PostgreSQL behind a real haproxy (round-robin, no
 * stickiness), two agents dialling it: runs created through any server
 * start on agents held by others, `logs -f` on a server that holds no
 * agent sees lines that came in through another, and a server SIGKILLed
 * in the middle of a 200,000-line run and an attached session loses
 * nothing: every line stored once, the session (CLI straight to the
 * agent's port) ends with its exit code, new runs start within 5 s.
 * Slugs are deployed through the load balancer once: blobs live in
 * PostgreSQL, every server serves every one (server/blob_store.ts).
 * @module
 */
import { equal, ok } from "node:assert/strict";
import { cli, Proc, startAgent, startServer, waitOnline } from "./_processes.ts";
import { startCluster, type TestCluster } from "./_cluster.ts";
import { needs, PG_URL } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const LINES = 200_000;

async function ok0(c: TestCluster, args: string[], at?: string): Promise<string> {
  const res = await cli(c.env(at), args);
  if (res.code !== 0) throw new Error(`oneoff ${args.join(" ")}: ${res.stderr}${res.stdout}`);
  return res.stdout;
}

async function runState(c: TestCluster, id: string): Promise<string | undefined> {
  const [row] = await c.sql<{ state: string }[]>`select state from runs where id = ${id}`;
  return row?.state;
}

async function newestRun(c: TestCluster, app: string): Promise<string> {
  const [row] = await c.sql<{ id: string }[]>`
    select r.id from runs r join apps a on a.id = r.app_id
    where a.name = ${app} order by r.number desc limit 1`;
  return row!.id;
}

/** Creates a detached run through the load balancer, trying again while it answers 5xx. */
async function createRun(c: TestCluster, app: string, command: string): Promise<string> {
  return await waitFor(async () => {
    const res = await fetch(`${c.url}/api/apps/${app}/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${c.token}` },
      body: JSON.stringify({ command }),
    }).catch(() => null);
    if (!res || res.status >= 500) {
      await res?.body?.cancel();
      return undefined;
    }
    equal(res.status, 201);
    return ((await res.json()) as { run: { id: string } }).run.id;
  }, { message: `a run of ${app} to be created`, timeoutMs: 5_000 });
}

Deno.test(needs(["postgres", "haproxy", "root"], {
  name:
    "three servers behind haproxy on one PostgreSQL: runs start through any, logs -f wakes across servers, a SIGKILLed server loses no line and no session",
  async fn() {
    await using c = await startCluster(PG_URL!, 3);
    const root = await Deno.makeTempDir({ prefix: "oneoff-cluster-agents-" });
    const slug = `${root}/slug`;
    await Deno.mkdir(slug);
    await Deno.writeTextFile(`${slug}/hello.txt`, "hello\n");
    await ok0(c, ["apps", "create", "demo"]);
    await ok0(c, ["apps", "create", "pinned"]);
    await ok0(c, ["apps", "set", "pinned", "--labels", "pin=a"]);
    await ok0(c, ["deploy", "-a", "demo", slug]);
    await ok0(c, ["deploy", "-a", "pinned", slug]);
    const lbPort = Number(new URL(c.url).port);
    await using a1 = startAgent(`${root}/a1`, lbPort, "a1", [
      "--labels",
      "pin=a",
      "--max-runs",
      "4",
    ]);
    await using a2 = startAgent(`${root}/a2`, lbPort, "a2", ["--max-runs", "4"]);
    await waitFor(async () => (await c.holder("a1")) && (await c.holder("a2")), {
      message: "both agents held by a server",
      seen: () => a1.stderr + a2.stderr,
    });

    // Every server says both are online, whichever holds them.
    for (const m of c.members) await waitOnline(c.env(m.url), ["a1", "a2"]);

    // Round-robin: each creation lands on the next server, whoever holds the agents.
    for (let i = 0; i < 6; i++) await ok0(c, ["run", "-a", "demo", "-d", "--", "echo", `rr-${i}`]);
    await waitFor(async () => {
      const [row] = await c.sql<{ n: number }[]>`
        select count(*)::int as n from runs where state = 'exited'`;
      return row!.n === 6;
    }, { message: "the 6 round-robin runs to succeed", seen: () => a1.stderr + a2.stderr });

    // logs -f on a server that holds no agent: the lines come in through another.
    const held = new Set([(await c.holder("a1"))!.id, (await c.holder("a2"))!.id]);
    const idle = c.members.find((m) => !held.has(m.id))!;
    await using follow = new Proc(["logs", "-a", "demo", "-f"], { env: c.env(idle.url) });
    await waitFor(() => follow.stdout.includes("rr-5"), { message: "logs -f to catch up" });
    const marker = `across-${crypto.randomUUID()}`;
    await ok0(c, ["run", "-a", "demo", "-d", "--", "echo", marker]);
    await waitFor(() => follow.stdout.includes(marker), {
      message: "logs -f on an agent-less server to see a line ingested by another",
      timeoutMs: 10_000,
      seen: () => follow.stdout + follow.stderr,
    });

    // Attach through the relay of a server that holds no agent: open_relay
    // reaches the agent through the server that holds it, and the agent's
    // dial-back (through haproxy) lands on any server: until one was passed
    // on to the server holding the client's leg.
    const forwarded = () => c.members.some((m) => m.proc.stderr.includes("relay dial-back passed"));
    for (let i = 0; i < 8 && !forwarded(); i++) {
      const relayed = await cli(c.env(idle.url), [
        "run",
        "-a",
        "demo",
        "--via",
        "server",
        "--no-tty",
        "--",
        "sh",
        "-c",
        `echo relayed-${i}; exit 3`,
      ]);
      equal(relayed.code, 3, `relayed session ${i}: ${relayed.stderr}`);
      ok(relayed.stdout.includes(`relayed-${i}`), relayed.stdout);
    }
    ok(forwarded(), "a dial-back was passed on to the server holding the client's leg");

    // The failover: a 200,000-line run and an attached session on a1, its server killed.
    const script = `i=0; while [ $i -lt 40 ]; do seq $((i*5000+1)) $((i*5000+5000)); ` +
      `i=$((i+1)); sleep 0.1; done`;
    await ok0(c, ["run", "-a", "pinned", "-d", "--", "sh", "-c", script]);
    const big = await newestRun(c, "pinned");
    await using attached = new Proc([
      "run",
      "-a",
      "pinned",
      "--via",
      "direct",
      "--no-tty",
      "--",
      "sh",
      "-c",
      "sleep 4; echo attached-done; exit 7",
    ], { env: c.env() });
    await waitFor(async () => {
      const [row] = await c.sql<{ n: number }[]>`
        select count(*)::int as n from runs r join apps a on a.id = r.app_id
        where a.name = 'pinned' and r.attached and r.state = 'running'`;
      return row!.n === 1;
    }, { message: "the attached session to run", seen: () => attached.stderr });
    await waitFor(async () => {
      const [row] = await c.sql<{ n: number }[]>`
        select count(*)::int as n from logs where run_id = ${big}`;
      return row!.n > 0;
    }, { message: "the big run's first lines stored" });
    const victim = (await c.holder("a1"))!;
    const killedAt = performance.now();
    victim.proc.kill("SIGKILL");
    await victim.proc.status();

    await waitFor(async () => {
      const now = await c.holder("a1");
      return now !== undefined && now.id !== victim.id;
    }, { message: "a1 to reconnect to another server", timeoutMs: 10_000, seen: () => a1.stderr });
    const reconnectedMs = performance.now() - killedAt;
    // Through the API, not a CLI process: the figure is the servers', not Deno's start.
    const probeId = await createRun(c, "pinned", "echo after-the-kill");
    const createdMs = performance.now() - killedAt;
    let placedMs = 0;
    await waitFor(async () => {
      const state = await runState(c, probeId);
      if (state !== "pending" && !placedMs) placedMs = performance.now() - killedAt;
      return state === "running" || state === "exited";
    }, { message: "a new run to start after the kill", timeoutMs: 5_000 });
    const newRunMs = performance.now() - killedAt;
    console.log(
      `failover: a1 reconnected ${reconnectedMs.toFixed(0)} ms after the kill, ` +
        `a new run on it created at ${createdMs.toFixed(0)} ms, placed at ${
          placedMs.toFixed(0)
        } ms, started at ${newRunMs.toFixed(0)} ms`,
    );
    ok(newRunMs < 5_000, `a new run started ${newRunMs} ms after the kill`);

    const status = await attached.status();
    equal(status.code, 7, `the attached CLI gets the exit code: ${attached.stderr}`);
    ok(attached.stdout.includes("attached-done"), "the session's output reached its CLI");

    await waitFor(async () => await runState(c, big) === "exited", {
      message: "the big run to end",
      timeoutMs: 30_000,
      seen: () => a1.stderr,
    });
    await waitFor(async () => {
      const [row] = await c.sql<{ n: number; distinct: number }[]>`
        select count(*)::int as n, count(distinct line)::int as distinct
        from logs where run_id = ${big}`;
      return row!.n === LINES && row!.distinct === LINES;
    }, { message: `${LINES} lines stored once`, timeoutMs: 20_000 });
    await Deno.remove(root, { recursive: true });
  },
}));

Deno.test(needs(["postgres"], {
  name: "a server whose session key differs from the other servers' refuses to start",
  async fn() {
    await using c = await startCluster(PG_URL!, 1);
    const dir = await Deno.makeTempDir({ prefix: "oneoff-other-keys-" });
    const args = ["server", "--http", "127.0.0.1:0", "--data-dir", dir, "--database", c.database];
    const res = await cli({}, [...args, "--join-token", "join-me-please"]);
    const token = await cli({}, [...args, "--join-token", "another-token"]);
    await Deno.remove(dir, { recursive: true });
    equal(res.code, 1, res.stderr);
    ok(/the session key differs .*copy "session\.key"/.test(res.stderr), res.stderr);
    ok(/the join token differs/.test(token.stderr), token.stderr);
  },
}));

Deno.test({
  name: "a second server on the same SQLite file is refused at start, saying to use PostgreSQL",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-sqlite-twice-" });
    const first = await startServer(dir, 0);
    try {
      const second = await cli({}, ["server", "--http", "127.0.0.1:0", "--data-dir", dir]);
      equal(second.code, 1);
      ok(/SQLite serves one server only.*PostgreSQL/.test(second.stderr), second.stderr);
    } finally {
      await first[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
