/**
 * The CLI's framed session: stdout and stderr to their own fds, NOTICE lines
 * on stderr, the exit in band, keep-alives, and a reconnect with backoff
 * after a dropped connection that replays what was missed and resends the
 * stdin the agent had not acknowledged, so the user sees every byte once.
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
  isWatchNotice,
  KEEPALIVE_MS,
  readCount,
  readHello,
  readJson,
  resizeFrame,
  RESUME_PREFIX,
  SILENCE_MS,
  TAKEOVER_NOTICE,
} from "../protocol/mod.ts";
import type { ByteConn } from "./_tls.ts";

/** How the framed client behaves. */
export interface FramedClientOptions {
  tty: boolean;
  silent: boolean;
  /** The client's first connection is another terminal's reattach (`-`): its stdin starts where the agent's is. */
  takeover: boolean;
  /**
   * Resolves when the server has declared the run lost (its agent went
   * away): reconnecting is pointless then, and stops rather than wait out
   * the grace.
   */
  lost?: Promise<unknown>;
}

/** How a framed session ended for this client. */
export interface FramedOutcome {
  /** The run's end, in band; null when it never came (refused, or the grace ran out). */
  exit: FramedExit | null;
  /** The agent refused the handshake line: its reason. */
  refused?: string;
  /** The session was joined (a HELLO came) before it ended this way. */
  joined: boolean;
  /** Another terminal took the session over (`oneoff attach`): this one let go, no reconnect. */
  takenOver?: boolean;
}

type Ending = "exit" | "dropped" | "unreached" | { refused: string };
type Link = { conn: ByteConn; writing: Promise<void>; said: number; heard: number };

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 5_000;
const DIAL_TIMEOUT_MS = 5_000;
const REFUSAL = 0x6f; // "o" of "oneoff: reason\r\n": a refusal line, not a frame
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Stdin read and not yet acknowledged by the agent, by offset. */
class StdinLog {
  chunks: Uint8Array[] = [];
  base = 0;
  total = 0;
  eof = false;
  #waiters: (() => void)[] = [];

  push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.total += bytes.length;
  }

  ack(offset: number): void {
    while (this.chunks.length > 0 && this.base + this.chunks[0]!.length <= offset) {
      this.base += this.chunks.shift()!.length;
    }
    const head = this.chunks[0];
    if (head && offset > this.base) {
      this.chunks[0] = head.subarray(offset - this.base);
      this.base = offset;
    }
    if (this.total - this.base <= FRAMED_WINDOW) {
      for (const wake of this.#waiters.splice(0)) wake();
    }
  }

  /** Waits while more than the window is unacknowledged. */
  async room(): Promise<void> {
    while (this.total - this.base > FRAMED_WINDOW) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }
}

/** One framed session, across its reconnects; see the module documentation. */
export class FramedClient {
  #dial: () => Promise<ByteConn>;
  #o: FramedClientOptions;
  #stdin = new StdinLog();
  #stdinStarted = false;
  #link: Link | undefined;
  #hello: FramedHello | undefined;
  #out = 0;
  #acked = 0;
  #exit: FramedExit | null = null;
  #takenOver = false;

  /** `dial` opens a connection to the agent's attach port (direct or relayed). */
  constructor(dial: () => Promise<ByteConn>, options: FramedClientOptions) {
    this.#dial = dial;
    this.#o = options;
  }

  /** Runs the session from `line` (the handshake) to the run's end, reconnecting as needed. */
  async run(line: string): Promise<FramedOutcome> {
    let result: Ending = await this.#session(await this.#dial(), line);
    if (result === "unreached") {
      return { exit: null, refused: "the agent closed the connection", joined: false };
    }
    let lost = false;
    const never = new Promise<void>(() => {});
    // A server that cannot say (unreachable) leaves the reconnect to the grace, as before.
    const lostNow = (this.#o.lost ?? never).then(() => void (lost = true), () => never);
    while (result === "dropped") {
      // Taken over: the other terminal has the session now; this one does not fight it.
      if (this.#takenOver) return { exit: null, joined: true, takenOver: true };
      const hello = this.#hello!;
      const deadline = Date.now() + hello.graceMs;
      this.#say("oneoff: the connection to the agent dropped; reconnecting…");
      let next: Ending | "gone" | "refused" = "gone";
      for (
        let wait = BACKOFF_MIN_MS;
        Date.now() < deadline;
        wait = Math.min(wait * 2, BACKOFF_MAX_MS)
      ) {
        await Promise.race([sleep(Math.min(wait, Math.max(0, deadline - Date.now()))), lostNow]);
        if (lost) {
          next = "refused";
          break;
        }
        let refused = false;
        const conn = await withTimeout(this.#dial(), DIAL_TIMEOUT_MS).catch((e) => {
          refused = isRefused(e);
          return null;
        });
        // Nothing listens there: the agent is gone, and its sessions with it.
        if (refused) {
          next = "refused";
          break;
        }
        if (conn === null) continue;
        const r = await this.#session(conn, `${RESUME_PREFIX}${hello.resume} ${this.#out}`);
        if (r === "unreached") continue;
        next = r;
        break;
      }
      // Refused: the caller says the connection was lost and asks the server for the end.
      if (next === "refused") return { exit: null, joined: true };
      if (next === "gone") {
        this.#say("oneoff: could not reconnect to the agent within the reattach grace");
        return { exit: null, joined: true };
      }
      result = next;
    }
    const joined = this.#hello !== undefined;
    if (typeof result === "object") return { exit: null, refused: result.refused, joined };
    return { exit: this.#exit, joined };
  }

  /** Sends the user's clean end (CLOSE): the process is hung up at once, no grace. */
  async hangUp(): Promise<void> {
    const link = this.#link;
    if (!link) return;
    this.#send(link, encodeFrame(FRAME.CLOSE));
    await withTimeout(link.writing, 1_000).catch(() => {});
  }

  /** Tells the agent the terminal's new size. */
  resize(cols: number, rows: number): void {
    if (this.#link) this.#send(this.#link, resizeFrame(cols, rows));
  }

  /**
   * One connection: "exit" once EXIT came, "dropped" when it broke first,
   * "unreached" when it broke before a HELLO, or the agent's refusal.
   */
  async #session(
    conn: ByteConn,
    line: string,
  ): Promise<Ending> {
    const now = Date.now();
    const link: Link = { conn, writing: Promise.resolve(), said: now, heard: now };
    this.#send(link, encoder.encode(line + "\n"));
    const frames = new FrameDecoder();
    const buf = new Uint8Array(64 * 1024);
    let greeted = false;
    let fresh = true;
    const tick = setInterval(() => {
      const t = Date.now();
      if (t - link.heard >= SILENCE_MS) close(conn);
      else if (t - link.said >= KEEPALIVE_MS) this.#send(link, encodeFrame(FRAME.KEEPALIVE));
    }, 5_000);
    try {
      while (true) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) return greeted ? "dropped" : "unreached";
        link.heard = Date.now();
        if (fresh && buf[0] === REFUSAL) return { refused: await refusal(conn, buf, n) };
        fresh = false;
        for (const frame of frames.push(buf.subarray(0, n))) {
          if (!greeted) {
            const hello = frame.type === FRAME.HELLO ? readHello(frame.payload) : null;
            if (!hello) return "unreached";
            greeted = true;
            this.#greet(link, hello);
            continue;
          }
          if (this.#frame(frame.type, frame.payload)) {
            this.#send(link, countFrame(FRAME.ACK, this.#out));
            this.#send(link, encodeFrame(FRAME.CLOSE));
            await withTimeout(link.writing, 1_000).catch(() => {});
            return "exit";
          }
        }
        if (this.#out > this.#acked) {
          this.#acked = this.#out;
          this.#send(link, countFrame(FRAME.ACK, this.#out));
        }
      }
    } catch {
      // A stream that broke the frame rules: as a drop, the resume starts clean.
      return greeted ? "dropped" : "unreached";
    } finally {
      clearInterval(tick);
      if (this.#link === link) this.#link = undefined;
      close(conn);
    }
  }

  #greet(link: Link, hello: FramedHello): void {
    const first = this.#hello === undefined;
    if (!first) this.#say("oneoff: reconnected");
    this.#hello = hello;
    if (first && this.#o.takeover) this.#stdin.base = this.#stdin.total = hello.inOffset;
    // The agent has stdin up to inOffset: what follows is sent (again), in order.
    this.#stdin.ack(hello.inOffset);
    this.#out = this.#acked = hello.outOffset;
    this.#link = link;
    let offset = this.#stdin.base;
    for (const chunk of this.#stdin.chunks) {
      if (offset + chunk.length > hello.inOffset) this.#send(link, encodeFrame(FRAME.STDIN, chunk));
      offset += chunk.length;
    }
    if (this.#stdin.eof && !this.#o.tty) this.#send(link, encodeFrame(FRAME.STDIN_EOF));
    if (!this.#stdinStarted) {
      this.#stdinStarted = true;
      this.#pumpStdin().catch(() => {});
    }
  }

  /** Handles one frame after the HELLO; true when it was the EXIT. */
  #frame(type: number, payload: Uint8Array): boolean {
    switch (type) {
      case FRAME.STDOUT:
        writeAll(Deno.stdout, payload);
        this.#out += payload.length;
        return false;
      case FRAME.STDERR:
        writeAll(Deno.stderr, payload);
        this.#out += payload.length;
        return false;
      case FRAME.NOTICE: {
        const text = decoder.decode(payload);
        if (text.startsWith(TAKEOVER_NOTICE)) this.#takenOver = true;
        // Being watched is said even to a --silent session: it is about its user's
        // privacy; on a terminal, on a line of its own, not after the prompt.
        if (isWatchNotice(text)) this.#say(this.#o.tty ? `\r\n${text}` : text, true);
        else this.#say(text);
        return false;
      }
      case FRAME.ACK: {
        const offset = readCount(payload);
        if (offset !== null) this.#stdin.ack(offset);
        return false;
      }
      case FRAME.EXIT:
        this.#exit = readJson(payload) as FramedExit | null;
        return true;
      default:
        return false;
    }
  }

  async #pumpStdin(): Promise<void> {
    const buf = new Uint8Array(FRAME_MAX_PAYLOAD);
    while (true) {
      await this.#stdin.room();
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      const bytes = buf.slice(0, n);
      this.#stdin.push(bytes);
      if (this.#link) this.#send(this.#link, encodeFrame(FRAME.STDIN, bytes));
    }
    this.#stdin.eof = true;
    // No-TTY: stdin's end is the process's EOF. A terminal's end is not a hang-up.
    if (this.#link && !this.#o.tty) this.#send(this.#link, encodeFrame(FRAME.STDIN_EOF));
  }

  #send(link: Link, bytes: Uint8Array): void {
    link.said = Date.now();
    link.writing = link.writing.then(async () => {
      let off = 0;
      while (off < bytes.length) off += await link.conn.write(bytes.subarray(off));
    }).catch(() => close(link.conn));
  }

  #say(text: string, always = false): void {
    if (this.#o.silent && !always) return;
    const line = text.replace(/\r?\n$/, "");
    // "\n" even in raw mode: the terminal's output processing (OPOST) stays on.
    writeAll(Deno.stderr, encoder.encode(line + "\n"));
  }
}

async function refusal(conn: ByteConn, buf: Uint8Array, n: number): Promise<string> {
  let text = decoder.decode(buf.subarray(0, n));
  while (!text.includes("\n") && text.length < 512) {
    const more = await conn.read(buf).catch(() => null);
    if (more === null) break;
    text += decoder.decode(buf.subarray(0, more));
  }
  return text.replace(/^oneoff: /, "").trim();
}

function isRefused(e: unknown): boolean {
  const cause = e instanceof Error ? e.cause : undefined;
  return e instanceof Deno.errors.ConnectionRefused ||
    cause instanceof Deno.errors.ConnectionRefused;
}

function writeAll(file: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
}

function close(conn: ByteConn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const id = setTimeout(resolve, ms);
    // A reconnect cut short (the run was lost) must not hold the CLI open.
    Deno.unrefTimer(id);
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
