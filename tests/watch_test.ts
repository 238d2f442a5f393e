/**
 * `oneoff watch` end to end: real CLIs (the session's and its watchers'),
 * a real agent and sandbox. A watcher sees the session from its start or
 * from now, its typing goes nowhere, the user is told once per watcher,
 * each watch is on the timeline and in the recording, and a member of
 * another app is refused.
 * @module
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import type { RunInfo, TimelineEvent } from "../protocol/mod.ts";
import { Proc } from "./_processes.ts";
import { startSystem, type TestSystem } from "./_system.ts";
import { Terminal } from "./_terminal.ts";
import { waitFor } from "./_wait.ts";

function count(text: string, part: string): number {
  return text.split(part).length - 1;
}

async function timeline(sys: TestSystem): Promise<TimelineEvent[]> {
  return (await sys.api<{ events: TimelineEvent[] }>("GET", "/apps/demo/timeline?limit=1000"))
    .events;
}

async function running(sys: TestSystem, label: string): Promise<void> {
  let state: string | undefined;
  await waitFor(async () => {
    // Not there at all until the CLI has asked for it.
    const res = await fetch(`${sys.url}/api/apps/demo/runs/${label}`, {
      headers: { authorization: `Bearer ${sys.token}` },
    });
    state = res.ok ? ((await res.json()) as { run: RunInfo }).run.state : `HTTP ${res.status}`;
    return state === "running";
  }, { message: `${label} to run`, seen: () => state });
}

Deno.test("watch shows a no-TTY session from its start and from now, read-only; its user is told once per watcher; each watch is on the timeline and in the recording", async () => {
  const logs: string[] = [];
  await using sys = await startSystem({ logSink: (line) => logs.push(line) });
  const env = sys.cliEnv();
  await using user = new Proc(["run", "-a", "demo", "--no-tty", "--", "cat"], {
    env,
    stdin: true,
  });
  await running(sys, "one-off-1");
  await user.write("before-any-watcher\n");
  await waitFor(() => user.stdout.includes("before-any-watcher"), {
    message: "the first line echoed",
    seen: () => user.stderr,
  });

  await using first = new Proc(["watch", "-a", "demo", "one-off-1"], { env, stdin: true });
  await waitFor(() => first.stdout.includes("before-any-watcher"), {
    message: "the first watcher to see the session from its start",
    seen: () => first.stderr,
  });
  await waitFor(() => user.stderr.includes("oneoff: admin is watching this session"), {
    message: "the user to be told",
    seen: () => user.stderr,
  });
  // What a watcher types goes nowhere: stdin is not read.
  await first.write("typed-by-a-watcher\n");

  await user.write("with-one-watcher\n");
  await waitFor(() => first.stdout.includes("with-one-watcher"), {
    message: "the first watcher to see new output",
    seen: () => first.stdout,
  });
  await using second = new Proc(["watch", "-a", "demo", "--from-now", "one-off-1"], { env });
  await waitFor(() => count(user.stderr, "is watching this session") === 2, {
    message: "the user to be told of the second watcher",
    seen: () => user.stderr,
  });
  await waitFor(() => /from now on/.test(second.stderr), {
    message: "the second watcher to start",
    seen: () => second.stderr,
  });
  await user.write("with-two-watchers\n");
  for (const watcher of [first, second]) {
    await waitFor(() => watcher.stdout.includes("with-two-watchers"), {
      message: "both watchers to see the newest output",
      seen: () => watcher.stdout,
    });
  }
  ok(!second.stdout.includes("before-any-watcher"), "--from-now skips what came before");
  const metrics = await (await fetch(`${sys.url}/metrics`)).text();
  match(metrics, /^oneoff_watchers 2$/m);
  // Ctrl-C stops watching; the session goes on.
  second.kill("SIGINT");
  equal((await second.status()).code, 130);
  await waitFor(async () => (await timeline(sys)).some((e) => e.kind === "run.watch_ended"), {
    message: "the second watch to have ended on the timeline",
  });
  await user.write("after-the-second-left\n");
  await waitFor(() => first.stdout.includes("after-the-second-left"), {
    message: "the first watcher to go on",
    seen: () => first.stdout,
  });
  await user.closeStdin();
  const status = await first.status();
  equal(status.code, 0, first.stderr);
  match(first.stderr, /oneoff: session ended \(exit 0\)\n$/);
  equal((await user.status()).code, 0, user.stderr);
  equal(count(user.stderr, "oneoff: admin is watching this session"), 2, user.stderr);
  ok(!user.stdout.includes("typed-by-a-watcher"), "the watcher's typing reached nothing");
  equal(count(user.stdout, "with-two-watchers"), 1);
  ok(!user.stdout.includes("watching"), "the notices are out of band: never on stdout");

  await waitFor(async () => {
    const events = await timeline(sys);
    return events.filter((e) => e.kind === "run.watch_ended").length === 2;
  }, { message: "both watches to have ended on the timeline" });
  const events = await timeline(sys);
  const started = events.filter((e) => e.kind === "run.watch_started");
  equal(started.length, 2);
  ok(
    started.every((e) => e.actor === "admin" && (e.data as { run?: string }).run === "one-off-1"),
    "who and which",
  );

  await waitFor(async () => {
    const audit = await sys.api<{ final: boolean }>("GET", "/apps/demo/runs/one-off-1/audit");
    return audit.final;
  }, { message: "the recording to be final" });
  const show = await sys.cli(["audit", "show", "-a", "demo", "one-off-1"]);
  equal(show.code, 0, show.stderr);
  equal(count(show.stdout, "[oneoff: admin started watching]"), 2, show.stdout);
  // The second left during the session; the first with its end, after the last chunk.
  equal(count(show.stdout, "[oneoff: admin stopped watching]"), 1, show.stdout);
  ok(!show.stdout.includes("typed-by-a-watcher"), "nothing of the watcher's was recorded");

  // Watching kept the session out of the logs and the database, as recording does.
  ok(logs.length > 0 && !logs.some((line) => line.includes("with-two-watchers")), "logs");
  const db = `${sys.dir}/server/oneoff.db`;
  for (const file of [db, `${db}-wal`]) {
    const bytes = await Deno.readFile(file).catch(() => new Uint8Array());
    ok(!new TextDecoder("latin1").decode(bytes).includes("with-two-watchers"), file);
  }
});

Deno.test("watch is refused to a member of another app (403), and for runs with no live session", async () => {
  await using sys = await startSystem();
  await using user = new Proc(["run", "-a", "demo", "--no-tty", "--", "cat"], {
    env: sys.cliEnv(),
    stdin: true,
  });
  await running(sys, "one-off-1");
  await sys.cli(["apps", "create", "other"]);
  const created = await sys.cli(["tokens", "create", "--role", "member", "--app", "other"]);
  const token = created.stdout.trim();
  const denied = await sys.cli(["watch", "-a", "demo", "one-off-1"], {
    env: { ONEOFF_TOKEN: token },
  });
  equal(denied.code, 1);
  match(denied.stderr, /may not use app "demo"/);
  const res = await fetch(`${sys.url}/api/apps/demo/runs/one-off-1/watch`, {
    headers: { authorization: `Bearer ${token}` },
  });
  equal(res.status, 403);
  const body = await res.json();
  equal(body.error.code, "forbidden");
  ok(typeof body.error.message === "string");
  ok(!user.stderr.includes("watching"), "a refused watcher is not announced");

  const member = await sys.cli(["tokens", "create", "--role", "member", "--app", "demo"]);
  const allowed = new Proc(["watch", "-a", "demo", "one-off-1"], {
    env: { ...sys.cliEnv(), ONEOFF_TOKEN: member.stdout.trim() },
  });
  await using _allowed = allowed;
  await waitFor(() => /is watching this session/.test(user.stderr), {
    message: "a member of the app to watch",
    seen: () => allowed.stderr,
  });
  await user.closeStdin();
  equal((await allowed.status()).code, 0, allowed.stderr);

  const ended = await sys.cli(["watch", "-a", "demo", "one-off-1"]);
  equal(ended.code, 1);
  match(ended.stderr, /^oneoff: Cannot watch one-off-1: it has ended \(exited\); replay it with /);
  const detached = await sys.cli(["run", "-a", "demo", "-d", "--", "true"]);
  equal(detached.code, 0, detached.stderr);
  const refused = await sys.cli(["watch", "-a", "demo", "one-off-2"]);
  equal(refused.code, 1);
  match(refused.stderr, /^oneoff: Cannot watch one-off-2: it runs detached/);
  deepEqual(refused.stderr.trim().split("\n").length, 1, "one line");
});

Deno.test("watch shows a PTY session; the user's notice comes as a line of its own on the terminal", async () => {
  await using sys = await startSystem();
  const term = new Terminal(["run", "-a", "demo", "bash"], sys.cliEnv(), { cols: 100, rows: 30 });
  term.type("PS1='READY> '\r");
  // The prompt itself, not the echo of the line typed (which the terminal may show before the run
  // even exists).
  await term.waitFor(/[^']READY> /);
  await using watcher = new Proc(["watch", "-a", "demo", "one-off-1"], { env: sys.cliEnv() });
  await waitFor(() => /\r\noneoff: admin is watching this session\r\n/.test(term.output), {
    message: "the user to be told, on a line of its own",
    seen: () => ({ output: term.output, watcher: watcher.stderr }),
  });
  await waitFor(() => watcher.stdout.includes("READY> "), {
    message: "the watcher to see the prompt",
    seen: () => watcher.stderr,
  });
  term.type("echo pty-$((40+2))\r");
  await term.waitFor(/pty-42/);
  await waitFor(() => watcher.stdout.includes("pty-42"), {
    message: "the watcher to see the command's output",
    seen: () => watcher.stdout,
  });
  term.type("exit 5\r");
  equal(await term.exit, 5);
  equal((await watcher.status()).code, 0, watcher.stderr);
  match(watcher.stderr, /session ended \(exit 5\)/);
  equal(count(term.output, "is watching this session"), 1);
});

Deno.test("a raw session (nc's way) gets the notice on its stream, never on the process's stdin", async () => {
  await using sys = await startSystem();
  // The process counts the lines its stdin gets: the notice must not be one of them.
  const cmd = 'n=0; while read line; do n=$((n+1)); echo "got:$line"; done; echo "lines:$n"';
  const res = await sys.cli(["run", "-a", "demo", "--no-tty", "--attach-info", "--", cmd]);
  equal(res.code, 0, res.stderr);
  const info = JSON.parse(res.stdout) as { host: string; port: number; secret: string };
  const conn = await Deno.connect({ hostname: info.host, port: info.port });
  await conn.write(new TextEncoder().encode(`${info.secret}\nfirst\n`));
  let received = "";
  const reading = (async () => {
    const buf = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      received += new TextDecoder().decode(buf.subarray(0, n));
    }
  })();
  await waitFor(() => received.includes("got:first"), { message: "the first line echoed" });
  await using watcher = new Proc(["watch", "-a", "demo", "one-off-1"], { env: sys.cliEnv() });
  await waitFor(() => received.includes("oneoff: admin is watching this session\n"), {
    message: "the raw client to be told",
    seen: () => ({ received, watcher: watcher.stderr }),
  });
  await conn.write(new TextEncoder().encode("second\n"));
  await conn.closeWrite();
  await reading;
  conn.close();
  ok(received.endsWith("got:second\nlines:2\n"), received);
  equal(count(received, "is watching this session"), 1);
  equal((await watcher.status()).code, 0, watcher.stderr);
  match(watcher.stdout, /got:first[\s\S]*got:second\nlines:2\n/);
});

Deno.test("a watcher who comes before the session starts waits for it, and its user is told once it does", async () => {
  await using sys = await startSystem();
  const res = await sys.cli(["run", "-a", "demo", "--no-tty", "--attach-info", "--", "cat"]);
  equal(res.code, 0, res.stderr);
  const info = JSON.parse(res.stdout) as { host: string; port: number; secret: string };
  await using watcher = new Proc(["watch", "-a", "demo", "one-off-1"], { env: sys.cliEnv() });
  await waitFor(async () => (await timeline(sys)).some((e) => e.kind === "run.watch_started"), {
    message: "the watch to have started",
    seen: () => watcher.stderr,
  });
  const conn = await Deno.connect({ hostname: info.host, port: info.port });
  await conn.write(new TextEncoder().encode(`${info.secret}\nearly-bird\n`));
  await conn.closeWrite();
  let received = "";
  const buf = new Uint8Array(65536);
  while (true) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    received += new TextDecoder().decode(buf.subarray(0, n));
  }
  conn.close();
  equal(count(received, "oneoff: admin is watching this session\n"), 1, received);
  match(received, /early-bird\n/);
  equal((await watcher.status()).code, 0, watcher.stderr);
  match(watcher.stdout, /\[oneoff: admin started watching\][\s\S]*early-bird\n/);
});
