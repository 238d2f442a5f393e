import { deepEqual, equal, match, notEqual, ok } from "node:assert/strict";
import { IDEMPOTENCY_HEADER } from "../../protocol/mod.ts";
import { FakeAgent } from "../_engine_testing.ts";
import { createApp } from "../app.ts";
import { sha256Hex } from "../auth.ts";
import { makeSlug, type TestServer, testServer } from "../_testing.ts";

async function withDemo(t: TestServer): Promise<void> {
  await t.call("POST", "/api/apps", { name: "demo" });
  const res = await t.call("POST", "/api/apps/demo/deploy", await makeSlug({ "a.txt": "a" }));
  equal(res.status, 201);
}

function createRun(t: TestServer, body: unknown, key?: string): Promise<Response> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${t.admin}`,
    "content-type": "application/json",
  };
  if (key !== undefined) headers[IDEMPOTENCY_HEADER] = key;
  return Promise.resolve(
    t.server.app.request("/api/apps/demo/runs", {
      method: "POST",
      headers,
      body: JSON.stringify(body),
    }),
  );
}

Deno.test("a run created again with the same Idempotency-Key is the first run, created once", async () => {
  await using t = await testServer();
  await withDemo(t);
  const first = await createRun(t, { command: "rake db:migrate" }, "key-1");
  equal(first.status, 201);
  const again = await createRun(t, { command: "rake db:migrate" }, "key-1");
  equal(again.status, 200);
  equal(again.headers.get("idempotent-replayed"), "true");
  const [a, b] = [await first.json(), await again.json()];
  equal(b.run.id, a.run.id);
  equal(b.run.label, "one-off-1");
  const ps = await (await t.call("GET", "/api/apps/demo/runs")).json();
  equal(ps.runs.length, 1, "ran once");

  const other = await createRun(t, { command: "rake db:migrate" }, "key-2");
  equal(other.status, 201, "another key is another run");
  equal((await other.json()).run.label, "one-off-2");
});

Deno.test("an Idempotency-Key repeated with another body is a 422 idempotency_mismatch", async () => {
  await using t = await testServer();
  await withDemo(t);
  await (await createRun(t, { command: "echo a" }, "key-1")).body?.cancel();
  const res = await createRun(t, { command: "echo b" }, "key-1");
  equal(res.status, 422);
  const body = await res.json();
  equal(body.error.code, "idempotency_mismatch");
  match(body.error.message, /Idempotency-Key "key-1" was first used for a different request/);
  const bad = await createRun(t, { command: "echo c" }, "with space");
  equal(bad.status, 400);
  equal((await bad.json()).error.code, "invalid_idempotency_key");
});

Deno.test("a repeated attached run gets the same usable secret, which only the stored hash knows", async () => {
  await using t = await testServer();
  await withDemo(t);
  const body = { command: "bash", attached: true, tty: true };
  const first = await (await createRun(t, body, "attach-1")).json();
  const again = await (await createRun(t, body, "attach-1")).json();
  ok(first.secret);
  equal(again.secret, first.secret);
  const row = await t.ctx.store.runById(first.run.id);
  equal(row?.secret_sha256, sha256Hex(first.secret));
  const other = await (await createRun(t, body, "attach-2")).json();
  notEqual(other.secret, first.secret);
});

Deno.test("a creation refused after its key was claimed gives the key up again", async () => {
  await using t = await testServer({ maxRunsPerApp: 1 });
  await withDemo(t);
  await (await createRun(t, { command: "sleep 1" })).body?.cancel();
  const body = { command: "echo", fail_fast: true };
  const refused = await createRun(t, body, "key-1");
  equal(refused.status, 429);
  await refused.body?.cancel();
  await (await t.call("POST", "/api/apps/demo/runs/one-off-1/stop")).body?.cancel();
  const res = await createRun(t, body, "key-1");
  equal(res.status, 201, "the same key and body, now that there is room");
  await res.body?.cancel();
});

Deno.test("two concurrent requests with one Idempotency-Key create one run", async () => {
  await using t = await testServer();
  await withDemo(t);
  const replies = await Promise.all(
    Array.from({ length: 5 }, () => createRun(t, { command: "echo once" }, "same")),
  );
  const bodies = await Promise.all(replies.map((r) => r.json()));
  deepEqual(replies.map((r) => r.status).sort(), [200, 200, 200, 200, 201]);
  equal(new Set(bodies.map((b) => b.run.id)).size, 1);
  const ps = await (await t.call("GET", "/api/apps/demo/runs")).json();
  equal(ps.runs.length, 1);
});

Deno.test("ps shows why a queued run waits and its place in the queue", async () => {
  await using t = await testServer({ maxRunsPerApp: 2 });
  await withDemo(t);
  for (let i = 0; i < 4; i++) await (await createRun(t, { command: `echo ${i}` })).body?.cancel();
  const ps = await (await t.call("GET", "/api/apps/demo/runs")).json();
  deepEqual(
    ps.runs.map((
      r: Record<string, unknown>,
    ) => [r.label, r.state, r.queued_reason, r.queue_position]),
    [
      ["one-off-4", "pending", "no_capacity", 4],
      ["one-off-3", "pending", "no_capacity", 3],
      ["one-off-2", "pending", "no_capacity", 2],
      ["one-off-1", "pending", "no_capacity", 1],
    ],
    "no agent: all wait for capacity, none refused",
  );
  deepEqual(ps.queue, { limit: 2, active: 0, pending: 4 });
  const one = await (await t.call("GET", "/api/apps/demo/runs/one-off-2")).json();
  deepEqual([one.run.queued_reason, one.run.queue_position], ["no_capacity", 2]);
  const refused = await createRun(t, { command: "echo", fail_fast: true });
  equal(refused.status, 429);
  await refused.body?.cancel();
});

Deno.test("an attached run's readiness survives a server restart", async () => {
  await using t = await testServer();
  await withDemo(t);
  const created = await (await createRun(t, { command: "bash", attached: true })).json();
  const agentRow = await t.ctx.store.upsertAgent({
    name: "a1",
    online: true,
    since: new Date(),
    version: "test",
    capacity: 4,
    sandbox: "bwrap",
    attach_host: "10.1.2.3",
    attach_port: 5000,
    attach_tls: false,
    tls_fingerprint: null,
    warnings: [],
  });
  await t.ctx.store.updateRun(created.run.id, ["pending"], {
    state: "starting",
    agent_id: agentRow.id,
  });
  const expiresAt = Date.now() + 60_000;
  await t.server.engine.attachReady(new FakeAgent(agentRow.id), {
    type: "attach_ready",
    runId: created.run.id,
    expiresAt,
  });
  t.server.close();

  // A new server over the same store: nothing of the first one's memory.
  const restarted = createApp(t.ctx);
  try {
    const res = await restarted.app.request("/api/apps/demo/runs/one-off-1/attach", {
      headers: { authorization: `Bearer ${t.admin}` },
    });
    equal(res.status, 200);
    const body = await res.json();
    deepEqual(body, {
      ready: true,
      attach: {
        run: "one-off-1",
        app: "demo",
        host: "10.1.2.3",
        port: 5000,
        tls: false,
        expires_at: new Date(expiresAt).toISOString(),
      },
    });
  } finally {
    restarted.close();
  }
});
