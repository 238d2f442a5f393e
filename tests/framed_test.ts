/**
 * Framed attach sessions end to end (our CLI; nc stays raw, see
 * attached_test.ts): stdout and stderr apart, the exit code in band, a
 * dropped connection reattached with nothing lost or repeated, the grace,
 * and `oneoff attach` from another terminal.
 * @module
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import type { RunInfo, RunState, TimelineEvent } from "../protocol/mod.ts";
import { CutProxy } from "./_cut_proxy.ts";
import { cli, freePort, Proc, startAgent, startServer, waitOnline } from "./_processes.ts";
import { startSystem, type TestSystem } from "./_system.ts";
import { Terminal } from "./_terminal.ts";
import { waitFor } from "./_wait.ts";

async function waitState(sys: TestSystem, label: string, state: RunState): Promise<RunInfo> {
  let last: RunInfo | undefined;
  return await waitFor(async () => {
    last = (await sys.api<{ run: RunInfo }>("GET", `/apps/demo/runs/${label}`)).run;
    return last.state === state && last;
  }, { message: `${label} to be ${state}`, seen: () => last?.state });
}

/** A system whose agent is reached through a proxy the test cuts (127.0.0.2 → 127.0.0.1). */
async function proxied(graceMs: number) {
  const port = freePort();
  const sys = await startSystem({
    attachPort: port,
    advertise: "127.0.0.2",
    config: { reattachGraceMs: graceMs },
  });
  const proxy = new CutProxy({ hostname: "127.0.0.2", port }, { hostname: "127.0.0.1", port });
  return { sys, proxy };
}

Deno.test("framed no-TTY: stdout and stderr reach their own fds, the exit code is the process's", async () => {
  await using sys = await startSystem();
  const cmd = "echo out; echo err >&2; exit 3";
  const silent = await sys.cli(["run", "-a", "demo", "--no-tty", "--silent", "--", cmd]);
  deepEqual([silent.code, silent.stdout, silent.stderr], [3, "out\n", "err\n"]);
  const loud = await sys.cli(["run", "-a", "demo", "--no-tty", "--", cmd]);
  deepEqual([loud.code, loud.stdout], [3, "out\n"]);
  match(loud.stderr, /^Running one-off-2 of "demo" on 127\.0\.0\.1:\d+\.\.\.\nerr\n$/);
});

Deno.test("a dropped connection is reattached: every line once, in order, and the process never noticed", async () => {
  const { sys, proxy } = await proxied(60_000);
  await using _sys = sys;
  await using _proxy = proxy;
  // 200,000 numbered lines (1.3 MB), paced so that a drop's output fits the 1 MiB buffer.
  const cmd = "for i in $(seq 0 199); do seq $((i*1000+1)) $((i*1000+1000)); sleep 0.02; done; " +
    "echo done >&2; exit 0";
  await using run = new Proc(["run", "-a", "demo", "--no-tty", "--", cmd], { env: sys.cliEnv() });
  for (const at of [200_000, 600_000, 1_000_000]) {
    await waitFor(() => run.stdout.length > at, {
      message: `${at} bytes of output`,
      seen: () => run.stderr,
    });
    proxy.cut();
  }
  const status = await run.status();
  const expected = Array.from({ length: 200_000 }, (_, i) => `${i + 1}\n`).join("");
  equal(run.stdout.length, expected.length, run.stderr);
  ok(run.stdout === expected, "every line exactly once, in order");
  equal(status.code, 0, run.stderr);
  match(
    run.stderr,
    /oneoff: the connection to the agent dropped; reconnecting…\noneoff: reconnected\n/,
  );
  ok(proxy.accepted >= 4, `${proxy.accepted} connections`);
  const ended = await waitState(sys, "one-off-1", "exited");
  equal(ended.exit_code, 0);
  const events = (await sys.api<{ events: TimelineEvent[] }>("GET", "/apps/demo/timeline")).events;
  ok(events.filter((e) => e.kind === "run.reattached").length >= 3, JSON.stringify(events));
});

Deno.test("stdin typed across drops reaches the process once each, in order", async () => {
  const { sys, proxy } = await proxied(60_000);
  await using _sys = sys;
  await using _proxy = proxy;
  await using run = new Proc(["run", "-a", "demo", "--no-tty", "--silent", "--", "cat"], {
    env: sys.cliEnv(),
    stdin: true,
  });
  const lines = Array.from({ length: 5000 }, (_, i) => `line ${i}\n`);
  for (let batch = 0; batch < 10; batch++) {
    await run.write(lines.slice(batch * 500, batch * 500 + 500).join(""));
    const want = lines.slice(0, batch * 500 + 500).join("");
    if (batch % 3 === 1) proxy.cut();
    else {
      await waitFor(() => run.stdout === want, {
        message: `batch ${batch} echoed`,
        seen: () => `${run.stdout.length} of ${want.length}`,
      });
    }
  }
  await run.closeStdin();
  const status = await run.status();
  equal(status.code, 0);
  ok(run.stdout === lines.join(""), `${run.stdout.length} of ${lines.join("").length} bytes`);
  ok(proxy.accepted >= 4, `${proxy.accepted} connections`);
});

Deno.test("past the reattach grace the process gets SIGHUP and the run is stopped with the reason", async () => {
  const { sys, proxy } = await proxied(1_500);
  await using _sys = sys;
  await using _proxy = proxy;
  const cmd = "trap 'echo hup >> /tmp/hup; exit 129' HUP; echo ready; while :; do sleep 0.1; done";
  await using run = new Proc(["run", "-a", "demo", "--no-tty", "--", cmd], { env: sys.cliEnv() });
  await waitFor(() => run.stdout.includes("ready"), { message: "ready", seen: () => run.stderr });
  proxy.block();
  proxy.cut();
  const ended = await waitState(sys, "one-off-1", "stopped");
  match(ended.reason ?? "", /^The client disconnected and did not come back within 1\.5 s$/);
  const status = await run.status();
  equal(status.code, 129, run.stderr);
  match(run.stderr, /could not reconnect to the agent within the reattach grace/);
  match(run.stderr, /one-off-1 was stopped: The client disconnected and did not come back/);
});

Deno.test("oneoff attach takes a session over from another terminal; others may not, nor after the end", async () => {
  await using sys = await startSystem();
  const cmd = 'echo ready; read x; echo "got $x"; echo bye >&2; exit 5';
  await using first = new Proc(["run", "-a", "demo", "--no-tty", "--", cmd], {
    env: sys.cliEnv(),
    stdin: true,
  });
  await waitFor(() => first.stdout.includes("ready"), {
    message: "ready",
    seen: () => first.stderr,
  });
  const bob =
    (await sys.cli(["tokens", "create", "--role", "member", "-a", "demo", "--name", "bob"]))
      .stdout.trim();
  const denied = await sys.cli(["attach", "-a", "demo", "one-off-1"], {
    env: { ONEOFF_TOKEN: bob },
  });
  equal(denied.code, 1);
  match(denied.stderr, /Cannot attach to one-off-1: only "admin", who started it, or an admin may/);
  const taken = await sys.cli(["attach", "-a", "demo", "one-off-1"], { stdin: "hello\n" });
  equal(taken.code, 5, taken.stderr);
  // What the first terminal had not acknowledged is replayed: "ready" may come again here.
  match(taken.stdout, /got hello\n$/);
  match(taken.stderr, /bye\n/);
  const status = await first.status();
  equal(status.code, 5, first.stderr);
  match(first.stderr, /this session was attached from another terminal/);
  // Let go, not dropped: it neither fights the other terminal nor says the connection was lost.
  ok(!/reconnecting|was lost|cannot attach/.test(first.stderr), first.stderr);
  const after = await sys.cli(["attach", "-a", "demo", "one-off-1"]);
  equal(after.code, 1);
  match(after.stderr, /Cannot attach to one-off-1: it has already ended \(exited, exit code 5\)/);
  const events = (await sys.api<{ events: TimelineEvent[] }>("GET", "/apps/demo/timeline")).events;
  ok(events.some((e) => e.kind === "run.reattached"), JSON.stringify(events));
  // The recording has every byte once, and a marker where the other terminal came in.
  let shown = "";
  await waitFor(async () => {
    shown = (await sys.cli(["audit", "show", "-a", "demo", "one-off-1"])).stdout;
    return shown.includes("bye");
  }, { message: "the recording", seen: () => shown });
  match(shown, /ready[\s\S]*\[oneoff: client reattached from 127\.0\.0\.1:\d+\][\s\S]*got hello/);
  equal(shown.split("got hello").length, 2, shown);
});

Deno.test("the server killed mid-session: the CLI still exits with the process's code, in band", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-framed-" });
  try {
    const port = freePort();
    await using server = await startServer(`${dir}/server`, port);
    await using _agent = startAgent(`${dir}/agent`, port, "vm-1");
    const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
    const env = { ONEOFF_SERVER: `http://127.0.0.1:${port}`, ONEOFF_TOKEN: token, HOME: dir };
    await waitOnline(env, ["vm-1"]);
    equal((await cli(env, ["apps", "create", "demo"])).code, 0);
    const demo = new URL("../examples/demo", import.meta.url).pathname;
    equal((await cli(env, ["deploy", "-a", "demo", demo])).code, 0);
    const cmd = "echo started; sleep 2; echo done; exit 3";
    await using run = new Proc(["run", "-a", "demo", "--no-tty", "--silent", "--", cmd], { env });
    await waitFor(() => run.stdout.includes("started"), {
      message: "the session to run",
      seen: () => run.stderr,
    });
    server.kill("SIGKILL");
    await server.status();
    const status = await run.status();
    deepEqual([status.code, run.stdout, run.stderr], [3, "started\ndone\n", ""]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a PTY session survives a drop: what is typed meanwhile arrives once, resize and exit code in band", async () => {
  const { sys, proxy } = await proxied(60_000);
  await using _sys = sys;
  await using _proxy = proxy;
  const term = new Terminal(["run", "-a", "demo", "bash"], sys.cliEnv(), { cols: 100, rows: 30 });
  term.type("PS1='READY> '\r");
  await term.waitFor(/READY> /);
  term.type("echo one-$((40+1))\r");
  await term.waitFor(/one-41/);
  proxy.block();
  proxy.cut();
  await term.waitFor(/reconnecting…/);
  term.type("echo two-$((40+2))\r");
  proxy.unblock();
  await term.waitFor(/two-42[\s\S]*READY> /);
  term.resize(120, 40);
  await waitFor(async () => {
    const mark = term.output.length;
    term.type("stty size\r");
    await term.waitFor(/\d+ \d+\s[\s\S]*READY> $/);
    return /40 120/.test(term.output.slice(mark));
  }, { message: "the new size 40 120", seen: () => term.output.slice(-200) });
  term.type("exit 4\r");
  equal(await term.exit, 4);
  equal(term.output.match(/two-42/g)?.length, 1, term.output);
  match(term.output, /oneoff: reconnected\r\n/);
});

Deno.test("a raw session (nc's) cannot be taken over: oneoff attach says why at once", async () => {
  await using sys = await startSystem();
  const res = await sys.cli(["run", "-a", "demo", "--no-tty", "--attach-info", "--", "sleep 30"]);
  const info = JSON.parse(res.stdout);
  const conn = await Deno.connect({ hostname: info.host, port: info.port });
  try {
    await conn.write(new TextEncoder().encode(`${info.secret}\n`));
    await waitState(sys, "one-off-1", "running");
    const denied = await sys.cli(["attach", "-a", "demo", "one-off-1"]);
    equal(denied.code, 1);
    match(denied.stderr, /Cannot attach to one-off-1: its agent has no framed session for it/);
  } finally {
    conn.close();
  }
});
