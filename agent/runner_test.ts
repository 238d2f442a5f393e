import assert from "node:assert/strict";
import type { AgentMessage, RunSpec } from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import { createLogger } from "../util/log.ts";
import { fakeClient, FakeListener, FakeSandbox, FakeSlugs } from "./_testing.ts";
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
  const runner: Runner = new Runner({
    sandbox,
    slugs,
    listener,
    send(msg) {
      if (!channel.up) return false;
      sent.push(msg);
      if (msg.type === "logs") queueMicrotask(() => runner.ackLogs(msg.runId, msg.batch));
      if (msg.type === "audit") queueMicrotask(() => runner.ackAudit(msg.runId, msg.seq));
      return true;
    },
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
  return { clock, sandbox, slugs, listener, sent, channel, runner, states, ended };
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
  assert.deepEqual(sent, [{
    type: "attach_ready",
    runId: "run-1",
    expiresAt: clock.now() + 60_000,
  }]);
  await clock.advance(59_999);
  assert.equal(ended(), undefined);
  await clock.advance(1);
  assert.deepEqual(ended(), {
    type: "run_state",
    runId: "run-1",
    state: "expired",
    reason: "Nobody attached within the attach window",
    at: clock.now(),
  });
  assert.deepEqual(listener.cancelled, [SECRET]);
  assert.deepEqual(runner.running(), []);
  assert.equal(slugs.released, 1);
  assert.equal(clock.pending, 0, "no timer left behind");
});

Deno.test("a detached run past its maximum duration gets SIGTERM and ends timed_out", async () => {
  const { clock, runner, sandbox, sent, states, ended } = setup();
  runner.start(spec({ timeoutMs: 5_000 }));
  await clock.advance(0);
  const [process] = sandbox.processes;
  process!.write("working\n");
  await clock.advance(4_999);
  assert.deepEqual(process!.signals, []);
  await clock.advance(1);
  assert.deepEqual(process!.signals, ["SIGTERM"]);
  await clock.advance(0);
  assert.deepEqual(states(), ["running", "timed_out"]);
  const end = ended()!;
  assert.equal(end.exitCode, 143);
  assert.equal(end.reason, "Ran past its maximum duration of 5s");
  const lines = sent.flatMap((m) => m.type === "logs" ? m.records.map((r) => r.line) : []);
  assert.deepEqual(lines, ["working", "oneoff: Ran past its maximum duration of 5s"]);
  assert.equal(clock.pending, 0, "no timer left behind");
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
  assert.deepEqual(process!.signals, ["SIGTERM"]);
  runner.stop("run-1"); // a second stop changes nothing
  await clock.advance(9_999);
  assert.deepEqual(process!.signals, ["SIGTERM"]);
  assert.deepEqual(states(), ["running"]);
  await clock.advance(1);
  assert.deepEqual(process!.signals, ["SIGTERM", "SIGKILL"]);
  await clock.advance(0);
  assert.deepEqual(states(), ["running", "stopped"]);
  assert.equal(ended()!.exitCode, 137);
  assert.equal(ended()!.reason, undefined);
});

Deno.test("a stop before the process starts ends the run at once and cancels its secret", async () => {
  const { clock, runner, listener, sandbox, slugs, states } = setup();
  runner.start(attached(clock));
  await clock.advance(0);
  runner.stop("run-1");
  await clock.advance(0);
  assert.deepEqual(states(), ["stopped"]);
  assert.deepEqual(listener.cancelled, [SECRET]);
  assert.equal(sandbox.processes.length, 0);
  assert.equal(slugs.released, 1);
  assert.equal(clock.pending, 0);
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
  assert.deepEqual(client.written, ["$ "]);
  await clock.advance(29_999);
  assert.deepEqual(process!.signals, []);
  await clock.advance(1);
  assert.deepEqual(process!.signals, ["SIGTERM"]);
  await clock.advance(0);
  assert.deepEqual(states(), ["running", "timed_out"]);
  assert.equal(ended()!.reason, "Idle: no input or output for too long");
  assert.equal(client.closed(), true);
  await clock.advance(60_000);
  assert.deepEqual(states(), ["running", "timed_out"], "no expired after the attach");
  assert.equal(clock.pending, 0, "no timer left behind");
});

Deno.test("after a reconnect the outbox is sent, and a run waiting for its client says so again", async () => {
  const { clock, runner, sent, channel } = setup();
  channel.up = false;
  runner.start(attached(clock));
  await clock.advance(0);
  assert.equal(sent.length, 0);
  channel.up = true;
  runner.reconnected();
  assert.deepEqual(sent.map((m) => m.type), ["attach_ready", "attach_ready"]);
  runner.stop("run-1");
  await clock.advance(0);
  assert.equal(clock.pending, 0);
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
    assert.deepEqual(states(), ["running", "exited"]);
    const chunks = sent.flatMap((m) => m.type === "audit" ? [JSON.parse(m.data)] : []);
    assert.equal(chunks.at(-1).final, true);
    const output = chunks.flatMap((c) => c.events).filter((e: string[]) => e[1] === "o");
    assert.deepEqual(output.map((e: string[]) => atob(e[2]!)), ["hi\n"]);
    assert.deepEqual([...Deno.readDirSync(auditDir)], [], "every chunk acknowledged and deleted");
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
  assert.deepEqual(states(), ["stopped"]);
  assert.equal(slugs.released, 0);
  arrived.resolve();
  await clock.advance(0);
  assert.equal(slugs.released, 1);
  assert.deepEqual(states(), ["stopped"]);
});
