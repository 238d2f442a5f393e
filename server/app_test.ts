import { deepEqual, match, ok } from "node:assert/strict";
import { makeSlug, testServer } from "./_testing.ts";

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = await res.json();
  return { status: res.status, code: body.error?.code, message: body.error?.message };
}

async function blobFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(path: string) {
    try {
      for await (const entry of Deno.readDir(path)) {
        if (entry.isDirectory) await walk(`${path}/${entry.name}`);
        else found.push(`${path}/${entry.name}`);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  await walk(dir);
  return found;
}

Deno.test("every API route refuses a request without a valid token", async () => {
  await using t = await testServer();
  const none = await t.server.app.request("/api/apps");
  deepEqual((await errorOf(none)).status, 401);
  const wrong = await t.call("GET", "/api/apps", undefined, "oo_wrong");
  deepEqual(await errorOf(wrong), {
    status: 401,
    code: "unauthorized",
    message: "Invalid API token",
  });
});

/** Hono's Deno adapter reads the client's address from here. */
function from(hostname: string) {
  return { remoteAddr: { hostname, port: 40000, transport: "tcp" } };
}

Deno.test("a valid token still works from an address that sent 11 bad ones", async () => {
  await using t = await testServer();
  const get = (token: string, address = "127.0.0.1") =>
    t.server.app.request(
      "/api/apps",
      { headers: { authorization: `Bearer ${token}` } },
      from(address),
    );
  for (let i = 0; i < 10; i++) deepEqual((await errorOf(await get(`oo_bad-${i}`))).status, 401);
  const limited = await errorOf(await get("oo_bad-10"));
  deepEqual([limited.status, limited.code], [429, "rate_limited"]);
  match(limited.message, /valid tokens still work/);
  const res = await get(t.admin);
  deepEqual(res.status, 200, "the host's admin token is never refused by the limiter");
  await res.body?.cancel();
  deepEqual((await errorOf(await get("oo_bad-11", "127.0.0.2"))).status, 401, "another address");
});

Deno.test("one wrong token retried from many addresses is limited too", async () => {
  await using t = await testServer();
  const get = (address: string) =>
    t.server.app.request(
      "/api/apps",
      { headers: { authorization: "Bearer oo_revoked" } },
      from(address),
    );
  for (let i = 0; i < 10; i++) deepEqual((await errorOf(await get(`10.9.0.${i}`))).status, 401);
  deepEqual((await errorOf(await get("10.9.0.200"))).status, 429);
});

Deno.test("apps are created, listed and destroyed, with names checked", async () => {
  await using t = await testServer();
  deepEqual((await t.call("POST", "/api/apps", { name: "demo" })).status, 201);
  deepEqual(await errorOf(await t.call("POST", "/api/apps", { name: "demo" })), {
    status: 409,
    code: "conflict",
    message: (await errorOf(await t.call("POST", "/api/apps", { name: "demo" }))).message,
  });
  for (const bad of ["Demo", "1app", "a", "x".repeat(64), "a_b", "../etc"]) {
    const err = await errorOf(await t.call("POST", "/api/apps", { name: bad }));
    deepEqual([err.status, err.code], [422, "invalid_name"], bad);
  }
  const list = await (await t.call("GET", "/api/apps")).json();
  deepEqual(list.apps.map((a: { name: string }) => a.name), ["demo"]);
  deepEqual((await errorOf(await t.call("GET", "/api/apps/nope"))).status, 404);
  deepEqual((await t.call("DELETE", "/api/apps/demo")).status, 200);
  deepEqual((await errorOf(await t.call("GET", "/api/apps/demo"))).status, 404);
});

Deno.test("a malformed JSON body is a 400 with a JSON error", async () => {
  await using t = await testServer();
  const res = await t.call("POST", "/api/apps", "{not json");
  deepEqual(await errorOf(res), {
    status: 400,
    code: "bad_json",
    message: "Request body is not valid JSON",
  });
  const arr = await t.call("POST", "/api/apps", "[1]");
  deepEqual((await errorOf(arr)).status, 400);
});

Deno.test("env set and unset change the app env and put only keys in the timeline", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const set = await t.call("PATCH", "/api/apps/demo/env", {
    set: { SECRET_KEY: "hunter2-value", A: "1" },
  });
  deepEqual((await set.json()).env, { A: "1", SECRET_KEY: "hunter2-value" });
  await t.call("PATCH", "/api/apps/demo/env", { unset: ["A"] });
  deepEqual((await (await t.call("GET", "/api/apps/demo/env")).json()).env, {
    SECRET_KEY: "hunter2-value",
  });
  const bad = await errorOf(
    await t.call("PATCH", "/api/apps/demo/env", { set: { "BAD KEY": "x" } }),
  );
  deepEqual(bad.status, 422);
  const timeline = await (await t.call("GET", "/api/apps/demo/timeline")).json();
  const kinds = timeline.events.map((e: { kind: string }) => e.kind);
  deepEqual(kinds, ["env.unset", "env.set", "app.created"]);
  ok(!JSON.stringify(timeline).includes("hunter2-value"), "values never reach the timeline");
});

Deno.test("deploy stores the slug by sha256 and parses its Procfile into a release", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const slug = await makeSlug({
    "Procfile": "web: ./web\nworker: bin/work --fast\n",
    "bin/work": "#!/bin/sh\n",
  });
  const res = await t.call("POST", "/api/apps/demo/deploy", slug);
  deepEqual(res.status, 201);
  const { release } = await res.json();
  deepEqual(release.version, 1);
  deepEqual(release.process_types, { web: "./web", worker: "bin/work --fast" });
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", slug));
  deepEqual(release.sha256, Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
  const second = await (await t.call("POST", "/api/apps/demo/deploy", slug)).json();
  deepEqual(second.release.version, 2, "each deploy is a new release");
  deepEqual((await blobFiles(`${t.dir}/blobs`)).length, 1, "content-addressed: one copy");
  const app = await (await t.call("GET", "/api/apps/demo")).json();
  deepEqual(app.app.release, 2);
  const events = (await (await t.call("GET", "/api/apps/demo/timeline")).json()).events;
  deepEqual(events[0].kind, "deploy");
});

Deno.test("deploy refuses non-gzip, non-tar and oversized slugs and leaves nothing on disk", async () => {
  await using t = await testServer({ maxSlugBytes: 64 * 1024 });
  await t.call("POST", "/api/apps", { name: "demo" });
  const notGzip = await errorOf(
    await t.call("POST", "/api/apps/demo/deploy", new TextEncoder().encode("plain text")),
  );
  deepEqual([notGzip.status, notGzip.code], [422, "bad_slug"]);
  match(notGzip.message, /not gzip/);
  const gz = new Response(
    new Blob([new TextEncoder().encode("x".repeat(5000))]).stream().pipeThrough(
      new CompressionStream("gzip"),
    ),
  );
  const notTar = await errorOf(
    await t.call("POST", "/api/apps/demo/deploy", new Uint8Array(await gz.arrayBuffer())),
  );
  deepEqual([notTar.status, notTar.code], [422, "bad_slug"]);
  match(notTar.message, /not a tar/);
  const big = new Uint8Array(65536 + 10).fill(7);
  const tooBig = await errorOf(await t.call("POST", "/api/apps/demo/deploy", big));
  deepEqual([tooBig.status, tooBig.code], [413, "slug_too_large"]);
  deepEqual(await blobFiles(`${t.dir}/blobs`), [], "nothing left on disk");
  deepEqual((await (await t.call("GET", "/api/apps/demo")).json()).app.release, null);
});

Deno.test("a member token reaches only its apps, and admin routes need an admin", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "mine" });
  await t.call("POST", "/api/apps", { name: "other" });
  const created = await t.call("POST", "/api/tokens", {
    role: "member",
    apps: ["mine"],
    name: "dev1",
  });
  deepEqual(created.status, 201);
  const { token } = await created.json();
  deepEqual((await t.call("GET", "/api/apps/mine/env", undefined, token)).status, 200);
  deepEqual(
    (await errorOf(await t.call("GET", "/api/apps/other/env", undefined, token))).status,
    403,
  );
  const list = await (await t.call("GET", "/api/apps", undefined, token)).json();
  deepEqual(list.apps.map((a: { name: string }) => a.name), ["mine"]);
  deepEqual(
    (await errorOf(await t.call("POST", "/api/apps", { name: "third" }, token))).status,
    403,
  );
  deepEqual((await errorOf(await t.call("GET", "/api/agents", undefined, token))).status, 403);
  deepEqual(
    (await errorOf(await t.call("POST", "/api/tokens", { role: "admin" }, token))).status,
    403,
  );
  const stored = await t.ctx.store.listEvents({
    app_id: (await t.ctx.store.appByName("mine"))!.id,
  });
  ok(stored.some((e) => e.kind === "token.created"));
  ok(!JSON.stringify(stored).includes(token), "the token itself is never stored");
});

Deno.test("runs refuse unknown sizes and process types with 422", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const noRelease = await errorOf(await t.call("POST", "/api/apps/demo/runs", { command: "true" }));
  deepEqual([noRelease.status, noRelease.code], [422, "no_release"]);
  await t.call("POST", "/api/apps/demo/deploy", await makeSlug({ Procfile: "web: ./web\n" }));
  const size = await errorOf(
    await t.call("POST", "/api/apps/demo/runs", { command: "true", size: "XXL" }),
  );
  deepEqual([size.status, size.code], [422, "unknown_size"]);
  const type = await errorOf(await t.call("POST", "/api/apps/demo/runs", { type: "worker" }));
  deepEqual([type.status, type.code], [422, "unknown_type"]);
  match(type.message, /known: web/);
  const empty = await errorOf(await t.call("POST", "/api/apps/demo/runs", { command: "  " }));
  deepEqual(empty.status, 422);
});

Deno.test("the 11th concurrent one-off of an app asking to fail fast is refused", async () => {
  await using t = await testServer({ maxRunsPerApp: 10 });
  await t.call("POST", "/api/apps", { name: "demo" });
  await t.call("POST", "/api/apps/demo/deploy", await makeSlug({ "a.txt": "a" }));
  for (let i = 0; i < 10; i++) {
    const res = await t.call("POST", "/api/apps/demo/runs", { command: `echo ${i}` });
    deepEqual(res.status, 201);
    deepEqual((await res.json()).run.state, "pending", "no agent: pending");
  }
  const refused = await errorOf(
    await t.call("POST", "/api/apps/demo/runs", { command: "echo 11", fail_fast: true }),
  );
  deepEqual([refused.status, refused.code], [429, "too_many_runs"]);
  const ps = await (await t.call("GET", "/api/apps/demo/runs")).json();
  deepEqual(ps.runs.length, 10);
  deepEqual(ps.runs[0].label, "one-off-10");
  const stop = await t.call("POST", "/api/apps/demo/runs/one-off-3/stop");
  deepEqual(stop.status, 202);
  const run = await (await t.call("GET", "/api/apps/demo/runs/one-off-3")).json();
  deepEqual(run.run.state, "stopped");
});
