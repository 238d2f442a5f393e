import { deepEqual, equal, notEqual, ok, rejects } from "node:assert/strict";
import { sha256Hex } from "./auth.ts";
import { type AgentMessage, DEFAULT_SIZES, type RunEnded, type RunState } from "../protocol/mod.ts";
import { FakeClock } from "../util/clock.ts";
import { HttpError } from "./http_error.ts";
import { engineFixture, FakeAgent, runRequest, stateReport } from "./_engine_testing.ts";
import { ConnectedAgents } from "./agent_directory.ts";
import { routeAgentEvents } from "./agent_events.ts";
import type { AgentEvents } from "./agent_hub.ts";
import type { ServerContext } from "./context.ts";
import { Ingest } from "./ingest.ts";
import { RunEngine, type RunRequest } from "./run_engine.ts";
import type { AppRow, ReleaseRow, RunRow } from "./store/mod.ts";

/** One server's engine on a store; the test plays the hub's part. */
class Server implements Disposable {
  agents = new ConnectedAgents();
  engine: RunEngine;
  events: AgentEvents;
  ingest: Ingest;
  #ctx: ServerContext;

  constructor(ctx: ServerContext, clock: FakeClock) {
    this.#ctx = ctx;
    this.engine = new RunEngine(ctx, { agents: this.agents, clock });
    this.ingest = new Ingest(ctx, { clock });
    this.events = routeAgentEvents(this.engine, this.ingest);
  }

  /** An agent row as the hub's hello makes it, and a fake agent with its id. */
  async agent(name: string, options: { capacity?: number; running?: string[] } = {}) {
    const row = await this.#ctx.store.upsertAgent({
      name,
      online: true,
      since: new Date(),
      version: "test",
      capacity: options.capacity ?? 4,
      sandbox: "bwrap",
      attach_host: "127.0.0.1",
      attach_port: 5000,
      attach_tls: false,
      tls_fingerprint: null,
      warnings: [],
    });
    return new FakeAgent(row.id, options);
  }

  /** What the hub does once an agent said hello. */
  async join(agent: FakeAgent, ended: RunEnded[] = []): Promise<void> {
    this.agents.add(agent);
    await this.events.joined(agent, [...agent.active], ended);
  }

  /** What the hub does when an agent's channel closes. */
  async leave(agent: FakeAgent): Promise<void> {
    agent.open = false;
    this.agents.remove(agent);
    await this.events.left(agent);
  }

  [Symbol.dispose](): void {
    this.engine.close();
    this.ingest.close();
  }
}

async function createRun(
  server: Server,
  f: { app: AppRow; release: ReleaseRow },
  changes: Partial<RunRequest> = {},
): Promise<RunRow> {
  return (await server.engine.create(f.app, f.release, runRequest(changes), "alice")).run;
}

async function stateOf(ctx: ServerContext, runId: string): Promise<RunState | undefined> {
  return (await ctx.store.runById(runId))?.state;
}

/** The `run.ended` entries of the timeline, oldest first. */
async function endings(ctx: ServerContext): Promise<Record<string, unknown>[]> {
  const events = await ctx.store.listEvents({ limit: 1000 });
  return events.filter((e) => e.kind === "run.ended").reverse().map((e) =>
    e.data as Record<string, unknown>
  );
}

/** A clock at the real time: the store stamps runs' creation with the real clock. */
function clockNow(): FakeClock {
  return new FakeClock(Date.now());
}

Deno.test("a pending run fails at the queue timeout when no agent is connected", async () => {
  await using f = await engineFixture({ queueTimeoutMs: 60_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const run = await createRun(server, f);
  equal(run.state, "pending");
  await clock.advance(55_000);
  equal(await stateOf(f.ctx, run.id), "pending");
  await clock.advance(10_000);
  const failed = await f.ctx.store.runById(run.id);
  equal(failed?.state, "failed");
  equal(failed?.reason, "No agent had capacity before the queue timeout");
  deepEqual((await endings(f.ctx)).map((e) => [e.run, e.state]), [["one-off-1", "failed"]]);
});

Deno.test("a run is placed on the least loaded agent with its label, env and limits", async () => {
  await using f = await engineFixture();
  await f.ctx.store.updateEnv(f.app.id, { DATABASE_URL: "postgres://db", PORT: "1" }, []);
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const half = await server.agent("half", { capacity: 4 });
  const idle = await server.agent("idle", { capacity: 2 });
  const full = await server.agent("full", { capacity: 1 });
  for (const agent of [half, idle, full]) await server.join(agent);
  // Load placed by another test's worth of runs (ids unknown to this store).
  half.active.add("a").add("b");
  full.active.add("c");

  const run = await createRun(server, f, {
    command: "rake db:migrate",
    size: "L",
    env: { FOO: "bar", HOME: "/elsewhere" },
    term: "screen",
    timeoutMs: 600_000,
  });
  equal(run.state, "starting");
  equal(run.agent_id, idle.id);
  ok(idle.active.has(run.id));
  deepEqual([half.sent, full.sent], [[], []]);
  const [spec, ...more] = idle.started();
  deepEqual(more, []);
  ok(spec);
  equal(spec.runId, run.id);
  equal(spec.app, "demo");
  equal(spec.label, "one-off-1");
  equal(spec.command, "rake db:migrate");
  equal(spec.size, "L");
  deepEqual(spec.limits, DEFAULT_SIZES.L);
  equal(spec.timeoutMs, 600_000);
  equal(spec.slug.sha256, f.release.sha256);
  deepEqual(spec.env, {
    DATABASE_URL: "postgres://db",
    FOO: "bar",
    APP: "demo",
    CONTAINER: "one-off-1",
    HOME: "/app",
    PORT: "5000",
    TERM: "screen",
  }, "the app's env, then the overrides, then the platform's variables");
  equal(spec.attach, undefined, "a detached run has no attach secret");
});

Deno.test("an attached run's attach window is counted from its placement", async () => {
  await using f = await engineFixture({ attachWindowMs: 60_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  await clock.advance(5_000);
  const agent = await server.agent("a1");
  await server.join(agent);
  const { run, secret } = await server.engine.create(
    f.app,
    f.release,
    runRequest({ attached: true, tty: true }),
    "alice",
  );
  ok(secret);
  const spec = agent.started()[0];
  equal(spec?.attach?.expiresAt, clock.now() + 60_000);
  equal(spec?.attach?.secretSha256, run.secret_sha256);
});

Deno.test("the runs of an agent gone past the grace period are lost", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const running = await createRun(server, f);
  const starting = await createRun(server, f);
  await server.events.message(agent, stateReport(running.id, "running", clock.now()));
  equal(await stateOf(f.ctx, running.id), "running");

  await server.leave(agent);
  equal((await f.ctx.store.agentById(agent.id))?.online, false);
  await clock.advance(29_000);
  equal(await stateOf(f.ctx, running.id), "running", "still within the grace period");
  equal(await stateOf(f.ctx, starting.id), "starting");
  await clock.advance(2_000);
  for (const id of [running.id, starting.id]) {
    const run = await f.ctx.store.runById(id);
    equal(run?.state, "lost");
    equal(run?.reason, "Its agent went away");
  }
  deepEqual(
    (await endings(f.ctx)).map((e) => [e.run, e.state]).sort(),
    [["one-off-1", "lost"], ["one-off-2", "lost"]],
  );
});

Deno.test("an agent back within the grace period listing its run keeps it running", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  await server.leave(agent);
  await clock.advance(10_000);

  const back = await server.agent("a1", { running: [run.id] });
  equal(back.id, agent.id);
  await server.join(back);
  await clock.advance(120_000);
  equal(await stateOf(f.ctx, run.id), "running");
  deepEqual(await endings(f.ctx), []);

  await server.events.message(back, stateReport(run.id, "exited", clock.now(), 0));
  const ended = await f.ctx.store.runById(run.id);
  deepEqual([ended?.state, ended?.exit_code], ["exited", 0]);
});

Deno.test("an agent back within the grace period without a run has that run lost", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const kept = await createRun(server, f);
  const forgotten = await createRun(server, f);
  for (const run of [kept, forgotten]) {
    await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  }
  await server.leave(agent);
  await clock.advance(10_000);

  await server.join(await server.agent("a1", { running: [kept.id] }));
  equal(await stateOf(f.ctx, forgotten.id), "lost", "at once, not at the end of the grace");
  equal(await stateOf(f.ctx, kept.id), "running");
  await clock.advance(120_000);
  equal(await stateOf(f.ctx, kept.id), "running");
  deepEqual((await endings(f.ctx)).map((e) => [e.run, e.state]), [["one-off-2", "lost"]]);
});

Deno.test("a run placed on an agent that comes back without it, never started, is placed again", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const started = await createRun(server, f);
  const unstarted = await createRun(server, f);
  await server.events.message(agent, stateReport(started.id, "running", clock.now()));
  // The agent froze as `unstarted` was placed: it never got its start_run.
  await server.leave(agent);
  await clock.advance(10_000);

  const back = await server.agent("a1");
  await server.join(back);
  equal(await stateOf(f.ctx, started.id), "lost", "it had started: its output may be gone");
  equal(await stateOf(f.ctx, unstarted.id), "starting", "placed again, not lost");
  deepEqual(back.started().map((s) => s.runId), [unstarted.id]);
  deepEqual((await endings(f.ctx)).map((e) => [e.run, e.state]), [["one-off-1", "lost"]]);
});

Deno.test("stopping a pending run stops it at once", async () => {
  await using f = await engineFixture();
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const run = await createRun(server, f);
  await server.engine.stop(run, "bob", "one-off-1", "demo");
  const stopped = await f.ctx.store.runById(run.id);
  deepEqual([stopped?.state, stopped?.reason], ["stopped", "Stopped by bob"]);
  const kinds = (await f.ctx.store.listEvents({ limit: 10 })).map((e) => e.kind).reverse();
  deepEqual(kinds, ["run.created", "run.stop", "run.ended"]);
});

Deno.test("stopping a running run asks its agent, and it ends when the agent says so", async () => {
  await using f = await engineFixture();
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));

  await server.engine.stop((await f.ctx.store.runById(run.id))!, "bob", "one-off-1", "demo");
  deepEqual(agent.sent.at(-1), { type: "stop_run", runId: run.id });
  equal(await stateOf(f.ctx, run.id), "running", "until the agent reports the end");

  await server.events.message(agent, stateReport(run.id, "stopped", clock.now()));
  equal(await stateOf(f.ctx, run.id), "stopped");
  ok(!agent.active.has(run.id));
  deepEqual((await endings(f.ctx)).map((e) => e.state), ["stopped"]);
});

Deno.test("a run stopped while its agent is away is stopped, and killed when the agent returns with it", async () => {
  await using f = await engineFixture();
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  await server.leave(agent);

  const row = (await f.ctx.store.runById(run.id))!;
  await server.engine.stop(row, "bob", "one-off-1", "demo");
  const stopped = await f.ctx.store.runById(run.id);
  deepEqual([stopped?.state, stopped?.reason], [
    "stopped",
    "Stopped by bob while its agent was disconnected",
  ]);

  const back = await server.agent("a1", { running: [run.id] });
  await server.join(back);
  deepEqual(back.sent, [{ type: "stop_run", runId: run.id }]);
  ok(!back.active.has(run.id), "its place is free again");
  await server.events.message(back, stateReport(run.id, "stopped", clock.now()));
  deepEqual(back.sent.at(-1), { type: "state_ack", runId: run.id });
  equal(await stateOf(f.ctx, run.id), "stopped");
});

Deno.test("after a restart, pending runs are placed and rejoining agents keep their runs", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  const before = new Server(f.ctx, clock);
  const agent = await before.agent("a1", { capacity: 1 });
  await before.join(agent);
  const running = await createRun(before, f);
  await before.events.message(agent, stateReport(running.id, "running", clock.now()));
  const pending = await createRun(before, f);
  equal(pending.state, "pending", "the only agent is full");
  before[Symbol.dispose]();

  using after = new Server(f.ctx, clock);
  await clock.advance(5_000);
  equal(await stateOf(f.ctx, pending.id), "pending", "no agent yet");
  const back = await after.agent("a1", { capacity: 2, running: [running.id] });
  await after.join(back);
  equal(await stateOf(f.ctx, running.id), "running");
  equal(await stateOf(f.ctx, pending.id), "starting");
  deepEqual(back.started().map((s) => s.runId), [pending.id]);
  await clock.advance(120_000);
  equal(await stateOf(f.ctx, running.id), "running");
  deepEqual(await endings(f.ctx), []);
});

Deno.test("run_state reports from an agent that does not own the run are ignored", async () => {
  await using f = await engineFixture();
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const owner = await server.agent("owner");
  await server.join(owner);
  const run = await createRun(server, f);
  const other = await server.agent("other");
  await server.join(other);

  await server.events.message(other, stateReport(run.id, "running", clock.now()));
  equal(await stateOf(f.ctx, run.id), "starting");
  await server.events.message(owner, stateReport(run.id, "running", clock.now()));
  equal(await stateOf(f.ctx, run.id), "running");
  await server.events.message(other, stateReport(run.id, "exited", clock.now(), 1));
  equal(await stateOf(f.ctx, run.id), "running");
  deepEqual(await endings(f.ctx), []);
  await server.events.message(owner, stateReport(run.id, "exited", clock.now(), 0));
  const ended = await f.ctx.store.runById(run.id);
  deepEqual([ended?.state, ended?.exit_code], ["exited", 0]);
});

/** A `run_state` report of a detached run that exited 0 having printed `lines` lines. */
function exitReport(runId: string, at: number, lines: number): AgentMessage {
  return { type: "run_state", runId, state: "exited", at, exitCode: 0, lines };
}

/** An end as the agent keeps it until `state_ack`. */
function ended(
  runId: string,
  state: RunState,
  at: number,
  extra: Partial<RunEnded> = {},
): RunEnded {
  return { runId, state, at, ...extra };
}

Deno.test("ends kept by the agent in its hello are applied before its other runs are lost", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const clean = await createRun(server, f);
  const vanished = await createRun(server, f);
  for (const run of [clean, vanished]) {
    await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  }
  await server.leave(agent);
  await clock.advance(10_000);

  const back = await server.agent("a1");
  await server.join(back, [ended(clean.id, "exited", clock.now(), { exitCode: 0, lines: 0 })]);
  const row = await f.ctx.store.runById(clean.id);
  deepEqual([row?.state, row?.exit_code], ["exited", 0], "not lost: its end was kept");
  equal(await stateOf(f.ctx, vanished.id), "lost", "neither running nor ended: lost");
  deepEqual(back.sent, [{ type: "state_ack", runId: clean.id }]);
  deepEqual(
    (await endings(f.ctx)).map((e) => [e.run, e.state]),
    [["one-off-1", "exited"], ["one-off-2", "lost"]],
  );
});

Deno.test("an end reported after the grace turns a lost run into how it really ended", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  await server.leave(agent);
  await clock.advance(31_000);
  equal(await stateOf(f.ctx, run.id), "lost");

  const back = await server.agent("a1");
  await server.join(back, [ended(run.id, "exited", clock.now(), { exitCode: 3 })]);
  const row = await f.ctx.store.runById(run.id);
  deepEqual([row?.state, row?.exit_code, row?.reason], ["exited", 3, null]);
  deepEqual(back.sent, [{ type: "state_ack", runId: run.id }]);
});

Deno.test("a run marked lost whose agent comes back still running it is running again", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  await server.leave(agent);
  await clock.advance(31_000);
  equal(await stateOf(f.ctx, run.id), "lost");

  const back = await server.agent("a1", { running: [run.id] });
  await server.join(back);
  const row = await f.ctx.store.runById(run.id);
  deepEqual([row?.state, row?.reason, row?.ended_at], ["running", null, null]);
  ok(back.active.has(run.id));
  deepEqual(back.sent, [], "not told to stop it");
  const events = (await f.ctx.store.listEvents({ limit: 10 })).map((e) => e.kind).reverse();
  deepEqual(events, ["run.created", "run.ended", "run.recovered"]);

  await server.events.message(back, stateReport(run.id, "exited", clock.now(), 0));
  deepEqual(await stateOf(f.ctx, run.id), "exited");
});

Deno.test("a run the agent still has but the server no longer knows is killed", async () => {
  await using f = await engineFixture();
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1", { running: ["gone-run"] });
  await server.join(agent);
  deepEqual(agent.sent, [{ type: "stop_run", runId: "gone-run" }]);
  equal(agent.active.size, 0);
});

Deno.test("after a restart, the runs of an agent that never returns are lost after the grace", async () => {
  await using f = await engineFixture({ agentGraceMs: 30_000 });
  const clock = clockNow();
  const before = new Server(f.ctx, clock);
  const agent = await before.agent("a1");
  await before.join(agent);
  const run = await createRun(before, f);
  await before.events.message(agent, stateReport(run.id, "running", clock.now()));
  before[Symbol.dispose]();

  using after = new Server(f.ctx, clock);
  await after.engine.started;
  await clock.advance(29_000);
  equal(await stateOf(f.ctx, run.id), "running", "its agent may still come back");
  await clock.advance(2_000);
  const row = await f.ctx.store.runById(run.id);
  deepEqual([row?.state, row?.reason], ["lost", "Its agent went away"]);
});

Deno.test("a draining agent gets no new runs", async () => {
  await using f = await engineFixture();
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const draining = await server.agent("draining", { capacity: 10 });
  await server.join(draining);
  await server.events.message(draining, { type: "draining" });
  const run = await createRun(server, f);
  equal(run.state, "pending");
  deepEqual(draining.started(), []);

  const other = await server.agent("other", { capacity: 1 });
  await server.join(other);
  equal(await stateOf(f.ctx, run.id), "starting");
  deepEqual(other.started().map((s) => s.runId), [run.id]);
});

Deno.test("a repeated end, log batch or audit chunk is harmless and acknowledged again", async () => {
  await using f = await engineFixture();
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  const batch = {
    type: "logs" as const,
    runId: run.id,
    batch: 0,
    records: [{ seq: 0, stream: "stdout" as const, ts: clock.now(), line: "hello" }],
  };
  const chunk = { type: "audit" as const, runId: run.id, seq: 0, data: "aGVsbG8=" };
  const end = exitReport(run.id, clock.now(), 1);
  for (let i = 0; i < 2; i++) {
    await server.events.message(agent, batch);
    await server.events.message(agent, chunk);
    await server.events.message(agent, end);
  }
  const acks = agent.sent.filter((m) => m.type !== "start_run");
  const once = [
    { type: "logs_ack", runId: run.id, batch: 0 },
    { type: "audit_ack", runId: run.id, seq: 0 },
    { type: "state_ack", runId: run.id },
  ];
  deepEqual(acks, [...once, ...once]);
  equal((await f.ctx.store.readLogs(f.app.id, {})).length, 1);
  equal((await f.ctx.store.auditChunks(run.id)).length, 1);
  deepEqual((await endings(f.ctx)).map((e) => e.state), ["exited"]);
});

Deno.test("a burst beyond the app's limit waits in the queue and runs, never more than the limit at once", async () => {
  await using f = await engineFixture({ maxRunsPerApp: 10 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("big", { capacity: 100 });
  await server.join(agent);
  const runs = await Promise.all(
    Array.from({ length: 50 }, (_, i) => createRun(server, f, { command: `echo ${i}` })),
  );
  equal(runs.length, 50, "all accepted");
  const queue = await server.engine.queue(f.app.id);
  deepEqual([queue.limit, queue.active, queue.pending], [10, 10, 40]);
  deepEqual([...queue.places.values()][0], { reason: "app_limit", position: 1 });

  let most = 0;
  const done = new Set<string>();
  while (done.size < 50) {
    const live = await f.ctx.store.listRuns({
      app_id: f.app.id,
      states: ["starting", "running"],
    });
    most = Math.max(most, live.length);
    ok(live.length > 0, "the queue moves");
    for (const run of live) {
      await server.events.message(agent, stateReport(run.id, "exited", clock.now(), 0));
      done.add(run.id);
    }
  }
  equal(most, 10);
  equal(agent.started().length, 50, "each started once");
  const states = await f.ctx.store.listRuns({ app_id: f.app.id, limit: 100 });
  deepEqual(new Set(states.map((r) => r.state)), new Set(["exited"]));
});

Deno.test("a run asking to fail fast at the app's limit is refused with 429", async () => {
  await using f = await engineFixture({ maxRunsPerApp: 2 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  await createRun(server, f);
  await createRun(server, f);
  const queued = await createRun(server, f);
  equal(queued.state, "pending");
  await rejects(createRun(server, f, { failFast: true }), (err) => {
    ok(err instanceof HttpError);
    deepEqual([err.status, err.code], [429, "too_many_runs"]);
    return true;
  });
});

Deno.test("a run whose end reported more lines than were stored says how many are missing", async () => {
  await using f = await engineFixture({ logsSettleMs: 10_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  const batch = (n: number, seqs: number[]) => ({
    type: "logs" as const,
    runId: run.id,
    batch: n,
    records: seqs.map((seq) => ({ seq, stream: "stdout" as const, ts: clock.now(), line: "x" })),
  });
  await server.events.message(agent, batch(0, [0, 1]));
  await server.events.message(agent, exitReport(run.id, clock.now(), 5));
  await clock.advance(8_000);
  await server.events.message(agent, batch(1, [2]));
  await clock.advance(8_000);
  equal((await f.ctx.store.runById(run.id))?.reason, null, "a late batch restarts the wait");
  await clock.advance(3_000);
  const row = await f.ctx.store.runById(run.id);
  deepEqual([row?.state, row?.exit_code, row?.reason], ["exited", 0, "2 of 5 log lines missing"]);
  const last = (await f.ctx.store.listEvents({ limit: 1 }))[0];
  deepEqual([last?.kind, last?.data], ["run.logs_missing", {
    run: "one-off-1",
    missing: 2,
    lines: 5,
  }]);
});

Deno.test("a shortfall is still reported when the server restarts before the check", async () => {
  await using f = await engineFixture({ logsSettleMs: 10_000 });
  const clock = clockNow();
  const before = new Server(f.ctx, clock);
  const agent = await before.agent("a1");
  await before.join(agent);
  const run = await createRun(before, f);
  await before.events.message(agent, stateReport(run.id, "running", clock.now()));
  await before.events.message(agent, exitReport(run.id, clock.now(), 3));
  equal((await f.ctx.store.runById(run.id))?.log_lines, 3);
  before[Symbol.dispose]();

  using after = new Server(f.ctx, clock);
  await after.ingest.started;
  await clock.advance(11_000);
  equal((await f.ctx.store.runById(run.id))?.reason, "3 of 3 log lines missing");
});

Deno.test("a run whose lines all arrived gets no note", async () => {
  await using f = await engineFixture({ logsSettleMs: 10_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const run = await createRun(server, f);
  await server.events.message(agent, stateReport(run.id, "running", clock.now()));
  await server.events.message(agent, exitReport(run.id, clock.now(), 1));
  await server.events.message(agent, {
    type: "logs",
    runId: run.id,
    batch: 0,
    records: [{ seq: 0, stream: "stdout", ts: clock.now(), line: "x" }],
  });
  await clock.advance(20_000);
  equal((await f.ctx.store.runById(run.id))?.reason, null);
});

Deno.test("a reattach hands the run's agent a fresh one-use secret; its report is on the timeline", async () => {
  await using f = await engineFixture({ reattachGraceMs: 5_000 });
  const clock = clockNow();
  using server = new Server(f.ctx, clock);
  const agent = await server.agent("a1");
  await server.join(agent);
  const { run } = await server.engine.create(
    f.app,
    f.release,
    runRequest({ attached: true }),
    "alice",
  );
  equal(agent.started()[0]?.reattachGraceMs, 5_000, "the server's grace is in the spec");
  const row = (await f.ctx.store.runById(run.id))!;
  const granted = await server.engine.reattach(row);
  ok(granted);
  const sent = agent.sent.find((m) => m.type === "reattach");
  deepEqual(sent, {
    type: "reattach",
    runId: run.id,
    secretSha256: sha256Hex(granted.secret),
    expiresAt: granted.expiresAt,
  });
  notEqual(sha256Hex(granted.secret), row.secret_sha256, "not the run's own secret");
  await server.events.message(agent, {
    type: "session_event",
    runId: run.id,
    kind: "reattached",
    at: clock.now(),
    address: "10.0.0.5:41234",
  });
  const events = await f.ctx.store.listEvents({ limit: 10 });
  const event = events.find((e) => e.kind === "run.reattached");
  deepEqual([event?.actor, event?.data], ["alice", {
    run: "one-off-1",
    address: "10.0.0.5:41234",
  }]);
  agent.open = false;
  equal(await server.engine.reattach(row), null, "an agent away gives no secret");
});
