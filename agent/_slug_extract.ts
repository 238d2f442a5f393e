/**
 * One pass from the downloaded bytes to an extracted tree: hash, gunzip,
 * judge every entry, write it with node-tar, then make every mode exact.
 * Nothing here decides where the tree ends up; the cache renames it.
 * @module
 */

import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import type { Writable } from "node:stream";
import type { Parser, ReadEntry } from "tar";
import { DIRECTORY_MODE, EntryPolicy, safeFileMode } from "../protocol/slug_policy.ts";
import { EntryWriteError, TreeWriter } from "./_slug_writer.ts";

/** A slug the agent refuses to extract; `reason` says which entry and why. */
export class SlugRejectedError extends Error {
  /** The slug's sha256. */
  readonly sha256: string;
  /** Why, without the slug's name. */
  readonly reason: string;

  constructor(sha256: string, reason: string, options?: ErrorOptions) {
    super(`Cannot extract slug "${sha256}": ${reason}`, options);
    this.name = "SlugRejectedError";
    this.sha256 = sha256;
    this.reason = reason;
  }
}

/** A refusal found while extracting, before the slug's name is attached. */
class Refusal extends Error {}

/** Turns what went wrong into the reason a slug is refused, if it is the slug's fault. */
function reasonOf(error: unknown): string | undefined {
  if (error instanceof Refusal || error instanceof EntryWriteError) return error.message;
  if (!(error instanceof Error)) return undefined;
  const { code, tarCode } = error as { code?: unknown; tarCode?: unknown };
  if (typeof code === "string" && code.startsWith("Z_")) {
    return `not valid gzip data (${error.message})`;
  }
  if (typeof tarCode === "string") return `not a valid tar archive (${error.message})`;
  return undefined;
}

/** Feeds node-tar's Parser from a node Writable, with the size cap and the entry policy. */
class TarSink {
  #parser: Parser;
  #writer: TreeWriter;
  #policy: EntryPolicy;
  #maxBytes: number;
  #failure: Error | undefined;
  #wake: Array<() => void> = [];
  #sawEof = false;
  /** The first bytes, held back until they show whether node-tar would sniff gzip. */
  #head: Uint8Array | undefined = new Uint8Array();
  #ended: Promise<void>;
  /** Uncompressed tar bytes seen, the size charged for this slug. */
  bytes = 0;

  constructor(
    tar: typeof import("tar"),
    root: string,
    maxBytes: number,
    owner: { uid: number; gid: number } | undefined,
  ) {
    this.#maxBytes = maxBytes;
    this.#policy = new EntryPolicy(maxBytes);
    // Owned by the configured owner (the agent's uid by default), never by the archive's ids.
    this.#writer = new TreeWriter(root, owner);
    this.#parser = new tar.Parser({
      strict: true,
      brotli: false,
      zstd: false,
      onReadEntry: (entry) => this.#entry(entry),
    });
    this.#parser.on("error", (error: Error) => this.#fail(error));
    this.#parser.on("eof", () => this.#sawEof = true);
    this.#ended = new Promise((resolve) => this.#parser.once("end", () => resolve()));
  }

  /** The Writable end of the pipeline, made with node:stream's `Writable`. */
  writable(Node: typeof Writable): Writable {
    return new Node({
      write: (chunk: Uint8Array, _encoding, done) => {
        this.#write(chunk).then(() => done(), done);
      },
      final: (done) => {
        this.settle().then(() => done(this.#failure ?? null), done);
      },
    });
  }

  /** Ends the Parser and waits until no file operation is left in flight. */
  async settle(): Promise<void> {
    this.#parser.end();
    // After a failure the parser may never end (its input stopped): only the writes matter then.
    if (this.#failure === undefined) await Promise.race([this.#ended, this.#failed()]);
    await this.#writer.done().catch((error) => this.#fail(error));
  }

  #failed(): Promise<void> {
    return new Promise((resolve) => this.#wake.push(resolve));
  }

  #entry(entry: ReadEntry): void {
    if (this.#failure !== undefined || !this.#admit(entry)) {
      entry.resume();
      return;
    }
    this.#writer.add(entry).catch((error) => this.#fail(error));
  }

  #admit(entry: ReadEntry): boolean {
    const reason = this.#policy.check(entry);
    if (reason === undefined) return true;
    this.#fail(new Refusal(reason));
    return false;
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const wake of this.#wake.splice(0)) wake();
  }

  async #write(chunk: Uint8Array): Promise<void> {
    if (this.#writer.failure !== undefined) this.#fail(this.#writer.failure);
    if (this.#failure !== undefined) throw this.#failure;
    this.bytes += chunk.length;
    if (this.bytes > this.#maxBytes) {
      this.#fail(new Refusal(`content is larger than the limit of ${this.#maxBytes} bytes`));
      throw this.#failure;
    }
    // Past the end-of-archive marker node-tar would only buffer what it is given.
    if (this.#sawEof) return;
    if (this.#head !== undefined) {
      const head = Buffer.concat([this.#head, chunk]);
      if (head.length < 2) {
        this.#head = head;
        return;
      }
      this.#head = undefined;
      // node-tar would gunzip a second layer itself, past our byte count, and
      // its abort on a bad second layer never lets the Parser end.
      if (head[0] === 0x1f && head[1] === 0x8b) {
        this.#fail(new Refusal("content is gzip data inside gzip data, not a tar archive"));
        throw this.#failure;
      }
      chunk = head;
    }
    if (!this.#parser.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length))) {
      await new Promise<void>((resolve) => {
        this.#wake.push(resolve);
        this.#parser.once("drain", resolve);
      });
    }
    if (this.#failure !== undefined) throw this.#failure;
  }
}

/** Walks the extracted tree: exact modes whatever the umask, and only files, dirs, symlinks. */
async function normalizeTree(dir: string, relative = ""): Promise<void> {
  for await (const item of Deno.readDir(dir)) {
    const path = `${dir}/${item.name}`;
    const name = relative === "" ? item.name : `${relative}/${item.name}`;
    if (item.isSymlink) continue;
    const info = await Deno.lstat(path);
    const mode = (info.mode ?? 0) & 0o7777;
    if (info.isDirectory) {
      if (mode !== DIRECTORY_MODE) await Deno.chmod(path, DIRECTORY_MODE);
      await normalizeTree(path, name);
    } else if (info.isFile) {
      if (mode !== safeFileMode(mode)) await Deno.chmod(path, safeFileMode(mode));
    } else {
      throw new Refusal(`entry "${name}" is not a file, directory or symlink`);
    }
  }
}

/**
 * node-tar and the Node modules of the pipeline, loaded with the first slug
 * to extract: an idle agent would otherwise hold some 5 MiB more resident.
 */
async function modules() {
  const [crypto, stream, promises, zlib, tar] = await Promise.all([
    import("node:crypto"),
    import("node:stream"),
    import("node:stream/promises"),
    import("node:zlib"),
    import("tar"),
  ]);
  return {
    createHash: crypto.createHash,
    Readable: stream.Readable,
    Transform: stream.Transform,
    Writable: stream.Writable,
    pipeline: promises.pipeline,
    createGunzip: zlib.createGunzip,
    tar,
  };
}

/** What `extractSlug` needs besides the bytes and the target. */
export interface ExtractOptions {
  /** The sha256 the downloaded bytes must have. */
  sha256: string;
  /** Cap on the uncompressed tar size, and on the sum of its entries. */
  maxBytes: number;
  /** Who owns the extracted files; the agent's uid and gid by default. */
  owner?: { uid: number; gid: number };
}

/**
 * Extracts the gzip tar `body` into the existing empty directory `root`,
 * returning the uncompressed size charged for it. Throws SlugRejectedError
 * for anything wrong with the slug (the caller removes `root`); other
 * failures (network, disk) propagate unchanged.
 */
export async function extractSlug(
  body: ReadableStream<Uint8Array>,
  root: string,
  options: ExtractOptions,
): Promise<number> {
  const { createHash, Readable, Transform, Writable, pipeline, createGunzip, tar } =
    await modules();
  const hash = createHash("sha256");
  const owner = options.owner ?? { uid: Deno.uid() ?? 0, gid: Deno.gid() ?? 0 };
  // Files are the agent's own as they are made: a chown each only for another owner.
  const foreign = owner.uid !== Deno.uid() || owner.gid !== Deno.gid();
  const sink = new TarSink(
    tar,
    root,
    options.maxBytes,
    foreign ? owner : undefined,
  );
  try {
    await pipeline(
      Readable.fromWeb(body as NodeReadableStream<Uint8Array>),
      new Transform({
        transform(chunk: Uint8Array, _encoding, done) {
          hash.update(chunk);
          done(null, chunk);
        },
      }),
      createGunzip(),
      sink.writable(Writable),
    );
    const actual = hash.digest("hex");
    if (actual !== options.sha256) throw new Refusal(`the download has sha256 "${actual}"`);
    await Deno.chmod(root, DIRECTORY_MODE);
    // Every entry was made with its exact mode; only a umask that takes away
    // some of 0o755 makes them differ, and then one more pass sets them.
    if ((Deno.umask() & 0o755) !== 0) await normalizeTree(root);
    if (options.owner) await Deno.chown(root, owner.uid, owner.gid);
  } catch (error) {
    await sink.settle();
    const reason = reasonOf(error);
    if (reason === undefined) throw error;
    throw new SlugRejectedError(options.sha256, reason, { cause: error });
  }
  return sink.bytes;
}
