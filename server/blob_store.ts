/**
 * Content-addressed blobs (slugs, uploads) under the server's data dir:
 * `<dir>/sha256/<first two hex>/<hex>`. A blob is streamed to `<dir>/tmp`
 * while it is hashed and only renamed into place once complete and
 * checked, so a reader never sees a partial blob.
 * @module
 */

import { FileBatcher } from "../util/file_batcher.ts";
import { createHash } from "node:crypto";

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

/** Blobs on disk named by their sha256. */
export class BlobStore {
  #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Streams `body` to a temp file while hashing it, refusing it past
   * `maxBytes` (BlobTooLargeError); runs `check` on the complete file, then
   * moves it to its content address (the same content twice is fine).
   * Nothing is left on disk when anything fails.
   */
  async put(body: ReadableStream<Uint8Array>, options: PutOptions): Promise<StoredBlob> {
    await Deno.mkdir(`${this.#dir}/tmp`, { recursive: true });
    const temp = `${this.#dir}/tmp/${crypto.randomUUID()}`;
    const reader = body.getReader();
    let file: Deno.FsFile | undefined;
    try {
      file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
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
      }
      batcher.flush();
      file.close();
      file = undefined;
      await options.check?.(temp);
      const sha256 = hash.digest("hex");
      const path = this.path(sha256);
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      // Renaming over an existing copy is atomic and the content is the same.
      await Deno.rename(temp, path);
      return { sha256, size, path };
    } catch (error) {
      // Tells the sender to stop; it may already be closed or errored.
      await reader.cancel(error).catch(() => {});
      file?.close();
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
    try {
      return (await Deno.stat(this.path(sha256))).isFile;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      throw error;
    }
  }

  /** Opens the blob for reading, or returns null when it is not stored. */
  async open(sha256: string): Promise<Deno.FsFile | null> {
    try {
      return await Deno.open(this.path(sha256), { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
  }

  /** Removes the blob; removing a blob that is not stored does nothing. */
  async remove(sha256: string): Promise<void> {
    try {
      await Deno.remove(this.path(sha256));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /**
   * Removes every stored blob not in `keep` whose file was last written
   * before `before` (epoch ms), and temp files older than that (left by a
   * crash mid-upload). The age is what protects a blob being uploaded or
   * deployed right now, before anything refers to it: storing the same
   * content again renames a new file into place, so its time is new too.
   * Returns how many blobs and how many bytes went.
   */
  async sweep(
    keep: ReadonlySet<string>,
    before: number,
  ): Promise<{ blobs: number; bytes: number }> {
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
