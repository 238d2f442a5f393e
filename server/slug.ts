/**
 * Validation of an uploaded slug: gzip data holding a tar archive whose root
 * is the app, with an optional Procfile. Read as a stream, so a slug of any
 * size costs constant memory.
 * @module
 */

import { createReadStream } from "node:fs";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import * as tar from "tar";
import { EntryPolicy } from "../protocol/slug_policy.ts";

/** A slug the server refuses; the message says why and is meant for the user. */
export class SlugError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SlugError";
  }
}

/** A slug whose uncompressed content passes the limit; inflating stopped there. */
export class SlugTooLargeError extends SlugError {
  /** The limit, in uncompressed bytes. */
  readonly limit: number;

  constructor(limit: number) {
    super(`Slug is larger than ${limit} bytes uncompressed`);
    this.name = "SlugTooLargeError";
    this.limit = limit;
  }
}

/** What `inspectSlug` found. */
export interface SlugInfo {
  /** Process types from the Procfile, `{}` when there is none. */
  processTypes: Record<string, string>;
  /** Number of entries in the archive. */
  entries: number;
}

/** Options of `inspectSlug`. */
export interface InspectOptions {
  /** Refuse a slug whose uncompressed tar is larger; unlimited by default. */
  maxBytes?: number;
}

const MAX_PROCFILE_BYTES = 64 * 1024;
const PROCFILE_LINE = /^([A-Za-z0-9_-]+):\s*(.*)$/;

/**
 * Parses a Procfile: `name: command` lines, `#` comments and blank lines
 * ignored. Throws SlugError naming the line of a malformed or repeated one.
 */
export function parseProcfile(text: string): Record<string, string> {
  const types = new Map<string, string>();
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = PROCFILE_LINE.exec(line);
    const [name, command] = [match?.[1], match?.[2]?.trim()];
    if (name === undefined || command === undefined) {
      throw new SlugError(`Procfile line ${index + 1} is not "name: command": "${line}"`);
    }
    if (command === "") {
      throw new SlugError(`Procfile line ${index + 1} has no command for "${name}"`);
    }
    if (types.has(name)) throw new SlugError(`Procfile line ${index + 1} repeats "${name}"`);
    types.set(name, command);
  }
  // fromEntries defines own properties: a type named "__proto__" stays a plain key.
  return Object.fromEntries(types);
}

async function hasGzipMagic(path: string): Promise<boolean> {
  using file = await Deno.open(path, { read: true });
  const head = new Uint8Array(2);
  let filled = 0;
  while (filled < head.length) {
    const read = await file.read(head.subarray(filled));
    if (read === null) return false;
    filled += read;
  }
  return head[0] === 0x1f && head[1] === 0x8b;
}

/** Lists the uncompressed tar written into it and keeps the root Procfile. */
class Lister {
  #parser: tar.Parser;
  #maxBytes: number;
  #bytes = 0;
  #sawEof = false;
  /** The first bytes, held back until they show whether node-tar would sniff gzip. */
  #head: Buffer | undefined = Buffer.alloc(0);
  #procfile: Uint8Array[] | undefined;
  #policy: EntryPolicy;
  failure: Error | undefined;
  entries = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
    // The size cap is enforced on the bytes themselves, below.
    this.#policy = new EntryPolicy(Number.POSITIVE_INFINITY);
    this.#parser = new tar.Parser({
      strict: true,
      brotli: false,
      zstd: false,
      onReadEntry: (entry) => this.#onEntry(entry),
    });
    this.#parser.on("error", (error: Error) => this.failure ??= error);
    this.#parser.on("eof", () => this.#sawEof = true);
  }

  /** The Procfile's bytes, if the archive has one at its root. */
  procfile(): Uint8Array | undefined {
    return this.#procfile === undefined ? undefined : Buffer.concat(this.#procfile);
  }

  /** The Writable end of the pipeline. */
  writable(): Writable {
    return new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.#write(chunk).then(() => done(), done);
      },
      final: (done) => {
        this.#parser.once("end", () => done(this.failure ?? null));
        this.#parser.end();
      },
    });
  }

  async #write(chunk: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.#bytes += chunk.length;
    // Thrown from the write: the pipeline stops inflating, a gzip bomb
    // costs at most one chunk past the cap.
    if (this.#bytes > this.#maxBytes) throw new SlugTooLargeError(this.#maxBytes);
    // Past the end-of-archive marker node-tar would only buffer what it is given.
    if (this.#sawEof) return;
    if (this.#head !== undefined) {
      chunk = Buffer.concat([this.#head, chunk]);
      if (chunk.length < 2) {
        this.#head = chunk;
        return;
      }
      this.#head = undefined;
      // node-tar would gunzip a second layer itself, and the agents refuse it.
      if (chunk[0] === 0x1f && chunk[1] === 0x8b) {
        throw new SlugError("Slug is gzip data inside gzip data, not a tar archive");
      }
    }
    if (!this.#parser.write(chunk)) {
      await new Promise((resolve) => this.#parser.once("drain", resolve));
    }
    if (this.failure !== undefined) throw this.failure;
  }

  #onEntry(entry: tar.ReadEntry): void {
    this.entries++;
    // The agents' rules: refused here, a bad slug never becomes a release.
    const problem = this.#policy.check(entry);
    if (problem !== undefined) {
      this.failure ??= new SlugError(`Slug is refused: ${problem}`);
      entry.resume();
      return;
    }
    const path = entry.path.split("/").filter((part) => part !== "" && part !== ".").join("/");
    if (path !== "Procfile") {
      entry.resume();
      return;
    }
    if (entry.type !== "File" && entry.type !== "OldFile") {
      this.failure ??= new SlugError(`Slug has a Procfile that is not a regular file`);
    } else if (entry.size > MAX_PROCFILE_BYTES) {
      this.failure ??= new SlugError(`Slug has a Procfile larger than 64 KiB`);
    } else {
      const chunks: Uint8Array[] = [];
      this.#procfile = chunks;
      entry.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      return;
    }
    entry.resume();
  }
}

/** Turns a failure of the stream into a SlugError, when it is the slug's fault. */
function slugErrorOf(error: unknown, lister: Lister): unknown {
  if (error instanceof SlugError || !(error instanceof Error)) return error;
  const { code, tarCode } = error as { code?: unknown; tarCode?: unknown };
  if (typeof code === "string" && code.startsWith("Z_")) {
    return new SlugError(`Slug is corrupt gzip data (${error.message})`, { cause: error });
  }
  if (typeof tarCode !== "string") return error;
  if (lister.entries === 0) return new SlugError("Slug is not a tar archive", { cause: error });
  return new SlugError(`Slug is not a valid tar archive (${error.message})`, { cause: error });
}

/**
 * Reads the tar.gz at `path`: throws SlugError with a clear message when it
 * is not gzip, not a tar inside, or has a bad Procfile; returns the parsed
 * process types (`{}` when there is no Procfile).
 */
export async function inspectSlug(path: string, options: InspectOptions = {}): Promise<SlugInfo> {
  if (!await hasGzipMagic(path)) throw new SlugError("Slug is not gzip data");
  const lister = new Lister(options.maxBytes ?? Number.POSITIVE_INFINITY);
  try {
    await pipeline(createReadStream(path), createGunzip(), lister.writable());
  } catch (error) {
    throw slugErrorOf(error, lister);
  }
  const procfile = lister.procfile();
  if (procfile === undefined) return { processTypes: {}, entries: lister.entries };
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(procfile);
  } catch (error) {
    throw new SlugError("Slug has a Procfile that is not UTF-8 text", { cause: error });
  }
  return { processTypes: parseProcfile(text), entries: lister.entries };
}
