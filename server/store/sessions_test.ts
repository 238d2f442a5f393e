/**
 * The revoked dashboard sessions, against both stores (PostgreSQL in a fresh
 * schema when ONEOFF_TEST_POSTGRES is set).
 */
import { deepEqual } from "node:assert/strict";
import postgres from "postgres";
import { openStore } from "./open.ts";
import { needs, PG_URL } from "../../tests/_tools.ts";

async function withSqlite(fn: (url: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-store-" });
  try {
    await fn(`sqlite:${dir}/oneoff.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function withPostgres(fn: (url: string) => Promise<void>): Promise<void> {
  const schema = `oneoff_test_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
  await admin`create schema ${admin(schema)}`;
  try {
    const url = new URL(PG_URL!);
    url.searchParams.set("search_path", schema);
    await fn(url.href);
  } finally {
    await admin`drop schema ${admin(schema)} cascade`;
    await admin.end();
  }
}

async function revocations(url: string): Promise<void> {
  const store = await openStore(url);
  try {
    deepEqual(await store.sessionRevoked("s1"), false);
    await store.revokeSession("s1", Date.now() + 60_000);
    await store.revokeSession("s1", Date.now() + 60_000);
    deepEqual(await store.sessionRevoked("s1"), true, "revoked until its expiry");
    deepEqual(await store.sessionRevoked("s2"), false, "another session is not");
    await store.revokeSession("old", Date.now() - 1);
    deepEqual(await store.sessionRevoked("old"), false, "an expired session needs no entry");
  } finally {
    await store.close();
  }
}

Deno.test("sqlite: a revoked session stays revoked until its expiry", () =>
  withSqlite(revocations));

Deno.test(needs(["postgres"], {
  name: "postgres: a revoked session stays revoked until its expiry",
  fn: () => withPostgres(revocations),
}));
