/**
 * The framed attach protocol our CLI speaks on port 5000 (raw `SECRET\n`
 * stays for nc): the handshake lines that choose it, and the frames,
 * `[type u8][length u32 BE][payload]`. See the README, "Framed mode".
 * @module
 */

/** Handshake prefix of a framed session's first attach: `oneoff-framed/1 SECRET\n`. */
export const FRAMED_PREFIX = "oneoff-framed/1 ";
/** Handshake prefix of a reattach: `oneoff-resume/1 RESUME_SECRET OUT_OFFSET|-\n`. */
export const RESUME_PREFIX = "oneoff-resume/1 ";
/** The NOTICE a terminal gets when `oneoff attach` took its session over (an address follows). */
export const TAKEOVER_NOTICE = "oneoff: this session was attached from another terminal";
/** Largest payload of one frame; a bigger length is a protocol error. */
export const FRAME_MAX_PAYLOAD = 64 * 1024;
/** Bytes of a frame's header. */
export const FRAME_HEADER = 5;
/** Output bytes the agent keeps in flight un-ACKed while connected (and buffers while not). */
export const FRAMED_WINDOW = 1024 * 1024;
/** A side sends a keep-alive when it has sent nothing for this long. */
export const KEEPALIVE_MS = 20_000;
/** A side that hears nothing for this long treats the connection as dropped. */
export const SILENCE_MS = 60_000;

/**
 * Frame types. None is 0x6f ("o"): a reply starting with it is a refusal
 * line (`oneoff: reason\r\n`), not a frame.
 */
export const FRAME = {
  // client → agent
  STDIN: 1,
  STDIN_EOF: 2,
  RESIZE: 3,
  CLOSE: 4,
  // both ways: KEEPALIVE; ACK = output bytes received (client) or stdin bytes received (agent)
  KEEPALIVE: 5,
  ACK: 6,
  // agent → client
  HELLO: 16,
  STDOUT: 17,
  STDERR: 18,
  EXIT: 19,
  NOTICE: 20,
} as const;

/** One frame type. */
export type FrameType = typeof FRAME[keyof typeof FRAME];

const TYPES = new Set<number>(Object.values(FRAME));

/** One decoded frame. */
export interface Frame {
  type: FrameType;
  payload: Uint8Array;
}

/** What the agent says first on a framed connection. */
export interface FramedHello {
  /** The one-use secret of the next reattach. */
  resume: string;
  /** Stdin bytes the agent has: the client resends from here. */
  inOffset: number;
  /** Output offset of the first output byte this connection carries. */
  outOffset: number;
  /** How long the process waits for a dropped client to come back. */
  graceMs: number;
  idleTimeoutMs: number;
}

/** How the run ended, in band (the API's snake_case, as `RunInfo`). */
export interface FramedExit {
  state: string;
  exit_code: number | null;
  signal: string | null;
  reason: string | null;
}

/** What a handshake line asks for. */
export type Handshake =
  | { mode: "raw"; secret: Uint8Array }
  | { mode: "framed"; secret: Uint8Array }
  | { mode: "resume"; secret: Uint8Array; outOffset: number | null };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function startsWith(line: Uint8Array, prefix: Uint8Array): boolean {
  if (line.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (line[i] !== prefix[i]) return false;
  return true;
}

const FRAMED_BYTES = encoder.encode(FRAMED_PREFIX);
const RESUME_BYTES = encoder.encode(RESUME_PREFIX);

/**
 * Reads a handshake line (without its newline). Anything without a known
 * prefix is a raw secret, byte for byte as before; a resume line with a bad
 * offset is read as a raw secret too, which no table knows.
 */
export function parseHandshake(line: Uint8Array): Handshake {
  if (startsWith(line, FRAMED_BYTES)) {
    return { mode: "framed", secret: line.slice(FRAMED_BYTES.length) };
  }
  if (startsWith(line, RESUME_BYTES)) {
    const rest = decoder.decode(line.subarray(RESUME_BYTES.length));
    const match = /^(\S+) (-|\d{1,15})$/.exec(rest);
    if (match) {
      const offset = match[2] === "-" ? null : Number(match[2]);
      return { mode: "resume", secret: encoder.encode(match[1]), outOffset: offset };
    }
  }
  return { mode: "raw", secret: line };
}

/** Encodes one frame; throws on a payload over FRAME_MAX_PAYLOAD. */
export function encodeFrame(type: FrameType, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (payload.length > FRAME_MAX_PAYLOAD) {
    throw new Error(`Cannot encode frame: payload of ${payload.length} bytes is over 64 KiB`);
  }
  const frame = new Uint8Array(FRAME_HEADER + payload.length);
  frame[0] = type;
  new DataView(frame.buffer).setUint32(1, payload.length);
  frame.set(payload, FRAME_HEADER);
  return frame;
}

/** Encodes a frame whose payload is JSON. */
export function jsonFrame(type: FrameType, value: unknown): Uint8Array {
  return encodeFrame(type, encoder.encode(JSON.stringify(value)));
}

/** Encodes an ACK (or any u64 count) frame. */
export function countFrame(type: FrameType, count: number): Uint8Array {
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setBigUint64(0, BigInt(count));
  return encodeFrame(type, payload);
}

/** Encodes a RESIZE frame. */
export function resizeFrame(cols: number, rows: number): Uint8Array {
  const payload = new Uint8Array(4);
  const view = new DataView(payload.buffer);
  view.setUint16(0, Math.min(0xffff, Math.max(1, cols)));
  view.setUint16(2, Math.min(0xffff, Math.max(1, rows)));
  return encodeFrame(FRAME.RESIZE, payload);
}

/** The u64 count of an ACK frame; null when the payload is not 8 bytes. */
export function readCount(payload: Uint8Array): number | null {
  if (payload.length !== 8) return null;
  const value = new DataView(payload.buffer, payload.byteOffset, 8).getBigUint64(0);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(value);
}

/** The size of a RESIZE frame; null when the payload is not 4 bytes. */
export function readResize(payload: Uint8Array): { cols: number; rows: number } | null {
  if (payload.length !== 4) return null;
  const view = new DataView(payload.buffer, payload.byteOffset, 4);
  return { cols: view.getUint16(0), rows: view.getUint16(2) };
}

/** The JSON payload of a frame; null when it is not JSON. */
export function readJson(payload: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(payload));
  } catch {
    return null;
  }
}

/** A HELLO's payload checked; null when it is not one. */
export function readHello(payload: Uint8Array): FramedHello | null {
  const v = readJson(payload) as Partial<FramedHello> | null;
  if (typeof v !== "object" || v === null) return null;
  const n = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
  if (typeof v.resume !== "string" || !n(v.inOffset) || !n(v.outOffset)) return null;
  if (!n(v.graceMs) || !n(v.idleTimeoutMs)) return null;
  return v as FramedHello;
}

/** A frame stream broke its rules: the connection is closed. */
export class FrameError extends Error {
  /** Says what was wrong with the stream. */
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/**
 * Cuts a byte stream into frames. `push` takes bytes as they arrive and
 * returns the complete frames; a length over FRAME_MAX_PAYLOAD or an unknown
 * type throws a FrameError (the peer is closed: there is no resync).
 */
export class FrameDecoder {
  #buf = new Uint8Array(FRAME_HEADER + FRAME_MAX_PAYLOAD);
  #filled = 0;

  /** Bytes held of a frame not complete yet (a truncated stream ends with some). */
  get pending(): number {
    return this.#filled;
  }

  /** Adds bytes; returns the frames they complete, in order. */
  push(bytes: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < bytes.length) {
      if (this.#filled < FRAME_HEADER) {
        const take = Math.min(FRAME_HEADER - this.#filled, bytes.length - at);
        this.#buf.set(bytes.subarray(at, at + take), this.#filled);
        this.#filled += take;
        at += take;
        if (this.#filled < FRAME_HEADER) break;
        this.#check();
      }
      const need = FRAME_HEADER + this.#length() - this.#filled;
      const take = Math.min(need, bytes.length - at);
      this.#buf.set(bytes.subarray(at, at + take), this.#filled);
      this.#filled += take;
      at += take;
      if (this.#filled === FRAME_HEADER + this.#length()) {
        frames.push({
          type: this.#buf[0] as FrameType,
          payload: this.#buf.slice(FRAME_HEADER, this.#filled),
        });
        this.#filled = 0;
      }
    }
    return frames;
  }

  #length(): number {
    return new DataView(this.#buf.buffer).getUint32(1);
  }

  #check(): void {
    const type = this.#buf[0]!;
    if (!TYPES.has(type)) throw new FrameError(`Unknown frame type ${type}`);
    const length = this.#length();
    if (length > FRAME_MAX_PAYLOAD) {
      throw new FrameError(`Frame of ${length} bytes is over the 64 KiB limit`);
    }
  }
}
