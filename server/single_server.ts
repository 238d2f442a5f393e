/**
 * SQLite is the single-server store: a second `oneoff server` on the same
 * file would schedule the same runs and sweep the same rows as if alone.
 * An exclusive lock on a file beside the database keeps it to one; the
 * lock goes with the process, however it ends.
 * @module
 */

/** How long a start waits for the lock before it says who holds it. */
const LOCK_WAIT_MS = 300;

/** Thrown when another server holds the database. */
export class DatabaseInUseError extends Error {
  /** Says which file and what to use instead. */
  constructor(message: string) {
    super(message);
    this.name = "DatabaseInUseError";
  }
}

/** Takes the lock of the SQLite database at `path`; close the file to let it go. */
export async function lockSqlite(path: string): Promise<Deno.FsFile> {
  const lockPath = `${path}.lock`;
  const file = await Deno.open(lockPath, { create: true, write: true, mode: 0o600 });
  // Deno's lock blocks; a lock still held after a short wait is another server's.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const held = await Promise.race([
    file.lock(true).then(() => true),
    new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), LOCK_WAIT_MS)),
  ]);
  clearTimeout(timer);
  if (held) return file;
  file.close();
  throw new DatabaseInUseError(
    `Cannot start: another oneoff server uses the SQLite database "${path}" (it holds ` +
      `"${lockPath}"); SQLite serves one server only: stop the other, or run several ` +
      `servers on PostgreSQL (--database postgres://..., see docs/install.md "Several servers")`,
  );
}
