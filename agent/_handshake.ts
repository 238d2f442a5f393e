/**
 * The parts of the port 5000 handshake: reading the secret line, the table of
 * secrets that runs wait for, and the per-address limit on failed attempts.
 * @module
 */

import { ATTACH_REFUSALS as REASONS } from "../protocol/mod.ts";
import type { AttachConn } from "./_tls_source.ts";

/** What reading the secret line came to. */
export type LineOutcome =
  | { kind: "line"; secret: Uint8Array; initial: Uint8Array }
  | { kind: "too_long" }
  | { kind: "timeout" }
  | { kind: "eof"; partial: boolean }
  | { kind: "broken" };

const NEWLINE = 0x0a;
const CR = 0x0d;

/**
 * Reads one connection's secret line into a fixed buffer of the longest
 * allowed line. At most one read is in flight, and it may outlive a timeout,
 * so the refusal can be written while that read is still pending.
 */
export class LineReader {
  #conn: AttachConn;
  #buf: Uint8Array;
  #filled = 0;
  #inflight: Promise<number | null | "error"> | undefined;

  /** Reads from `conn`, refusing lines longer than `maxLine` bytes (newline included). */
  constructor(conn: AttachConn, maxLine: number) {
    this.#conn = conn;
    this.#buf = new Uint8Array(maxLine);
  }

  /** Reads until a newline, the line limit, EOF, an error, or `stop` settles. */
  async readLine(stop: Promise<void>): Promise<LineOutcome> {
    const stopped = stop.then(() => "stop" as const);
    while (this.#filled < this.#buf.length) {
      const n = await Promise.race([this.#read(this.#filled), stopped]);
      if (n === "stop") return { kind: "timeout" };
      if (n === "error") return { kind: "broken" };
      if (n === null) return { kind: "eof", partial: this.#filled > 0 };
      const start = this.#filled;
      this.#filled += n;
      const at = this.#buf.subarray(start, this.#filled).indexOf(NEWLINE);
      if (at >= 0) return this.#split(start + at);
    }
    return { kind: "too_long" };
  }

  /**
   * Discards what the client still sends, until EOF, `limit` bytes or `stop`:
   * closing a socket with unread input resets it, and a reset can destroy the
   * refusal line before the client has read it.
   */
  async drain(stop: Promise<void>, limit: number): Promise<void> {
    const stopped = stop.then(() => "stop" as const);
    let total = 0;
    while (total < limit) {
      const n = await Promise.race([this.#read(0), stopped]);
      if (n === "stop" || n === "error" || n === null) return;
      total += n;
    }
  }

  #read(offset: number): Promise<number | null | "error"> {
    if (this.#inflight === undefined) {
      const read = this.#conn.read(this.#buf.subarray(offset)).catch(() => "error" as const);
      this.#inflight = read.finally(() => this.#inflight = undefined);
    }
    return this.#inflight;
  }

  #split(newline: number): LineOutcome {
    const end = newline > 0 && this.#buf[newline - 1] === CR ? newline - 1 : newline;
    // Copies, so that an attached session does not keep the line buffer alive.
    const secret = this.#buf.slice(0, end);
    const initial = this.#buf.slice(newline + 1, this.#filled);
    return { kind: "line", secret, initial };
  }
}

/** The answer to a presented secret. */
export type Claim<T> = { ok: true; waiter: T } | { ok: false; reason: string };

const SPENT_MEMORY_MS = 10 * 60_000;
const SWEEP_EVERY_MS = 30_000;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * The secrets runs wait for, by SHA-256 hex. Used and expired ones are
 * remembered for a while so that a late client learns why it is refused.
 */
export class SecretTable<T> {
  #waiting = new Map<string, { expiresAt: number; waiter: T }>();
  #spent = new Map<string, { reason: string; forgetAt: number }>();
  #lastSweep = 0;

  /** Registers a secret a run waits for until `expiresAt` (epoch ms). */
  expect(secretSha256: string, expiresAt: number, waiter: T, now: number): void {
    const hash = secretSha256.toLowerCase();
    if (!SHA256_HEX.test(hash)) {
      throw new Error(`Cannot expect secret hash "${secretSha256}": not 64 hex digits`);
    }
    this.#sweep(now);
    if (this.#waiting.has(hash) || this.#spent.has(hash)) {
      throw new Error(`Cannot expect secret hash "${hash}": it is already registered`);
    }
    this.#waiting.set(hash, { expiresAt, waiter });
  }

  /** Forgets a waiting secret; later attempts hear `reason` (default: the window expired). */
  cancel(secretSha256: string, now: number, reason: string = REASONS.expired): void {
    const hash = secretSha256.toLowerCase();
    if (this.#waiting.delete(hash)) {
      this.#spent.set(hash, { reason, forgetAt: now + SPENT_MEMORY_MS });
    }
  }

  /**
   * Takes the waiter of a presented secret (its {@link secretDigest}), at
   * most once. A waiter that `fits` rejects is refused and left waiting: a
   * secret presented in the wrong handshake line is not used up by it.
   */
  claim(secretSha256: string, now: number, fits: (waiter: T) => boolean = () => true): Claim<T> {
    this.#sweep(now);
    // Looked up by the secret's SHA-256, not by the secret: timing can at
    // most tell how much of a digest matched a stored one, and learning
    // digest prefixes gives nothing towards a 256-bit preimage. So no
    // constant-time compare is needed (none could be made against a map).
    const hash = secretSha256;
    const entry = this.#waiting.get(hash);
    if (entry === undefined) {
      return { ok: false, reason: this.#spent.get(hash)?.reason ?? REASONS.unknown };
    }
    if (now < entry.expiresAt && !fits(entry.waiter)) {
      return { ok: false, reason: REASONS.wrongLine };
    }
    this.#waiting.delete(hash);
    if (now >= entry.expiresAt) {
      this.#spent.set(hash, { reason: REASONS.expired, forgetAt: now + SPENT_MEMORY_MS });
      return { ok: false, reason: REASONS.expired };
    }
    this.#spent.set(hash, { reason: REASONS.used, forgetAt: now + SPENT_MEMORY_MS });
    return { ok: true, waiter: entry.waiter };
  }

  #sweep(now: number): void {
    if (now - this.#lastSweep < SWEEP_EVERY_MS) return;
    this.#lastSweep = now;
    for (const [hash, entry] of this.#waiting) {
      if (now < entry.expiresAt) continue;
      this.#waiting.delete(hash);
      this.#spent.set(hash, {
        reason: REASONS.expired,
        forgetAt: entry.expiresAt + SPENT_MEMORY_MS,
      });
    }
    for (const [hash, entry] of this.#spent) {
      if (now >= entry.forgetAt) this.#spent.delete(hash);
    }
  }
}

const WINDOW_MS = 60_000;

/** Counts failed handshakes per source address over a sliding minute. */
export class FailureLimiter {
  #max: number;
  #byAddress = new Map<string, number[]>();
  #lastSweep = 0;

  /** Allows `maxPerMinute` failures per address before refusing it. */
  constructor(maxPerMinute: number) {
    if (!Number.isInteger(maxPerMinute) || maxPerMinute < 1) {
      throw new Error(`Invalid maxFailuresPerMinute "${maxPerMinute}": use an integer >= 1`);
    }
    this.#max = maxPerMinute;
  }

  /** True when `address` has used up its failures for now. */
  blocked(address: string, now: number): boolean {
    const times = this.#byAddress.get(address);
    if (times === undefined) return false;
    return times.filter((t) => t > now - WINDOW_MS).length >= this.#max;
  }

  /** Counts one failure of `address`. */
  record(address: string, now: number): void {
    const times = this.#byAddress.get(address) ?? [];
    times.push(now);
    // Only the latest `max` failures can decide, so older ones are dropped.
    if (times.length > this.#max) times.shift();
    this.#byAddress.set(address, times);
    this.#sweep(now);
  }

  #sweep(now: number): void {
    if (now - this.#lastSweep < WINDOW_MS) return;
    this.#lastSweep = now;
    for (const [address, times] of this.#byAddress) {
      if (times.every((t) => t <= now - WINDOW_MS)) this.#byAddress.delete(address);
    }
  }
}

/**
 * The lowercase hex SHA-256 a secret is looked up by. WebCrypto, not
 * node:crypto: loading Node's compatibility layer costs the idle agent
 * megabytes of memory it would not otherwise use.
 */
export async function secretDigest(secret: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(secret)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
