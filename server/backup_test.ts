import { deepEqual, equal, rejects } from "node:assert/strict";
import { openStore } from "./store/open.ts";
import { backup } from "./backup.ts";
import { needs, PG_URL } from "../tests/_tools.ts";
import postgres from "postgres";
import { BlobStore } from "./blob_store.ts";
import { PostgresBlobs } from "./blob_postgres.ts";

Deno.test("a backup of a running SQLite store opens with the same apps and runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-backup-" });
  try {
    await Deno.mkdir(`${dir}/data`);
    const store = await openStore(`sqlite:${dir}/data/oneoff.db`);
    const app = await store.createApp("demo");
    const rel = await store.createRelease({
      app_id: app.id,
      sha256: "aa".repeat(32),
      size: 1,
      process_types: {},
      actor: "alice",
    });
    const run = await store.createRun({
      id: crypto.randomUUID(),
      app_id: app.id,
      command: "true",
      attached: false,
      tty: false,
      size: "M",
      release_id: rel.id,
      env_overrides: {},
      uploads: [],
      cols: 80,
      rows: 24,
      timeout_ms: 1000,
      actor: "alice",
      secret_sha256: null,
      expires_at: null,
    });
    await Deno.writeTextFile(`${dir}/data/audit.key`, "key\n");
    // The store stays open (and written) while the backup is taken.
    const result = await backup(`${dir}/backup`, { dataDir: `${dir}/data` });
    await store.createApp("after");
    await store.close();
    deepEqual(result, {
      database: `${dir}/backup/oneoff.db`,
      files: [`${dir}/backup/audit.key`],
      blobs: `${dir}/data/blobs`,
    });
    equal(await Deno.readTextFile(`${dir}/backup/audit.key`), "key\n");
    const copy = await openStore(`sqlite:${dir}/backup/oneoff.db`);
    try {
      deepEqual((await copy.listApps()).map((a) => a.name), ["demo"]);
      deepEqual(await copy.runById(run.id), run);
    } finally {
      await copy.close();
    }
    await rejects(backup(`${dir}/backup`, { dataDir: `${dir}/data` }), /the file exists/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// pg_dump comes with the PostgreSQL client packages; without it the test says so.
const HAS_PG_DUMP = (() => {
  try {
    return new Deno.Command("pg_dump", { args: ["--version"] }).outputSync().success;
  } catch {
    return false;
  }
})();

Deno.test(needs(["postgres"], {
  name: `a PostgreSQL backup is a pg_dump archive of the store's schema, blobs included${
    HAS_PG_DUMP ? "" : " [skipped: no pg_dump]"
  }`,
  ignore: !HAS_PG_DUMP,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "oneoff-backup-" });
    const schema = `oneoff_test_${crypto.randomUUID().replaceAll("-", "")}`;
    const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
    await admin`create schema ${admin(schema)}`;
    try {
      const url = new URL(PG_URL!);
      url.searchParams.set("search_path", schema);
      const store = await openStore(url.href);
      await store.createApp("demo");
      await store.close();
      const blobs = new BlobStore(`${dir}/blobs`, { shared: new PostgresBlobs(url.href) });
      await blobs.put(new Blob(["a slug"]).stream(), { maxBytes: 100 });
      await blobs.close();
      const result = await backup(`${dir}/b`, { dataDir: dir, database: url.href });
      equal(result.database, `${dir}/b/oneoff.pgdump`);
      equal(result.blobs, null, "the blobs are in the dump");
      const list = await new Deno.Command("pg_restore", { args: ["--list", result.database] })
        .output();
      equal(list.success, true);
      const toc = new TextDecoder().decode(list.stdout);
      equal(toc.includes(`TABLE DATA ${schema} apps`), true);
      equal(toc.includes(`TABLE DATA ${schema} blob_chunks`), true);
    } finally {
      await admin`drop schema ${admin(schema)} cascade`;
      await admin.end();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
