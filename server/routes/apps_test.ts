import { deepEqual, match, ok } from "node:assert/strict";
import { testServer } from "../_testing.ts";

const MiB = 1024 * 1024;

function rssBytes(): number {
  return Deno.memoryUsage().rss;
}

async function filesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) found.push(...await filesUnder(`${dir}/${entry.name}`));
      else found.push(`${dir}/${entry.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return found;
}

Deno.test("a gzip bomb slug is refused at the unpacked cap while it inflates, nothing kept", async () => {
  await using t = await testServer({ maxSlugUnpackedBytes: 8 * MiB });
  await t.call("POST", "/api/apps", { name: "demo" });
  // 1 GB of zeros (a tar of nothing but its end marker and padding),
  // about 1 MB once compressed, made on the fly and streamed in. The bound
  // below is far under what inflating it whole would take, and far over
  // what the garbage collector may leave behind on a loaded machine.
  const gzip = new Deno.Command("sh", {
    args: ["-c", "head -c 1G /dev/zero | gzip -1"],
    stdout: "piped",
  }).spawn();
  const before = rssBytes();
  const res = await t.call("POST", "/api/apps/demo/deploy", gzip.stdout);
  const grown = rssBytes() - before;
  await gzip.status;
  const body = await res.json();
  deepEqual([res.status, body.error?.code], [413, "slug_too_large"]);
  match(body.error.message, /larger than 8388608 bytes uncompressed/);
  match(body.error.message, /--max-slug-unpacked-bytes/);
  ok(grown < 256 * MiB, `RSS grew by ${Math.round(grown / MiB)} MiB`);
  deepEqual(await filesUnder(`${t.dir}/blobs`), [], "nothing is left on disk");
  deepEqual(await t.ctx.store.latestRelease((await t.ctx.store.appByName("demo"))!.id), null);
});
