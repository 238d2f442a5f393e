import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { FakeClock } from "../util/clock.ts";
import { testServer } from "./_testing.ts";
import type { BlobStore } from "./blob_store.ts";
import { checkLifecycle, DEFAULT_LIFECYCLE, Lifecycle } from "./lifecycle.ts";
import type { NewRun, Store } from "./store/mod.ts";

const DAY = 86_400_000;

function newRun(appId: number, releaseId: number, extra: Partial<NewRun> = {}): NewRun {
  return {
    id: crypto.randomUUID(),
    app_id: appId,
    command: "bash",
    attached: true,
    tty: true,
    size: "M",
    release_id: releaseId,
    env_overrides: {},
    uploads: [],
    cols: 80,
    rows: 24,
    timeout_ms: 60_000,
    actor: "alice",
    secret_sha256: null,
    expires_at: null,
    ...extra,
  };
}

async function release(store: Store, appId: number, sha256: string) {
  return await store.createRelease({
    app_id: appId,
    sha256,
    size: 1,
    process_types: {},
    actor: "alice",
  });
}

async function blob(blobs: BlobStore, text: string): Promise<string> {
  return (await blobs.put(new Blob([text]).stream(), { maxBytes: 1000 })).sha256;
}

Deno.test("the sweep runs once at start, then on its interval, and stops on close", async () => {
  await using t = await testServer();
  const clock = new FakeClock(Date.now());
  let sweeps = 0;
  const listApps = t.ctx.store.listApps.bind(t.ctx.store);
  t.ctx.store.listApps = () => (sweeps++, listApps());
  const lifecycle = new Lifecycle(t.ctx, { clock, settings: { everyMs: 3600_000 } });
  lifecycle.start();
  await clock.advance(0);
  equal(sweeps, 1, "once at start");
  await clock.advance(3599_000);
  equal(sweeps, 1);
  await clock.advance(1000);
  equal(sweeps, 2, "hourly");
  await clock.advance(2 * 3600_000);
  equal(sweeps, 4);
  await lifecycle.close();
  await clock.advance(3600_000);
  equal(sweeps, 4);
  equal(clock.pending, 0);
});

Deno.test("a server that does not lead sweeps nothing but prunes its own blob cache each interval", async () => {
  await using t = await testServer();
  const clock = new FakeClock(Date.now());
  let sweeps = 0;
  const prunes: number[] = [];
  const listApps = t.ctx.store.listApps.bind(t.ctx.store);
  t.ctx.store.listApps = () => (sweeps++, listApps());
  t.ctx.cluster = { ...t.ctx.cluster, isLeader: () => false };
  t.ctx.blobs.pruneCache = (before) => (prunes.push(before), Promise.resolve(0));
  const lifecycle = new Lifecycle(t.ctx, { clock, settings: { everyMs: 3600_000 } });
  lifecycle.start();
  await clock.advance(0);
  await clock.advance(3600_000);
  await lifecycle.close();
  equal(sweeps, 0, "the leader's work");
  deepEqual(prunes, [
    clock.now() - 3600_000 - DEFAULT_LIFECYCLE.blobGraceMs,
    clock.now() - DEFAULT_LIFECYCLE.blobGraceMs,
  ]);
});

Deno.test("the sweep enforces log retention by age and by lines per app", async () => {
  await using t = await testServer();
  const { store } = t.ctx;
  const clock = new FakeClock(Date.now());
  const app = await store.createApp("demo");
  const rel = await release(store, app.id, "aa".repeat(32));
  const run = await store.createRun(newRun(app.id, rel.id));
  const now = clock.now();
  const line = (seq: number, ts: number) => ({
    run_id: run.id,
    seq,
    ts: new Date(ts),
    source: "one-off-1",
    stream: "stdout",
    line: `l${seq}`,
  });
  await store.appendLogs(app.id, [
    line(1, now - 31 * DAY),
    line(2, now - 29 * DAY),
    line(3, now - DAY),
    line(4, now),
  ]);
  const lifecycle = new Lifecycle(t.ctx, { clock, settings: { logMaxLinesPerApp: 2 } });
  const first = await lifecycle.sweep();
  equal(first.logLines, 2, "line 1 by age, line 2 by count");
  deepEqual((await store.readLogs(app.id, {})).map((l) => l.line), ["l3", "l4"]);
  await clock.advance(30 * DAY);
  equal((await lifecycle.sweep()).logLines, 1);
  deepEqual((await store.readLogs(app.id, {})).map((l) => l.line), ["l4"]);
});

Deno.test("the sweep trims an app's logs to its byte quota, oldest first, on its timeline", async () => {
  // Lines "l1".."l9" of 3 bytes each (with their newline): 9 bytes fit.
  await using t = await testServer({ appLogQuotaBytes: 9 });
  const { store } = t.ctx;
  const app = await store.createApp("demo");
  const rel = await release(store, app.id, "aa".repeat(32));
  const run = await store.createRun(newRun(app.id, rel.id));
  await store.appendLogs(
    app.id,
    Array.from({ length: 9 }, (_, i) => ({
      run_id: run.id,
      seq: i + 1,
      ts: new Date(),
      source: "one-off-1",
      stream: "stdout",
      line: `l${i + 1}`,
    })),
  );
  const report = await new Lifecycle(t.ctx).sweep();
  equal(report.logLines, 6);
  deepEqual((await store.readLogs(app.id, {})).map((l) => l.line), ["l7", "l8", "l9"]);
  const [event] = await store.listEvents({ app_id: app.id, limit: 1 });
  deepEqual([event?.kind, event?.data], ["logs.trimmed", { lines: 6, bytes: 18, quota: 9 }]);
});

Deno.test("a destroyed app's recording stays readable until the audit retention ends", async () => {
  await using t = await testServer();
  const { store, audit } = t.ctx;
  const clock = new FakeClock(Date.now());
  const app = await store.createApp("doomed");
  const rel = await release(store, app.id, "bb".repeat(32));
  const run = await store.createRun(newRun(app.id, rel.id));
  await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date() });
  await store.updateRun(run.id, ["running"], { state: "exited", ended_at: new Date() });
  const chunk = { v: 1, t0: Date.now(), events: [[0, "o", btoa("hi")]], final: true };
  await audit.receive(run.id, 0, JSON.stringify(chunk));
  equal((await t.call("DELETE", "/api/apps/doomed")).status < 300, true);
  equal(await store.appByName("doomed"), null);
  const lifecycle = new Lifecycle(t.ctx, {
    clock,
    settings: { runRetentionMs: 10 * DAY, auditRetentionMs: 20 * DAY },
  });
  await clock.advance(19 * DAY);
  equal((await lifecycle.sweep()).auditRuns, 0);
  const res = await t.call("GET", `/api/audit/runs/${run.id}`);
  equal(res.status, 200);
  deepEqual((await res.json()).events, [[0, "o", "hi"]]);
  await clock.advance(2 * DAY);
  ok((await lifecycle.sweep()).auditRuns >= 1);
  deepEqual(await store.auditChunks(run.id), []);
  equal(await store.archivedRun(run.id), null);
  equal((await t.call("GET", `/api/audit/runs/${run.id}`)).status, 404);
});

Deno.test("ended runs go after the run retention, live ones stay, the timeline stays", async () => {
  await using t = await testServer();
  const { store } = t.ctx;
  const clock = new FakeClock(Date.now());
  const app = await store.createApp("demo");
  const rel = await release(store, app.id, "cc".repeat(32));
  const ended = await store.createRun(newRun(app.id, rel.id));
  const live = await store.createRun(newRun(app.id, rel.id));
  await store.updateRun(ended.id, ["pending"], { state: "exited", ended_at: new Date() });
  await store.updateRun(live.id, ["pending"], { state: "running", started_at: new Date() });
  const event = await store.addEvent({
    app_id: app.id,
    app_name: "demo",
    actor: "alice",
    kind: "app.created",
    data: {},
  });
  const lifecycle = new Lifecycle(t.ctx, { clock });
  await clock.advance(89 * DAY);
  equal((await lifecycle.sweep()).runs, 0);
  await clock.advance(2 * DAY);
  equal((await lifecycle.sweep()).runs, 1);
  equal(await store.runById(ended.id), null);
  ok(await store.archivedRun(ended.id), "kept for the audit trail");
  ok(await store.runById(live.id));
  deepEqual(await store.listEvents({}), [event]);
});

Deno.test("blob GC keeps referenced and recent blobs and removes old unreferenced ones", async () => {
  await using t = await testServer();
  const { store } = t.ctx;
  const clock = new FakeClock(Date.now());
  const app = await store.createApp("demo");
  const shas: string[] = [];
  for (let i = 0; i < 4; i++) shas.push(await blob(t.ctx.blobs, `slug ${i}`));
  const rels = [];
  for (const sha of shas) rels.push(await release(store, app.id, sha));
  const upload = await blob(t.ctx.blobs, "live upload");
  const oldUpload = await blob(t.ctx.blobs, "ended upload");
  const fresh = await blob(t.ctx.blobs, "being deployed right now");
  // A pending run on the oldest release with an upload: both are needed.
  await store.createRun(newRun(app.id, rels[0]!.id, {
    uploads: [{ name: "f", sha256: upload, size: 1 }],
  }));
  const old = new Date(clock.now() - 2 * 3600_000);
  for (const sha of [...shas, upload, oldUpload]) {
    await Deno.utime(t.ctx.blobs.path(sha), old, old);
  }
  const lifecycle = new Lifecycle(t.ctx, { clock, settings: { keepReleases: 2 } });
  const report = await lifecycle.sweep();
  equal(report.blobs, 2, "release 2's slug and the ended run's upload");
  equal(report.releases, 1, "release 2 (release 1 has a run)");
  for (const sha of [shas[0]!, shas[2]!, shas[3]!, upload, fresh]) ok(await t.ctx.blobs.has(sha));
  equal(await t.ctx.blobs.has(shas[1]!), false);
  equal(await t.ctx.blobs.has(oldUpload), false);
  await clock.advance(2 * 3600_000);
  equal((await lifecycle.sweep()).blobs, 1, "the fresh blob once past the grace");
  equal(await t.ctx.blobs.has(fresh), false);
});

Deno.test("a run's artifacts are kept as long as the run, and their blobs go with it", async () => {
  await using t = await testServer();
  const { store } = t.ctx;
  const clock = new FakeClock(Date.now());
  const app = await store.createApp("demo");
  const rel = await release(store, app.id, await blob(t.ctx.blobs, "slug"));
  const run = await store.createRun(newRun(app.id, rel.id, { attached: false, tty: false }));
  await store.updateRun(run.id, ["pending"], { state: "exited", ended_at: new Date(clock.now()) });
  const report = await blob(t.ctx.blobs, "a,b\n1,2\n");
  await store.putArtifact({
    run_id: run.id,
    name: "report.csv",
    sha256: report,
    size: 8,
    refused: null,
    created_at: new Date(clock.now()),
  });
  const old = new Date(clock.now() - 2 * 3600_000);
  await Deno.utime(t.ctx.blobs.path(report), old, old);
  const lifecycle = new Lifecycle(t.ctx, { clock });
  await clock.advance(89 * DAY);
  deepEqual([(await lifecycle.sweep()).runs, await t.ctx.blobs.has(report)], [0, true]);
  await clock.advance(2 * DAY);
  const swept = await lifecycle.sweep();
  deepEqual([swept.runs, await t.ctx.blobs.has(report)], [1, false]);
  deepEqual(await store.listArtifacts(run.id), []);
});

Deno.test("an audit retention shorter than the run retention is refused", () => {
  throws(
    () => checkLifecycle({ ...DEFAULT_LIFECYCLE, auditRetentionMs: 30 * DAY }),
    new Error(
      "Audit retention (30d) is shorter than run retention (90d): give --audit-retention at least --run-retention",
    ),
  );
  checkLifecycle({ ...DEFAULT_LIFECYCLE, auditRetentionMs: 90 * DAY });
});
