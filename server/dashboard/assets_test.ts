import { deepEqual, match, ok } from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { Hono } from "hono";
import { Assets } from "./assets.ts";

function assetApp(): { app: Hono; files: Assets } {
  const files = Assets.load();
  const app = new Hono();
  app.get("/assets/:name", (c) => files.serve(c));
  return { app, files };
}

Deno.test("a versioned asset URL is cached for good, a bare one briefly", async () => {
  const { app, files } = assetApp();
  const url = files.url("app.css");
  match(url, /^\/assets\/app\.css\?v=[0-9a-f]{16}$/);
  const versioned = await app.request(url);
  deepEqual(versioned.status, 200);
  deepEqual(versioned.headers.get("content-type"), "text/css; charset=utf-8");
  deepEqual(versioned.headers.get("cache-control"), "public, max-age=31536000, immutable");
  match(await versioned.text(), /--font:/);
  const bare = await app.request("/assets/app.css");
  deepEqual(bare.headers.get("cache-control"), "public, max-age=300");
  await bare.body?.cancel();
});

Deno.test("an asset is not sent again when the browser has its ETag", async () => {
  const { app } = assetApp();
  const first = await app.request("/assets/player.js");
  const etag = first.headers.get("etag") ?? "";
  await first.body?.cancel();
  const again = await app.request("/assets/player.js", { headers: { "if-none-match": etag } });
  deepEqual(again.status, 304);
  deepEqual(again.body, null);
});

Deno.test("assets are gzipped for clients that accept it", async () => {
  const { app } = assetApp();
  const plain = new Uint8Array(await (await app.request("/assets/player.js")).arrayBuffer());
  const res = await app.request("/assets/player.js", {
    headers: { "accept-encoding": "gzip, br" },
  });
  deepEqual(res.headers.get("content-encoding"), "gzip");
  const zipped = new Uint8Array(await res.arrayBuffer());
  ok(zipped.length < plain.length / 2, `gzip ${zipped.length} of ${plain.length} bytes`);
  deepEqual(new Uint8Array(gunzipSync(zipped)), plain);
  match(new TextDecoder().decode(plain.subarray(0, 300)), /AsciinemaPlayer/);
});

Deno.test("the player's stylesheet is served, and an unknown asset is a 404", async () => {
  const { app } = assetApp();
  const css = await app.request("/assets/player.css");
  match(await css.text(), /\.ap-player/);
  const missing = await app.request("/assets/secret.key");
  deepEqual(missing.status, 404);
  await missing.body?.cancel();
});
