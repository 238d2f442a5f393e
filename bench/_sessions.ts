/**
 * `sessions`: many idle attached sessions on one agent (its own process):
 * how much the agent's resident memory grows per session. Each session is a
 * real sandbox running `sleep 600` with a real TCP client on port 5000 that
 * sends its secret and then stays silent.
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import type { BenchContext } from "./_case.ts";
import { type RoleProcess, type ServerProcess, spawnAgent, spawnServer } from "./_procs.ts";
import { MAIN, MIB, openFileLimit, row, rssOf, sleep } from "./_util.ts";

const APP = "bench";
/** Run creations in flight at once. */
const PARALLEL = 8;

interface Created {
  label: string;
  conn: Deno.TcpConn;
}

interface AttachResponse {
  run: { label: string; state: string };
  secret: string;
  attach: { host: string; port: number } | null;
}

/** Creates the app and deploys examples/demo with the real CLI. */
export async function deployDemo(server: ServerProcess, app: string): Promise<void> {
  await server.api("POST", "/apps", { name: app });
  const demo = new URL("../examples/demo", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "deploy", "-a", app, demo],
    env: server.cliEnv(),
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`Deploy failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** Creates an attached no-TTY run and connects to it with its secret. */
async function openSession(server: ServerProcess, command: string): Promise<Created> {
  const res = await server.api<AttachResponse>("POST", `/apps/${APP}/runs?wait=20`, {
    command,
    attached: true,
    tty: false,
  });
  if (!res.attach) {
    throw new Error(`${res.run.label} was not attachable within 20 s (state ${res.run.state})`);
  }
  const conn = await Deno.connect({ hostname: res.attach.host, port: res.attach.port });
  await conn.write(new TextEncoder().encode(`${res.secret}\n`));
  return { label: res.run.label, conn };
}

type RunStates = Map<string, { state: string; reason: string | null }>;

async function runStates(server: ServerProcess): Promise<RunStates> {
  type Runs = { runs: { label: string; state: string; reason: string | null }[] };
  const { runs } = await server.api<Runs>("GET", `/apps/${APP}/runs?limit=10000`);
  return new Map(runs.map((r) => [r.label, { state: r.state, reason: r.reason }]));
}

async function countEntries(path: string): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(path)) n++;
  return n;
}

/** Processes descending from `root`: pid → command line (NUL-separated). */
async function descendants(root: number): Promise<Map<number, string>> {
  const parent = new Map<number, number>();
  const cmdlines = new Map<number, string>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      // The command name in parentheses may hold spaces: the fields start after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(entry.name), ppid);
      cmdlines.set(Number(entry.name), await Deno.readTextFile(`/proc/${entry.name}/cmdline`));
    } catch { /* exited meanwhile */ }
  }
  const found = new Map<number, string>();
  for (const [pid, cmdline] of cmdlines) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === root) {
        found.set(pid, cmdline);
        break;
      }
    }
  }
  return found;
}

/** Opens up to `count` sessions, `PARALLEL` at a time; stops at the first failure. */
async function openMany(
  server: ServerProcess,
  count: number,
): Promise<{ sessions: Created[]; failure: string | null }> {
  const sessions: Created[] = [];
  let failure: string | null = null;
  let next = 0;
  const worker = async () => {
    while (failure === null && next < count) {
      next++;
      try {
        sessions.push(await openSession(server, "sleep 600"));
      } catch (err) {
        failure ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return { sessions, failure };
}

/** Waits until every session's run has left `starting`/`pending`; returns the running ones. */
async function settle(server: ServerProcess, sessions: Created[]): Promise<{
  running: number;
  others: string[];
}> {
  const deadline = Date.now() + 120_000;
  while (true) {
    const states = await runStates(server);
    const mine = sessions.map((s) => states.get(s.label));
    const waiting = mine.filter((r) => !r || r.state === "pending" || r.state === "starting");
    if (waiting.length === 0 || Date.now() > deadline) {
      const others = mine.filter((r) => r && r.state !== "running").map((r) =>
        `${r!.state}${r!.reason ? ` (${r!.reason})` : ""}`
      );
      return { running: mine.filter((r) => r?.state === "running").length, others };
    }
    await sleep(250);
  }
}

/** Prints agent memory growth per idle attached session. */
export async function benchSessions(ctx: BenchContext): Promise<void> {
  const count = ctx.sessions;
  const limit = String(count + 20);
  await using server = await spawnServer(["--max-runs-per-app", limit]);
  await using agent = await spawnAgent(server, { maxRuns: count + 20 });
  await deployDemo(server, APP);
  // Network "host": this row is the agent's own cost per session. Isolated runs would add a
  // pasta each (about 30 MiB, the network row measures it): hundreds would exhaust the machine.
  // No API sets an app's network yet, so the bench writes the server's store.
  const db = new DatabaseSync(`${server.dir}/oneoff.db`);
  db.prepare("UPDATE apps SET network = 'host' WHERE name = ?").run(APP);
  db.close();
  const sessions: Created[] = [];
  try {
    await measure(server, agent, count, sessions);
  } finally {
    const sandboxes = await descendants(agent.pid);
    for (const { conn } of sessions) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    // SIGTERM: the agent kills its sandboxes before it exits.
    await agent.stop();
    const left = await survivors(sandboxes, 5_000);
    if (left.length > 0) {
      console.log(
        `  warning: ${left.length} sandbox processes outlived the agent by 5 s: ${
          left.join(" | ")
        }`,
      );
    }
  }
}

/** Processes of `pids` still alive (not zombies) after `graceMs`, as "pid state cmdline". */
async function survivors(pids: Map<number, string>, graceMs: number): Promise<string[]> {
  const deadline = Date.now() + graceMs;
  while (true) {
    const alive: string[] = [];
    for (const [pid, cmdline] of pids) {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
      if (stat && state !== "Z") {
        alive.push(`${pid} ${state} ${cmdline.replaceAll("\0", " ").trim()}`);
      }
    }
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await sleep(100);
  }
}

/** Sum of VmRSS over processes (shared pages counted once per process). */
async function totalRss(pids: Iterable<number>): Promise<number> {
  let sum = 0;
  for (const pid of pids) sum += await rssOf(pid).catch(() => 0);
  return sum;
}

async function measure(
  server: ServerProcess,
  agent: RoleProcess,
  count: number,
  sessions: Created[],
): Promise<void> {
  // Warm-up: the slug is extracted and the code paths compiled before the first reading.
  for (let i = 0; i < 3; i++) {
    const { conn } = await openSession(server, "true");
    for await (const _ of conn.readable) { /* until the agent closes it */ }
  }
  await sleep(count > 50 ? 2_000 : 500);
  const fdLimit = await openFileLimit(agent.pid);
  const fdsBefore = await countEntries(`/proc/${agent.pid}/fd`);
  const before = await rssOf(agent.pid);
  const started = performance.now();
  const opened = await openMany(server, count);
  sessions.push(...opened.sessions);
  const { running, others } = await settle(server, sessions);
  const openSeconds = (performance.now() - started) / 1000;
  await sleep(count > 50 ? 3_000 : 500);
  const after = await rssOf(agent.pid);
  const n = Math.max(running, 1);
  const fds = (await countEntries(`/proc/${agent.pid}/fd`)) - fdsBefore;
  const children = await descendants(agent.pid);
  const sandboxRss = await totalRss(children.keys());
  const name = `${count} idle attached sessions, agent growth`;
  row(
    running === count ? name : `${name} (${running} reached)`,
    `${((after - before) / n / 1024).toFixed(0)} KiB/sess`,
    "-",
    "-",
    `≤ 1 MiB per session  (agent ${(before / MIB).toFixed(0)} → ${(after / MIB).toFixed(0)} MiB; ` +
      `per session +${(fds / n).toFixed(1)} agent fds, ${(children.size / n).toFixed(1)} ` +
      `processes, ${(sandboxRss / n / MIB).toFixed(1)} MiB of their RSS; ` +
      `fd limit ${fdLimit}; opened in ${openSeconds.toFixed(1)} s)`,
  );
  if (opened.failure) console.log(`  stopped opening sessions: ${opened.failure}`);
  const counts = new Map<string, number>();
  for (const o of others) counts.set(o, (counts.get(o) ?? 0) + 1);
  for (const [what, k] of counts) console.log(`  ${k} sessions ended up ${what}`);
}
