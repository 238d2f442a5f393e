import { deepEqual, match, ok } from "node:assert/strict";
import { makeSlug, testServer } from "./_testing.ts";
import { FORM_BODY_LIMIT, JSON_BODY_LIMIT } from "./body_limit.ts";

const MiB = 1024 * 1024;

/** A body of `total` bytes made as it is read; `pulled` says how much was. */
function lazyBody(total: number, fill = 0x20) {
  const chunk = new Uint8Array(64 * 1024).fill(fill);
  const counter = { pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (counter.pulled >= total) return controller.close();
      counter.pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return { stream, counter };
}

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = await res.json();
  return { status: res.status, code: body.error?.code, message: body.error?.message };
}

Deno.test("a 100 MB JSON body to the runs route is refused with 413 after 1 MiB is read", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const { stream, counter } = lazyBody(100 * MiB);
  const err = await errorOf(await t.call("POST", "/api/apps/demo/runs", stream));
  deepEqual([err.status, err.code], [413, "too_large"]);
  match(err.message, /larger than the limit of 1048576 bytes for 1 MiB/);
  ok(counter.pulled <= JSON_BODY_LIMIT + 256 * 1024, `read ${counter.pulled} bytes`);
});

Deno.test("a declared Content-Length over the limit is refused before a byte is read", async () => {
  await using t = await testServer();
  const { stream, counter } = lazyBody(100 * MiB);
  const res = await t.server.app.request("/api/apps", {
    method: "POST",
    headers: { authorization: `Bearer ${t.admin}`, "content-length": String(100 * MiB) },
    body: stream,
  });
  deepEqual((await errorOf(res)).code, "too_large");
  deepEqual(res.status, 413);
  ok(counter.pulled <= 128 * 1024, `read ${counter.pulled} bytes`);
});

Deno.test("an unauthenticated 100 MB sign-in form is refused after 16 KiB", async () => {
  await using t = await testServer();
  const { stream, counter } = lazyBody(100 * MiB, 0x61);
  const res = await t.server.app.request("/login", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: stream,
  });
  deepEqual(res.status, 413);
  match(await res.text(), /larger than the limit of 16384 bytes for 16 KiB/);
  ok(counter.pulled <= FORM_BODY_LIMIT + 256 * 1024, `read ${counter.pulled} bytes`);
});

Deno.test("deploys and uploads are not held to the JSON limit, only to their own caps", async () => {
  await using t = await testServer();
  await t.call("POST", "/api/apps", { name: "demo" });
  const random = crypto.getRandomValues(new Uint8Array(60_000));
  const noise = Array.from(random, (b) => String.fromCharCode(33 + (b % 90))).join("");
  const slug = await makeSlug({ "a.txt": noise.repeat(40), Procfile: "web: x\n" });
  ok(slug.length > 0);
  const upload = new Uint8Array(2 * MiB).fill(7);
  const up = await t.call("POST", "/api/apps/demo/uploads", upload);
  deepEqual(up.status, 201);
  await up.body?.cancel();
  const deploy = await t.call("POST", "/api/apps/demo/deploy", slug);
  deepEqual(deploy.status, 201);
  await deploy.body?.cancel();
});
