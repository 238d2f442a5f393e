import { assert, assertEquals, assertMatch } from "../tests/_assert.ts";
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
  assertEquals((await errorOf(none)).status, 401);
  const wrong = await t.call("GET", "/api/apps", undefined, "oo_wrong");
  assertEquals(await errorOf(wrong), {
    status: 401,
    code: "unauthorized",
    message: "Invalid API token",
  });
});

Deno.test("wrong tokens are rate-limited per client address", async () => {
  await using t = await testServer();
  for (let i = 0; i < 10; i++) {
    await (await t.call("GET", "/api/apps", undefined, "oo_bad")).body?.cancel();
  }
  const res = await t.call("GET", "/api/apps");
  assertEquals(res.status, 429, "even a right token waits once the address is limited");
  await res.body?.cancel();
});

Deno.test("apps are created, listed and destroyed, with names checked", async () => {
  await using t = await testServer();
  assertEquals((await t.call("POST", "/api/apps", { name: "demo" })).status, 201);
  assertEquals(await errorOf(await t.call("POST", "/api/apps", { name: "demo" })), {
    status: 409,
    code: "conflict",
    message: (await errorOf(await t.call("POST", "/api/apps", { name: "demo" }))).message,
  });
  for (const bad of ["Demo", "1app", "a", "x".repeat(64), "a_b", "../etc"]) {
    const err = await errorOf(await t.call("POST", "/api/apps", { name: bad }));
    assertEquals([err.status, err.code], [422, "invalid_name"], bad);
  }
  const list = await (await t.call("GET", "/api/apps")).json();
  assertEquals(list.apps.map((a: { name: string }) => a.name), ["demo"]);
  assertEquals((await errorOf(await t.call("GET", "/api/apps/nope"))).status, 404);
  assertEquals((await t.call("DELETE", "/api/apps/demo")).status, 200);
  assertEquals((await errorOf(await t.call("GET", "/api/apps/demo"))).status, 404);
});

Deno.test("a malformed JSON body is a 400 with a JSON error", async () => {
  await using t = await testServer();
  const res = await t.call("POST", "/api/apps", "{not json");
  assertEquals(await errorOf(res), {
    status: 400,
    code: "bad_json",
    message: "Request body is not valid JSON",
  });
  const arr = await t.call("POST", "/api/apps", "[1]");
  assertEquals((await errorOf(arr)).status, 400);
});

Deno.test("env set and unset change the app env and put only keys in the timeline", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const set = await t.call("PATCH", "/api/apps/demo/env", {
    set: { SECRET_KEY: "hunter2-value", A: "1" },
  });
  assertEquals((await set.json()).env, { A: "1", SECRET_KEY: "hunter2-value" });
  await t.call("PATCH", "/api/apps/demo/env", { unset: ["A"] });
  assertEquals((await (await t.call("GET", "/api/apps/demo/env")).json()).env, {
    SECRET_KEY: "hunter2-value",
  });
  const bad = await errorOf(
    await t.call("PATCH", "/api/apps/demo/env", { set: { "BAD KEY": "x" } }),
  );
  assertEquals(bad.status, 422);
  const timeline = await (await t.call("GET", "/api/apps/demo/timeline")).json();
  const kinds = timeline.events.map((e: { kind: string }) => e.kind);
  assertEquals(kinds, ["env.unset", "env.set", "app.created"]);
  assert(!JSON.stringify(timeline).includes("hunter2-value"), "values never reach the timeline");
});

Deno.test("deploy stores the slug by sha256 and parses its Procfile into a release", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const slug = await makeSlug({
    "Procfile": "web: ./web\nworker: bin/work --fast\n",
    "bin/work": "#!/bin/sh\n",
  });
  const res = await t.call("POST", "/api/apps/demo/deploy", slug);
  assertEquals(res.status, 201);
  const { release } = await res.json();
  assertEquals(release.version, 1);
  assertEquals(release.process_types, { web: "./web", worker: "bin/work --fast" });
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", slug));
  assertEquals(release.sha256, Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
  const second = await (await t.call("POST", "/api/apps/demo/deploy", slug)).json();
  assertEquals(second.release.version, 2, "each deploy is a new release");
  assertEquals((await blobFiles(`${t.dir}/blobs`)).length, 1, "content-addressed: one copy");
  const app = await (await t.call("GET", "/api/apps/demo")).json();
  assertEquals(app.app.release, 2);
  const events = (await (await t.call("GET", "/api/apps/demo/timeline")).json()).events;
  assertEquals(events[0].kind, "deploy");
});

Deno.test("deploy refuses non-gzip, non-tar and oversized slugs and leaves nothing on disk", async () => {
  await using t = await testServer({ maxSlugBytes: 64 * 1024 });
  await t.call("POST", "/api/apps", { name: "demo" });
  const notGzip = await errorOf(
    await t.call("POST", "/api/apps/demo/deploy", new TextEncoder().encode("plain text")),
  );
  assertEquals([notGzip.status, notGzip.code], [422, "bad_slug"]);
  assertMatch(notGzip.message, /not gzip/);
  const gz = new Response(
    new Blob([new TextEncoder().encode("x".repeat(5000))]).stream().pipeThrough(
      new CompressionStream("gzip"),
    ),
  );
  const notTar = await errorOf(
    await t.call("POST", "/api/apps/demo/deploy", new Uint8Array(await gz.arrayBuffer())),
  );
  assertEquals([notTar.status, notTar.code], [422, "bad_slug"]);
  assertMatch(notTar.message, /not a tar/);
  const big = new Uint8Array(65536 + 10).fill(7);
  const tooBig = await errorOf(await t.call("POST", "/api/apps/demo/deploy", big));
  assertEquals([tooBig.status, tooBig.code], [413, "slug_too_large"]);
  assertEquals(await blobFiles(`${t.dir}/blobs`), [], "nothing left on disk");
  assertEquals((await (await t.call("GET", "/api/apps/demo")).json()).app.release, null);
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
  assertEquals(created.status, 201);
  const { token } = await created.json();
  assertEquals((await t.call("GET", "/api/apps/mine/env", undefined, token)).status, 200);
  assertEquals(
    (await errorOf(await t.call("GET", "/api/apps/other/env", undefined, token))).status,
    403,
  );
  const list = await (await t.call("GET", "/api/apps", undefined, token)).json();
  assertEquals(list.apps.map((a: { name: string }) => a.name), ["mine"]);
  assertEquals(
    (await errorOf(await t.call("POST", "/api/apps", { name: "third" }, token))).status,
    403,
  );
  assertEquals((await errorOf(await t.call("GET", "/api/agents", undefined, token))).status, 403);
  assertEquals(
    (await errorOf(await t.call("POST", "/api/tokens", { role: "admin" }, token))).status,
    403,
  );
  const stored = await t.ctx.store.listEvents({
    app_id: (await t.ctx.store.appByName("mine"))!.id,
  });
  assert(stored.some((e) => e.kind === "token.created"));
  assert(!JSON.stringify(stored).includes(token), "the token itself is never stored");
});

Deno.test("runs refuse unknown sizes and process types with 422", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const noRelease = await errorOf(await t.call("POST", "/api/apps/demo/runs", { command: "true" }));
  assertEquals([noRelease.status, noRelease.code], [422, "no_release"]);
  await t.call("POST", "/api/apps/demo/deploy", await makeSlug({ Procfile: "web: ./web\n" }));
  const size = await errorOf(
    await t.call("POST", "/api/apps/demo/runs", { command: "true", size: "XXL" }),
  );
  assertEquals([size.status, size.code], [422, "unknown_size"]);
  const type = await errorOf(await t.call("POST", "/api/apps/demo/runs", { type: "worker" }));
  assertEquals([type.status, type.code], [422, "unknown_type"]);
  assertMatch(type.message, /known: web/);
  const empty = await errorOf(await t.call("POST", "/api/apps/demo/runs", { command: "  " }));
  assertEquals(empty.status, 422);
});

Deno.test("the 11th concurrent one-off of an app is refused", async () => {
  await using t = await testServer({ maxRunsPerApp: 10 });
  await t.call("POST", "/api/apps", { name: "demo" });
  await t.call("POST", "/api/apps/demo/deploy", await makeSlug({ "a.txt": "a" }));
  for (let i = 0; i < 10; i++) {
    const res = await t.call("POST", "/api/apps/demo/runs", { command: `echo ${i}` });
    assertEquals(res.status, 201);
    assertEquals((await res.json()).run.state, "pending", "no agent: pending");
  }
  const refused = await errorOf(
    await t.call("POST", "/api/apps/demo/runs", { command: "echo 11" }),
  );
  assertEquals([refused.status, refused.code], [429, "too_many_runs"]);
  const ps = await (await t.call("GET", "/api/apps/demo/runs")).json();
  assertEquals(ps.runs.length, 10);
  assertEquals(ps.runs[0].label, "one-off-10");
  const stop = await t.call("POST", "/api/apps/demo/runs/one-off-3/stop");
  assertEquals(stop.status, 202);
  const run = await (await t.call("GET", "/api/apps/demo/runs/one-off-3")).json();
  assertEquals(run.run.state, "stopped");
});
