import { deepEqual, equal, match, ok } from "node:assert/strict";
import { waitFor } from "../tests/_wait.ts";
import { FakeClock } from "../util/clock.ts";
import { engineFixture, FakeAgent } from "./_engine_testing.ts";
import { Ingest, QUOTA_SLACK_BYTES } from "./ingest.ts";
import type { Store } from "./store/mod.ts";

/** A run of the fixture's app, placed on `agentId` and in `state`. */
async function placedRun(
  store: Store,
  f: { app: { id: number }; release: { id: number } },
  agentId: string,
) {
  const run = await store.createRun({
    id: crypto.randomUUID(),
    app_id: f.app.id,
    command: "seq 3",
    attached: false,
    tty: false,
    size: "M",
    release_id: f.release.id,
    env_overrides: {},
    uploads: [],
    cols: 80,
    rows: 24,
    timeout_ms: 60_000,
    actor: "alice",
    secret_sha256: null,
    expires_at: null,
  });
  await store.updateRun(run.id, ["pending"], { state: "running", agent_id: agentId });
  return run;
}

function lines(runId: string, from: number, count: number, batch = from) {
  const records = Array.from({ length: count }, (_, i) => ({
    seq: from + i,
    stream: "stdout" as const,
    ts: Date.UTC(2026, 0, 1, 0, 0, from + i),
    line: `line ${from + i}`,
  }));
  return { type: "logs" as const, runId, batch, records };
}

Deno.test("a log batch is stored under the run's label and acknowledged by its batch number", async () => {
  await using f = await engineFixture();
  const ingest = new Ingest(f.ctx);
  const agent = new FakeAgent("a1");
  const run = await placedRun(f.ctx.store, f, agent.id);
  await ingest.logs(agent, lines(run.id, 0, 3, 0));
  await ingest.logs(agent, lines(run.id, 2, 2, 1));
  deepEqual(agent.sent, [
    { type: "logs_ack", runId: run.id, batch: 0 },
    { type: "logs_ack", runId: run.id, batch: 1 },
  ]);
  const stored = await f.ctx.store.readLogs(f.app.id, { limit: 100 });
  deepEqual(stored.map((l) => [l.source, l.line]), [
    ["one-off-1", "line 0"],
    ["one-off-1", "line 1"],
    ["one-off-1", "line 2"],
    ["one-off-1", "line 3"],
  ], "a line sent again is stored once");
});

Deno.test("log lines of a run the agent does not own are neither stored nor acknowledged", async () => {
  await using f = await engineFixture();
  const ingest = new Ingest(f.ctx);
  const owner = new FakeAgent("owner");
  const other = new FakeAgent("other");
  const run = await placedRun(f.ctx.store, f, owner.id);
  await ingest.logs(owner, lines(run.id, 0, 1));
  await ingest.logs(other, lines(run.id, 1, 1));
  deepEqual(other.sent, []);
  equal((await f.ctx.store.readLogs(f.app.id, {})).length, 1);
});

Deno.test("a log batch of a run that no longer exists is acknowledged and dropped", async () => {
  await using f = await engineFixture();
  const ingest = new Ingest(f.ctx);
  const agent = new FakeAgent("a1");
  await ingest.logs(agent, lines("no-such-run", 0, 2, 7));
  deepEqual(agent.sent, [{ type: "logs_ack", runId: "no-such-run", batch: 7 }]);
  equal((await f.ctx.store.readLogs(f.app.id, {})).length, 0);
});

Deno.test("the last log lines of an ended run are still stored", async () => {
  await using f = await engineFixture();
  const ingest = new Ingest(f.ctx);
  const agent = new FakeAgent("a1");
  const run = await placedRun(f.ctx.store, f, agent.id);
  await ingest.logs(agent, lines(run.id, 0, 1));
  await f.ctx.store.updateRun(run.id, ["running"], { state: "exited", exit_code: 0 });
  ingest.ended(run.id);
  await ingest.logs(agent, lines(run.id, 1, 1));
  ingest.left(agent);
  await ingest.logs(agent, lines(run.id, 2, 1));
  deepEqual(agent.sent.map((m) => m.type === "logs_ack" && m.batch), [0, 1, 2]);
  equal((await f.ctx.store.readLogs(f.app.id, {})).length, 3);
});

Deno.test("an audit chunk is stored and acknowledged, also once the app is destroyed; one of an unknown run is acknowledged and dropped", async () => {
  await using f = await engineFixture();
  const ingest = new Ingest(f.ctx);
  const agent = new FakeAgent("a1");
  const run = await placedRun(f.ctx.store, f, agent.id);
  await ingest.audit(agent, { type: "audit", runId: run.id, seq: 0, data: "aGVsbG8=" });
  equal((await f.ctx.store.auditChunks(run.id)).length, 1);

  await f.ctx.store.destroyApp(f.app.id);
  await ingest.audit(agent, { type: "audit", runId: run.id, seq: 1, data: "aGVsbG8=" });
  const unknown = crypto.randomUUID();
  await ingest.audit(agent, { type: "audit", runId: unknown, seq: 0, data: "aGVsbG8=" });
  deepEqual(agent.sent, [
    { type: "audit_ack", runId: run.id, seq: 0 },
    { type: "audit_ack", runId: run.id, seq: 1 },
    { type: "audit_ack", runId: unknown, seq: 0 },
  ]);
  equal((await f.ctx.store.auditChunks(run.id)).length, 2, "the audit trail outlives the app");
  equal((await f.ctx.store.auditChunks(unknown)).length, 0);
});

Deno.test("a batch past the run's log quota is stored up to it, the rest counted and said on the run", async () => {
  // 1 KiB lines: the quota plus the agent's slack holds 65 of them.
  await using f = await engineFixture({ logQuotaBytes: 1024, logsSettleMs: 10 });
  const ingest = new Ingest(f.ctx);
  const agent = new FakeAgent("a1");
  const run = await placedRun(f.ctx.store, f, agent.id);
  const long = (from: number, count: number, batch: number) => {
    const msg = lines(run.id, from, count, batch);
    for (const r of msg.records) r.line = r.line.padEnd(1023, "x");
    return msg;
  };
  await ingest.logs(agent, long(0, 50, 0));
  await ingest.logs(agent, long(0, 50, 0)); // sent again: counted once
  await ingest.logs(agent, long(50, 50, 1));
  deepEqual(agent.sent.map((m) => m.type === "logs_ack" && m.batch), [0, 0, 1]);
  const stored = await f.ctx.store.readLogs(f.app.id, { limit: 1000 });
  equal(stored.length, (1024 + QUOTA_SLACK_BYTES) / 1024 + 1);
  match(stored.at(-1)?.line ?? "", /log quota of 66560 bytes reached; further lines are counted/);
  await f.ctx.store.updateRun(run.id, ["running"], { state: "exited", exit_code: 0 });
  ingest.ended(run.id, 100);
  const reason = await waitFor(async () => (await f.ctx.store.runById(run.id))?.reason, {
    message: "the quota note on the run",
  });
  equal(reason, "35 lines (35840 bytes) past the log quota not stored");
  ok(!reason.includes("missing"));
  ingest.close();
});

Deno.test("a run's log quota and what it counted past it survive server restarts", async () => {
  // 1 KiB lines: the quota plus the agent's slack holds 65 of them.
  await using f = await engineFixture({ logQuotaBytes: 1024, logsSettleMs: 10 });
  const agent = new FakeAgent("a1");
  const run = await placedRun(f.ctx.store, f, agent.id);
  const long = (from: number, count: number, batch: number) => {
    const msg = lines(run.id, from, count, batch);
    for (const r of msg.records) r.line = r.line.padEnd(1023, "x");
    return msg;
  };
  const first = new Ingest(f.ctx);
  await first.logs(agent, long(0, 50, 0));
  first.close();
  // A restart: a new Ingest on the same store goes on counting from what is stored.
  const second = new Ingest(f.ctx);
  await second.logs(agent, long(50, 50, 1));
  second.close();
  const stored = await f.ctx.store.readLogs(f.app.id, { limit: 1000 });
  equal(stored.length, 65 + 1, "the quota held across the restart, plus its marker");
  match(stored.at(-1)?.line ?? "", /log quota of 66560 bytes reached/);
  // Another restart: a batch sent again is not counted twice, new lines are.
  const third = new Ingest(f.ctx);
  await third.logs(agent, long(50, 50, 1));
  await third.logs(agent, long(100, 10, 2));
  deepEqual(agent.sent.map((m) => m.type === "logs_ack" && m.batch), [0, 1, 1, 2]);
  equal((await f.ctx.store.readLogs(f.app.id, { limit: 1000 })).length, 66, "nothing more stored");
  await f.ctx.store.updateRun(run.id, ["running"], { state: "exited", exit_code: 0 });
  third.ended(run.id, 110);
  const reason = await waitFor(async () => (await f.ctx.store.runById(run.id))?.reason, {
    message: "the quota note on the run",
  });
  equal(reason, "45 lines (46080 bytes) past the log quota not stored");
  third.close();
});

Deno.test("a batch that could not be stored holds back the run's later batches, so that its lines are not stored after theirs", async () => {
  await using f = await engineFixture();
  const ingest = new Ingest(f.ctx);
  const agent = new FakeAgent("a1");
  const run = await placedRun(f.ctx.store, f, agent.id);
  const { store } = f.ctx;
  const append = store.appendLogs.bind(store);
  let failures = 1;
  store.appendLogs = (appId, batch) =>
    failures-- > 0 ? Promise.reject(new Error("connection lost")) : append(appId, batch);
  // Batch 0 fails (PostgreSQL restarting); batch 1 was already on its way.
  await ingest.logs(agent, lines(run.id, 0, 2, 0));
  await ingest.logs(agent, lines(run.id, 2, 2, 1));
  // The agent sends both again after its backoff, in order.
  await ingest.logs(agent, lines(run.id, 0, 2, 0));
  await ingest.logs(agent, lines(run.id, 2, 2, 1));
  deepEqual(agent.sent.map((m) => [m.type, "batch" in m ? m.batch : null]), [
    ["logs_nack", 0],
    ["logs_nack", 1],
    ["logs_ack", 0],
    ["logs_ack", 1],
  ]);
  const stored = await store.readLogs(f.app.id, { limit: 100 });
  deepEqual(stored.map((l) => l.line), ["line 0", "line 1", "line 2", "line 3"]);
});

Deno.test("a failed batch the agent never sends again holds back the run's later batches only a while", async () => {
  await using f = await engineFixture();
  const clock = new FakeClock();
  const ingest = new Ingest(f.ctx, { clock });
  const agent = new FakeAgent("a1");
  const run = await placedRun(f.ctx.store, f, agent.id);
  const { store } = f.ctx;
  const append = store.appendLogs.bind(store);
  let failures = 1;
  store.appendLogs = (appId, batch) =>
    failures-- > 0 ? Promise.reject(new Error("connection lost")) : append(appId, batch);
  await ingest.logs(agent, lines(run.id, 0, 2, 0));
  // Batch 0 is lost on the agent (its spool file removed by hand): it never comes again.
  await ingest.logs(agent, lines(run.id, 2, 2, 1));
  await clock.advance(121_000);
  await ingest.logs(agent, lines(run.id, 2, 2, 1));
  deepEqual(agent.sent.map((m) => [m.type, "batch" in m ? m.batch : null]), [
    ["logs_nack", 0],
    ["logs_nack", 1],
    ["logs_ack", 1],
  ]);
});
