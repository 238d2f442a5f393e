import { deepEqual, equal, match, ok } from "node:assert/strict";
import { type AgentMessage, MAX_TIMER_MS, type RunSpec } from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import { createLogger } from "../util/log.ts";
import { fakeClient, FakeListener, FakeSandbox, FakeSlugs } from "./_testing.ts";
import { Outcomes } from "./outcomes.ts";
import { Runner } from "./runner.ts";

type RunStateMsg = Extract<AgentMessage, { type: "run_state" }>;

/**
 * A runner over fakes, on a fake clock, with a channel that acknowledges logs
 * and audit chunks at once; sessions are recorded only given an `auditDir`.
 */
function setup(
  options: { ignore?: Deno.Signal[]; stopGraceMs?: number; auditDir?: string } = {},
) {
  const clock = new FakeClock();
  const sandbox = new FakeSandbox();
  sandbox.ignore = options.ignore ?? [];
  const slugs = new FakeSlugs();
  const listener = new FakeListener();
  const sent: AgentMessage[] = [];
  const channel = { up: true };
  const send = (msg: AgentMessage) => {
    if (!channel.up) return false;
    sent.push(msg);
    if (msg.type === "logs") queueMicrotask(() => runner.ackLogs(msg.runId, msg.batch));
    if (msg.type === "audit") queueMicrotask(() => runner.ackAudit(msg.runId, msg.seq));
    if (msg.type === "run_state" && msg.state !== "running") {
      queueMicrotask(() => outcomes.ack(msg.runId));
    }
    return true;
  };
  const outcomes = Outcomes.inMemory({ send, clock });
  const runner: Runner = new Runner({
    sandbox,
    slugs,
    listener,
    send,
    outcomes,
    fetchBlob: () => Promise.reject(new Error("No uploads in these tests")),
    workDir: "/nonexistent/work",
    auditDir: options.auditDir ?? "/nonexistent/audit",
    record: options.auditDir !== undefined,
    log: createLogger("test", { level: "silent" }),
    clock,
    ...(options.stopGraceMs !== undefined ? { stopGraceMs: options.stopGraceMs } : {}),
  });
  const states = () =>
    sent.filter((m): m is RunStateMsg => m.type === "run_state").map((m) => m.state);
  const ended = () =>
    sent.find((m): m is RunStateMsg => m.type === "run_state" && m.state !== "running");
  return { clock, sandbox, slugs, listener, sent, channel, runner, states, ended, outcomes };
}

function spec(overrides: Partial<RunSpec> = {}): RunSpec {
  return {
    runId: "run-1",
    app: "demo",
    label: "one-off-1",
    command: "true",
    env: {},
    slug: { sha256: "a".repeat(64), size: 1 },
    size: "M",
    limits: {
      memoryBytes: 512 * 1024 * 1024,
      pids: 256,
      cpuMillis: 1000,
      tmpBytes: 1 << 26,
      openFiles: 512,
    },
    tty: false,
    cols: 80,
    rows: 24,
    timeoutMs: 24 * 3600_000,
    idleTimeoutMs: 3600_000,
    uploads: [],
    network: "none",
    ...overrides,
  };
}

const SECRET = "b".repeat(64);

function attached(clock: FakeClock, overrides: Partial<RunSpec> = {}): RunSpec {
  return spec({
    attach: { secretSha256: SECRET, expiresAt: clock.now() + 60_000 },
    ...overrides,
  });
}

Deno.test("an attached run nobody attaches to expires and its secret is cancelled", async () => {
  const { clock, runner, listener, slugs, sent, ended } = setup();
  runner.start(attached(clock));
  await clock.advance(0);
  deepEqual(sent, [{
    type: "attach_ready",
    runId: "run-1",
    expiresAt: clock.now() + 60_000,
  }]);
  await clock.advance(59_999);
  equal(ended(), undefined);
  await clock.advance(1);
  deepEqual(ended(), {
    type: "run_state",
    runId: "run-1",
    state: "expired",
    reason: "Nobody attached within the attach window",
    at: clock.now(),
  });
  deepEqual(listener.cancelled, [SECRET]);
  deepEqual(runner.running(), []);
  equal(slugs.released, 1);
  equal(clock.pending, 0, "no timer left behind");
});

Deno.test("a detached run past its maximum duration gets SIGTERM and ends timed_out", async () => {
  const { clock, runner, sandbox, sent, states, ended } = setup();
  runner.start(spec({ timeoutMs: 5_000 }));
  await clock.advance(0);
  const [process] = sandbox.processes;
  process!.write("working\n");
  await clock.advance(4_999);
  deepEqual(process!.signals, []);
  await clock.advance(1);
  deepEqual(process!.signals, ["SIGTERM"]);
  await clock.advance(0);
  deepEqual(states(), ["running", "timed_out"]);
  const end = ended()!;
  equal(end.exitCode, 143);
  equal(end.reason, "Ran past its maximum duration of 5s");
  const lines = sent.flatMap((m) => m.type === "logs" ? m.records.map((r) => r.line) : []);
  deepEqual(lines, ["working", "oneoff: Ran past its maximum duration of 5s"]);
  equal(clock.pending, 0, "no timer left behind");
});

Deno.test("a run whose timers exceed what a JavaScript timer keeps fails instead of ending at once", async () => {
  const { clock, runner, sandbox, sent } = setup();
  runner.start(spec({ runId: "long", timeoutMs: MAX_TIMER_MS + 1 }));
  runner.start(spec({ runId: "negative", idleTimeoutMs: -1 }));
  runner.start(attached(clock, {
    runId: "window",
    attach: { secretSha256: SECRET, expiresAt: clock.now() + MAX_TIMER_MS + 1 },
  }));
  runner.start(spec({ runId: "longest", timeoutMs: MAX_TIMER_MS }));
  await clock.advance(0);
  const ends = sent.filter((m): m is RunStateMsg =>
    m.type === "run_state" && m.state !== "running"
  );
  deepEqual(ends.map((m) => [m.runId, m.state]), [
    ["long", "failed"],
    ["negative", "failed"],
    ["window", "failed"],
  ]);
  match(ends[0]!.reason!, /Invalid timeoutMs "2147483648"/);
  match(ends[1]!.reason!, /Invalid idleTimeoutMs "-1"/);
  match(ends[2]!.reason!, /Invalid attach window/);
  // The longest allowed timer is kept: that run is still running.
  equal(sandbox.processes.length, 1);
  deepEqual(runner.running(), ["longest"]);
  await runner.close();
});

Deno.test("stop sends SIGTERM, and SIGKILL after the grace period to a process that ignores it", async () => {
  const { clock, runner, sandbox, states, ended } = setup({
    ignore: ["SIGTERM"],
    stopGraceMs: 10_000,
  });
  runner.start(spec());
  await clock.advance(0);
  const [process] = sandbox.processes;
  runner.stop("run-1");
  deepEqual(process!.signals, ["SIGTERM"]);
  runner.stop("run-1"); // a second stop changes nothing
  await clock.advance(9_999);
  deepEqual(process!.signals, ["SIGTERM"]);
  deepEqual(states(), ["running"]);
  await clock.advance(1);
  deepEqual(process!.signals, ["SIGTERM", "SIGKILL"]);
  await clock.advance(0);
  deepEqual(states(), ["running", "stopped"]);
  equal(ended()!.exitCode, 137);
  equal(ended()!.reason, undefined);
});

Deno.test("a stop before the process starts ends the run at once and cancels its secret", async () => {
  const { clock, runner, listener, sandbox, slugs, states } = setup();
  runner.start(attached(clock));
  await clock.advance(0);
  runner.stop("run-1");
  await clock.advance(0);
  deepEqual(states(), ["stopped"]);
  deepEqual(listener.cancelled, [SECRET]);
  equal(sandbox.processes.length, 0);
  equal(slugs.released, 1);
  equal(clock.pending, 0);
});

Deno.test("an attached session idle for its idle timeout ends timed_out, and the attach window no longer applies", async () => {
  const { clock, runner, listener, sandbox, states, ended } = setup();
  runner.start(attached(clock, { idleTimeoutMs: 30_000 }));
  await clock.advance(0);
  const client = fakeClient();
  listener.attach(SECRET, client);
  await clock.advance(0);
  const [process] = sandbox.processes;
  process!.write("$ ");
  await clock.advance(0);
  deepEqual(client.written, ["$ "]);
  await clock.advance(29_999);
  deepEqual(process!.signals, []);
  await clock.advance(1);
  deepEqual(process!.signals, ["SIGTERM"]);
  await clock.advance(0);
  deepEqual(states(), ["running", "timed_out"]);
  equal(ended()!.reason, "Idle: no input or output for too long");
  equal(client.closed(), true);
  await clock.advance(60_000);
  deepEqual(states(), ["running", "timed_out"], "no expired after the attach");
  equal(clock.pending, 0, "no timer left behind");
});

Deno.test("after a reconnect the outbox is sent, and a run waiting for its client says so again", async () => {
  const { clock, runner, sent, channel } = setup();
  channel.up = false;
  runner.start(attached(clock));
  await clock.advance(0);
  equal(sent.length, 0);
  channel.up = true;
  runner.reconnected();
  deepEqual(sent.map((m) => m.type), ["attach_ready", "attach_ready"]);
  runner.stop("run-1");
  await clock.advance(0);
  equal(clock.pending, 0);
});

Deno.test("an ended session's recording still takes its audit acks, then its spool folder goes", async () => {
  const auditDir = await Deno.makeTempDir({ prefix: "oneoff-runner-test-" });
  try {
    const { clock, runner, listener, sandbox, sent, states } = setup({ auditDir });
    runner.start(attached(clock));
    await clock.advance(0);
    listener.attach(SECRET, fakeClient());
    await clock.advance(0);
    const [process] = sandbox.processes;
    process!.write("hi\n");
    await clock.advance(0);
    process!.exit(0);
    await clock.advance(0);
    deepEqual(states(), ["running", "exited"]);
    const chunks = sent.flatMap((m) => m.type === "audit" ? [JSON.parse(m.data)] : []);
    equal(chunks.at(-1).final, true);
    const output = chunks.flatMap((c) => c.events).filter((e: string[]) => e[1] === "o");
    deepEqual(output.map((e: string[]) => atob(e[2]!)), ["hi\n"]);
    deepEqual([...Deno.readDirSync(auditDir)], [], "every chunk acknowledged and deleted");
  } finally {
    await Deno.remove(auditDir, { recursive: true });
  }
});

Deno.test("a run stopped while its slug is being fetched releases the slug once it arrives", async () => {
  const { clock, runner, slugs, states } = setup();
  const arrived = Promise.withResolvers<void>();
  const acquire = slugs.acquire.bind(slugs);
  slugs.acquire = async (sha256) => {
    await arrived.promise;
    return await acquire(sha256);
  };
  runner.start(spec());
  await clock.advance(0);
  runner.stop("run-1");
  deepEqual(states(), ["stopped"]);
  equal(slugs.released, 0);
  arrived.resolve();
  await clock.advance(0);
  equal(slugs.released, 1);
  deepEqual(states(), ["stopped"]);
});

Deno.test("a drain lets a run finish within the drain timeout, then stops the others with a reason", async () => {
  const { clock, runner, sandbox, sent } = setup({ ignore: ["SIGTERM"], stopGraceMs: 1_000 });
  runner.start(spec({ runId: "quick" }));
  runner.start(spec({ runId: "slow" }));
  await clock.advance(0);
  const [quick, slow] = sandbox.processes;
  const drained = runner.drain(10_000);
  await clock.advance(0);
  ok(sent.some((m) => m.type === "draining"), "the server is told");
  quick!.write("done\n");
  await clock.advance(1_000);
  quick!.exit(0);
  await clock.advance(9_000);
  deepEqual(slow!.signals, ["SIGTERM"], "stopped at the drain timeout");
  await clock.advance(1_000);
  deepEqual(slow!.signals, ["SIGTERM", "SIGKILL"], "killed after the grace");
  await clock.advance(0);
  await drained;
  const ends = sent.filter((m): m is RunStateMsg =>
    m.type === "run_state" && m.state !== "running"
  );
  deepEqual(ends.map((m) => [m.runId, m.state, m.exitCode, m.reason, m.lines]), [
    ["quick", "exited", 0, undefined, 1],
    ["slow", "stopped", 137, "The agent was stopped", 1],
  ]);
  deepEqual(runner.running(), []);
});

Deno.test("a run placed on a draining agent ends failed at once, and an attached one waiting for its client is stopped", async () => {
  const { clock, runner, sandbox, listener, sent, outcomes } = setup();
  runner.start(attached(clock, { runId: "waiting" }));
  await clock.advance(0);
  const drained = runner.drain(30_000);
  await clock.advance(0);
  await drained;
  runner.start(spec({ runId: "late" }));
  await clock.advance(0);
  const ends = sent.filter((m): m is RunStateMsg => m.type === "run_state");
  deepEqual(ends.map((m) => [m.runId, m.state, m.reason]), [
    ["waiting", "stopped", "The agent was stopped"],
    ["late", "failed", "The agent is shutting down"],
  ]);
  deepEqual(listener.cancelled, [SECRET]);
  equal(sandbox.processes.length, 0, "nothing was started");
  deepEqual(outcomes.pending(), [], "both ends were acknowledged");
});

Deno.test("stop_run for a run the agent does not have is harmless; a repeated start_run starts nothing twice", async () => {
  const { clock, runner, sandbox, states } = setup();
  runner.stop("no-such-run");
  runner.start(spec());
  runner.start(spec());
  await clock.advance(0);
  equal(sandbox.processes.length, 1);
  runner.stop("run-1");
  await clock.advance(0);
  runner.stop("run-1");
  deepEqual(states(), ["running", "stopped"]);
});

Deno.test("a detached run's end names its line count and is reported once its lines are spooled, acknowledged or not", async () => {
  const { clock, runner, sandbox, sent, channel } = setup();
  runner.start(spec());
  await clock.advance(0);
  const [process] = sandbox.processes;
  channel.up = false;
  process!.write("a\nb\n");
  process!.exit(0);
  await clock.advance(5_000);
  deepEqual(runner.running(), [], "the end is reported with the server away");
  channel.up = true;
  runner.reconnected();
  // The end goes on the resend timer (in the agent, also in the hello).
  await clock.advance(1_000);
  const end = sent.find((m): m is RunStateMsg => m.type === "run_state" && m.state !== "running");
  equal(end?.lines, 2);
  const lines = sent.flatMap((m) => m.type === "logs" ? m.records.map((r) => r.line) : []);
  deepEqual(lines, ["a", "b"]);
});

Deno.test("an attached client gets one clear line when the agent stops under its session", async () => {
  const { clock, runner, listener, sandbox, ended } = setup();
  runner.start(attached(clock));
  await clock.advance(0);
  const client = fakeClient();
  listener.attach(SECRET, client);
  await clock.advance(0);
  sandbox.processes[0]!.write("$ ");
  const drained = runner.drain(1_000);
  await clock.advance(1_000);
  await drained;
  deepEqual(client.written, ["$ ", "\r\noneoff: the agent is shutting down\r\n"]);
  equal(client.closed(), true);
  deepEqual([ended()!.state, ended()!.reason], ["stopped", "The agent was stopped"]);
});

Deno.test("closing the runner kills its runs, records them stopped and leaves no timer", async () => {
  const { clock, runner, sandbox, ended, channel, outcomes } = setup();
  runner.start(spec());
  await clock.advance(0);
  channel.up = false;
  sandbox.processes[0]!.write("unacknowledged\n");
  await clock.advance(100);
  await runner.close();
  deepEqual(sandbox.processes[0]!.signals, ["SIGKILL"]);
  channel.up = true;
  equal(ended(), undefined, "the end was recorded while the channel was down");
  deepEqual(
    outcomes.pending().map((e) => [e.state, e.reason, e.lines]),
    [["stopped", "The agent was stopped", 2]],
  );
  equal(clock.pending, 0, "no resend timer survives the close");
});
