/**
 * A framed attached session (our CLI; nc stays raw, see session.ts): output
 * as STDOUT/STDERR frames with offsets, the exit in band, keep-alives, and a
 * process that outlives a dropped connection for the grace, its output kept
 * in a bounded buffer and replayed when the client comes back.
 * @module
 */
import {
  countFrame,
  encodeFrame,
  FRAME,
  FRAME_MAX_PAYLOAD,
  FRAMED_WINDOW,
  FrameDecoder,
  type FramedExit,
  type FramedHello,
  jsonFrame,
  KEEPALIVE_MS,
  readCount,
  readResize,
  SILENCE_MS,
  TAKEOVER_NOTICE,
} from "../protocol/mod.ts";
import { type Clock, realClock, type TimerId } from "../util/clock.ts";
import type { AttachConn, AttachedClient } from "./attach_listener.ts";
import type { ExitStatus, SandboxProcess } from "./sandbox/mod.ts";

/** How the framed session behaves and what it reports. */
export interface FramedOptions {
  tty: boolean;
  idleTimeoutMs: number;
  /** How long the process waits for a dropped client. */
  graceMs: number;
  /** No byte of stdin or output for idleTimeoutMs (keep-alives do not count). */
  onIdle(): void;
  /** The client closed the session cleanly (CLOSE) before the process ended: hang up now. */
  onHangup(): void;
  /** The client dropped and did not come back within the grace. */
  onGraceOver(): void;
  /** A RESIZE frame. */
  onResize(cols: number, rows: number): void;
  /** A client came back (or another terminal took over), from `address`. */
  onReattach(address: string): void;
  /** A new one-use resume secret, registered for this session; the previous one is withdrawn. */
  issueSecret(): string;
  /** Sees every byte that crosses, once, for the audit recording. */
  observe?: (direction: "in" | "out", bytes: Uint8Array) => void;
  clock?: Clock;
}

type Chunk = { type: typeof FRAME.STDOUT | typeof FRAME.STDERR; bytes: Uint8Array; start: number };
/** `gone`: no longer the session's (nothing new is queued); `broken`: its writes fail. */
type Link = {
  conn: AttachConn;
  writing: Promise<void>;
  heard: number;
  said: number;
  gone: boolean;
  broken: boolean;
};

const encoder = new TextEncoder();
const TICK_MS = 5_000;
/** How long a connection let go may take to read what was queued for it. */
const LINGER_MS = 5_000;
// Notices held for a client that is away: a few lines, whatever happens meanwhile.
const MAX_HELD_NOTICES = 16;

/** One framed session, across the connections of its reattaches. */
export class FramedSession {
  #process: SandboxProcess;
  #o: FramedOptions;
  #clock: Clock;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stdinClosed = false;
  /** Output not acknowledged by the client, oldest first; at most FRAMED_WINDOW bytes. */
  #chunks: Chunk[] = [];
  #buffered = 0;
  #outOffset = 0;
  #inOffset = 0;
  /** Stdin bytes written to the process (what an ACK says); the rest is queued. */
  #inWritten = 0;
  #stdinWrites: Promise<void> = Promise.resolve();
  #link: Link | undefined;
  /** Notices said while no client was connected, for the next one. */
  #notices: Uint8Array[] = [];
  #roomWaiters: (() => void)[] = [];
  #lastActivity: number;
  #tick: TimerId | undefined;
  #grace: TimerId | undefined;
  #graceOver = false;
  #closedByClient = false;
  #processDone = false;
  #exit: Uint8Array | undefined;
  #attaches = 0;
  #settled = Promise.withResolvers<void>();

  /** Takes the process's stdin; the first client comes with `attach`. */
  constructor(process: SandboxProcess, options: FramedOptions) {
    this.#process = process;
    this.#o = options;
    this.#clock = options.clock ?? realClock;
    this.#stdin = process.stdin.getWriter();
    this.#lastActivity = this.#clock.now();
    const every = Math.max(50, Math.min(options.idleTimeoutMs / 4, TICK_MS));
    this.#tick = this.#clock.setInterval(() => this.#onTick(), every);
  }

  /** Output bytes the process has written so far. */
  get outOffset(): number {
    return this.#outOffset;
  }

  /**
   * A client presented the first secret (`framed`) or a resume secret
   * (`resume`, from `outOffset`, null for "what is still buffered"); a
   * connection still open is told and closed.
   */
  attach(client: AttachedClient, outOffset: number | null): void {
    const old = this.#link;
    const first = this.#attaches++ === 0;
    if (old) {
      this.#send(
        old,
        encodeFrame(FRAME.NOTICE, encoder.encode(`${TAKEOVER_NOTICE} (${client.remoteAddr})`)),
      );
      this.#unlink(old);
    }
    this.#clock.clearTimeout(this.#grace);
    this.#grace = undefined;
    const now = this.#clock.now();
    const link: Link = {
      conn: client.conn,
      writing: Promise.resolve(),
      heard: now,
      said: now,
      gone: false,
      broken: false,
    };
    this.#link = link;
    const start = this.#chunks[0]?.start ?? this.#outOffset;
    const from = outOffset === null ? start : Math.min(Math.max(outOffset, 0), this.#outOffset);
    // What the client already has is acknowledged by its asking from there.
    this.#ack(from);
    const bufferStart = this.#chunks[0]?.start ?? this.#outOffset;
    const hello: FramedHello = {
      resume: this.#o.issueSecret(),
      inOffset: this.#inOffset,
      outOffset: Math.max(from, bufferStart),
      graceMs: this.#o.graceMs,
      idleTimeoutMs: this.#o.idleTimeoutMs,
    };
    this.#send(link, jsonFrame(FRAME.HELLO, hello));
    if (outOffset !== null && from < bufferStart) {
      this.#send(
        link,
        notice(`${bufferStart - from} bytes of output dropped while disconnected`),
      );
    }
    for (const chunk of this.#chunks) this.#send(link, encodeFrame(chunk.type, chunk.bytes));
    for (const held of this.#notices.splice(0)) this.#send(link, held);
    if (this.#exit) this.#send(link, this.#exit);
    if (!first) this.#o.onReattach(client.remoteAddr);
    this.#read(link, client.initial).catch(() => {});
  }

  /** Copies output until the process has exited and its output is all read. */
  async run(): Promise<ExitStatus> {
    const pumps = [this.#pump(this.#process.stdout, FRAME.STDOUT)];
    if (this.#process.stderr) pumps.push(this.#pump(this.#process.stderr, FRAME.STDERR));
    const [status] = await Promise.all([this.#process.status, ...pumps]);
    this.#processDone = true;
    return status;
  }

  /**
   * Sends the run's end in band and waits until the client has it (its
   * CLOSE), or it stays away past the grace; the connection then closes.
   */
  async end(exit: FramedExit, maxWaitMs: number): Promise<void> {
    this.#exit = jsonFrame(FRAME.EXIT, exit);
    if (this.#link) this.#send(this.#link, this.#exit);
    else if (this.#graceOver || this.#closedByClient) this.#settled.resolve();
    else if (this.#grace === undefined) this.#startGrace();
    const bound = this.#clock.setTimeout(() => this.#settled.resolve(), maxWaitMs);
    await this.#settled.promise;
    this.#clock.clearTimeout(bound);
    // Bounded: a client that stopped reading must not hold the run's end.
    if (this.#link) {
      let timer: TimerId | undefined;
      const late = new Promise<void>((resolve) =>
        timer = this.#clock.setTimeout(resolve, LINGER_MS)
      );
      await Promise.race([this.#link.writing, late]);
      this.#clock.clearTimeout(timer);
    }
    this.close();
  }

  /**
   * Tells the connected client one line (printed on its stderr); while
   * none is connected, the next one that (re)attaches (a few lines kept at most).
   */
  notice(text: string): void {
    if (this.#link) this.#send(this.#link, notice(text));
    else if (this.#notices.length < MAX_HELD_NOTICES) this.#notices.push(notice(text));
  }

  /** Ends the session now: timers, the connection, the waits. */
  close(): void {
    this.#clock.clearInterval(this.#tick);
    this.#clock.clearTimeout(this.#grace);
    if (this.#link) this.#unlink(this.#link);
    this.#settled.resolve();
    for (const wake of this.#roomWaiters.splice(0)) wake();
    try {
      this.#stdin.releaseLock();
    } catch { /* released already */ }
  }

  async #pump(stream: ReadableStream<Uint8Array>, type: Chunk["type"]): Promise<void> {
    for await (const data of stream) {
      this.#lastActivity = this.#clock.now();
      this.#o.observe?.("out", data);
      for (let at = 0; at < data.length; at += FRAME_MAX_PAYLOAD) {
        const bytes = data.subarray(at, at + FRAME_MAX_PAYLOAD);
        const chunk: Chunk = { type, bytes, start: this.#outOffset };
        this.#outOffset += bytes.length;
        this.#chunks.push(chunk);
        this.#buffered += bytes.length;
        if (this.#link) this.#send(this.#link, encodeFrame(type, bytes));
        else this.#trimRing();
      }
      // Connected: no more than the window in flight, the process waits (backpressure).
      while (this.#link && this.#buffered > FRAMED_WINDOW && !this.#closedByClient) {
        await new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
      }
    }
  }

  // Disconnected: the oldest output goes first, and the reattach says how much.
  #trimRing(): void {
    while (this.#buffered > FRAMED_WINDOW) {
      const head = this.#chunks[0]!;
      const over = this.#buffered - FRAMED_WINDOW;
      if (head.bytes.length <= over) {
        this.#chunks.shift();
        this.#buffered -= head.bytes.length;
      } else {
        this.#chunks[0] = { ...head, bytes: head.bytes.subarray(over), start: head.start + over };
        this.#buffered -= over;
      }
    }
  }

  #ack(offset: number): void {
    while (this.#chunks.length > 0) {
      const head = this.#chunks[0]!;
      const end = head.start + head.bytes.length;
      if (end <= offset) {
        this.#chunks.shift();
        this.#buffered -= head.bytes.length;
      } else {
        if (head.start < offset) {
          const cut = offset - head.start;
          this.#chunks[0] = { ...head, bytes: head.bytes.subarray(cut), start: offset };
          this.#buffered -= cut;
        }
        break;
      }
    }
    if (this.#buffered <= FRAMED_WINDOW) { for (const wake of this.#roomWaiters.splice(0)) wake(); }
  }

  async #read(link: Link, initial: Uint8Array): Promise<void> {
    const decoder = new FrameDecoder();
    const buf = new Uint8Array(64 * 1024);
    let violation: string | undefined;
    try {
      let bytes: Uint8Array | null = initial;
      while (!link.gone) {
        if (bytes === null) {
          const n = await link.conn.read(buf).catch(() => null);
          if (n === null) break;
          link.heard = this.#clock.now();
          bytes = buf.subarray(0, n);
        }
        for (const frame of decoder.push(bytes)) {
          if (link.gone) return;
          this.#frame(link, frame.type, frame.payload);
        }
        bytes = null;
      }
    } catch (e) {
      violation = e instanceof Error ? e.message : String(e);
    }
    // A stream that broke the frame rules is told why (after what was queued
    // for it, the HELLO); then, as any drop, the process waits for the grace.
    if (violation !== undefined && !link.gone) {
      this.#send(link, notice(`protocol error: ${violation}; the connection is closed`));
      return this.#dropped(link, true);
    }
    this.#dropped(link);
  }

  #frame(link: Link, type: number, payload: Uint8Array): void {
    switch (type) {
      case FRAME.STDIN: {
        if (payload.length === 0 || this.#stdinClosed) return;
        // Counted when queued: a HELLO to the next connection says where to resend from.
        this.#inOffset += payload.length;
        this.#lastActivity = this.#clock.now();
        const bytes = payload.slice();
        this.#o.observe?.("in", bytes);
        // The client keeps at most the window un-ACKed; one that does not is cut off.
        if (this.#inOffset - this.#inWritten > 2 * FRAMED_WINDOW) {
          throw new Error("The client sent stdin beyond its window");
        }
        // Queued, not awaited: a process that stops reading stdin must not stop
        // this loop from reading the ACKs that let its output go on.
        this.#stdinWrites = this.#stdinWrites
          .then(() => this.#stdin.write(bytes))
          .catch(() => {})
          .then(() => {
            this.#inWritten += bytes.length;
            if (this.#link) this.#send(this.#link, countFrame(FRAME.ACK, this.#inWritten));
          });
        return;
      }
      case FRAME.STDIN_EOF:
        // A PTY has no EOF to give: a terminal's end is its hang-up (CLOSE).
        if (!this.#o.tty && !this.#stdinClosed) {
          this.#stdinClosed = true;
          this.#stdinWrites = this.#stdinWrites.then(() => this.#stdin.close()).catch(() => {});
        }
        return;
      case FRAME.RESIZE: {
        const size = readResize(payload);
        if (size && this.#o.tty) this.#o.onResize(size.cols, size.rows);
        return;
      }
      case FRAME.ACK: {
        const offset = readCount(payload);
        if (offset !== null && offset <= this.#outOffset) this.#ack(offset);
        return;
      }
      case FRAME.CLOSE:
        this.#closedByClient = true;
        if (!this.#processDone) this.#o.onHangup();
        this.#unlink(link);
        this.#settled.resolve();
        return;
      case FRAME.KEEPALIVE:
        return;
      default:
        throw new Error(`Frame type ${type} is not the client's to send`);
    }
  }

  #send(link: Link, frame: Uint8Array): void {
    if (link.gone) return;
    link.said = this.#clock.now();
    link.writing = link.writing.then(async () => {
      if (link.broken) return;
      try {
        let off = 0;
        while (off < frame.length) off += await link.conn.write(frame.subarray(off));
      } catch {
        link.broken = true;
        this.#dropped(link);
      }
    });
  }

  #unlink(link: Link): void {
    if (link.gone) return;
    link.gone = true;
    if (this.#link === link) this.#link = undefined;
    const close = () => {
      try {
        link.conn.close();
      } catch { /* already closed */ }
    };
    // A broken link has nothing more to deliver; another closes after what was
    // queued for it (a takeover's NOTICE, the EXIT), but never later than
    // LINGER_MS: a client that stops reading must not keep its socket open.
    if (link.broken) return close();
    const linger = this.#clock.setTimeout(close, LINGER_MS);
    link.writing.finally(() => {
      this.#clock.clearTimeout(linger);
      close();
    });
  }

  // Dropped without CLOSE: the process keeps running for the grace. `flush`:
  // what is queued for the link (a NOTICE of why) is still sent first.
  #dropped(link: Link, flush = false): void {
    if (!flush) link.broken = true;
    if (link.gone) return;
    this.#unlink(link);
    for (const wake of this.#roomWaiters.splice(0)) wake();
    this.#trimRing();
    if (this.#closedByClient) return;
    this.#startGrace();
  }

  #startGrace(): void {
    this.#clock.clearTimeout(this.#grace);
    this.#grace = this.#clock.setTimeout(() => {
      this.#grace = undefined;
      if (this.#link) return;
      this.#graceOver = true;
      if (this.#processDone) this.#settled.resolve();
      else this.#o.onGraceOver();
      if (this.#exit) this.#settled.resolve();
    }, this.#o.graceMs);
  }

  #onTick(): void {
    const now = this.#clock.now();
    const link = this.#link;
    if (link) {
      if (now - link.heard >= SILENCE_MS) return this.#dropped(link);
      if (now - link.said >= KEEPALIVE_MS) this.#send(link, encodeFrame(FRAME.KEEPALIVE));
    }
    if (!this.#processDone && now - this.#lastActivity >= this.#o.idleTimeoutMs) {
      this.#lastActivity = Infinity;
      this.#o.onIdle();
    }
  }
}

function notice(text: string): Uint8Array {
  return encodeFrame(FRAME.NOTICE, encoder.encode(`oneoff: ${text}`));
}
