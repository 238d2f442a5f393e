import { deepEqual, equal, ok } from "node:assert/strict";
import { engineFixture, FakeAgent } from "./_engine_testing.ts";
import { Ingest } from "./ingest.ts";
import { enforceAppLogQuota, SERVER_ACTOR } from "./log_quota.ts";
import type { NewLog, Store } from "./store/mod.ts";

async function runOf(store: Store, f: { app: { id: number }; release: { id: number } }) {
  const run = await store.createRun({
    id: crypto.randomUUID(),
    app_id: f.app.id,
    command: "yes",
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
  await store.updateRun(run.id, ["pending"], { state: "running", agent_id: "a1" });
  return run;
}

/** `count` lines of 100 bytes each (99 + the newline). */
function hundreds(runId: string, from: number, count: number): NewLog[] {
  return Array.from({ length: count }, (_, i) => ({
    run_id: runId,
    seq: from + i,
    ts: new Date(Date.UTC(2030, 0, 1) + from + i),
    source: "one-off-1",
    stream: "stdout",
    line: `line ${from + i}`.padEnd(99, "."),
  }));
}

Deno.test("an app past its log quota loses its oldest lines, said on its timeline", async () => {
  await using f = await engineFixture({ appLogQuotaBytes: 5_000 });
  const { store } = f.ctx;
  const run = await runOf(store, f);
  const other = await store.createApp("other");
  await store.appendLogs(f.app.id, hundreds(run.id, 0, 80));
  await store.appendLogs(other.id, hundreds("elsewhere", 0, 80));
  const removed = await enforceAppLogQuota(f.ctx, f.app);
  deepEqual(removed, { lines: 30, bytes: 3_000, total: 5_000 });
  const left = await store.readLogs(f.app.id, { limit: 1000 });
  deepEqual([left.length, left[0]?.line.trim()], [50, "line 30".padEnd(99, ".")]);
  equal(await store.appLogBytes(other.id), 8_000, "another app is not trimmed by this one's check");
  const [event] = await store.listEvents({ app_id: f.app.id, limit: 1 });
  deepEqual([event?.kind, event?.actor, event?.data], [
    "logs.trimmed",
    SERVER_ACTOR,
    { lines: 30, bytes: 3_000, quota: 5_000 },
  ]);
  deepEqual(await enforceAppLogQuota(f.ctx, f.app), { lines: 0, bytes: 0, total: 5_000 });
  equal((await store.listEvents({ app_id: f.app.id, limit: 10 })).length, 1, "said once");
});

Deno.test("the ingest trims an app's logs back to its quota as a flood comes in", async () => {
  await using f = await engineFixture({ appLogQuotaBytes: 20_000, logQuotaBytes: 1024 ** 2 });
  const ingest = new Ingest(f.ctx);
  const agent = new FakeAgent("a1");
  const run = await runOf(f.ctx.store, f);
  for (let batch = 0; batch < 10; batch++) {
    const records = hundreds(run.id, batch * 100, 100).map((l) => ({
      seq: l.seq,
      stream: "stdout" as const,
      ts: l.ts.getTime(),
      line: l.line,
    }));
    await ingest.logs(agent, { type: "logs", runId: run.id, batch, records });
    await ingest.appQuota.settled();
  }
  ingest.close();
  const bytes = await f.ctx.store.appLogBytes(f.app.id);
  ok(bytes <= 20_000, `the app keeps ${bytes} bytes`);
  const trims = (await f.ctx.store.listEvents({ app_id: f.app.id, limit: 100 }))
    .filter((e) => e.kind === "logs.trimmed");
  ok(trims.length > 0, "the trims are on the timeline");
  const gone = trims.reduce((n, e) => n + (e.data as { lines: number }).lines, 0);
  const left = (await f.ctx.store.readLogs(f.app.id, { limit: 10_000 })).length;
  equal(gone + left, 1000, "every line is either kept or counted as trimmed");
});
