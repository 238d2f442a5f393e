/**
 * Content-addressed blobs (slugs, uploads) under the server's data dir:
 * `<dir>/sha256/<first two hex>/<hex>`. A blob is streamed to `<dir>/tmp`
 * while it is hashed and only renamed into place once complete and
 * checked, so a reader never sees a partial blob.
 *
 * With PostgreSQL (`shared`), the database holds every blob, so that any
 * server serves any blob and losing a server loses none: `put` streams to
 * the database too and commits there before the file is renamed, and the
 * files are this server's cache. A blob not cached yet is filled from the
 * database as it is served (`_blob_fill.ts`); every read asks the database
 * first (one indexed row), so a blob deleted through another server is
 * never served from a cache again.
 * @module
 */

import { FileBatcher } from "../util/file_batcher.ts";
import { createHash } from "node:crypto";
import { Fill, followFill } from "./_blob_fill.ts";
import type { PostgresBlobs, PostgresUpload } from "./blob_postgres.ts";

const SHA256 = /^[0-9a-f]{64}$/;

/** A body refused because it is larger than the store was told to accept. */
export class BlobTooLargeError extends Error {
  /** The limit that was exceeded, in bytes. */
  readonly limit: number;

  constructor(limit: number) {
    super(`Blob is larger than the limit of ${limit} bytes`);
    this.name = "BlobTooLargeError";
    this.limit = limit;
  }
}

/** Options of `BlobStore.put`. */
export interface PutOptions {
  /** Refuse the body once it passes this many bytes. */
  maxBytes: number;
  /** Validates the complete temp file before it is stored; throwing refuses it. */
  check?: (path: string) => Promise<void>;
}

/** Where a stored blob is. */
export interface StoredBlob {
  sha256: string;
  size: number;
  path: string;
}

/** A blob to read: its size and its content. */
export interface BlobContent {
  size: number;
  body: ReadableStream<Uint8Array>;
}

/** Blobs on disk named by their sha256 (with `shared`: a cache of the database's). */
export class BlobStore {
  #dir: string;
  #shared: PostgresBlobs | null;
  #fills = new Map<string, Fill>();

  constructor(dir: string, options: { shared?: PostgresBlobs } = {}) {
    this.#dir = dir;
    this.#shared = options.shared ?? null;
  }

  /** Whether the blobs live in the database (the files being a cache). */
  get shared(): boolean {
    return this.#shared !== null;
  }

  /** Closes the database pool of a shared store. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#fills.values()].map((fill) => fill.done));
    await this.#shared?.close();
  }

  /**
   * Streams `body` to a temp file while hashing it, refusing it past
   * `maxBytes` (BlobTooLargeError); runs `check` on the complete file, then
   * moves it to its content address (the same content twice is fine).
   * Shared: the content also streams into the database, where it is
   * committed before the file is moved. Nothing is left on disk or in the
   * database when anything fails.
   */
  async put(body: ReadableStream<Uint8Array>, options: PutOptions): Promise<StoredBlob> {
    await Deno.mkdir(`${this.#dir}/tmp`, { recursive: true });
    const temp = `${this.#dir}/tmp/${crypto.randomUUID()}`;
    const reader = body.getReader();
    let file: Deno.FsFile | undefined;
    let upload: PostgresUpload | undefined;
    try {
      file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
      upload = await this.#shared?.upload();
      const hash = createHash("sha256");
      let size = 0;
      const batcher = new FileBatcher(file);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.length;
        if (size > options.maxBytes) throw new BlobTooLargeError(options.maxBytes);
        hash.update(value);
        batcher.push(value);
        await upload?.write(value);
      }
      batcher.flush();
      file.close();
      file = undefined;
      // PostgreSQL takes the last rows while the check reads the file.
      const settled = await Promise.allSettled([upload?.end(), options.check?.(temp)]);
      for (const result of settled) if (result.status === "rejected") throw result.reason;
      const sha256 = hash.digest("hex");
      // The database first: a cached file is one the database holds.
      await upload?.commit(sha256, size);
      upload = undefined;
      const path = this.path(sha256);
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      // Renaming over an existing copy is atomic and the content is the same.
      await Deno.rename(temp, path);
      return { sha256, size, path };
    } catch (error) {
      // Tells the sender to stop; it may already be closed or errored.
      await reader.cancel(error).catch(() => {});
      file?.close();
      await upload?.abort();
      await Deno.remove(temp).catch(() => {});
      throw error;
    } finally {
      reader.releaseLock();
    }
  }

  /** The path of a blob, whether or not it exists; throws for anything but 64 lowercase hex. */
  path(sha256: string): string {
    if (!SHA256.test(sha256)) throw new Error(`Invalid sha256 "${sha256}"`);
    return `${this.#dir}/sha256/${sha256.slice(0, 2)}/${sha256}`;
  }

  /** Whether the blob is stored. */
  async has(sha256: string): Promise<boolean> {
    return await this.size(sha256) !== null;
  }

  /** The size of a stored blob, or null when it is not stored. */
  async size(sha256: string): Promise<number | null> {
    const path = this.path(sha256);
    if (this.#shared) {
      const size = await this.#shared.size(sha256);
      if (size === null) await removeFile(path);
      return size;
    }
    try {
      const info = await Deno.stat(path);
      return info.isFile ? info.size : null;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
  }

  /**
   * Opens the blob for reading, or returns null when it is not stored
   * (shared: once it is in this server's cache; `read` starts sooner).
   */
  async open(sha256: string): Promise<Deno.FsFile | null> {
    const size = this.#shared ? await this.size(sha256) : 0;
    if (size === null) return null;
    const file = await openFile(this.path(sha256));
    if (file || !this.#shared) return file;
    await this.#fillUnlessCached(sha256, size)?.done;
    return await openFile(this.path(sha256));
  }

  /**
   * The blob's size and content, or null when it is not stored. Shared and
   * not cached yet: the content streams as the cache fills.
   */
  async read(sha256: string): Promise<BlobContent | null> {
    const size = this.#shared ? await this.size(sha256) : 0;
    if (size === null) return null;
    const file = await openFile(this.path(sha256));
    if (file) {
      try {
        return { size: (await file.stat()).size, body: file.readable };
      } catch (error) {
        file.close();
        throw error;
      }
    }
    if (!this.#shared) return null;
    const fill = this.#fillUnlessCached(sha256, size);
    // Cached while the file was looked for: read that.
    if (!fill) return await this.read(sha256);
    return { size, body: followFill(fill) };
  }

  /**
   * The fill in progress, or a new one; null when the blob reached the cache
   * while its caller looked for the file (a fill renames its file into place
   * before it is forgotten: either is there at any moment, or neither).
   */
  #fillUnlessCached(sha256: string, size: number): Fill | null {
    if (this.#fills.has(sha256)) return this.#fills.get(sha256)!;
    try {
      if (Deno.statSync(this.path(sha256)).isFile) return null;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return this.#fill(sha256, size);
  }

  // The fill of this blob in progress, or a new one.
  #fill(sha256: string, size: number): Fill {
    let fill = this.#fills.get(sha256);
    if (fill) return fill;
    const path = this.path(sha256);
    Deno.mkdirSync(`${this.#dir}/tmp`, { recursive: true });
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    const shared = this.#shared!;
    fill = new Fill((sha) => shared.read(sha), {
      sha256,
      size,
      path,
      temp: `${this.#dir}/tmp/${crypto.randomUUID()}`,
    });
    this.#fills.set(sha256, fill);
    fill.done.finally(() => this.#fills.delete(sha256)).catch(() => {});
    return fill;
  }

  /** Removes the blob; removing a blob that is not stored does nothing. */
  async remove(sha256: string): Promise<void> {
    const path = this.path(sha256);
    await this.#shared?.remove(sha256);
    await removeFile(path);
  }

  /**
   * Removes every stored blob not in `keep` whose file was last written
   * before `before` (epoch ms), and temp files older than that (left by a
   * crash mid-upload). The age is what protects a blob being uploaded or
   * deployed right now, before anything refers to it: storing the same
   * content again renames a new file into place, so its time is new too.
   * Shared: the database's blobs by the time they were (last) stored, and
   * this server's cached files of blobs the database no longer holds.
   * Returns how many blobs and how many bytes went.
   */
  async sweep(
    keep: ReadonlySet<string>,
    before: number,
  ): Promise<{ blobs: number; bytes: number }> {
    if (this.#shared) {
      const removed = await this.#shared.sweep(keep, new Date(before));
      await this.pruneCache(before);
      return removed;
    }
    const removed = { blobs: 0, bytes: 0 };
    for (const path of await listFiles(`${this.#dir}/sha256`, 2)) {
      const sha256 = path.slice(path.lastIndexOf("/") + 1);
      if (keep.has(sha256)) continue;
      const size = await removeIfOlder(path, before);
      if (size !== null) removed.blobs++, removed.bytes += size;
    }
    for (const path of await listFiles(`${this.#dir}/tmp`, 1)) await removeIfOlder(path, before);
    return removed;
  }

  /**
   * Shared: stores in the database every blob file of this data dir that it
   * does not hold yet (the blobs of a server that ran before blobs moved
   * into PostgreSQL), checking each file's content against its name first.
   * Called at start, before any read could take such a file for a stale
   * cache entry and remove it. Returns what it stored and what it skipped.
   */
  async importFiles(): Promise<{ blobs: number; bytes: number; skipped: string[] }> {
    const result = { blobs: 0, bytes: 0, skipped: [] as string[] };
    if (!this.#shared) return result;
    const paths = await listFiles(`${this.#dir}/sha256`, 2);
    for (let i = 0; i < paths.length; i += 1000) {
      const batch = paths.slice(i, i + 1000);
      const shas = batch.map((path) => path.slice(path.lastIndexOf("/") + 1));
      const stored = await this.#shared.existing(shas.filter((sha) => SHA256.test(sha)));
      for (const [j, path] of batch.entries()) {
        const sha256 = shas[j]!;
        if (stored.has(sha256)) continue;
        const size = SHA256.test(sha256) ? await this.#importFile(path, sha256) : null;
        if (size === null) result.skipped.push(path);
        else result.blobs++, result.bytes += size;
      }
    }
    return result;
  }

  // Streams one file into the database; null when its content is not its name.
  async #importFile(path: string, sha256: string): Promise<number | null> {
    const upload = await this.#shared!.upload();
    try {
      // Its readable closes the file at the end, or when the loop leaves early.
      const file = await Deno.open(path, { read: true });
      const hash = createHash("sha256");
      let size = 0;
      for await (const chunk of file.readable) {
        hash.update(chunk);
        size += chunk.length;
        await upload.write(chunk);
      }
      await upload.end();
      if (hash.digest("hex") !== sha256) {
        await upload.abort();
        return null;
      }
      await upload.commit(sha256, size);
      return size;
    } catch (error) {
      await upload.abort();
      throw error;
    }
  }

  /**
   * Shared: removes the cached files of blobs the database no longer holds
   * (deleted through any server), and temp files older than `before`
   * (epoch ms). Each server calls it for its own cache.
   */
  async pruneCache(before: number): Promise<number> {
    if (!this.#shared) return 0;
    const paths = await listFiles(`${this.#dir}/sha256`, 2);
    let removed = 0;
    for (let i = 0; i < paths.length; i += 1000) {
      const batch = paths.slice(i, i + 1000);
      const shas = batch.map((path) => path.slice(path.lastIndexOf("/") + 1));
      const stored = await this.#shared.existing(shas.filter((sha) => SHA256.test(sha)));
      for (const [j, path] of batch.entries()) {
        if (stored.has(shas[j]!)) continue;
        await removeFile(path);
        removed++;
      }
    }
    for (const path of await listFiles(`${this.#dir}/tmp`, 1)) await removeIfOlder(path, before);
    return removed;
  }
}

async function openFile(path: string): Promise<Deno.FsFile | null> {
  try {
    return await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

async function removeFile(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

// The files `depth` directory levels below `dir` (none when it does not exist).
async function listFiles(dir: string, depth: number): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (depth > 1 && entry.isDirectory) found.push(...await listFiles(path, depth - 1));
      else if (depth === 1 && entry.isFile) found.push(path);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found;
}

// Removes a file last modified before `before`; its size, or null when kept or gone.
async function removeIfOlder(path: string, before: number): Promise<number | null> {
  try {
    const info = await Deno.stat(path);
    if (info.mtime === null || info.mtime.getTime() >= before) return null;
    await Deno.remove(path);
    return info.size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}
