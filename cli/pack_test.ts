import { deepEqual, equal, rejects } from "node:assert/strict";
import { createHash } from "node:crypto";
import * as tar from "tar";
import { SlugCache } from "../agent/slug_cache.ts";
import { inspectSlug } from "../server/slug.ts";
import { packDirectory } from "./pack.ts";

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "pack_test_" });
  const app = `${dir}/app`;
  await Deno.mkdir(`${app}/bin`, { recursive: true });
  await Deno.mkdir(`${app}/.git/objects`, { recursive: true });
  await Deno.mkdir(`${app}/vendor/lib`, { recursive: true });
  await Deno.mkdir(`${app}/node_modules/left-pad`, { recursive: true });
  await Deno.writeTextFile(`${app}/Procfile`, "web: bin/web\nworker: bin/worker --queue=default\n");
  await Deno.writeTextFile(`${app}/bin/web`, "#!/bin/sh\necho web\n", { mode: 0o755 });
  await Deno.chmod(`${app}/bin/web`, 0o755);
  await Deno.writeTextFile(`${app}/.git/HEAD`, "ref: refs/heads/main\n");
  await Deno.writeTextFile(`${app}/vendor/lib/.git`, "gitdir: ../../.git/modules/lib\n");
  await Deno.writeTextFile(`${app}/vendor/lib/lib.js`, "export {};\n");
  await Deno.writeTextFile(`${app}/node_modules/left-pad/index.js`, "module.exports = 1;\n");
  await Deno.symlink("bin/web", `${app}/web`);
  return {
    dir,
    app,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("packDirectory writes paths relative to the dir and leaves out .git", async () => {
  await using t = await setup();
  await Deno.writeFile(`${t.dir}/slug.tar.gz`, await bytesOf(packDirectory(t.app)));
  const paths: string[] = [];
  await tar.t({ file: `${t.dir}/slug.tar.gz`, onReadEntry: (entry) => paths.push(entry.path) });
  deepEqual(paths.sort(), [
    "./",
    "./Procfile",
    "./bin/",
    "./bin/web",
    "./node_modules/",
    "./node_modules/left-pad/",
    "./node_modules/left-pad/index.js",
    "./vendor/",
    "./vendor/lib/",
    "./vendor/lib/lib.js",
    "./web",
  ]);
});

Deno.test("a packed directory passes inspectSlug with its Procfile", async () => {
  await using t = await setup();
  await Deno.writeFile(`${t.dir}/slug.tar.gz`, await bytesOf(packDirectory(t.app)));
  const info = await inspectSlug(`${t.dir}/slug.tar.gz`);
  deepEqual(info.processTypes, { web: "bin/web", worker: "bin/worker --queue=default" });
  equal(info.entries, 11);
});

Deno.test("a packed directory extracts through the slug cache", async () => {
  await using t = await setup();
  const slug = await bytesOf(packDirectory(t.app));
  const sha256 = createHash("sha256").update(slug).digest("hex");
  const cache = new SlugCache({
    dir: `${t.dir}/cache`,
    maxDiskBytes: 1024 * 1024,
    maxExtractBytes: 1024 * 1024,
    fetch: () => Promise.resolve(ReadableStream.from([slug])),
  });
  const lease = await cache.acquire(sha256);
  equal(await Deno.readTextFile(`${lease.dir}/web`), "#!/bin/sh\necho web\n");
  equal(((await Deno.stat(`${lease.dir}/bin/web`)).mode ?? 0) & 0o777, 0o755);
  equal(await Deno.readLink(`${lease.dir}/web`), "bin/web");
  await rejects(Deno.stat(`${lease.dir}/.git`), Deno.errors.NotFound);
  await rejects(Deno.stat(`${lease.dir}/vendor/lib/.git`), Deno.errors.NotFound);
  lease.release();
});

Deno.test("packDirectory errors the stream when the dir does not exist", async () => {
  await using t = await setup();
  await rejects(bytesOf(packDirectory(`${t.dir}/missing`)), /ENOENT/);
});
