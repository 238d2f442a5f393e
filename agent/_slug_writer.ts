/**
 * Writes the entries node-tar's Parser reads, after the entry policy has
 * admitted them, with Deno's own file operations. node-tar's Unpack did
 * this through Node's fs emulation at some ten operations per file: a
 * 100 MiB slug of 8,000 small files took 10 × `tar xzf`. Here a small file
 * is one synchronous write (open, write, close: tens of microseconds, less
 * than an async operation's round trip to the thread pool) plus its mtime;
 * a large one streams with async writes, so the agent's loop never waits
 * long. Operations on one path keep the archive's order.
 * @module
 */
import { DIRECTORY_MODE } from "../protocol/slug_policy.ts";

/** Files up to this size are read whole and written in one operation. */
const WHOLE_FILE_BYTES = 1 << 20;
/** Operations started and not yet finished, at most (large files stream in the background). */
const WRITES_IN_FLIGHT = 32;

/** The parts of node-tar's ReadEntry the writer uses (an async iterable of its data). */
export interface TarEntry extends AsyncIterable<Uint8Array> {
  path: string;
  type: string;
  size: number;
  mode?: number | undefined;
  mtime?: Date | undefined;
  linkpath?: string | undefined;
}

/** An entry that could not be written for a reason of the slug's own (not the host's). */
export class EntryWriteError extends Error {}

/** Failures of the machine rather than of the slug: passed on unchanged, never blamed on the slug. */
const HOST_ERRORS = new Set(["ENOSPC", "EDQUOT", "EMFILE", "ENFILE", "EIO", "EROFS", "EACCES"]);

/** The relative path of a tar entry, as the policy split it ("" for the root). */
function relative(path: string): string {
  return path.split("/").filter((part) => part !== "" && part !== ".").join("/");
}

function parentOf(rel: string): string {
  const slash = rel.lastIndexOf("/");
  return slash === -1 ? "" : rel.slice(0, slash);
}

/** Writes admitted entries under `root`; `done()` waits for every write. */
export class TreeWriter {
  #root: string;
  #owner: { uid: number; gid: number } | undefined;
  /** Directories made (or being made), by relative path. */
  #dirs = new Map<string, Promise<void>>([["", Promise.resolve()]]);
  /** The last operation on each path, so that a later entry for it waits. */
  #last = new Map<string, Promise<void>>();
  #inFlight = new Set<Promise<void>>();
  #failure: Error | undefined;

  /** `owner`: chown every entry to it (only when it differs from the agent's own ids). */
  constructor(root: string, owner: { uid: number; gid: number } | undefined) {
    this.#root = root;
    this.#owner = owner;
  }

  /** The first failure of a write, if any. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Reads `entry` (already admitted) and writes it; resolves once its data is read. */
  async add(entry: TarEntry): Promise<void> {
    while (this.#inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(this.#inFlight);
    const rel = relative(entry.path);
    if (entry.type === "File" || entry.type === "OldFile" || entry.type === "ContiguousFile") {
      if (entry.size <= WHOLE_FILE_BYTES) {
        const data = await readAll(entry);
        this.#start(rel, (existed) => this.#writeFile(rel, existed, data, entry));
      } else {
        // Large files stream: their data is never all in memory.
        await this.#start(rel, (existed) => this.#streamFile(rel, existed, entry));
      }
      return;
    }
    await drain(entry);
    if (rel === "") return;
    if (entry.type === "Directory" || entry.type === "GNUDumpDir") {
      this.#mkdirs(rel, true);
    } else if (entry.type === "SymbolicLink") {
      this.#start(rel, (existed) => this.#symlink(rel, existed, entry.linkpath ?? ""));
    } else if (entry.type === "Link") {
      const target = relative(entry.linkpath ?? "");
      const before = this.#last.get(target) ?? Promise.resolve();
      this.#start(rel, async (existed) => {
        await before;
        this.#replace(rel, existed);
        Deno.linkSync(this.#abs(target), this.#abs(rel));
      });
    }
  }

  /** Waits for every write started; throws the first failure. */
  async done(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
    if (this.#failure) throw this.#failure;
  }

  #abs(rel: string): string {
    return rel === "" ? this.#root : `${this.#root}/${rel}`;
  }

  /** Keeps `op` among the writes in flight; its failure is kept, not thrown. */
  #track(rel: string, op: Promise<void>): Promise<void> {
    const run = op.catch((error) => {
      this.#failure ??= slugError(rel, error);
    });
    this.#last.set(rel, run);
    this.#inFlight.add(run);
    run.finally(() => this.#inFlight.delete(run));
    return run;
  }

  /**
   * Runs `op` after the previous operation on `rel` (`existed`: an earlier
   * entry wrote that path) and once its parent directory is made.
   */
  #start(rel: string, op: (existed: boolean) => void | Promise<void>): Promise<void> {
    const before = this.#last.get(rel);
    // A file, link or symlink replaces whatever was there, a directory too.
    this.#dirs.delete(rel);
    return this.#track(
      rel,
      (async () => {
        await before;
        if (this.#failure) return;
        await this.#mkdirs(parentOf(rel), false);
        await op(before !== undefined);
      })(),
    );
  }

  /**
   * Makes directory `rel` and its parents, once each, after what an earlier
   * entry wrote there. `replace` (a directory entry of the archive): a
   * non-directory there goes first; an implied parent never replaces.
   */
  #mkdirs(rel: string, replace: boolean): Promise<void> {
    const made = this.#dirs.get(rel);
    if (made !== undefined) return made;
    const before = this.#last.get(rel);
    const run = this.#track(
      rel,
      (async () => {
        await before;
        if (this.#failure) return;
        await this.#mkdirs(parentOf(rel), false);
        const path = this.#abs(rel);
        if (replace && before !== undefined) {
          const info = lstatOrUndefined(path);
          if (info !== undefined && !info.isDirectory) Deno.removeSync(path);
        }
        try {
          Deno.mkdirSync(path, { mode: DIRECTORY_MODE });
        } catch (error) {
          if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        }
        this.#chown(rel);
      })(),
    );
    this.#dirs.set(rel, run);
    return run;
  }

  /** A later entry for a path replaces what an earlier one wrote (node-tar's `unlink`). */
  #replace(rel: string, existed: boolean): void {
    if (!existed) return;
    try {
      Deno.removeSync(this.#abs(rel));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  #writeFile(rel: string, existed: boolean, data: Uint8Array, entry: TarEntry): void {
    this.#replace(rel, existed);
    const path = this.#abs(rel);
    Deno.writeFileSync(path, data, { mode: entry.mode ?? 0o644, createNew: true });
    this.#finish(rel, entry);
  }

  async #streamFile(rel: string, existed: boolean, entry: TarEntry): Promise<void> {
    this.#replace(rel, existed);
    const file = await Deno.open(this.#abs(rel), {
      write: true,
      createNew: true,
      mode: entry.mode ?? 0o644,
    });
    try {
      for await (const chunk of entry) {
        for (let done = 0; done < chunk.length;) {
          done += await file.write(chunk.subarray(done));
        }
      }
    } finally {
      file.close();
    }
    this.#finish(rel, entry);
  }

  async #symlink(rel: string, existed: boolean, target: string): Promise<void> {
    this.#replace(rel, existed);
    Deno.symlinkSync(target, this.#abs(rel));
    if (this.#owner) {
      // Deno has no lchown; node:fs is loaded only when a symlink needs one.
      const { lchown } = await import("node:fs/promises");
      await lchown(this.#abs(rel), this.#owner.uid, this.#owner.gid);
    }
  }

  /** The archive's mtime (tools such as Python compare it) and the owner. */
  #finish(rel: string, entry: TarEntry): void {
    if (entry.mtime) Deno.utimeSync(this.#abs(rel), entry.mtime, entry.mtime);
    this.#chown(rel);
  }

  #chown(rel: string): void {
    if (this.#owner) Deno.chownSync(this.#abs(rel), this.#owner.uid, this.#owner.gid);
  }
}

/** An error of the host passes unchanged; any other is the entry's own. */
function slugError(rel: string, error: unknown): Error {
  const code = (error as { code?: unknown }).code;
  if (!(error instanceof Error) || (typeof code === "string" && HOST_ERRORS.has(code))) {
    return error instanceof Error ? error : new Error(String(error));
  }
  return new EntryWriteError(`entry "${rel}" could not be extracted (${error.message})`, {
    cause: error,
  });
}

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch {
    return undefined;
  }
}

async function readAll(entry: TarEntry): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of entry) chunks.push(chunk), size += chunk.length;
  if (chunks.length === 1) return chunks[0]!;
  const data = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) data.set(chunk, at), at += chunk.length;
  return data;
}

async function drain(entry: TarEntry): Promise<void> {
  for await (const _ of entry) { /* no data is kept for entries without any */ }
}
