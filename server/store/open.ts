/**
 * Picks the store a `--database` value names, opens it and brings its
 * schema up to date.
 * @module
 */
import type { Store } from "./mod.ts";
import { openPostgresStore } from "./postgres.ts";
import { openSqliteStore } from "./sqlite.ts";

/**
 * Opens and migrates the store at `url`: `sqlite:PATH` (or a bare path
 * ending in `.db`, `.sqlite` or `.sqlite3`) or `postgres://...` /
 * `postgresql://...`.
 */
export async function openStore(url: string): Promise<Store> {
  const store = storeFor(url);
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

/** The file of a SQLite URL (as {@link openStore} reads it); null for PostgreSQL. */
export function sqlitePath(url: string): string | null {
  if (url.startsWith("sqlite:")) return url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
  if (/\.(db|sqlite|sqlite3)$/.test(url) && !url.includes("://")) return url;
  return null;
}

function storeFor(url: string): Store {
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    return openPostgresStore(url);
  }
  if (url.startsWith("sqlite:")) {
    // sqlite:///var/lib/x.db is a common spelling of sqlite:/var/lib/x.db.
    const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (path !== "") return openSqliteStore(path);
  } else if (/\.(db|sqlite|sqlite3)$/.test(url) && !url.includes("://")) {
    return openSqliteStore(url);
  }
  throw new Error(`Unknown database "${redact(url)}": use sqlite:PATH or postgres://...`);
}

// A mistyped URL still carries its password; keep it out of error messages.
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.href;
  } catch {
    return url;
  }
}
