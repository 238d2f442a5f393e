import { deepEqual, match, ok } from "node:assert/strict";
import { RUN_STATES } from "../protocol/mod.ts";
import { family, parsePrometheus, value } from "../tests/_prometheus.ts";
import { needs } from "../tests/_tools.ts";
import { createLogger } from "../util/log.ts";
import { createApp, type ServerApp } from "./app.ts";
import type { ServerContext } from "./context.ts";
import { instrumentStore, ServerMetrics } from "./metrics.ts";
import { LATEST_SCHEMA_VERSION, type Store } from "./store/mod.ts";
import { openPostgresStore } from "./store/postgres.ts";
import { testServer } from "./_testing.ts";

/** A second app on a test server's context, with its own store, metrics and log lines. */
function appOn(ctx: ServerContext, store: Store, lines: string[] = []): ServerApp & Disposable {
  const log = createLogger("test", { level: "info", sink: (line) => lines.push(line) });
  const server = createApp({ ...ctx, store, log, metrics: new ServerMetrics() });
  return { ...server, [Symbol.dispose]: () => server.close() };
}

Deno.test("healthz and readyz answer without a token when the store is up to date", async () => {
  await using t = await testServer();
  const health = await t.server.app.request("/healthz");
  deepEqual([health.status, await health.json()], [200, { ok: true }]);
  const ready = await t.server.app.request("/readyz");
  deepEqual([ready.status, await ready.json()], [200, { ready: true }]);
});

Deno.test("readyz is 503 not_ready when the store is closed", async () => {
  await using t = await testServer();
  await t.ctx.store.close();
  const ready = await t.server.app.request("/readyz");
  const body = await ready.json();
  deepEqual([ready.status, body.error.code], [503, "not_ready"]);
  match(body.error.message, /database cannot be queried/);
});

Deno.test("readyz is 503 not_ready when PostgreSQL cannot be reached", async () => {
  await using t = await testServer();
  // Port 1 on loopback: nothing listens there.
  const store = openPostgresStore("postgres://oneoff:secret@127.0.0.1:1/oneoff?connect_timeout=2");
  try {
    using app = appOn(t.ctx, store);
    const ready = await app.app.request("/readyz");
    const body = await ready.json();
    deepEqual([ready.status, body.error.code], [503, "not_ready"]);
    ok(!body.error.message.includes("secret"), body.error.message);
  } finally {
    await store.close();
  }
});

Deno.test("readyz is 503 not_ready when migrations are behind", async () => {
  await using t = await testServer();
  const behind = instrumentStore(t.ctx.store, new ServerMetrics());
  behind.schemaVersion = () => Promise.resolve(LATEST_SCHEMA_VERSION - 1);
  using app = appOn(t.ctx, behind);
  const ready = await app.app.request("/readyz");
  const body = await ready.json();
  deepEqual([ready.status, body.error.code], [503, "not_ready"]);
  match(body.error.message, new RegExp(`version ${LATEST_SCHEMA_VERSION - 1}`));
});

Deno.test("instrumentStore times every Store method, labelled by method only", async () => {
  await using t = await testServer();
  const metrics = new ServerMetrics();
  const store = instrumentStore(t.ctx.store, metrics);
  const names = Object.getOwnPropertyNames(Object.getPrototypeOf(t.ctx.store))
    .filter((n) => n !== "constructor");
  for (const name of names) {
    deepEqual(typeof (store as unknown as Record<string, unknown>)[name], "function", name);
  }
  const app = await store.createApp("secret-app-name");
  deepEqual((await store.appById(app.id))?.name, "secret-app-name");
  await store.listApps();
  const text = await metrics.registry.metrics();
  match(text, /oneoff_store_query_duration_seconds_count\{method="createApp",outcome="ok"\} 1/);
  match(text, /oneoff_store_query_duration_seconds_count\{method="appById",outcome="ok"\} 1/);
  ok(!text.includes("secret-app-name"));
});

Deno.test("the access log has one line per request with its id, route pattern and status", async () => {
  await using t = await testServer();
  const lines: string[] = [];
  using app = appOn(t.ctx, t.ctx.store, lines);
  await t.ctx.store.createApp("logged");
  const given = await app.app.request("/api/apps/logged/runs?token=not-logged", {
    headers: { authorization: `Bearer ${t.admin}`, "x-request-id": "req-given-1" },
  });
  deepEqual([given.status, given.headers.get("x-request-id")], [200, "req-given-1"]);
  const made = await app.app.request("/healthz", { headers: { "x-request-id": "bad id\n" } });
  const madeId = made.headers.get("x-request-id") ?? "";
  match(madeId, /^[0-9a-f-]{36}$/);
  const entries = lines.map((l) => JSON.parse(l)).filter((e) => e.msg === "request");
  deepEqual(entries.length, 2);
  deepEqual(
    entries.map((e) => [e.request_id, e.method, e.route, e.status]),
    [
      ["req-given-1", "GET", "/api/apps/:app/runs", 200],
      [madeId, "GET", "/healthz", 200],
    ],
  );
  ok(entries.every((e) => typeof e.ms === "number" && typeof e.client === "string"));
  const all = lines.join("\n");
  ok(!all.includes(t.admin) && !all.includes("not-logged"), all);
});

Deno.test("a 500 is logged with the request id", async () => {
  await using t = await testServer();
  const lines: string[] = [];
  const broken = instrumentStore(t.ctx.store, new ServerMetrics());
  broken.listApps = () => Promise.reject(new Error("disk on fire"));
  using app = appOn(t.ctx, broken, lines);
  const res = await app.app.request("/api/apps", {
    headers: { authorization: `Bearer ${t.admin}`, "x-request-id": "req-500" },
  });
  deepEqual(res.status, 500);
  const failed = lines.map((l) => JSON.parse(l)).find((e) => e.msg === "request failed");
  deepEqual([failed?.request_id, failed?.level], ["req-500", "error"]);
});

Deno.test(needs(["prometheus_parser"], {
  name: "server /metrics parses as Prometheus text and names no app, route or env key",
  async fn() {
    await using t = await testServer();
    const metrics = new ServerMetrics();
    const store = instrumentStore(t.ctx.store, metrics);
    using app = createAppWith(t.ctx, store, metrics);
    const created = await app.app.request("/api/apps", {
      method: "POST",
      headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "hidden-app" }),
    });
    deepEqual(created.status, 201);
    await app.app.request("/api/apps/hidden-app/env", {
      method: "PATCH",
      headers: { authorization: `Bearer ${t.admin}`, "content-type": "application/json" },
      body: JSON.stringify({ set: { HIDDEN_ENV_KEY: "x" } }),
    });
    await app.app.request("/api/apps/hidden-app/nothing-here", {
      headers: { authorization: `Bearer ${t.admin}` },
    });
    await app.app.request("/api/apps/hidden-app");
    const res = await app.app.request("/metrics");
    deepEqual(res.status, 200);
    match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const secret of ["hidden-app", "HIDDEN_ENV_KEY"]) ok(!text.includes(secret), secret);
    const families = await parsePrometheus(text);
    const runs = family(families, "oneoff_runs");
    deepEqual(runs.type, "gauge");
    deepEqual(runs.samples.map((s) => s.labels.state), [...RUN_STATES]);
    deepEqual(value(runs, "oneoff_runs", { state: "running" }), 0);
    deepEqual(value(family(families, "oneoff_agents_online"), "oneoff_agents_online"), 0);
    deepEqual(value(family(families, "oneoff_watchers"), "oneoff_watchers"), 0);
    const http = family(families, "oneoff_http_requests");
    deepEqual(http.type, "counter");
    const route = { method: "POST", route: "/api/apps", status: "201" };
    deepEqual(value(http, "oneoff_http_requests_total", route), 1);
    ok(http.samples.some((s) => s.labels.route === "/api/apps/:app/env"));
    deepEqual(value(http, "oneoff_http_requests_total", { route: "unmatched", status: "404" }), 1);
    deepEqual(value(http, "oneoff_http_requests_total", { route: "/api/*", status: "401" }), 1);
    const store_ = family(families, "oneoff_store_query_duration_seconds");
    deepEqual(store_.type, "histogram");
    ok(value(store_, "oneoff_store_query_duration_seconds_count", { method: "createApp" }) >= 1);
    for (const name of ["oneoff_run_start_seconds", "oneoff_http_request_duration_seconds"]) {
      deepEqual(family(families, name).type, "histogram");
    }
    for (
      const name of [
        "oneoff_log_lines_ingested",
        "oneoff_log_lines_dropped",
        "oneoff_audit_bytes_recorded",
      ]
    ) {
      deepEqual(family(families, name).type, "counter");
    }
  },
}));

function createAppWith(ctx: ServerContext, store: Store, metrics: ServerMetrics) {
  const server = createApp({ ...ctx, store, metrics });
  return { ...server, [Symbol.dispose]: () => server.close() };
}
