import { deepEqual, match, ok } from "node:assert/strict";
import { dashboardTest, seedApp, seedRun } from "./_test_util.ts";

Deno.test("admins see each agent's state, approval, load, sandbox, version and warnings", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  const base = {
    since: new Date(),
    version: "0.1.0",
    capacity: 4,
    sandbox: "bwrap",
    attach_host: "10.0.0.5",
    attach_port: 5000,
    attach_tls: true,
    tls_fingerprint: null,
  };
  const online = await store.upsertAgent({
    ...base,
    name: "vm-1",
    online: true,
    warnings: ["cgroup v1: no CPU limit"],
  });
  await store.setAgentTrust(online.id, "approved");
  await store.upsertAgent({ ...base, name: "vm-2", online: false, warnings: [], sandbox: "runc" });
  const { app, release } = await seedApp(store, "demo");
  const run = await seedRun(store, app, release, "sleep 1");
  await store.updateRun(run.id, ["pending"], {
    state: "running",
    agent_id: online.id,
    started_at: new Date(),
  });
  const { status, html } = await (await d.signedIn()).page("/agents");
  deepEqual(status, 200);
  const text = html.replace(/<[^>]+>/g, " ").replace(/\s+/g, " ");
  match(
    text,
    /vm-1 online .* 1 \/ 4 bwrap 0\.1\.0 tls:\/\/10\.0\.0\.5:5000 cgroup v1: no CPU limit/,
  );
  match(text, /vm-2 offline pending approval: no runs .* 0 \/ 4 runc/);
  ok(!/vm-1 online pending/.test(text), "an approved agent says nothing more");
  match(text, /1 of 2 online/);
});

Deno.test("with no agents the page says how to start one", async () => {
  await using d = await dashboardTest();
  const { html } = await (await d.signedIn()).page("/agents");
  match(html, /No agent has joined yet/);
  ok(html.includes('aria-current="page">Agents'));
});
