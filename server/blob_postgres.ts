/**
 * Blobs in PostgreSQL, for several servers on one database: a `blobs` row
 * (sha256, size) and the content as `blob_chunks` rows of at most 1 MiB.
 * Both directions use binary COPY: measured with postgres.js on 200 MiB,
 * a COPY wrote in 1.5 s and read in 0.6 s, where one bytea parameter or
 * result per chunk (which postgres.js sends and parses as hex) took 5–7 s
 * and 4–5 s, pipelined or not, and large objects (`lo_put`/`lo_get`, also
 * bytea) the same. A blob's chunks and its row are written in one
 * transaction and read by one COPY (one snapshot): a reader sees a whole
 * blob or none, and a crashed upload leaves nothing behind.
 * @module
 */
import type { Writable } from "node:stream";
import postgres from "postgres";

/** A stored blob's size, and a way to copy its content into a synchronous sink. */
export interface BlobRead {
  size: number;
  /** Calls `sink` with the content in order; resolves at the end, rejects on a failure. */
  copy(sink: (bytes: Uint8Array) => void): Promise<void>;
}

/** Bytes per `blob_chunks` row. */
export const CHUNK_BYTES = 1024 * 1024;

const int8 = {
  to: 20,
  from: [20],
  serialize: (value: number) => String(value),
  parse: (value: string) => Number(value),
};

type Sql = postgres.Sql<{ int8: number }>;
type Reserved = postgres.ReservedSql<{ int8: number }>;

// The binary COPY header: signature, flags, header extension length.
const COPY_SIGNATURE = new Uint8Array([
  0x50,
  0x47,
  0x43,
  0x4f,
  0x50,
  0x59,
  0x0a,
  0xff,
  0x0d,
  0x0a,
  0,
]);
const COPY_HEADER = new Uint8Array([...COPY_SIGNATURE, 0, 0, 0, 0, 0, 0, 0, 0]);
const COPY_TRAILER = new Uint8Array([0xff, 0xff]);
// A row's field count and the lengths and values of data_id and seq, and data's length.
const ROW_HEADER_BYTES = 2 + 4 + 8 + 4 + 4 + 4;
/** Bytes of an upload handed to the connection but not yet to its socket, at most. */
const IN_FLIGHT_BYTES = 8 * CHUNK_BYTES;

/** One upload in progress: its chunks go to the database as they come. */
export interface PostgresUpload {
  /** Adds bytes (buffered into chunk rows); waits while the database is behind. */
  write(bytes: Uint8Array): Promise<void>;
  /** Ends the content; nothing is visible until `commit`. */
  end(): Promise<void>;
  /** Makes the blob visible under `sha256` (the same content twice is fine). */
  commit(sha256: string, size: number): Promise<void>;
  /** Drops everything written; safe to call after a failure or twice. */
  abort(): Promise<void>;
}

/** The blob tables of one database (schema from the URL's `search_path`). */
export class PostgresBlobs {
  #sql: Sql;
  #uploads: Sql;

  /**
   * Pools of their own, so that a long transfer never holds a connection
   * the store needs: up to `max` connections for reads and deletes, and as
   * many again for uploads (each holds one while its client sends, so slow
   * deploys never stall the agents' downloads).
   */
  constructor(url: string, options: { max?: number } = {}) {
    const settings = { max: options.max ?? 3, types: { int8 }, onnotice: () => {} };
    this.#sql = postgres(url, settings);
    this.#uploads = postgres(url, settings);
  }

  /**
   * Closes the pools. The server calls it once its requests are done; the
   * timeout is for a connection lost mid-upload, which postgres.js never
   * counts as ended.
   */
  async close(): Promise<void> {
    await Promise.all([this.#sql.end({ timeout: 1 }), this.#uploads.end({ timeout: 1 })]);
  }

  /** The size of a complete blob, or null when there is none. */
  async size(sha256: string): Promise<number | null> {
    const [row] = await this.#sql<{ size: number }[]>`
      select size from blobs where sha256 = ${sha256}`;
    return row?.size ?? null;
  }

  /** Which of `shas` are stored. */
  async existing(shas: string[]): Promise<Set<string>> {
    if (shas.length === 0) return new Set();
    const rows = await this.#sql<{ sha256: string }[]>`
      select sha256 from blobs where sha256 = any(${shas})`;
    return new Set(rows.map((row) => row.sha256));
  }

  /** Starts an upload in a transaction of its own. */
  async upload(): Promise<PostgresUpload> {
    const tx = await this.#uploads.reserve();
    try {
      await tx`begin`;
      const [row] = await tx<{ id: number }[]>`select nextval('blob_data_ids') as id`;
      const copy = await tx`copy blob_chunks (data_id, seq, data) from stdin (format binary)`
        .writable();
      return new Upload(tx, row!.id, copy);
    } catch (error) {
      if (!connectionLost(error)) {
        await tx`rollback`.catch(() => {});
        tx.release();
      }
      throw error;
    }
  }

  /**
   * The content of a blob as one consistent read, or null when there is
   * none. One COPY reads the chunks in one snapshot; a blob deleted
   * between the lookup and the COPY reads short: the caller checks the
   * size and hash it gets.
   */
  async read(sha256: string): Promise<BlobRead | null> {
    const [row] = await this.#sql<{ size: number; data_id: number }[]>`
      select size, data_id from blobs where sha256 = ${sha256}`;
    if (!row) return null;
    return {
      size: row.size,
      copy: async (sink) => {
        // A COPY takes no parameters (simple protocol): the id is an integer of ours.
        const copy = await this.#sql.unsafe(
          `copy (select data from blob_chunks where data_id = ${Math.trunc(row.data_id)} ` +
            "order by seq) to stdout (format binary)",
        ).readable();
        // Flowing, each piece handled synchronously (the sink writes a file):
        // postgres.js pauses its socket when a pushed piece finds the stream
        // full, and a pause at the COPY's last piece is never resumed, which
        // left the connection deaf to the next query (seen with 1 MiB rows).
        const values = new CopyValues();
        await new Promise<void>((resolve, reject) => {
          copy.on("data", (piece: Uint8Array) => {
            try {
              values.push(piece, sink);
            } catch (error) {
              copy.destroy(error as Error);
            }
          });
          copy.once("error", reject);
          copy.once("end", () => {
            try {
              values.end();
              resolve();
            } catch (error) {
              reject(error);
            }
          });
        });
      },
    };
  }

  /** Deletes a blob and its chunks; a blob that is not stored is fine. */
  async remove(sha256: string): Promise<number | null> {
    return await this.#sql.begin(async (tx) => {
      const [row] = await tx<{ size: number; data_id: number }[]>`
        delete from blobs where sha256 = ${sha256} returning size, data_id`;
      if (!row) return null;
      await tx`delete from blob_chunks where data_id = ${row.data_id}`;
      return row.size;
    });
  }

  /** Deletes the blobs not in `keep` stored (or stored again) before `before`. */
  async sweep(keep: ReadonlySet<string>, before: Date): Promise<{ blobs: number; bytes: number }> {
    const old = await this.#sql<{ sha256: string }[]>`
      select sha256 from blobs where created_at < ${before}`;
    const removed = { blobs: 0, bytes: 0 };
    for (const { sha256 } of old) {
      if (keep.has(sha256)) continue;
      const size = await this.remove(sha256);
      if (size !== null) removed.blobs++, removed.bytes += size;
    }
    return removed;
  }
}

class Upload implements PostgresUpload {
  #tx: Reserved;
  #id: number;
  #copy: Writable;
  #chunk = new Uint8Array(CHUNK_BYTES);
  #filled = 0;
  #seq = 0;
  #ended = false;
  #done = false;
  #inFlight = 0;
  #failure: Error | null = null;

  constructor(tx: Reserved, id: number, copy: Writable) {
    this.#tx = tx;
    this.#id = id;
    this.#copy = copy;
    // The connection lost (or the COPY refused): the next write or end throws it.
    this.#copy.on("error", (error: Error) => this.#failure ??= error);
    this.#send(COPY_HEADER);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      const n = Math.min(CHUNK_BYTES - this.#filled, bytes.length - offset);
      this.#chunk.set(bytes.subarray(offset, offset + n), this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled === CHUNK_BYTES) await this.#row();
    }
  }

  async end(): Promise<void> {
    if (this.#filled > 0) await this.#row();
    this.#ended = true;
    await this.#send(COPY_TRAILER);
    await new Promise<void>((resolve, reject) => {
      this.#copy.once("error", reject);
      this.#copy.once("finish", resolve);
      this.#copy.end();
    });
  }

  async commit(sha256: string, size: number): Promise<void> {
    const tx = this.#tx;
    try {
      // Stored already (by anyone): keep that copy, drop ours, and renew its
      // time so the sweep's grace protects it as it protects a new one.
      const [row] = await tx<{ data_id: number }[]>`
        insert into blobs (sha256, size, data_id) values (${sha256}, ${size}, ${this.#id})
        on conflict (sha256) do update set created_at = now()
        returning data_id`;
      if (row!.data_id !== this.#id) await tx`delete from blob_chunks where data_id = ${this.#id}`;
      await tx`commit`;
    } catch (error) {
      this.#failure ??= error as Error;
      await this.abort();
      throw error;
    }
    this.#done = true;
    tx.release();
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    // A COPY still open is failed first (postgres.js sends CopyFail), then
    // the transaction is rolled back and the connection goes back to the pool.
    if (!this.#ended) this.#copy.destroy(new Error("Upload aborted"));
    // A lost connection took the transaction with it, and postgres.js took
    // the connection back as closed: a rollback sent on it, or a release
    // (which hands it out again as open), makes its next query write to a
    // socket that is gone, which throws outside any promise and ends the
    // process (seen with pg_terminate_backend mid-COPY).
    if (connectionLost(this.#failure)) return;
    await this.#tx`rollback`.catch(() => {});
    this.#tx.release();
  }

  // One row (data_id, seq, data) as one CopyData message.
  async #row(): Promise<void> {
    const row = new Uint8Array(ROW_HEADER_BYTES + this.#filled);
    const view = new DataView(row.buffer);
    view.setInt16(0, 3);
    view.setInt32(2, 8);
    view.setBigInt64(6, BigInt(this.#id));
    view.setInt32(14, 4);
    view.setInt32(18, this.#seq++);
    view.setInt32(22, this.#filled);
    row.set(this.#chunk.subarray(0, this.#filled), ROW_HEADER_BYTES);
    this.#filled = 0;
    await this.#send(row);
  }

  // Waits only while more than IN_FLIGHT_BYTES are not yet handed to the
  // socket: the body keeps coming while PostgreSQL takes the rows before
  // (waiting for each row halved the rate on a busy machine).
  async #send(bytes: Uint8Array): Promise<void> {
    if (this.#failure) throw this.#failure;
    this.#inFlight += bytes.length;
    const sent = new Promise<void>((resolve, reject) => {
      this.#copy.write(bytes, (error) => {
        this.#inFlight -= bytes.length;
        if (error) this.#failure ??= error;
        if (error) reject(error);
        else resolve();
      });
    });
    sent.catch(() => {});
    if (this.#inFlight > IN_FLIGHT_BYTES) await sent;
  }
}

// Whether postgres.js lost the connection (and took it back as closed).
function connectionLost(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("CONNECTION_");
}

/**
 * Parses a one-column binary COPY as it arrives, passing each value on in
 * the pieces it came in (never gathered whole).
 */
export class CopyValues {
  // Headers (the COPY header, a tuple's field count and length) are small
  // and may straddle reads: they are gathered in `pending`.
  #pending: Uint8Array = new Uint8Array(0);
  #need = COPY_HEADER.length;
  #state: "header" | "skip" | "count" | "length" | "value" | "end" = "header";
  #left = 0;

  /** Parses `piece`, calling `emit` with the value bytes it holds. */
  push(piece: Uint8Array, emit: (bytes: Uint8Array) => void): void {
    let bytes: Uint8Array = new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
    while (bytes.length > 0) {
      if (this.#state === "value" || this.#state === "skip") {
        const n = Math.min(this.#left, bytes.length);
        if (this.#state === "value") emit(bytes.subarray(0, n));
        bytes = bytes.subarray(n);
        this.#left -= n;
        if (this.#left === 0) this.#state = "count", this.#need = 2;
        continue;
      }
      if (this.#state === "end") throw new Error("Unexpected data after the end of a COPY");
      const take = Math.min(this.#need - this.#pending.length, bytes.length);
      this.#pending = concat(this.#pending, bytes.subarray(0, take));
      bytes = bytes.subarray(take);
      if (this.#pending.length < this.#need) continue;
      this.#header(new DataView(this.#pending.buffer));
      this.#pending = new Uint8Array(0);
    }
  }

  /** Throws unless the COPY's trailer was seen. */
  end(): void {
    if (this.#state !== "end") throw new Error("The blob's COPY ended early");
  }

  #header(view: DataView): void {
    if (this.#state === "header") {
      if (!COPY_SIGNATURE.every((b, i) => this.#pending[i] === b)) {
        throw new Error("Not a binary COPY stream");
      }
      this.#left = view.getInt32(15);
      if (this.#left > 0) this.#state = "skip";
      else this.#state = "count", this.#need = 2;
    } else if (this.#state === "count") {
      const fields = view.getInt16(0);
      if (fields === -1) this.#state = "end";
      else if (fields !== 1) throw new Error(`A COPY row of ${fields} fields, not 1`);
      else this.#state = "length", this.#need = 4;
    } else {
      this.#left = view.getInt32(0);
      if (this.#left < 0) throw new Error("A NULL blob chunk");
      if (this.#left === 0) this.#state = "count", this.#need = 2;
      else this.#state = "value";
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
