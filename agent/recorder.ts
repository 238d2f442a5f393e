/**
 * The audit recording of an attached session: input, output and resizes
 * with their timings, cut into numbered chunks that are spooled to disk
 * before they are sent and deleted once the server has stored them. The
 * session only appends to memory; cutting, writing and sending happen
 * later, one chunk at a time, so a slow disk makes bigger chunks rather
 * than a slower session or lost bytes.
 * @module
 */
import type { AgentMessage } from "../protocol/mod.ts";

/** Chunks found on disk at agent start, being delivered. */
export interface RecoveredChunks {
  /** The server stored every chunk of `runId` up to `seq`. */
  ack(runId: string, seq: number): void;
  /** After a reconnect: sends every chunk not acknowledged yet again, in order. */
  resend(): void;
}

/** How a recorder is set up. */
export interface RecorderOptions {
  runId: string;
  /** The agent's spool folder; this run's chunks go to `<dir>/<runId>/<seq>.json`. */
  dir: string;
  /** Sends a message to the server; false when the channel is down. */
  send(msg: AgentMessage): boolean;
  /** The clock (epoch milliseconds); `Date.now` by default. */
  now?: () => number;
  /** A chunk is cut this long after its first event (default 250 ms). */
  flushMs?: number;
  /** ...or as soon as it holds this many recorded bytes (default 256 KiB). */
  maxChunkBytes?: number;
  /** A chunk could not be spooled (it is kept in memory instead), or a spool read failed. */
  onError?: (error: unknown) => void;
}

type Pending =
  | { ms: number; kind: "i" | "o"; parts: Uint8Array[]; bytes: number }
  | { ms: number; kind: "r"; size: string; bytes: 0 };

type TermSize = { cols: number; rows: number };

// Same-millisecond events of one direction are merged up to this size.
const MERGE_LIMIT = 64 * 1024;
// A chunk cut while the spool was behind may hold this many times the usual bytes.
const BEHIND_FACTOR = 4;
const RUN_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** Records one attached session; see the module documentation. */
export class Recorder {
  #runId: string;
  #runDir: string;
  #send: (msg: AgentMessage) => boolean;
  #now: () => number;
  #flushMs: number;
  #maxBytes: number;
  #onError: (error: unknown) => void;
  #t0: number | null = null;
  #size: TermSize | null = null;
  #lastMs = 0;
  #events: Pending[] = [];
  #bytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #cutQueued = false;
  #queue: Promise<void> = Promise.resolve();
  #seq = 0;
  #unacked: number[] = [];
  // Chunks the disk refused: kept here until acknowledged instead.
  #memory = new Map<number, string>();
  // After a failed send nothing newer goes out until `resend`, which keeps the order.
  #blocked = false;
  #finished: Promise<void> | null = null;
  #finalWritten = false;
  #dirMade = false;
  #acked: (() => void)[] = [];
  #deletions: Promise<unknown> = Promise.resolve();

  constructor(options: RecorderOptions) {
    if (!RUN_ID.test(options.runId)) {
      throw new Error(`Cannot record run "${options.runId}": not a valid run id`);
    }
    this.#runId = options.runId;
    this.#runDir = `${options.dir}/${options.runId}`;
    this.#send = options.send;
    this.#now = options.now ?? Date.now;
    this.#flushMs = options.flushMs ?? 250;
    this.#maxBytes = options.maxChunkBytes ?? 256 * 1024;
    this.#onError = options.onError ?? (() => {});
  }

  /** Initial terminal size (or null for no-TTY). Call once before any bytes. */
  start(size: TermSize | null): void {
    if (this.#t0 !== null) throw new Error(`Recording of run "${this.#runId}" has already started`);
    this.#t0 = this.#now();
    this.#size = size === null ? null : { cols: size.cols, rows: size.rows };
  }

  /** Bytes from the client to the process. */
  input(bytes: Uint8Array): void {
    this.#add("i", bytes);
  }

  /** Bytes from the process to the client. */
  output(bytes: Uint8Array): void {
    this.#add("o", bytes);
  }

  /** The terminal was resized. */
  resize(cols: number, rows: number): void {
    if (this.#finished !== null) return;
    this.#events.push({ ms: this.#ms(), kind: "r", size: `${cols}x${rows}`, bytes: 0 });
    this.#timer ??= setTimeout(() => this.#flush(), this.#flushMs);
  }

  /** The server stored every chunk up to `seq`: their spool files go. */
  ack(seq: number): void {
    const done: number[] = [];
    while (this.#unacked.length > 0 && this.#unacked[0]! <= seq) done.push(this.#unacked.shift()!);
    if (done.length === 0) return;
    for (const s of done) this.#memory.delete(s);
    const complete = this.#finalWritten && this.#unacked.length === 0;
    // Synchronous: see #spool.
    for (const s of done) removeQuietly(this.#path(s));
    if (complete) removeQuietly(this.#runDir);
    if (complete) { for (const wake of this.#acked.splice(0)) wake(); }
  }

  /** After a reconnect: sends every unacknowledged chunk again, in order, before any newer one. */
  resend(): void {
    this.#blocked = true;
    this.#enqueue(async () => {
      this.#blocked = false;
      for (const seq of [...this.#unacked]) {
        if (!this.#unacked.includes(seq)) continue;
        const data = this.#memory.get(seq) ??
          await Deno.readTextFile(this.#path(seq)).catch(() => null);
        if (data === null) continue;
        if (!this.#trySend(seq, data)) {
          this.#blocked = true;
          return;
        }
      }
    });
  }

  /**
   * Flushes the last chunk (marked final); resolves when all are acknowledged
   * or after `timeoutMs`, leaving the rest on disk for `Recorder.recover`.
   */
  finish(timeoutMs = 10_000): Promise<void> {
    this.#finished ??= this.#finish(timeoutMs);
    return this.#finished;
  }

  async #finish(timeoutMs: number): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#t0 === null) this.start(null);
    this.#enqueue(async () => {
      while (this.#bytes > this.#maxBytes * BEHIND_FACTOR) await this.#writeChunk(false);
      await this.#writeChunk(true);
    });
    await this.#queue;
    if (this.#unacked.length === 0) {
      this.#deletions = this.#deletions.then(() => Deno.remove(this.#runDir).catch(() => {}));
    } else {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#acked.push(resolve);
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
    }
    await this.#deletions;
  }

  /** On agent start: chunks left on disk by earlier runs or crashes, sent once each, in order. */
  static async recover(
    dir: string,
    send: (msg: AgentMessage) => boolean,
  ): Promise<RecoveredChunks> {
    const leftovers = await Leftovers.scan(dir, send);
    await leftovers.sendAll();
    return leftovers;
  }

  #ms(): number {
    if (this.#t0 === null) this.start(null);
    // Never backwards, even when the wall clock steps back.
    this.#lastMs = Math.max(this.#lastMs, Math.round(this.#now() - this.#t0!));
    return this.#lastMs;
  }

  #add(kind: "i" | "o", bytes: Uint8Array): void {
    if (this.#finished !== null || bytes.length === 0) return;
    const ms = this.#ms();
    const last = this.#events.at(-1);
    const copy = bytes.slice();
    if (last !== undefined && last.kind === kind && last.ms === ms && last.bytes < MERGE_LIMIT) {
      last.parts.push(copy);
      last.bytes += copy.length;
    } else {
      this.#events.push({ ms, kind, parts: [copy], bytes: copy.length });
    }
    this.#bytes += copy.length;
    if (this.#bytes >= this.#maxBytes) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), this.#flushMs);
  }

  // Asks for a cut; at most one waits in the queue, and it takes all there is then.
  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#cutQueued || this.#finished !== null) return;
    this.#cutQueued = true;
    this.#enqueue(async () => {
      this.#cutQueued = false;
      await this.#writeChunk(false);
      if (this.#bytes >= this.#maxBytes) this.#flush();
    });
  }

  #enqueue(task: () => Promise<void>): void {
    this.#queue = this.#queue.then(task).catch(this.#onError);
  }

  async #writeChunk(final: boolean): Promise<void> {
    const events = this.#take(final ? Infinity : this.#maxBytes * BEHIND_FACTOR);
    if (events.length === 0 && !final) return;
    const seq = this.#seq++;
    const chunk: Record<string, unknown> = { v: 1, t0: this.#t0, events: events.map(encodeEvent) };
    if (seq === 0 && this.#size !== null) chunk.size = this.#size;
    if (final) chunk.final = true;
    const data = JSON.stringify(chunk);
    try {
      await this.#spool(seq, data);
    } catch (error) {
      this.#memory.set(seq, data);
      this.#onError(error);
    }
    this.#unacked.push(seq);
    if (final) this.#finalWritten = true;
    if (!this.#blocked) this.#blocked = !this.#trySend(seq, data);
  }

  #take(limit: number): Pending[] {
    let count = 0;
    let bytes = 0;
    while (count < this.#events.length && (count === 0 || bytes < limit)) {
      bytes += this.#events[count++]!.bytes;
    }
    this.#bytes -= bytes;
    return this.#events.splice(0, count);
  }

  // Synchronous file operations: awaited ones took milliseconds each here
  // while sockets were busy (see util/file_batcher.ts), which held a 1 GiB
  // session to ~70 MiB/s; a chunk of at most a few hundred KiB written
  // synchronously takes well under a millisecond.
  #spool(seq: number, data: string): Promise<void> {
    const path = this.#path(seq);
    if (!this.#dirMade) {
      Deno.mkdirSync(this.#runDir, { recursive: true, mode: 0o700 });
      this.#dirMade = true;
    }
    // Renamed into place: a crash never leaves a half-written chunk under its name.
    Deno.writeTextFileSync(`${path}.tmp`, data, { mode: 0o600 });
    Deno.renameSync(`${path}.tmp`, path);
    return Promise.resolve();
  }

  #trySend(seq: number, data: string): boolean {
    try {
      return this.#send({ type: "audit", runId: this.#runId, seq, data });
    } catch {
      return false;
    }
  }

  #path(seq: number): string {
    return `${this.#runDir}/${seq}.json`;
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Already gone, or the spool is unwritable: recover() deals with leftovers.
  }
}

function encodeEvent(event: Pending): [number, string, string] {
  if (event.kind === "r") return [event.ms, "r", event.size];
  const [only] = event.parts;
  if (event.parts.length === 1 && only !== undefined) {
    return [event.ms, event.kind, only.toBase64()];
  }
  const joined = new Uint8Array(event.bytes);
  let offset = 0;
  for (const part of event.parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return [event.ms, event.kind, joined.toBase64()];
}

// Chunks of earlier runs: each run's files are sent in order, and the
// whole pass stops at the first refused send (the channel is down).
class Leftovers implements RecoveredChunks {
  #dir: string;
  #send: (msg: AgentMessage) => boolean;
  #runs: Map<string, number[]>;
  #queue: Promise<void> = Promise.resolve();

  private constructor(
    dir: string,
    send: (msg: AgentMessage) => boolean,
    runs: Map<string, number[]>,
  ) {
    this.#dir = dir;
    this.#send = send;
    this.#runs = runs;
  }

  static async scan(dir: string, send: (msg: AgentMessage) => boolean): Promise<Leftovers> {
    const runs = new Map<string, number[]>();
    for (
      const runId of await listDir(dir, (entry) => entry.isDirectory && RUN_ID.test(entry.name))
    ) {
      const seqs = await chunkFiles(`${dir}/${runId}`);
      if (seqs.length > 0) runs.set(runId, seqs);
      else await Deno.remove(`${dir}/${runId}`).catch(() => {});
    }
    return new Leftovers(dir, send, runs);
  }

  sendAll(): Promise<void> {
    this.#queue = this.#queue.then(async () => {
      for (const [runId, seqs] of this.#runs) {
        for (const seq of [...seqs]) {
          if (!seqs.includes(seq)) continue;
          const data = await Deno.readTextFile(`${this.#dir}/${runId}/${seq}.json`).catch(() =>
            null
          );
          if (data === null) continue;
          if (!this.#send({ type: "audit", runId, seq, data })) return;
        }
      }
    }).catch(() => {});
    return this.#queue;
  }

  ack(runId: string, seq: number): void {
    const seqs = this.#runs.get(runId);
    if (seqs === undefined) return;
    const done = seqs.filter((s) => s <= seq);
    if (done.length === 0) return;
    const rest = seqs.filter((s) => s > seq);
    if (rest.length > 0) this.#runs.set(runId, rest);
    else this.#runs.delete(runId);
    const runDir = `${this.#dir}/${runId}`;
    this.#queue = this.#queue.then(async () => {
      await Promise.all(done.map((s) => Deno.remove(`${runDir}/${s}.json`).catch(() => {})));
      if (rest.length === 0) await Deno.remove(runDir).catch(() => {});
    });
  }

  resend(): void {
    this.sendAll();
  }
}

async function listDir(dir: string, keep: (entry: Deno.DirEntry) => boolean): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) if (keep(entry)) names.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

// The chunk numbers spooled in a run's folder, in order. A temp file that
// holds a whole chunk (a crash between write and rename) counts; a partial
// one is dropped, as that chunk was never sent.
async function chunkFiles(runDir: string): Promise<number[]> {
  const seqs: number[] = [];
  for (const name of await listDir(runDir, (entry) => entry.isFile)) {
    const match = /^(\d{1,15})\.json(\.tmp)?$/.exec(name);
    if (match === null) continue;
    const seq = Number(match[1]);
    if (match[2] !== undefined) {
      const path = `${runDir}/${name}`;
      if (!await isWholeJson(path) || seqs.includes(seq)) {
        await Deno.remove(path).catch(() => {});
        continue;
      }
      await Deno.rename(path, `${runDir}/${seq}.json`);
    }
    if (!seqs.includes(seq)) seqs.push(seq);
  }
  return seqs.sort((a, b) => a - b);
}

async function isWholeJson(path: string): Promise<boolean> {
  try {
    JSON.parse(await Deno.readTextFile(path));
    return true;
  } catch {
    return false;
  }
}
