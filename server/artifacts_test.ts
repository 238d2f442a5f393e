import { deepEqual, equal, match } from "node:assert/strict";
import { createHash } from "node:crypto";
import type { ArtifactsReply, TimelineReply } from "../protocol/mod.ts";
import { sha256Hex } from "./auth.ts";
import { seedApp, seedRun } from "./dashboard/_test_util.ts";
import { testServer } from "./_testing.ts";
import type { Store } from "./store/mod.ts";

async function approvedAgent(
  store: Store,
  name: string,
): Promise<{ id: string; credential: string }> {
  const credential = `cred-${name}`;
  const row = await store.enrolAgent({
    name,
    online: true,
    since: new Date(),
    version: "0.1.0",
    capacity: 2,
    sandbox: "bwrap",
    attach_host: "127.0.0.1",
    attach_port: 5000,
    attach_tls: false,
    tls_fingerprint: null,
    warnings: [],
    trust: "approved",
    credential_sha256: sha256Hex(credential),
  });
  return { id: row!.id, credential };
}

function sha(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

Deno.test("an agent uploads its run's files; members list and fetch them, others may not", async () => {
  await using t = await testServer({ maxArtifactBytes: 100 });
  const { store } = t.ctx;
  const { app, release } = await seedApp(store, "demo");
  await seedApp(store, "other");
  const agent = await approvedAgent(store, "vm-1");
  const stranger = await approvedAgent(store, "vm-2");
  const run = await seedRun(store, app, release, "./bin/report");
  await store.updateRun(run.id, ["pending"], { state: "running", agent_id: agent.id });
  const put = (name: string, body: string, credential = agent.credential, claimed = sha(body)) =>
    t.server.app.request(`/agent/runs/${run.id}/artifacts/${encodeURIComponent(name)}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${credential}`, "x-oneoff-sha256": claimed },
      body,
    });

  const name = "Q3 report — é.csv";
  equal((await put(name, "a,b\n1,2\n")).status, 201);
  equal((await put("empty", "")).status, 201);
  // Another agent's run is none of that agent's business; a bad name, a wrong hash are refused.
  equal((await put("x", "x", stranger.credential)).status, 404);
  equal((await put("x", "x", "not-a-credential")).status, 401);
  const odd = await put("a\nb", "x");
  equal(odd.status, 422);
  match((await odd.json()).error.message, /^Cannot keep "a\\nb": the name holds control/);
  equal((await put("y", "y", agent.credential, "0".repeat(64))).status, 422);
  // Past the run's limit (100 bytes in all): 413, and nothing kept of it.
  const big = await put("big", "z".repeat(95));
  equal(big.status, 413);
  match((await big.json()).error.message, /larger than the server's limit of 100 bytes/);

  const done = await t.server.app.request(`/agent/runs/${run.id}/artifacts-done`, {
    method: "POST",
    headers: { authorization: `Bearer ${agent.credential}`, "content-type": "application/json" },
    body: JSON.stringify({ refused: [{ name: '"p"', reason: "a symbolic link" }] }),
  });
  equal(done.status, 200);

  const list = await (await t.call("GET", "/api/apps/demo/runs/one-off-1/artifacts"))
    .json() as ArtifactsReply;
  deepEqual(
    list.artifacts.map((a) => [a.name, a.size, a.refused]),
    [
      ['"p"', 0, "a symbolic link"],
      [name, 8, null],
      ["empty", 0, null],
    ].sort((a, b) => String(a[0]) < String(b[0]) ? -1 : 1),
  );
  const file = await t.call(
    "GET",
    `/api/apps/demo/runs/one-off-1/artifacts/${encodeURIComponent(name)}`,
  );
  deepEqual([file.status, await file.text()], [200, "a,b\n1,2\n"]);
  equal(file.headers.get("x-oneoff-sha256"), sha("a,b\n1,2\n"));
  const refused = await t.call("GET", "/api/apps/demo/runs/one-off-1/artifacts/%22p%22");
  equal(refused.status, 404);
  await refused.body?.cancel();
  const ps = await (await t.call("GET", "/api/apps/demo/runs")).json();
  deepEqual(ps.runs[0].artifacts, { files: 2, bytes: 8, refused: 1 });

  const member = "oo_member_other";
  await store.createToken({
    hash: sha256Hex(member),
    role: "member",
    apps: ["other"],
    name: "eve",
  });
  for (const path of ["/artifacts", `/artifacts/${encodeURIComponent(name)}`]) {
    const res = await t.call("GET", `/api/apps/demo/runs/one-off-1${path}`, undefined, member);
    equal(res.status, 403);
    await res.body?.cancel();
  }
  const timeline = await (await t.call("GET", "/api/apps/demo/timeline")).json() as TimelineReply;
  const event = timeline.events.find((e) => e.kind === "run.artifacts");
  deepEqual(event?.data, {
    run: "one-off-1",
    files: 2,
    bytes: 8,
    refused: ['"p": a symbolic link'],
  });
});

Deno.test("a refusal quoted like the name of a kept file does not take that file's place", async () => {
  await using t = await testServer({});
  const { store } = t.ctx;
  const { app, release } = await seedApp(store, "demo");
  const agent = await approvedAgent(store, "vm-1");
  const run = await seedRun(store, app, release, "./bin/report");
  await store.updateRun(run.id, ["pending"], { state: "running", agent_id: agent.id });
  // The run left a file named `"b"` (quotes and all) and a directory `b`, refused as `"b"`.
  const put = await t.server.app.request(
    `/agent/runs/${run.id}/artifacts/${encodeURIComponent('"b"')}`,
    {
      method: "PUT",
      headers: { authorization: `Bearer ${agent.credential}`, "x-oneoff-sha256": sha("kept") },
      body: "kept",
    },
  );
  equal(put.status, 201);
  const done = await t.server.app.request(`/agent/runs/${run.id}/artifacts-done`, {
    method: "POST",
    headers: { authorization: `Bearer ${agent.credential}`, "content-type": "application/json" },
    body: JSON.stringify({ refused: [{ name: '"b"', reason: "a directory" }] }),
  });
  equal(done.status, 200);
  const file = await t.call(
    "GET",
    `/api/apps/demo/runs/one-off-1/artifacts/${encodeURIComponent('"b"')}`,
  );
  deepEqual([file.status, await file.text()], [200, "kept"]);
  const timeline = await (await t.call("GET", "/api/apps/demo/timeline")).json() as TimelineReply;
  const event = timeline.events.find((e) => e.kind === "run.artifacts");
  deepEqual(event?.data, { run: "one-off-1", files: 1, bytes: 4, refused: ['"b": a directory'] });
});
