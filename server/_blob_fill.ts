/**
 * Filling a server's blob cache from PostgreSQL while the blob is served:
 * one fill per blob writes a temp file (hashed as it goes) and renames it
 * into place once size and sha256 match; every request for that blob
 * meanwhile reads the temp file as far as it is written, so the first
 * byte goes out before the last one has arrived and a blob asked for by
 * ten agents at once is read from the database once.
 * @module
 */
import { createHash } from "node:crypto";
import type { BlobRead } from "./blob_postgres.ts";

/** Where the content comes from (PostgresBlobs.read). */
export type BlobSource = (sha256: string) => Promise<BlobRead | null>;

/** One cache fill in progress. */
export class Fill {
  /** Bytes in the temp file so far. */
  written = 0;
  /** Set once the blob is in place at its path. */
  finished = false;
  /** Set when the fill failed; the temp file is gone. */
  error: Error | null = null;
  /** Resolves once the blob is in place; rejects with `error`. */
  readonly done: Promise<void>;
  readonly temp: string;
  readonly path: string;
  readonly size: number;
  #wake = Promise.withResolvers<void>();

  /** Creates the temp file now (so that readers can open it at once) and starts copying. */
  constructor(
    source: BlobSource,
    blob: { sha256: string; size: number; path: string; temp: string },
  ) {
    this.temp = blob.temp;
    this.path = blob.path;
    this.size = blob.size;
    const file = Deno.openSync(this.temp, { write: true, createNew: true, mode: 0o600 });
    this.done = this.#copy(source, blob.sha256, file);
    // Readers await `done` or watch `error`; a fill nobody awaits is no unhandled rejection.
    this.done.catch(() => {});
  }

  /** Resolves at the next progress (more bytes, the end or a failure). */
  progress(): Promise<void> {
    return this.#wake.promise;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = Promise.withResolvers<void>();
    wake.resolve();
  }

  async #copy(source: BlobSource, sha256: string, file: Deno.FsFile): Promise<void> {
    let open = true;
    try {
      const found = await source(sha256);
      if (!found) throw new Error(`Cannot fetch blob "${sha256}": it was deleted meanwhile`);
      const hash = createHash("sha256");
      let over = false;
      await found.copy((piece) => {
        if (over || this.written + piece.length > this.size) return void (over = true);
        hash.update(piece);
        let done = 0;
        while (done < piece.length) done += file.writeSync(piece.subarray(done));
        this.written += piece.length;
        this.#notify();
      });
      if (over || this.written !== this.size || hash.digest("hex") !== sha256) {
        throw new Error(
          `Cannot fetch blob "${sha256}": the database's copy does not match its size and hash`,
        );
      }
      file.close();
      open = false;
      await Deno.rename(this.temp, this.path);
      this.finished = true;
    } catch (error) {
      this.error = error instanceof Error ? error : new Error(String(error));
      if (open) file.close();
      await Deno.remove(this.temp).catch(() => {});
      throw this.error;
    } finally {
      this.#notify();
    }
  }
}

const READ_BYTES = 256 * 1024;

/** The blob as a stream that follows the fill: what is written so far, then the rest as it comes. */
export function followFill(fill: Fill): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | undefined;
  let position = 0;
  const close = () => {
    file?.close();
    file = undefined;
  };
  return new ReadableStream<Uint8Array>({
    async start() {
      file = await openEither(fill);
    },
    async pull(controller) {
      try {
        for (;;) {
          if (position >= fill.size) {
            close();
            controller.close();
            return;
          }
          if (fill.error) throw fill.error;
          const available = (fill.finished ? fill.size : fill.written) - position;
          if (available > 0) {
            const buffer = new Uint8Array(Math.min(available, READ_BYTES));
            const n = await file!.read(buffer);
            if (n === null) throw new Error(`Cannot read blob "${fill.path}": it ended early`);
            position += n;
            controller.enqueue(buffer.subarray(0, n));
            return;
          }
          await fill.progress();
        }
      } catch (error) {
        close();
        throw error;
      }
    },
    cancel: close,
  }, { highWaterMark: 0 });
}

// The temp file while the fill runs, the blob once it is renamed into place.
async function openEither(fill: Fill): Promise<Deno.FsFile> {
  if (!fill.finished) {
    try {
      return await Deno.open(fill.temp, { read: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      if (fill.error) throw fill.error;
    }
  }
  return await Deno.open(fill.path, { read: true });
}
