import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { createHash } from "node:crypto";
import { BlobStore, BlobTooLargeError } from "./blob_store.ts";

const encoder = new TextEncoder();

async function setup() {
  const dir = await Deno.makeTempDir({ prefix: "blob_store_test_" });
  return {
    dir,
    store: new BlobStore(dir),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Every file under `dir`, relative, sorted. */
async function files(dir: string, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const item of Deno.readDir(dir)) {
    const name = `${prefix}${item.name}`;
    if (item.isDirectory) found.push(...await files(`${dir}/${item.name}`, `${name}/`));
    else found.push(name);
  }
  return found.sort();
}

function bodyOf(text: string): ReadableStream<Uint8Array> {
  return ReadableStream.from([encoder.encode(text)]);
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

Deno.test("put stores a body under its sha256", async () => {
  await using t = await setup();
  const blob = await t.store.put(bodyOf("hello slug"), { maxBytes: 1024 });
  const hex = sha256("hello slug");
  deepEqual(blob, {
    sha256: hex,
    size: 10,
    path: `${t.dir}/sha256/${hex.slice(0, 2)}/${hex}`,
  });
  equal(await Deno.readTextFile(blob.path), "hello slug");
  equal(await t.store.has(hex), true);
  const file = await t.store.open(hex);
  ok(file !== null);
  equal(await new Response(file.readable).text(), "hello slug");
  deepEqual(await files(t.dir), [`sha256/${hex.slice(0, 2)}/${hex}`]);
});

Deno.test("putting the same content twice keeps one blob", async () => {
  await using t = await setup();
  const first = await t.store.put(bodyOf("same"), { maxBytes: 1024 });
  const second = await t.store.put(bodyOf("same"), { maxBytes: 1024 });
  deepEqual(second, first);
  deepEqual(await files(t.dir), [`sha256/${first.sha256.slice(0, 2)}/${first.sha256}`]);
});

Deno.test("put refuses a body past maxBytes, stops reading it and leaves nothing", async () => {
  await using t = await setup();
  let cancelled: unknown;
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      controller.enqueue(new Uint8Array(1000));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  await rejects(t.store.put(body, { maxBytes: 4500 }), (error: unknown) => {
    ok(error instanceof BlobTooLargeError);
    equal(error.name, "BlobTooLargeError");
    equal(error.limit, 4500);
    equal(error.message, "Blob is larger than the limit of 4500 bytes");
    return true;
  });
  ok(cancelled instanceof BlobTooLargeError);
  ok(pulls < 10);
  deepEqual(await files(t.dir), []);
});

Deno.test("put accepts a body of exactly maxBytes", async () => {
  await using t = await setup();
  const blob = await t.store.put(bodyOf("12345"), { maxBytes: 5 });
  equal(blob.size, 5);
});

Deno.test("put runs check on the complete file and stores nothing when it throws", async () => {
  await using t = await setup();
  let seen = "";
  const refuse = async (path: string) => {
    seen = await Deno.readTextFile(path);
    throw new Error("Not a slug");
  };
  await rejects(t.store.put(bodyOf("abc"), { maxBytes: 10, check: refuse }), /Not a slug/);
  equal(seen, "abc");
  deepEqual(await files(t.dir), []);
  const accept = (path: string) => Deno.stat(path).then(() => {});
  const blob = await t.store.put(bodyOf("abc"), { maxBytes: 10, check: accept });
  equal(blob.sha256, sha256("abc"));
});

Deno.test("put passes on a body that errors and leaves nothing", async () => {
  await using t = await setup();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("partial"));
      controller.error(new Error("Connection reset"));
    },
  });
  await rejects(t.store.put(body, { maxBytes: 100 }), /Connection reset/);
  deepEqual(await files(t.dir), []);
});

Deno.test("path refuses anything but 64 lowercase hex digits", async () => {
  await using t = await setup();
  const hex = sha256("x");
  equal(t.store.path(hex), `${t.dir}/sha256/${hex.slice(0, 2)}/${hex}`);
  for (const bad of [hex.toUpperCase(), hex.slice(1), `../${hex.slice(3)}`, `${hex}\n`, ""]) {
    throws(() => t.store.path(bad), /Invalid sha256/);
  }
  await rejects(t.store.has("../etc/passwd"), /Invalid sha256/);
});

Deno.test("has, open and remove treat a missing blob as absent", async () => {
  await using t = await setup();
  const hex = sha256("gone");
  equal(await t.store.has(hex), false);
  equal(await t.store.open(hex), null);
  await t.store.remove(hex);
  await t.store.put(bodyOf("gone"), { maxBytes: 10 });
  await t.store.remove(hex);
  equal(await t.store.has(hex), false);
});

Deno.test("put streams a 1 GiB body in constant memory", async () => {
  await using t = await setup();
  const chunk = new Uint8Array(1024 * 1024).fill(7);
  const total = 1024;
  let sent = 0;
  let peak = 0;
  const baseline = Deno.memoryUsage();
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === total) return controller.close();
      const usage = Deno.memoryUsage();
      peak = Math.max(peak, usage.heapUsed + usage.external);
      sent++;
      // The same buffer every time: whatever memory grows is the store's.
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  const blob = await t.store.put(body, { maxBytes: 2 * 1024 ** 3 });
  equal(blob.size, total * chunk.length);
  const growth = peak - (baseline.heapUsed + baseline.external);
  ok(growth < 64 * 1024 * 1024, `grew by ${growth} bytes for a 1 GiB body`);
});

Deno.test("size and read give a stored blob's size and content, null for one not stored", async () => {
  await using t = await setup();
  const { sha256: hex } = await t.store.put(bodyOf("read me"), { maxBytes: 1024 });
  equal(await t.store.size(hex), 7);
  const read = await t.store.read(hex);
  equal(read!.size, 7);
  equal(await new Response(read!.body).text(), "read me");
  equal(t.store.shared, false);
  equal(await t.store.size(sha256("other")), null);
  equal(await t.store.read(sha256("other")), null);
  // Files only: nothing to import or prune.
  deepEqual(await t.store.importFiles(), { blobs: 0, bytes: 0, skipped: [] });
  equal(await t.store.pruneCache(Date.now()), 0);
});
