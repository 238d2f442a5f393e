import { gunzipSync } from "node:zlib";
import { Hono } from "hono";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
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
  assertMatch(url, /^\/assets\/app\.css\?v=[0-9a-f]{16}$/);
  const versioned = await app.request(url);
  assertEquals(versioned.status, 200);
  assertEquals(versioned.headers.get("content-type"), "text/css; charset=utf-8");
  assertEquals(versioned.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assertMatch(await versioned.text(), /--font:/);
  const bare = await app.request("/assets/app.css");
  assertEquals(bare.headers.get("cache-control"), "public, max-age=300");
  await bare.body?.cancel();
});

Deno.test("an asset is not sent again when the browser has its ETag", async () => {
  const { app } = assetApp();
  const first = await app.request("/assets/player.js");
  const etag = first.headers.get("etag") ?? "";
  await first.body?.cancel();
  const again = await app.request("/assets/player.js", { headers: { "if-none-match": etag } });
  assertEquals(again.status, 304);
  assertEquals(again.body, null);
});

Deno.test("assets are gzipped for clients that accept it", async () => {
  const { app } = assetApp();
  const plain = new Uint8Array(await (await app.request("/assets/player.js")).arrayBuffer());
  const res = await app.request("/assets/player.js", {
    headers: { "accept-encoding": "gzip, br" },
  });
  assertEquals(res.headers.get("content-encoding"), "gzip");
  const zipped = new Uint8Array(await res.arrayBuffer());
  assert(zipped.length < plain.length / 2, `gzip ${zipped.length} of ${plain.length} bytes`);
  assertEquals(new Uint8Array(gunzipSync(zipped)), plain);
  assertMatch(new TextDecoder().decode(plain.subarray(0, 300)), /AsciinemaPlayer/);
});

Deno.test("the player's stylesheet is served, and an unknown asset is a 404", async () => {
  const { app } = assetApp();
  const css = await app.request("/assets/player.css");
  assertMatch(await css.text(), /\.ap-player/);
  const missing = await app.request("/assets/secret.key");
  assertEquals(missing.status, 404);
  await missing.body?.cancel();
});
