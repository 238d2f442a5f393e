/**
 * The audit recording of an attached session: input, output and resizes
 * with their timings, cut into numbered chunks that are spooled to disk
 * before they are sent and deleted once the server has stored them. The
 * session only appends to memory; cutting, writing and sending happen
 * later, one chunk at a time, so a slow disk makes bigger chunks rather
 * than a slower session or lost bytes.
 * @module
 */
import { type AgentMessage, auditQuotaMarker, WATCHED_FLUSH_MS } from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import { isSpoolRunId, recoverSpools, RunSpool } from "./spool.ts";

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
  /** Timers and time (default the real clock). */
  clock?: Clock;
  /** Epoch milliseconds for the event timings (default the clock's). */
  now?: () => number;
  /** A chunk is cut this long after its first event (default 250 ms). */
  flushMs?: number;
  /** While watched (see {@link Recorder.watched}), this long instead (default WATCHED_FLUSH_MS). */
  watchedFlushMs?: number;
  /**
   * Watched chunks are cut fast only below this seq (default no limit), so
   * that the server's bound on a run's chunks holds: `fastChunkLimit`.
   */
  fastSeqLimit?: number;
  /** ...or as soon as it holds this many recorded bytes (default 256 KiB). */
  maxChunkBytes?: number;
  /**
   * Input and output bytes recorded at most (default no limit): past it one
   * marker event is recorded, then nothing more; the session goes on.
   */
  quotaBytes?: number;
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
// Bytes of chunks sent and not yet acknowledged: the rest waits on the spool,
// or a server slower than the session would hold all of it in memory.
const MAX_IN_FLIGHT_BYTES = 4 * 1024 * 1024;

/** Records one attached session; see the module documentation. */
export class Recorder {
  #runId: string;
  #spool: RunSpool;
  #send: (msg: AgentMessage) => boolean;
  #clock: Clock;
  #now: () => number;
  #flushMs: number;
  #watchedFlushMs: number;
  #fastSeqLimit: number;
  #watched = false;
  #maxBytes: number;
  #onError: (error: unknown) => void;
  #quota: number;
  #recorded = 0;
  #unrecorded = 0;
  #t0: number | null = null;
  #size: TermSize | null = null;
  #lastMs = 0;
  #events: Pending[] = [];
  #bytes = 0;
  #timer: TimerId | undefined;
  #cutQueued = false;
  #queue: Promise<void> = Promise.resolve();
  #seq = 0;
  #unacked: number[] = [];
  // Chunks sent and not acknowledged, with their sizes.
  #inFlight = new Map<number, number>();
  #inFlightBytes = 0;
  // Chunks the disk refused: kept here until acknowledged instead.
  #memory = new Map<number, string>();
  // After a failed send nothing newer goes out until `resend`, which keeps the order.
  #blocked = false;
  #finished: Promise<void> | null = null;
  #finalWritten = false;
  #acked: (() => void)[] = [];

  constructor(options: RecorderOptions) {
    if (!isSpoolRunId(options.runId)) {
      throw new Error(`Cannot record run "${options.runId}": not a valid run id`);
    }
    this.#runId = options.runId;
    this.#spool = new RunSpool(options.dir, options.runId);
    this.#send = options.send;
    this.#clock = options.clock ?? realClock;
    this.#now = options.now ?? (() => this.#clock.now());
    this.#flushMs = options.flushMs ?? 250;
    this.#watchedFlushMs = options.watchedFlushMs ?? WATCHED_FLUSH_MS;
    this.#fastSeqLimit = options.fastSeqLimit ?? Infinity;
    this.#maxBytes = options.maxChunkBytes ?? 256 * 1024;
    this.#onError = options.onError ?? (() => {});
    this.#quota = options.quotaBytes ?? Infinity;
  }

  /** Bytes of the session past the quota, not recorded; null while within it. */
  get unrecorded(): { quotaBytes: number; bytes: number } | null {
    return this.#unrecorded > 0 ? { quotaBytes: this.#quota, bytes: this.#unrecorded } : null;
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
    if (this.#finished !== null || this.#unrecorded > 0) return;
    this.#events.push({ ms: this.#ms(), kind: "r", size: `${cols}x${rows}`, bytes: 0 });
    this.#schedule();
  }

  /**
   * Someone watches the session live (or no one any more): while watched,
   * chunks are cut after WATCHED_FLUSH_MS instead of the usual delay, for
   * as long as the run's chunk budget allows (`fastSeqLimit`).
   */
  watched(on: boolean): void {
    this.#watched = on;
    if (!on || this.#timer === undefined) return;
    // Events already waiting go at the faster pace too.
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#schedule();
  }

  #delay(): number {
    return this.#watched && this.#seq < this.#fastSeqLimit ? this.#watchedFlushMs : this.#flushMs;
  }

  #schedule(): void {
    this.#timer ??= this.#clock.setTimeout(() => this.#flush(), this.#delay());
  }

  /** The server stored every chunk up to `seq`: their spool files go. */
  ack(seq: number): void {
    const done: number[] = [];
    while (this.#unacked.length > 0 && this.#unacked[0]! <= seq) done.push(this.#unacked.shift()!);
    if (done.length === 0) return;
    for (const s of done) {
      this.#memory.delete(s);
      this.#inFlightBytes -= this.#inFlight.get(s) ?? 0;
      this.#inFlight.delete(s);
    }
    this.#pump();
    this.#spool.ack(seq);
    if (!this.#finalWritten || this.#unacked.length > 0) return;
    this.#spool.remove();
    for (const wake of this.#acked.splice(0)) wake();
  }

  /** After a reconnect: sends every unacknowledged chunk again, in order, before any newer one. */
  resend(): void {
    this.#blocked = true;
    this.#inFlight.clear();
    this.#inFlightBytes = 0;
    this.#enqueue(async () => {
      this.#blocked = false;
      await this.#sendWaiting();
    });
  }

  // Sends the chunks not in flight, in order, while there is room.
  #pump(): void {
    if (this.#blocked) return;
    this.#enqueue(() => this.#sendWaiting());
  }

  async #sendWaiting(): Promise<void> {
    for (const seq of [...this.#unacked]) {
      if (this.#blocked) return;
      if (!this.#unacked.includes(seq) || this.#inFlight.has(seq)) continue;
      const data = this.#memory.get(seq) ?? await this.#spool.read(seq);
      if (data === null) continue;
      if (!this.#roomFor(data)) return;
      if (!this.#trySend(seq, data)) {
        this.#blocked = true;
        return;
      }
    }
  }

  #roomFor(data: string): boolean {
    return this.#inFlightBytes === 0 || this.#inFlightBytes + data.length <= MAX_IN_FLIGHT_BYTES;
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
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#t0 === null) this.start(null);
    this.#enqueue(() => {
      while (this.#bytes > this.#maxBytes * BEHIND_FACTOR) this.#writeChunk(false);
      this.#writeChunk(true);
    });
    await this.#queue;
    if (this.#unacked.length === 0) {
      this.#spool.remove();
      return;
    }
    let timer: TimerId | undefined;
    await new Promise<void>((resolve) => {
      this.#acked.push(resolve);
      timer = this.#clock.setTimeout(resolve, timeoutMs);
    });
    this.#clock.clearTimeout(timer);
  }

  /** On agent start: chunks left on disk by earlier runs or crashes, sent once each, in order. */
  static async recover(
    dir: string,
    send: (msg: AgentMessage) => boolean,
  ): Promise<RecoveredChunks> {
    const leftovers = new Leftovers(await recoverSpools(dir), send);
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
    if (this.#unrecorded > 0) {
      this.#unrecorded += bytes.length;
      return;
    }
    const room = this.#quota - this.#recorded;
    if (bytes.length > room) {
      // What fits, then the marker: the transcript shows where it stops.
      if (room > 0) this.#event(kind, bytes.subarray(0, room));
      this.#unrecorded = bytes.length - Math.max(0, room);
      this.#event("o", new TextEncoder().encode(auditQuotaMarker(this.#quota)));
      return;
    }
    this.#recorded += bytes.length;
    this.#event(kind, bytes);
  }

  #event(kind: "i" | "o", bytes: Uint8Array): void {
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
    else this.#schedule();
  }

  // Asks for a cut; at most one waits in the queue, and it takes all there is then.
  #flush(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#cutQueued || this.#finished !== null) return;
    this.#cutQueued = true;
    this.#enqueue(() => {
      this.#cutQueued = false;
      this.#writeChunk(false);
      if (this.#bytes >= this.#maxBytes) this.#flush();
    });
  }

  #enqueue(task: () => void | Promise<void>): void {
    this.#queue = this.#queue.then(task).catch(this.#onError);
  }

  // Synchronous, as the spool's writes are (see spool.ts).
  #writeChunk(final: boolean): void {
    const events = this.#take(final ? Infinity : this.#maxBytes * BEHIND_FACTOR);
    if (events.length === 0 && !final) return;
    const seq = this.#seq++;
    const chunk: Record<string, unknown> = { v: 1, t0: this.#t0, events: events.map(encodeEvent) };
    if (seq === 0 && this.#size !== null) chunk.size = this.#size;
    if (final) chunk.final = true;
    const data = JSON.stringify(chunk);
    try {
      this.#spool.write(seq, data);
    } catch (error) {
      this.#memory.set(seq, data);
      this.#onError(error);
    }
    this.#unacked.push(seq);
    if (final) this.#finalWritten = true;
    // Sent now only when nothing older waits and there is room; else by #pump on an ack.
    const older = this.#unacked.length - 1 > this.#inFlight.size;
    if (!this.#blocked && !older && this.#roomFor(data)) {
      this.#blocked = !this.#trySend(seq, data);
    }
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

  #trySend(seq: number, data: string): boolean {
    try {
      const sent = this.#send({ type: "audit", runId: this.#runId, seq, data });
      if (sent) {
        this.#inFlight.set(seq, data.length);
        this.#inFlightBytes += data.length;
      }
      return sent;
    } catch {
      return false;
    }
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

// Chunks of earlier runs: each run's records are sent in order, under the
// same bound of bytes in flight as a live session's (a large spool must not
// go out at once, held in memory on both sides), and a pass stops at the
// first refused send (the channel is down) until `resend`.
class Leftovers implements RecoveredChunks {
  #send: (msg: AgentMessage) => boolean;
  #spools: Map<string, RunSpool>;
  #queue: Promise<void> = Promise.resolve();
  // Sent and not acknowledged, by run: seq → bytes.
  #inFlight = new Map<string, Map<number, number>>();
  #inFlightBytes = 0;

  constructor(spools: RunSpool[], send: (msg: AgentMessage) => boolean) {
    this.#spools = new Map(spools.map((spool) => [spool.runId, spool]));
    this.#send = send;
  }

  sendAll(): Promise<void> {
    this.#queue = this.#queue.then(() => this.#sendWaiting()).catch(() => {});
    return this.#queue;
  }

  async #sendWaiting(): Promise<void> {
    for (const spool of this.#spools.values()) {
      let sent = this.#inFlight.get(spool.runId);
      for (const seq of [...spool.seqs]) {
        if (sent?.has(seq)) continue;
        const data = await spool.read(seq);
        if (data === null) continue;
        if (this.#inFlightBytes > 0 && this.#inFlightBytes + data.length > MAX_IN_FLIGHT_BYTES) {
          return;
        }
        if (!this.#send({ type: "audit", runId: spool.runId, seq, data })) return;
        if (sent === undefined) this.#inFlight.set(spool.runId, sent = new Map());
        sent.set(seq, data.length);
        this.#inFlightBytes += data.length;
      }
    }
  }

  ack(runId: string, seq: number): void {
    const spool = this.#spools.get(runId);
    if (spool === undefined) return;
    spool.ack(seq);
    const sent = this.#inFlight.get(runId);
    for (const [s, bytes] of sent ?? []) {
      if (s > seq) continue;
      sent!.delete(s);
      this.#inFlightBytes -= bytes;
    }
    if (spool.seqs.length === 0) {
      spool.remove();
      this.#spools.delete(runId);
      this.#inFlight.delete(runId);
    }
    // Room again: the next chunks go.
    this.sendAll();
  }

  resend(): void {
    this.#inFlight.clear();
    this.#inFlightBytes = 0;
    this.sendAll();
  }
}
