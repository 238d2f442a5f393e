/**
 * `oneoff server backup --to DIR`: a consistent copy of the server's state
 * while it runs. SQLite: `VACUUM INTO` (a transaction-consistent snapshot
 * that readers and the WAL writer do not block). PostgreSQL: `pg_dump`.
 * The key files beside the database are copied too (the audit key above
 * all: recordings cannot be read without it). SQLite: blobs are
 * content-addressed files that never change once written: the reply names
 * their directory for a file-level copy (rsync) instead of duplicating
 * them here. PostgreSQL: the blobs are in the database (server/
 * blob_postgres.ts), so the dump holds them; the data dir only caches them.
 * @module
 */
import { DatabaseSync } from "node:sqlite";

/** What to back up. */
export interface BackupOptions {
  dataDir: string;
  /** `sqlite:PATH` or `postgres://...`; default SQLite in the data dir. */
  database?: string;
  /** The audit key file; default `<data-dir>/audit.key`. */
  auditKeyFile?: string;
}

/** What a backup wrote, and what it left for the operator. */
export interface BackupResult {
  /** The database copy: a SQLite file or a pg_dump archive. */
  database: string;
  /** Key files copied beside it. */
  files: string[];
  /** The blob directory to copy with a file-level tool; null when the database copy holds the blobs. */
  blobs: string | null;
}

/** Secrets kept beside the database, copied when present. */
const KEY_FILES = ["join.token", "attach.key"];

/** Writes a backup into the directory `to` (created; existing backup files are refused). */
export async function backup(to: string, options: BackupOptions): Promise<BackupResult> {
  await Deno.mkdir(to, { recursive: true, mode: 0o700 });
  const database = options.database ?? `sqlite:${options.dataDir}/oneoff.db`;
  let copy: string;
  const postgres = database.startsWith("postgres://") || database.startsWith("postgresql://");
  if (postgres) {
    copy = `${to}/oneoff.pgdump`;
    await pgDump(database, copy);
  } else {
    const path = database.startsWith("sqlite:") ? database.slice("sqlite:".length) : database;
    copy = `${to}/oneoff.db`;
    await sqliteCopy(path, copy);
  }
  const files: string[] = [];
  const keys = [
    [options.auditKeyFile ?? `${options.dataDir}/audit.key`, "audit.key"],
    ...KEY_FILES.map((name) => [`${options.dataDir}/${name}`, name]),
  ];
  for (const [from, name] of keys) {
    try {
      await Deno.copyFile(from!, `${to}/${name}`);
      await Deno.chmod(`${to}/${name}`, 0o600);
      files.push(`${to}/${name}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return { database: copy, files, blobs: postgres ? null : `${options.dataDir}/blobs` };
}

async function sqliteCopy(from: string, to: string): Promise<void> {
  await Deno.stat(from).catch((error) => {
    throw new Error(`Cannot back up "${from}": no database there`, { cause: error });
  });
  if (await exists(to)) throw new Error(`Cannot back up to "${to}": the file exists`);
  const db = new DatabaseSync(from, { readOnly: true });
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    db.prepare("VACUUM INTO ?").run(to);
  } finally {
    db.close();
  }
  await Deno.chmod(to, 0o600);
}

async function pgDump(url: string, to: string): Promise<void> {
  if (await exists(to)) throw new Error(`Cannot back up to "${to}": the file exists`);
  // pg_dump takes a libpq URL: settings such as search_path become --schema.
  const parsed = new URL(url);
  const schema = parsed.searchParams.get("search_path");
  parsed.search = "";
  const args = ["--format=custom", `--file=${to}`, ...(schema ? [`--schema=${schema}`] : [])];
  let status: Deno.CommandStatus;
  try {
    status = await new Deno.Command("pg_dump", { args: [...args, parsed.href] }).spawn().status;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(
      `Cannot back up PostgreSQL: pg_dump is not installed; run "pg_dump ${args.join(" ")} URL"`,
      { cause: error },
    );
  }
  if (!status.success) throw new Error(`pg_dump failed with exit code ${status.code}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
