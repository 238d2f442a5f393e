/**
 * Blobs in PostgreSQL under two BlobStores (two servers' caches) on one
 * fresh schema: what one stores the other serves, nothing partial is ever
 * visible, and a deletion anywhere reaches every cache.
 */
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { createHash } from "node:crypto";
import postgres from "postgres";
import { needs, PG_URL } from "../tests/_tools.ts";
import { waitFor } from "../tests/_wait.ts";
import { BlobStore, BlobTooLargeError } from "./blob_store.ts";
import { CHUNK_BYTES, CopyValues, PostgresBlobs } from "./blob_postgres.ts";
import { openStore } from "./store/open.ts";

interface Servers extends AsyncDisposable {
  a: BlobStore;
  b: BlobStore;
  bDir: string;
  sql: postgres.Sql;
  /** How many times server B read a blob from the database. */
  bReads: () => number;
}

class CountingBlobs extends PostgresBlobs {
  reads = 0;
  override read(sha256: string) {
    this.reads++;
    return super.read(sha256);
  }
}

async function twoServers(): Promise<Servers> {
  const schema = `oneoff_test_${crypto.randomUUID().replaceAll("-", "")}`;
  const sql = postgres(PG_URL!, { max: 1, onnotice: () => {} });
  await sql`create schema ${sql(schema)}`;
  const url = new URL(PG_URL!);
  url.searchParams.set("search_path", schema);
  await (await openStore(url.href)).close();
  await sql`set search_path to ${sql(schema)}`;
  const dir = await Deno.makeTempDir({ prefix: "oneoff-blobs-" });
  const counting = new CountingBlobs(url.href);
  const a = new BlobStore(`${dir}/a`, { shared: new PostgresBlobs(url.href) });
  const b = new BlobStore(`${dir}/b`, { shared: counting });
  return {
    a,
    b,
    bDir: `${dir}/b`,
    sql,
    bReads: () => counting.reads,
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
      await sql`drop schema ${sql(schema)} cascade`;
      await sql.end();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function bytes(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return out;
}

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function rows(sql: postgres.Sql): Promise<{ blobs: number; chunks: number }> {
  const [row] = await sql<{ blobs: number; chunks: number }[]>`
    select (select count(*)::int from blobs) as blobs, (select count(*)::int from blob_chunks) as chunks`;
  return row!;
}

function test(name: string, fn: (s: Servers) => Promise<void>): void {
  Deno.test(needs(["postgres"], {
    name,
    async fn() {
      await using servers = await twoServers();
      await fn(servers);
    },
  }));
}

test("a blob stored through one server is served by another, cached as it streams", async (s) => {
  const data = bytes(3 * CHUNK_BYTES + 12345);
  const put = await s.a.put(new Blob([data]).stream(), { maxBytes: data.length });
  equal(put.sha256, sha(data));
  deepEqual(await rows(s.sql), { blobs: 1, chunks: 4 });
  equal(await s.b.has(put.sha256), true);
  equal(await s.b.size(put.sha256), data.length);
  const read = await s.b.read(put.sha256);
  equal(read!.size, data.length);
  deepEqual(await readAll(read!.body), data);
  // Now in B's cache: served from the file, the database asked only for existence.
  await waitFor(
    async () => (await Deno.stat(s.b.path(put.sha256)).catch(() => null))?.isFile,
    { message: "the blob to be in B's cache" },
  );
  deepEqual(await readAll((await s.b.read(put.sha256))!.body), data);
  equal(s.bReads(), 1);
});

test("concurrent reads of a blob not cached share one fill from the database", async (s) => {
  const data = bytes(5 * CHUNK_BYTES + 7, 2);
  const { sha256 } = await s.a.put(new Blob([data]).stream(), { maxBytes: data.length });
  const reads = await Promise.all(Array.from({ length: 5 }, () => s.b.read(sha256)));
  const file = await s.b.open(sha256);
  const contents = await Promise.all(reads.map((read) => readAll(read!.body)));
  for (const content of contents) deepEqual(content, data);
  equal((await file!.stat()).size, data.length);
  file!.close();
  equal(s.bReads(), 1);
  deepEqual([...Deno.readDirSync(`${s.bDir}/tmp`)], [], "no temp file left");
});

test("a blob being uploaded is invisible until complete, and an abandoned one leaves nothing", async (s) => {
  const first = bytes(2 * CHUNK_BYTES + 5, 3);
  let fail!: (error: Error) => void;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(first);
      fail = (error) => controller.error(error);
    },
  });
  const putting = s.a.put(body, { maxBytes: 10 * CHUNK_BYTES });
  // The first rows reached the database, in a transaction nobody else sees.
  await waitFor(async () => {
    const [row] = await s.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity where query like 'copy blob_chunks%'`;
    return row!.n > 0;
  }, { message: "the upload's COPY to start" });
  deepEqual(await rows(s.sql), { blobs: 0, chunks: 0 });
  equal(await s.b.has(sha(first)), false);
  fail(new Error("the client went away"));
  await rejects(putting, /the client went away/);
  deepEqual(await rows(s.sql), { blobs: 0, chunks: 0 });
  deepEqual([...Deno.readDirSync(`${s.a.path(sha(first)).split("/sha256/")[0]}/tmp`)], []);
});

test("a blob over the limit or refused by its check leaves nothing anywhere", async (s) => {
  const data = bytes(2 * CHUNK_BYTES, 4);
  await rejects(
    s.a.put(new Blob([data]).stream(), { maxBytes: CHUNK_BYTES + 1 }),
    BlobTooLargeError,
  );
  await rejects(
    s.a.put(new Blob([data]).stream(), {
      maxBytes: data.length,
      check: () => Promise.reject(new Error("not a slug")),
    }),
    /not a slug/,
  );
  deepEqual(await rows(s.sql), { blobs: 0, chunks: 0 });
  equal(await s.a.has(sha(data)), false);
  // The pool still works after the aborted COPYs.
  const ok2 = await s.a.put(new Blob([data]).stream(), { maxBytes: data.length });
  equal(await s.b.size(ok2.sha256), data.length);
});

test("the same content stored twice, at once, is one blob with one set of chunks", async (s) => {
  const data = bytes(CHUNK_BYTES + 1, 5);
  const puts = await Promise.all(
    [1, 2, 3].map((_, i) =>
      (i % 2 ? s.a : s.b).put(new Blob([data]).stream(), { maxBytes: data.length })
    ),
  );
  equal(new Set(puts.map((p) => p.sha256)).size, 1);
  deepEqual(await rows(s.sql), { blobs: 1, chunks: 2 });
});

test("a blob deleted through one server is not served from another's cache", async (s) => {
  const data = bytes(1000, 6);
  const { sha256 } = await s.a.put(new Blob([data]).stream(), { maxBytes: data.length });
  (await s.b.open(sha256))!.close();
  ok((await Deno.stat(s.b.path(sha256))).isFile, "cached by B");
  await s.a.remove(sha256);
  deepEqual(await rows(s.sql), { blobs: 0, chunks: 0 });
  equal(await s.b.read(sha256), null);
  equal(await s.b.open(sha256), null);
  await rejects(Deno.stat(s.b.path(sha256)), Deno.errors.NotFound);
});

test("the sweep deletes unreferenced old blobs from the database, and caches drop them", async (s) => {
  const kept = await s.a.put(new Blob([bytes(500, 7)]).stream(), { maxBytes: 1000 });
  const old = await s.a.put(new Blob([bytes(600, 8)]).stream(), { maxBytes: 1000 });
  const fresh = await s.a.put(new Blob([bytes(700, 9)]).stream(), { maxBytes: 1000 });
  for (const blob of [kept, old]) {
    await s
      .sql`update blobs set created_at = now() - interval '2 hours' where sha256 = ${blob.sha256}`;
    (await s.b.open(blob.sha256))!.close();
  }
  const removed = await s.a.sweep(new Set([kept.sha256]), Date.now() - 3600_000);
  deepEqual(removed, { blobs: 1, bytes: 600 });
  deepEqual(await rows(s.sql), { blobs: 2, chunks: 2 });
  equal(await s.b.pruneCache(Date.now() - 3600_000), 1);
  await rejects(Deno.stat(s.b.path(old.sha256)), Deno.errors.NotFound);
  ok((await Deno.stat(s.b.path(kept.sha256))).isFile);
  equal(await s.b.has(fresh.sha256), true);
});

Deno.test("CopyValues passes on a binary COPY's values however the stream is cut", () => {
  const header = [0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0, 0, 0, 0, 0];
  const row = (value: number[]) => [0, 1, 0, 0, 0, value.length, ...value];
  // A header extension of 2 bytes, then two rows and the trailer.
  const stream = new Uint8Array([
    ...header,
    0,
    0,
    0,
    2,
    9,
    9,
    ...row([1, 2, 3]),
    ...row([4, 5]),
    0xff,
    0xff,
  ]);
  for (let cut = 1; cut <= stream.length; cut++) {
    const values = new CopyValues();
    const out: number[] = [];
    for (let i = 0; i < stream.length; i += cut) {
      values.push(stream.slice(i, i + cut), (bytes) => out.push(...bytes));
    }
    values.end();
    deepEqual(out, [1, 2, 3, 4, 5], `cut every ${cut} bytes`);
  }
  const short = new CopyValues();
  short.push(stream.slice(0, 25), () => {});
  throws(() => short.end(), /ended early/);
});

test("blob files of a data dir from before are stored in the database at start, never dropped", async (s) => {
  // B's data dir as a server left it before blobs moved into PostgreSQL.
  const legacy = new BlobStore(s.bDir);
  const data = bytes(CHUNK_BYTES + 99, 10);
  const { sha256 } = await legacy.put(new Blob([data]).stream(), { maxBytes: data.length });
  const forged = legacy.path("f".repeat(64));
  await Deno.mkdir(forged.slice(0, forged.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(forged, "not what the name says");
  deepEqual(await s.b.importFiles(), { blobs: 1, bytes: data.length, skipped: [forged] });
  deepEqual(await readAll((await s.a.read(sha256))!.body), data);
  deepEqual(await s.b.importFiles(), { blobs: 0, bytes: 0, skipped: [forged] });
  deepEqual(await rows(s.sql), { blobs: 1, chunks: 2 });
});

test("an upload whose database connection dies halfway leaves no chunk behind", async (s) => {
  // A client that keeps sending, slowly, until refused.
  const piece = bytes(64 * 1024, 11);
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      controller.enqueue(piece);
    },
  });
  const putting = s.a.put(body, { maxBytes: 2 ** 40 });
  await waitFor(async () => {
    const [row] = await s.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity where query like 'copy blob_chunks%'`;
    return row!.n > 0;
  }, { message: "the upload's COPY to start" });
  // As when the server process is killed: PostgreSQL rolls the transaction back.
  await s
    .sql`select pg_terminate_backend(pid) from pg_stat_activity where query like 'copy blob_chunks%'`;
  await rejects(putting);
  deepEqual(await rows(s.sql), { blobs: 0, chunks: 0 });
  const [dead] = await s.sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity where query like 'copy blob_chunks%'`;
  equal(dead!.n, 0);
  // The pool replaces the connection.
  const after = await s.a.put(new Blob([bytes(10, 12)]).stream(), { maxBytes: 100 });
  equal(await s.b.size(after.sha256), 10);
});
