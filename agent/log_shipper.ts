/**
 * Detached output to the server: bytes cut into lines, numbered, sent in
 * batches, kept until acknowledged and sent again after a reconnect, so
 * that every line is stored once.
 * @module
 */
import type { AgentMessage, LogRecord } from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";

/** Longest line kept whole; longer ones are cut in pieces of this size. */
export const MAX_LINE_BYTES = 16 * 1024;
const BATCH_LINES = 2000;
/** A partial batch is sent this long after its first line. */
export const FLUSH_MS = 20;
/** Unacknowledged lines before the reader waits (backpressure on the process). */
const MAX_IN_FLIGHT = 50_000;

/** Where batches go: false when the channel is down (they are sent again later). */
export type SendFn = (msg: AgentMessage) => boolean;

/** How a shipper is set up. */
export interface LogShipperOptions {
  /** Timestamps and the flush timer (default the real clock). */
  clock?: Clock;
}

/** Ships one run's output; `collect` streams, then `finish` waits for the acks. */
export class LogShipper {
  #runId: string;
  #send: SendFn;
  #seq = 0;
  #pending: LogRecord[] = [];
  #batch = 0;
  /** Batches sent and not acknowledged, by batch number. */
  #unacked = new Map<number, LogRecord[]>();
  #inFlight = 0;
  #clock: Clock;
  #timer: TimerId | undefined;
  #drained: (() => void)[] = [];
  #acked: (() => void)[] = [];

  constructor(runId: string, send: SendFn, options: LogShipperOptions = {}) {
    this.#runId = runId;
    this.#send = send;
    this.#clock = options.clock ?? realClock;
  }

  /** Reads a stream to its end, one record per line. */
  async collect(stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr"): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      const text = partial + decoder.decode(chunk, { stream: true });
      const parts = text.split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) this.#add(name, line.endsWith("\r") ? line.slice(0, -1) : line);
      while (partial.length > MAX_LINE_BYTES) {
        this.#add(name, partial.slice(0, MAX_LINE_BYTES));
        partial = partial.slice(MAX_LINE_BYTES);
      }
      if (this.#inFlight > MAX_IN_FLIGHT) await new Promise<void>((r) => this.#drained.push(r));
    }
    partial += decoder.decode();
    if (partial) this.#add(name, partial);
  }

  /** Adds a line the agent itself says about the run (e.g. why it ended). */
  note(line: string): void {
    this.#add("stderr", line);
  }

  #add(stream: "stdout" | "stderr", line: string): void {
    const cut = line.length > MAX_LINE_BYTES ? line.slice(0, MAX_LINE_BYTES) : line;
    this.#pending.push({ seq: this.#seq++, stream, ts: this.#clock.now(), line: cut });
    this.#inFlight++;
    if (this.#pending.length >= BATCH_LINES) this.#flush();
    else this.#timer ??= this.#clock.setTimeout(() => this.#flush(), FLUSH_MS);
  }

  #flush(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const records = this.#pending;
    this.#pending = [];
    const batch = this.#batch++;
    this.#unacked.set(batch, records);
    this.#send({ type: "logs", runId: this.#runId, batch, records });
  }

  /** The server committed batch `batch`; only that batch is done. */
  ack(batch: number): void {
    const records = this.#unacked.get(batch);
    if (records === undefined) return;
    this.#unacked.delete(batch);
    this.#inFlight -= records.length;
    if (this.#inFlight <= MAX_IN_FLIGHT) { for (const wake of this.#drained.splice(0)) wake(); }
    if (this.#unacked.size === 0 && this.#pending.length === 0) {
      for (const wake of this.#acked.splice(0)) wake();
    }
  }

  /** Sends every unacknowledged batch again, in order (after a reconnect). */
  resend(): void {
    for (const [batch, records] of this.#unacked) {
      this.#send({ type: "logs", runId: this.#runId, batch, records });
    }
  }

  /** Flushes and resolves once the server acknowledged every line. */
  finish(): Promise<void> {
    this.#flush();
    if (this.#unacked.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#acked.push(resolve));
  }

  /** Lines produced so far. */
  get lines(): number {
    return this.#seq;
  }
}
