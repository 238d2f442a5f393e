import { deepEqual } from "node:assert/strict";
/**
 * What readiness and metrics ask of both stores: the schema version and
 * the runs by state, on SQLite and (with ONEOFF_TEST_POSTGRES) PostgreSQL.
 */
import postgres from "postgres";
import { needs, PG_URL } from "../../tests/_tools.ts";
import { LATEST_SCHEMA_VERSION, type NewRun, type Store } from "./mod.ts";
import { openStore } from "./open.ts";

async function withSqlite(fn: (store: Store) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-counts-" });
  const store = await openStore(`sqlite:${dir}/oneoff.db`);
  try {
    await fn(store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function withPostgres(fn: (store: Store) => Promise<void>): Promise<void> {
  const schema = `oneoff_test_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
  await admin`create schema ${admin(schema)}`;
  const url = new URL(PG_URL!);
  url.searchParams.set("search_path", schema);
  const store = await openStore(url.href);
  try {
    await fn(store);
  } finally {
    await store.close();
    await admin`drop schema ${admin(schema)} cascade`;
    await admin.end();
  }
}

function newRun(appId: number, releaseId: number): NewRun {
  return {
    id: crypto.randomUUID(),
    app_id: appId,
    command: "true",
    attached: false,
    tty: false,
    size: "M",
    release_id: releaseId,
    env_overrides: {},
    uploads: [],
    cols: 80,
    rows: 24,
    timeout_ms: 60_000,
    actor: "alice",
    secret_sha256: null,
    expires_at: null,
  };
}

async function contract(store: Store): Promise<void> {
  deepEqual(await store.schemaVersion(), LATEST_SCHEMA_VERSION);
  deepEqual(await store.countRunsByState(), {});
  const app = await store.createApp("counted");
  const rel = await store.createRelease({
    app_id: app.id,
    sha256: "ab".repeat(32),
    size: 1,
    process_types: {},
    actor: "alice",
  });
  const runs = [];
  for (let i = 0; i < 3; i++) runs.push(await store.createRun(newRun(app.id, rel.id)));
  await store.updateRun(runs[0]!.id, ["pending"], { state: "starting" });
  await store.updateRun(runs[0]!.id, ["starting"], { state: "running", started_at: new Date() });
  deepEqual(await store.countRunsByState(), { pending: 2, running: 1 });
}

for (const [name, open] of [["sqlite", withSqlite], ["postgres", withPostgres]] as const) {
  Deno.test(needs(name === "postgres" ? ["postgres"] : [], {
    name: `${name}: the schema version is the latest after migrate, runs are counted by state`,
    fn: () => open(contract),
  }));
}
