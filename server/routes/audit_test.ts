import { deepEqual, equal, match } from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Hono } from "hono";
import { testServer } from "../_testing.ts";
import { AuditService } from "../audit/mod.ts";
import { FailureLimiter, newToken, requireToken, sha256Hex } from "../auth.ts";
import { errorHandler } from "../http_error.ts";
import { type AppEnv, appLoader } from "../_lookup.ts";
import type { RunRow, Store } from "../store/mod.ts";
import { adminAuditRoutes, auditRoutes } from "./audit.ts";

const T0 = Date.UTC(2030, 0, 2, 3, 4, 5);
const b64 = (s: string) => new TextEncoder().encode(s).toBase64();

/** A test server with only the audit routes mounted, as app.ts will mount them. */
async function auditServer() {
  const t = await testServer();
  const { store } = t.ctx;
  const audit = await AuditService.open(store, `${t.dir}/audit-keys.json`);
  const app = new Hono();
  app.onError(errorHandler(t.ctx.log));
  const api = new Hono<AppEnv>();
  api.use("*", requireToken(store, new FailureLimiter({ limit: 100 })));
  api.use("/apps/:app/*", appLoader(store));
  api.route("/apps/:app/runs/:run", auditRoutes(t.ctx, audit));
  api.route("/", adminAuditRoutes(audit, store));
  app.route("/api", api);
  const member = await memberToken(store, "mallory", ["demo"]);
  const outsider = await memberToken(store, "oscar", ["other"]);
  const run = await recordedRun(store, audit);
  return {
    t,
    store,
    run,
    member,
    outsider,
    call(method: string, path: string, token = t.admin): Promise<Response> {
      return Promise.resolve(
        app.request(path, { method, headers: { authorization: `Bearer ${token}` } }),
      );
    },
    [Symbol.asyncDispose]: () => t[Symbol.asyncDispose](),
  };
}

async function memberToken(store: Store, name: string, apps: string[]): Promise<string> {
  const token = newToken();
  await store.createToken({ hash: sha256Hex(token), role: "member", apps, name });
  return token;
}

async function recordedRun(store: Store, audit: AuditService): Promise<RunRow> {
  const app = await store.createApp("demo");
  await store.createApp("other");
  const release = await store.createRelease({
    app_id: app.id,
    sha256: "cd".repeat(32),
    size: 1,
    process_types: {},
    actor: "admin",
  });
  const run = await store.createRun({
    id: crypto.randomUUID(),
    app_id: app.id,
    command: "bash",
    attached: true,
    tty: true,
    size: "M",
    release_id: release.id,
    env_overrides: {},
    uploads: [],
    cols: 90,
    rows: 20,
    timeout_ms: 60_000,
    actor: "admin",
    secret_sha256: null,
    expires_at: null,
  });
  await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date(T0) });
  await store.updateRun(run.id, ["running"], {
    state: "exited",
    exit_code: 0,
    ended_at: new Date(),
  });
  const chunks = [
    {
      v: 1,
      t0: T0,
      size: { cols: 90, rows: 20 },
      events: [[0, "o", b64("$ ")], [1500, "i", b64("exit\r")]],
    },
    { v: 1, t0: T0, events: [[1501, "o", b64("exit\r\n")]], final: true },
  ];
  for (const [seq, chunk] of chunks.entries()) {
    await audit.receive(run.id, seq, JSON.stringify(chunk));
  }
  return run;
}

async function viewsOf(store: Store): Promise<{ actor: string; data: Record<string, unknown> }[]> {
  const events = await store.listEvents({ limit: 100 });
  return events.filter((e) => e.kind === "audit.viewed").map((e) => ({
    actor: e.actor,
    data: e.data,
  }));
}

Deno.test("an admin reads a recording as JSON, and the view goes on the timeline", async () => {
  await using s = await auditServer();
  const res = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit");
  equal(res.status, 200);
  const body = await res.json();
  equal(body.run, "one-off-1");
  equal(body.meta.command, "bash");
  equal(body.meta.state, "exited");
  equal(body.t0, new Date(T0).toISOString());
  deepEqual(body.size, { cols: 90, rows: 20 });
  equal(body.final, true);
  deepEqual(body.problems, []);
  deepEqual(body.events, [[0, "o", "$ "], [1.5, "i", "exit\r"], [1.501, "o", "exit\r\n"]]);
  deepEqual(await viewsOf(s.store), [{
    actor: "admin",
    data: { run: "one-off-1", format: "json" },
  }]);
});

Deno.test("a member of the app may read its recordings, others may not", async () => {
  await using s = await auditServer();
  const byId = await s.call(
    "GET",
    `/api/apps/demo/runs/${s.run.id}/audit?format=transcript`,
    s.member,
  );
  equal(byId.status, 200);
  equal((await byId.json()).transcript, "$ exit\n⟩ exit\n");
  const denied = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit", s.outsider);
  equal(denied.status, 403);
  equal((await denied.json()).error.code, "forbidden");
  const castDenied = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit.cast", s.outsider);
  equal(castDenied.status, 403);
  await castDenied.body?.cancel();
  const missing = await s.call("GET", "/api/apps/demo/runs/one-off-9/audit");
  equal(missing.status, 404);
  equal((await missing.json()).error.message, 'No run "one-off-9" in app "demo"');
  deepEqual(await viewsOf(s.store), [
    { actor: "mallory", data: { run: "one-off-1", format: "transcript" } },
  ]);
});

Deno.test("the asciicast downloads as a file with its problems in a header", async () => {
  await using s = await auditServer();
  const res = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit.cast", s.member);
  equal(res.status, 200);
  equal(res.headers.get("content-type"), "application/x-asciicast");
  equal(
    res.headers.get("content-disposition"),
    'attachment; filename="demo-one-off-1.cast"',
  );
  deepEqual(JSON.parse(decodeURIComponent(res.headers.get("x-oneoff-audit-problems")!)), []);
  const [head, ...lines] = (await res.text()).trimEnd().split("\n");
  const header = JSON.parse(head!);
  equal(header.version, 2);
  equal(header.width, 90);
  equal(header.title, "demo one-off-1: bash");
  deepEqual(lines.map((l) => JSON.parse(l)), [[0, "o", "$ "], [1.5, "i", "exit\r"], [
    1.501,
    "o",
    "exit\r\n",
  ]]);
  deepEqual(await viewsOf(s.store), [{
    actor: "mallory",
    data: { run: "one-off-1", format: "cast" },
  }]);
});

Deno.test("a recording's problems come with what could be read", async () => {
  await using s = await auditServer();
  const rows = await s.store.auditChunks(s.run.id);
  // What an attacker without the key can do with the database: drop a chunk.
  const db = new DatabaseSync(`${s.t.dir}/oneoff.db`);
  db.prepare("DELETE FROM audit_chunks WHERE run_id = ? AND seq = 0").run(rows[0]!.run_id);
  db.close();
  const res = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit?format=cast");
  const body = await res.json();
  deepEqual(body.problems, ["Chunk 0 is missing"]);
  match(body.cast, /"exit\\r\\n"/);
  const file = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit.cast");
  deepEqual(JSON.parse(decodeURIComponent(file.headers.get("x-oneoff-audit-problems")!)), [
    "Chunk 0 is missing",
  ]);
  await file.body?.cancel();
});

Deno.test("an unknown display format is refused", async () => {
  await using s = await auditServer();
  const res = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit?format=xml");
  equal(res.status, 422);
  equal(
    (await res.json()).error.message,
    'Unknown format "xml": use json, transcript or cast',
  );
});

Deno.test("only an admin rotates the audit key, and the rotation goes on the timeline", async () => {
  await using s = await auditServer();
  const denied = await s.call("POST", "/api/audit/rotate-key", s.member);
  equal(denied.status, 403);
  await denied.body?.cancel();
  const res = await s.call("POST", "/api/audit/rotate-key");
  equal(res.status, 200);
  deepEqual(await res.json(), { key: "k2" });
  const [event] = await s.store.listEvents({ limit: 1 });
  equal(event?.kind, "audit.key_rotated");
  equal(event?.actor, "admin");
  // Chunks written under the old key stay readable.
  const read = await s.call("GET", "/api/apps/demo/runs/one-off-1/audit");
  deepEqual((await read.json()).problems, []);
});

Deno.test("an admin reads a destroyed app's recording by run id, a member may not", async () => {
  await using s = await auditServer();
  const app = (await s.store.appByName("demo"))!;
  await s.store.destroyApp(app.id);
  equal((await s.call("GET", `/api/audit/runs/${s.run.id}`, s.member)).status, 403);
  const res = await s.call("GET", `/api/audit/runs/${s.run.id}?format=transcript`);
  equal(res.status, 200);
  const body = await res.json();
  equal(body.run, "one-off-1");
  equal(body.meta.app, "demo");
  equal(body.meta.command, "bash");
  equal(body.final, true);
  match(body.transcript, /exit/);
  const views = await s.store.listEvents({ limit: 100 });
  deepEqual(
    views.filter((e) => e.kind === "audit.viewed").map((e) => [e.app_id, e.app_name, e.data]),
    [[null, "demo", { run: "one-off-1", format: "transcript" }]],
  );
  equal((await s.call("GET", `/api/audit/runs/${crypto.randomUUID()}`)).status, 404);
  const listed = await (await s.call("GET", "/api/audit/runs?app=demo")).json();
  deepEqual(listed.runs.map((r: { id: string; label: string }) => [r.id, r.label]), [
    [s.run.id, "one-off-1"],
  ]);
  equal((await s.call("GET", "/api/audit/runs?app=demo", s.member)).status, 403);
});
