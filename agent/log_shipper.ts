/**
 * Detached output to the server: bytes cut into lines, numbered, cut into
 * batches 0, 1, 2..., each written to the agent's disk before it is sent
 * and deleted only once the server acknowledges that very batch as
 * committed. Unacknowledged batches are sent again after a reconnect, on a
 * timer while connected (with backoff), after a `logs_nack`, and after an
 * agent restart ({@link LogShipper.recover}), so every line is stored once
 * however long the server is away. The disk the batches take is bounded by
 * a {@link SpoolBudget} shared by all runs: when it is full the shipper
 * stops reading the process's output, and the pipe pauses the process.
 * @module
 */
import { type AgentMessage, logQuotaMarker, type LogRecord } from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { RunSpool } from "./spool.ts";

/** Longest line kept whole; longer ones are cut in pieces of this size. */
export const MAX_LINE_BYTES = 16 * 1024;
const BATCH_LINES = 2000;
/** A batch is also cut once it holds this many bytes of lines (which bounds a spool file). */
const BATCH_BYTES = 1024 * 1024;
/** A partial batch is sent this long after its first line. */
export const FLUSH_MS = 20;
/** An unacknowledged batch is sent again this long after it was sent (doubling each time). */
export const RESEND_MS = 5_000;
/** The longest wait between two sends of one batch. */
export const MAX_BACKOFF_MS = 30_000;
/**
 * Bytes of batches sent and not acknowledged at most: the rest waits on the
 * spool (disk), not in the channel's send buffer, so a server slower than
 * the output never grows the agent's memory.
 */
export const SEND_WINDOW_BYTES = 4 * 1024 * 1024;
/** Default bound of a budget made for one shipper alone (tests, no disk). */
const PRIVATE_BUDGET_BYTES = 64 * 1024 * 1024;

/** Where batches go: false when the channel is down (they are sent again later). */
export type SendFn = (msg: AgentMessage) => boolean;

/**
 * The bound on unacknowledged log bytes on the agent's disk, over all runs.
 * Past it, shippers stop reading their processes' output until acks bring
 * it down to half (so a steady flow does not flap at the bound); the agent
 * logs once when it pauses and once when it resumes. The bound can be
 * passed by what was read before the pause: at most a batch per run.
 */
export class SpoolBudget {
  readonly maxBytes: number;
  #used = 0;
  #paused = false;
  #waiters: (() => void)[] = [];
  #log: Logger | undefined;

  constructor(maxBytes: number, log?: Logger) {
    this.maxBytes = maxBytes;
    this.#log = log;
  }

  /** Bytes of unacknowledged batches held now. */
  get usedBytes(): number {
    return this.#used;
  }

  /** True while output is paused for want of room. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Counts a batch written (or recovered). */
  take(bytes: number): void {
    this.#used += bytes;
    if (this.#paused || this.#used < this.maxBytes) return;
    this.#paused = true;
    this.#log?.warn(
      "log spool full: pausing detached runs' output until the server stores what is spooled",
      { usedBytes: this.#used, maxBytes: this.maxBytes },
    );
  }

  /** Frees an acknowledged batch. */
  free(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
    if (!this.#paused || this.#used > this.maxBytes / 2) return;
    this.#paused = false;
    this.#log?.info("log spool has room again: detached runs' output resumes", {
      usedBytes: this.#used,
      maxBytes: this.maxBytes,
    });
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves when there is room (at once when there is). */
  room(): Promise<void> {
    if (!this.#paused) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/** How a shipper is set up. */
export interface LogShipperOptions {
  /** Timestamps, the flush and the resend timers (default the real clock). */
  clock?: Clock;
  /** Where batches are written before they are sent; without one they are kept in memory. */
  spool?: RunSpool;
  /** The disk bound shared with other runs (default a private 64 MiB one). */
  budget?: SpoolBudget;
  /** First resend of an unacknowledged batch (default 5 s); doubles up to `maxBackoffMs`. */
  resendMs?: number;
  /** Longest wait between two sends of a batch (default 30 s). */
  maxBackoffMs?: number;
  /** A batch could not be written to the spool (it is kept in memory instead). */
  onError?: (error: unknown) => void;
  /**
   * Bytes of the process's lines stored at most: lines beyond are read (the
   * process never waits for them), counted, and named by one last line.
   */
  quotaBytes?: number;
}

/** A batch not yet acknowledged. */
interface Owed {
  bytes: number;
  /** When it was last sent; null when the send failed (the channel was down). */
  sentAt: number | null;
  sends: number;
  /** Counted in the send window: sent on this connection and not acknowledged. */
  inflight?: boolean;
  /** The batch's records, JSON, when the spool could not take them. */
  memory?: string;
}

/** Ships one run's output; `collect` streams, then `finish` flushes; see the module documentation. */
export class LogShipper {
  readonly runId: string;
  #send: SendFn;
  #seq = 0;
  #pending: LogRecord[] = [];
  #pendingBytes = 0;
  #batch = 0;
  /** Batches written and not acknowledged, by batch number (a Map keeps their order). */
  #owed = new Map<number, Owed>();
  #clock: Clock;
  #spool: RunSpool | undefined;
  #budget: SpoolBudget;
  #resendMs: number;
  #maxBackoffMs: number;
  #onError: (error: unknown) => void;
  #flushTimer: TimerId | undefined;
  #resendTimer: TimerId | undefined;
  #finished = false;
  #acked: (() => void)[] = [];
  /** Set when the run is being killed: its last output is read past the bound. */
  #unbounded = Promise.withResolvers<void>();
  #isUnbounded = false;
  #closed = false;
  #quota: number;
  #inflightBytes = 0;
  #storedBytes = 0;
  #overLines = 0;
  #overBytes = 0;

  constructor(runId: string, send: SendFn, options: LogShipperOptions = {}) {
    this.runId = runId;
    this.#send = send;
    this.#clock = options.clock ?? realClock;
    this.#spool = options.spool;
    this.#budget = options.budget ?? new SpoolBudget(PRIVATE_BUDGET_BYTES);
    this.#resendMs = options.resendMs ?? RESEND_MS;
    this.#maxBackoffMs = options.maxBackoffMs ?? MAX_BACKOFF_MS;
    this.#onError = options.onError ?? (() => {});
    this.#quota = options.quotaBytes ?? Infinity;
  }

  /**
   * On agent start: the batches an earlier agent process spooled for a run
   * and never had acknowledged, sent again under their own numbers.
   */
  static recover(spool: RunSpool, send: SendFn, options: LogShipperOptions = {}): LogShipper {
    const shipper = new LogShipper(spool.runId, send, { ...options, spool });
    for (const batch of spool.seqs) {
      const bytes = spool.sizeOf(batch);
      shipper.#owed.set(batch, { bytes, sentAt: null, sends: 0 });
      shipper.#budget.take(bytes);
      shipper.#batch = batch + 1;
    }
    // Its process died with that agent: nothing more comes.
    shipper.#finished = true;
    shipper.resend();
    shipper.#settle();
    return shipper;
  }

  /** Reads a stream to its end, one record per line; waits while the spool is full. */
  async collect(stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr"): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      const text = partial + decoder.decode(chunk, { stream: true });
      const parts = text.split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) this.#output(name, line.endsWith("\r") ? line.slice(0, -1) : line);
      while (partial.length > MAX_LINE_BYTES) {
        this.#output(name, partial.slice(0, MAX_LINE_BYTES));
        partial = partial.slice(MAX_LINE_BYTES);
      }
      // Not reading is the backpressure: the pipe fills and the process waits.
      if (this.#budget.paused && !this.#isUnbounded) {
        await Promise.race([this.#budget.room(), this.#unbounded.promise]);
      }
    }
    partial += decoder.decode();
    if (partial) this.#output(name, partial);
  }

  /** Lines and bytes of output not stored because of the quota. */
  get overQuota(): { lines: number; bytes: number } {
    return { lines: this.#overLines, bytes: this.#overBytes };
  }

  /** A line of the process's own: stored within the quota, counted beyond it. */
  #output(stream: "stdout" | "stderr", line: string): void {
    const cut = line.length > MAX_LINE_BYTES ? line.slice(0, MAX_LINE_BYTES) : line;
    const bytes = cut.length + 1;
    if (this.#overLines === 0 && this.#storedBytes + bytes <= this.#quota) {
      this.#storedBytes += bytes;
      return this.#add(stream, cut);
    }
    if (this.#overLines === 0) {
      // Said at once too: a long run's owner should not learn it only at its end.
      this.#add(
        "stderr",
        `oneoff: log quota of ${this.#quota} bytes reached; further lines are counted, not stored`,
      );
    }
    this.#overLines++;
    this.#overBytes += bytes;
  }

  /**
   * Reads on past the spool's bound: the process is being killed, and what
   * it wrote before dying must not keep the run from ending. A few pipe
   * buffers more, never dropped.
   */
  unbound(): void {
    this.#isUnbounded = true;
    this.#unbounded.resolve();
  }

  /** Adds a line the agent itself says about the run (e.g. why it ended). */
  note(line: string): void {
    this.#add("stderr", line);
  }

  #add(stream: "stdout" | "stderr", line: string): void {
    const cut = line.length > MAX_LINE_BYTES ? line.slice(0, MAX_LINE_BYTES) : line;
    this.#pending.push({ seq: this.#seq++, stream, ts: this.#clock.now(), line: cut });
    this.#pendingBytes += cut.length;
    if (this.#pending.length >= BATCH_LINES || this.#pendingBytes >= BATCH_BYTES) this.#flush();
    else this.#flushTimer ??= this.#clock.setTimeout(() => this.#flush(), FLUSH_MS);
  }

  #flush(): void {
    this.#clock.clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#pending.length === 0) return;
    const records = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    const batch = this.#batch++;
    const data = JSON.stringify(records);
    const owed: Owed = { bytes: data.length, sentAt: null, sends: 0 };
    try {
      // Synchronous, as the spool's writes are (see spool.ts).
      if (this.#spool) this.#spool.write(batch, data);
      else owed.memory = data;
    } catch (error) {
      owed.memory = data;
      this.#onError(error);
    }
    this.#owed.set(batch, owed);
    this.#budget.take(owed.bytes);
    // Behind a batch still waiting for room, this one waits too: a small
    // batch that fits where a big one did not would overtake it, and the
    // server stores (and `logs` reads) lines in the order batches come.
    if (this.#waiting(owed)) this.#pump();
    else if (this.#roomFor(owed)) this.#transmit(batch, owed, records);
    this.#armResend();
  }

  /** An earlier batch than `owed` is not in flight yet. */
  #waiting(owed: Owed): boolean {
    for (const other of this.#owed.values()) {
      if (other === owed) return false;
      if (!other.inflight) return true;
    }
    return false;
  }

  #transmit(batch: number, owed: Owed, known?: LogRecord[]): boolean {
    const records = known ?? this.#records(batch, owed);
    if (records === null) return true;
    let sent = false;
    try {
      sent = this.#send({ type: "logs", runId: this.runId, batch, records });
    } catch {
      sent = false;
    }
    owed.sentAt = sent ? this.#clock.now() : null;
    if (sent) owed.sends++;
    if (sent && !owed.inflight) {
      owed.inflight = true;
      this.#inflightBytes += owed.bytes;
    }
    return sent;
  }

  /** True when `owed` may be sent for the first time on this connection. */
  #roomFor(owed: Owed): boolean {
    return owed.inflight === true || this.#inflightBytes === 0 ||
      this.#inflightBytes + owed.bytes <= SEND_WINDOW_BYTES;
  }

  /** Sends the batches not sent yet, in order, as far as the window allows. */
  #pump(): void {
    for (const [batch, owed] of [...this.#owed]) {
      if (owed.inflight || !this.#owed.has(batch)) continue;
      if (!this.#roomFor(owed) || !this.#transmit(batch, owed)) return;
    }
  }

  #records(batch: number, owed: Owed): LogRecord[] | null {
    const data = owed.memory ?? this.#spool?.readSync(batch) ?? null;
    if (data === null) {
      // The file vanished (removed by hand): nothing left to deliver.
      this.#forget(batch, owed);
      return null;
    }
    return JSON.parse(data) as LogRecord[];
  }

  /** The server committed batch `batch`; only that batch is done. */
  ack(batch: number): void {
    const owed = this.#owed.get(batch);
    if (owed === undefined) return;
    this.#forget(batch, owed);
  }

  /** The server could not store batch `batch`: it goes again after the backoff. */
  nack(batch: number): void {
    const owed = this.#owed.get(batch);
    if (owed === undefined) return;
    owed.sentAt = this.#clock.now();
    owed.sends = Math.max(owed.sends, 1);
    this.#armResend();
  }

  #forget(batch: number, owed: Owed): void {
    this.#owed.delete(batch);
    if (owed.inflight) this.#inflightBytes -= owed.bytes;
    this.#spool?.drop(batch);
    this.#budget.free(owed.bytes);
    this.#settle();
    if (!this.#closed) this.#pump();
  }

  #settle(): void {
    if (this.#owed.size > 0 || this.#pending.length > 0) return;
    this.#clock.clearInterval(this.#resendTimer);
    this.#resendTimer = undefined;
    if (!this.#finished) return;
    this.#spool?.remove();
    for (const wake of this.#acked.splice(0)) wake();
  }

  /** Sends every unacknowledged batch again, in order (after a reconnect). */
  resend(): void {
    // A new connection: nothing is in flight on it yet.
    for (const owed of this.#owed.values()) owed.inflight = false;
    this.#inflightBytes = 0;
    this.#pump();
    this.#armResend();
  }

  #armResend(): void {
    if (this.#closed || this.#resendTimer !== undefined || this.#owed.size === 0) return;
    const every = Math.max(10, Math.min(1000, this.#resendMs / 4));
    this.#resendTimer = this.#clock.setInterval(() => this.#due(), every);
  }

  // Batches whose ack is overdue (or that could not be sent) go again.
  #due(): void {
    const now = this.#clock.now();
    for (const [batch, owed] of [...this.#owed]) {
      if (!this.#owed.has(batch)) continue;
      if (owed.sentAt !== null) {
        const wait = Math.min(
          this.#resendMs * 2 ** Math.max(0, owed.sends - 1),
          this.#maxBackoffMs,
        );
        if (now - owed.sentAt < wait) continue;
      }
      if (!this.#roomFor(owed) || !this.#transmit(batch, owed)) break;
    }
  }

  /**
   * Flushes the last lines to the spool; resolves once the server
   * acknowledged every batch (which may be much later: the end of the run
   * can be reported as soon as this was called, the lines follow).
   */
  finish(): Promise<void> {
    if (this.#overLines > 0 && !this.#finished) {
      this.#add("stderr", logQuotaMarker(this.#quota, this.#overLines, this.#overBytes));
    }
    this.#flush();
    this.#finished = true;
    // Closed: what is owed stays on disk for the next agent start; nobody waits for it.
    if (this.#owed.size === 0 || this.#closed) {
      this.#settle();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#acked.push(resolve));
  }

  /** True once everything is acknowledged after `finish`. */
  get done(): boolean {
    return this.#finished && this.#owed.size === 0 && this.#pending.length === 0;
  }

  /** Stops the timers (the agent is stopping); what is unacknowledged stays on disk. */
  close(): void {
    this.#closed = true;
    this.#clock.clearTimeout(this.#flushTimer);
    this.#clock.clearInterval(this.#resendTimer);
    this.#flushTimer = this.#resendTimer = undefined;
  }

  /** Lines produced so far. */
  get lines(): number {
    return this.#seq;
  }

  /** Batches not acknowledged yet. */
  get unacknowledged(): number {
    return this.#owed.size;
  }
}
