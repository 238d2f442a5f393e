/**
 * The relay: port 5000's byte stream carried over a WebSocket, for a CLI that
 * cannot reach the agent's port (CLI ↔ server ↔ agent, one WebSocket per leg
 * and per session). Binary messages are data (at most RELAY_MAX_MESSAGE bytes
 * each); text messages are control JSON: credit grants, the sender's EOF
 * (half-close), and a failure's reason before the socket closes.
 *
 * Flow control is per leg and by credit: a receiver lets its peer send only
 * as many bytes as it has room for (RELAY_WINDOW), and grants more as its
 * reader consumes them. So a reader that stops stops its peer's writes, and
 * what any hop holds per direction is bounded by the windows; a peer that
 * sends beyond its credit is cut off with a reason.
 * @module
 */
import {
  byType,
  decodeJson,
  type Decoder,
  type Decoding,
  integer,
  object,
  string,
} from "./_decode.ts";

/** Largest data message: what one read of port 5000 would carry at most. */
export const RELAY_MAX_MESSAGE = 64 * 1024;
/** Bytes a receiver lets its peer send ahead of what its reader consumed. */
export const RELAY_WINDOW = 1024 * 1024;
/** Path (plus `/RELAY_ID`) the agent dials back for one relayed session. */
export const AGENT_RELAY_PATH = "/agent/relay";
/** Close code of a relay leg that ended in failure (its reason came in an `error` message). */
export const RELAY_CLOSE_FAILED = 4000;
/** Silence after which the server sends a keepalive on a relay leg (under common 60 s idle limits). */
export const RELAY_KEEPALIVE_MS = 20_000;
/** How long the agent has to dial back once asked to open a relay. */
export const RELAY_DIAL_TIMEOUT_MS = 10_000;

/** A control message on a relay leg (a text WebSocket message). */
export type RelayControl =
  /** The receiver has room for `bytes` more bytes of data. */
  | { type: "credit"; bytes: number }
  /** The sender sends no more data (TCP's half-close). */
  | { type: "eof" }
  /** Why the sender is about to close the leg abnormally; the reader sees it as its error. */
  | { type: "error"; reason: string }
  /** Nothing was sent for a while: keeps idle proxies and load balancers from closing the leg. */
  | { type: "keepalive" };

const relayControl: Decoder<RelayControl> = byType({
  credit: object({ bytes: integer }),
  eof: object({}),
  error: object({ reason: string }),
  keepalive: object({}),
});

/** Parses one control message; the error names what was wrong. */
export function decodeRelayControl(text: string): Decoding<RelayControl> {
  return decodeJson(relayControl, text);
}

/** How one end of a relay leg behaves. */
export interface RelayConnOptions {
  /** What `remoteAddr` says: for the agent, the client address the server saw. */
  remoteAddr?: Deno.NetAddr;
  /** Receive window in bytes (default and at most RELAY_WINDOW). */
  window?: number;
  /**
   * Send a keepalive after this much silence (default none). Never seen by
   * the reader, so it is no activity for the session's idle timeout.
   */
  keepaliveMs?: number;
}

/** How a relay leg ended: `clean` when closed normally, else the reason. */
export interface RelayEnd {
  clean: boolean;
  reason: string;
}

/**
 * A byte connection over one relay leg, shaped like the part of Deno.Conn
 * that port 5000's code uses (read, write, closeWrite, close, remoteAddr),
 * so a relayed connection goes through exactly the code a TCP one does.
 */
export class RelayConn {
  /** The peer: for the agent, the CLI's address as the server saw it. */
  readonly remoteAddr: Deno.NetAddr;
  /** Settles once the WebSocket has closed, saying how. */
  readonly ended: Promise<RelayEnd>;

  #ws: WebSocket;
  #window: number;
  #queue: Uint8Array[] = [];
  #queued = 0;
  /** Credit the peer still holds: what it may send before we grant more. */
  #granted = 0;
  #consumed = 0;
  /** What we may still send. */
  #credit = 0;
  #eofIn = false;
  #eofOut = false;
  #closedHere = false;
  #end: RelayEnd | undefined;
  #remoteError: string | undefined;
  #changed = Promise.withResolvers<void>();
  #opened = Promise.withResolvers<void>();
  #endedResolve: (end: RelayEnd) => void;
  #lastSent = 0;
  #keepalive: ReturnType<typeof setInterval> | undefined;

  /** Takes over `ws` (open or still connecting): its handlers are this connection's. */
  constructor(ws: WebSocket, options: RelayConnOptions = {}) {
    this.#ws = ws;
    this.#window = Math.min(options.window ?? RELAY_WINDOW, RELAY_WINDOW);
    this.remoteAddr = options.remoteAddr ?? { transport: "tcp", hostname: "relay", port: 0 };
    const ended = Promise.withResolvers<RelayEnd>();
    this.ended = ended.promise;
    this.#endedResolve = ended.resolve;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => this.#message(event.data);
    ws.onclose = (event) => this.#closed(event.code, event.reason);
    ws.onerror = () => {};
    if (ws.readyState === WebSocket.OPEN) this.#open();
    else ws.onopen = () => this.#open();
    const every = options.keepaliveMs;
    if (every !== undefined) {
      this.#keepalive = setInterval(() => {
        // A leg with bytes still queued is not idle, and one more message would only queue too.
        const quiet = Date.now() - this.#lastSent >= every && this.#ws.bufferedAmount === 0;
        if (quiet && this.#ws.readyState === WebSocket.OPEN) this.#control({ type: "keepalive" });
      }, Math.max(10, every / 2));
    }
  }

  /** Bytes held here for this leg: received and unread, plus sent and not yet on the wire. */
  get bufferedBytes(): number {
    return this.#queued + (this.#end ? 0 : this.#ws.bufferedAmount);
  }

  /** Reads into `buf`; null at the peer's EOF or clean close; throws when the leg failed. */
  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#eofIn || this.#closedHere) return null;
      if (this.#end) {
        if (this.#end.clean) return null;
        throw new Error(this.#end.reason);
      }
      await this.#changed.promise;
    }
    const head = this.#queue[0]!;
    const n = Math.min(head.length, buf.length);
    buf.set(head.subarray(0, n));
    if (n === head.length) this.#queue.shift();
    else this.#queue[0] = head.subarray(n);
    this.#queued -= n;
    this.#consumed += n;
    // Granted in quarters of the window: fewer messages, and the peer never waits for a full drain.
    if (this.#consumed >= this.#window / 4 && !this.#eofIn) {
      this.#grant(this.#consumed);
      this.#consumed = 0;
    }
    return n;
  }

  /** Sends up to RELAY_MAX_MESSAGE bytes of `bytes` once the peer has room; resolves to how many. */
  async write(bytes: Uint8Array): Promise<number> {
    while (true) {
      if (this.#eofOut || this.#closedHere) throw new Error("The relay connection is closed");
      if (this.#end) {
        throw new Error(this.#end.clean ? "The relay connection is closed" : this.#end.reason);
      }
      // Credit is what the peer says it has room for; what still sits in our
      // own socket is what it has not read yet. A peer that grants without
      // reading (a hostile client) must not make that grow without bound:
      // past a window of it, wait (no event tells when it drains, so poll).
      if (this.#credit > 0 && this.#ws.bufferedAmount < RELAY_WINDOW) break;
      if (this.#credit > 0) await changedOr(this.#changed.promise, DRAIN_POLL_MS);
      else await this.#changed.promise;
    }
    if (bytes.length === 0) return 0;
    const n = Math.min(bytes.length, this.#credit, RELAY_MAX_MESSAGE);
    // A copy: the caller may reuse its buffer as soon as this resolves.
    this.#ws.send(bytes.slice(0, n));
    this.#lastSent = Date.now();
    this.#credit -= n;
    return n;
  }

  /** Tells the peer no more data comes from this side (its reads then end). */
  async closeWrite(): Promise<void> {
    if (this.#eofOut || this.#closedHere) return;
    await Promise.race([this.#opened.promise, this.ended]);
    if (this.#end || this.#eofOut) return;
    this.#eofOut = true;
    this.#control({ type: "eof" });
  }

  /** Closes the leg normally; what was written before is still delivered. */
  close(): void {
    if (this.#closedHere) return;
    this.#closedHere = true;
    this.#wake();
    try {
      this.#ws.close(1000);
    } catch { /* already closing */ }
  }

  /** Closes the leg saying why: the peer's reads fail with `reason`. */
  fail(reason: string): void {
    if (this.#closedHere) return;
    this.#closedHere = true;
    this.#wake();
    if (this.#ws.readyState === WebSocket.OPEN) this.#control({ type: "error", reason });
    try {
      // A close reason is at most 123 bytes: the full one went in the message.
      this.#ws.close(
        RELAY_CLOSE_FAILED,
        new TextEncoder().encode(reason).length <= 120 ? reason : "failed",
      );
    } catch { /* already closing */ }
  }

  #open(): void {
    this.#opened.resolve();
    this.#grant(this.#window);
  }

  #grant(bytes: number): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    this.#granted += bytes;
    this.#control({ type: "credit", bytes });
  }

  #control(msg: RelayControl): void {
    try {
      this.#ws.send(JSON.stringify(msg));
      this.#lastSent = Date.now();
    } catch { /* closing: the close event says the rest */ }
  }

  #message(data: unknown): void {
    if (typeof data === "string") {
      const decoded = decodeRelayControl(data);
      if (!decoded.ok) return this.fail(`Malformed relay control message: ${decoded.error}`);
      const msg = decoded.value;
      if (msg.type === "credit") {
        if (msg.bytes <= 0) {
          return this.fail("The relay peer granted a credit that is not positive");
        }
        // A peer's window is at most RELAY_WINDOW: more credit than that is a lie.
        if (this.#credit + msg.bytes > RELAY_WINDOW) {
          return this.fail(
            `The relay peer granted credit beyond the window of ${RELAY_WINDOW} bytes`,
          );
        }
        this.#credit += msg.bytes;
      } else if (msg.type === "eof") this.#eofIn = true;
      else if (msg.type === "error") this.#remoteError = msg.reason;
      else return;
      this.#wake();
      return;
    }
    const bytes = new Uint8Array(data as ArrayBuffer);
    if (this.#eofIn) return this.fail("The relay peer sent data after its EOF");
    if (bytes.length > RELAY_MAX_MESSAGE || bytes.length > this.#granted) {
      // The bound on what is held here is the point: a peer past it goes.
      return this.fail(
        `The relay peer sent ${bytes.length} bytes beyond its credit of ${this.#granted}`,
      );
    }
    if (bytes.length === 0) return;
    this.#granted -= bytes.length;
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    this.#wake();
  }

  #closed(code: number, reason: string): void {
    clearInterval(this.#keepalive);
    const clean = code === 1000 && this.#remoteError === undefined;
    this.#end = {
      clean,
      reason: this.#remoteError ?? (reason ||
        (clean ? "closed" : `The relay connection was lost (WebSocket close ${code})`)),
    };
    this.#opened.resolve();
    this.#wake();
    this.#endedResolve(this.#end);
  }

  #wake(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }
}

/** How often a writer held back by its socket's unsent bytes looks again. */
const DRAIN_POLL_MS = 10;

async function changedOr(changed: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  try {
    await Promise.race([changed, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Opens a WebSocket to `url` and waits until it is open; rejects with the
 * reason (status or network error) after `timeoutMs` at the latest.
 */
export function dialRelay(
  url: string,
  options: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    // Deno's WebSocket takes headers (the bearer) and honours HTTPS_PROXY and DENO_CERT as fetch does.
    const ws = new WebSocket(url, { headers: options.headers ?? {} });
    const timer = setTimeout(() => {
      ws.onopen = ws.onerror = ws.onclose = null;
      try {
        ws.close();
      } catch { /* not open */ }
      reject(new Error(`no answer within ${options.timeoutMs ?? RELAY_DIAL_TIMEOUT_MS} ms`));
    }, options.timeoutMs ?? RELAY_DIAL_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      resolve(ws);
    };
    let why = "the connection closed";
    ws.onerror = (event) => {
      why = (event as ErrorEvent).message?.replace(/^NetworkError: /, "") || why;
    };
    ws.onclose = () => {
      clearTimeout(timer);
      reject(new Error(why));
    };
  });
}
