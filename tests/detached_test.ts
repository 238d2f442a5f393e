import { deepEqual, match, ok } from "node:assert/strict";
import type { LogLine, RunInfo } from "../protocol/mod.ts";
import { startSystem, type TestSystem } from "./_system.ts";
import { waitFor } from "./_wait.ts";

async function waitEnded(sys: TestSystem, label: string): Promise<RunInfo> {
  const { run } = await sys.api<{ run: RunInfo }>("GET", `/apps/demo/runs/${label}?wait=30`);
  return run;
}

async function allLogs(sys: TestSystem, filter: string): Promise<LogLine[]> {
  const lines: LogLine[] = [];
  let after = 0;
  while (true) {
    const page = await sys.api<{ lines: LogLine[] }>(
      "GET",
      `/apps/demo/logs?after=${after}&n=10000&filter=${filter}`,
    );
    if (page.lines.length === 0) return lines;
    lines.push(...page.lines);
    after = page.lines.at(-1)!.id;
  }
}

Deno.test("a detached run's 10,000 output lines are all in the logs, in order, once each", async () => {
  await using sys = await startSystem();
  const started = await sys.cli([
    "run",
    "-d",
    "-a",
    "demo",
    "--",
    "seq 1 10000; echo to-stderr >&2",
  ]);
  deepEqual(started.code, 0, started.stderr);
  match(started.stdout, /Started one-off-1 of "demo"/);
  match(started.stdout, /oneoff logs -a demo -f --filter one-off-1/);
  const run = await waitEnded(sys, "one-off-1");
  deepEqual([run.state, run.exit_code], ["exited", 0]);
  const lines = await allLogs(sys, "one-off-1");
  const stdout = lines.filter((l) => l.stream === "stdout").map((l) => l.line);
  deepEqual(stdout.length, 10000);
  deepEqual(stdout, Array.from({ length: 10000 }, (_, i) => String(i + 1)));
  deepEqual(lines.filter((l) => l.stream === "stderr").map((l) => l.line), ["to-stderr"]);
  ok(lines.every((l) => l.source === "one-off-1"));
  const cli = await sys.cli(["logs", "-a", "demo", "-n", "3", "--filter", "one-off-1"]);
  deepEqual(cli.stdout.trim().split("\n").length, 3);
});

Deno.test("a detached run gets the app env, the overrides and the platform variables", async () => {
  await using sys = await startSystem();
  await sys.cli(["env", "set", "-a", "demo", "FROM_APP=app-value", "OVERRIDDEN=old"]);
  const started = await sys.cli([
    "run",
    "-d",
    "-a",
    "demo",
    "-e",
    "OVERRIDDEN=new",
    "-e",
    "EXTRA=x y",
    "--",
    'echo "$FROM_APP|$OVERRIDDEN|$EXTRA|$APP|$CONTAINER|$HOME|$PORT"; pwd',
  ]);
  deepEqual(started.code, 0, started.stderr);
  deepEqual((await waitEnded(sys, "one-off-1")).exit_code, 0);
  const lines = (await allLogs(sys, "one-off-1")).map((l) => l.line);
  deepEqual(lines, ["app-value|new|x y|demo|one-off-1|/app|5000", "/app"]);
});

Deno.test("ps lists runs, stop stops a running one-off, and both are in the timeline", async () => {
  await using sys = await startSystem();
  await sys.cli(["run", "-d", "-a", "demo", "--", "sleep 300"]);
  let state = "";
  await waitFor(async () => {
    state = (await sys.api<{ run: RunInfo }>("GET", "/apps/demo/runs/one-off-1")).run.state;
    return state === "running";
  }, { message: "one-off-1 to be running", seen: () => state });
  const ps = await sys.cli(["ps", "-a", "demo"]);
  match(ps.stdout, /one-off-1\s+running\s+sleep 300\s+M\s+test-agent/);
  const stopped = await sys.cli(["stop", "-a", "demo", "one-off-1"]);
  deepEqual(stopped.code, 0, stopped.stderr);
  const run = await waitEnded(sys, "one-off-1");
  deepEqual(run.state, "stopped");
  const again = await sys.cli(["stop", "-a", "demo", "one-off-1"]);
  deepEqual(again.code, 1);
  match(again.stderr, /already ended/);
  const timeline = (await sys.cli(["timeline", "-a", "demo"])).stdout;
  match(timeline, /one-off-1 ended stopped/);
  match(timeline, /admin\s+asked one-off-1 to stop/);
  match(timeline, /started one-off-1 detached, size M: sleep 300/);
});

Deno.test("a detached run past its maximum duration is killed and timed_out", async () => {
  await using sys = await startSystem();
  const started = await sys.cli([
    "run",
    "-d",
    "-a",
    "demo",
    "--timeout",
    "1s",
    "--",
    "echo begin; sleep 60",
  ]);
  deepEqual(started.code, 0, started.stderr);
  const run = await waitEnded(sys, "one-off-1");
  deepEqual(run.state, "timed_out");
  match(run.reason ?? "", /maximum duration/);
  const lines = (await allLogs(sys, "one-off-1")).map((l) => l.line);
  deepEqual(lines[0], "begin");
});

Deno.test("-t runs a Procfile process type of the current slug", async () => {
  await using sys = await startSystem();
  await sys.cli(["env", "set", "-a", "demo", "GREETING=hi"]);
  await sys.cli(["run", "-d", "-a", "demo", "-t", "hello"]);
  deepEqual((await waitEnded(sys, "one-off-1")).exit_code, 0);
  deepEqual((await allLogs(sys, "one-off-1")).map((l) => l.line), [
    "hi from one-off-1 of demo (in /app)",
  ]);
  const unknown = await sys.cli(["run", "-d", "-a", "demo", "-t", "nope"]);
  deepEqual(unknown.code, 1);
  match(unknown.stderr, /No process type "nope"/);
});

Deno.test("a run may change its copy of /app; the next run sees the deployed slug again", async () => {
  await using sys = await startSystem();
  await sys.cli([
    "run",
    "-d",
    "-a",
    "demo",
    "--",
    "echo changed >> bin/hello && mkdir bin/new && touch /app/top && echo wrote",
  ]);
  deepEqual((await waitEnded(sys, "one-off-1")).exit_code, 0);
  deepEqual((await allLogs(sys, "one-off-1")).map((l) => l.line), ["wrote"]);
  await sys.cli([
    "run",
    "-d",
    "-a",
    "demo",
    "--",
    "grep -c changed bin/hello; ls bin/new /app/top 2>&1 | wc -l; id -un",
  ]);
  await waitEnded(sys, "one-off-2");
  deepEqual((await allLogs(sys, "one-off-2")).map((l) => l.line), ["0", "2", "app"]);
});
