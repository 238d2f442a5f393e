/**
 * The agent's port 5000: accepts TCP (or TLS) connections, reads each one's
 * secret line and hands the connection to the run that waits for that secret.
 * The agent writes nothing of its own on success, and one refusal line
 * otherwise (see DESIGN.md, "Port 5000: the attached stream").
 * @module
 */

import {
  ATTACH_HANDSHAKE_TIMEOUT_MS,
  ATTACH_MAX_LINE,
  ATTACH_REFUSALS as REASONS,
  attachRefusal,
  parseHandshake,
  pemFingerprint,
} from "../protocol/mod.ts";
import type { Logger } from "../util/log.ts";
import { FailureLimiter, LineReader, secretDigest, SecretTable } from "./_handshake.ts";
import { PendingSet } from "./_pending.ts";
import { type AttachConn, type AttachSource, listenTlsSource } from "./_tls_source.ts";

export type { AttachConn } from "./_tls_source.ts";

/** How long a refused connection may take to read its refusal line. */
const LINGER_MS = 1_000;
/** Bytes of a refused client's input read and dropped before closing. */
const DRAIN_LIMIT = 64 * 1024;
/** Pause after a failing accept (e.g. out of file descriptors) before the next. */
const ACCEPT_BACKOFF_MS = 100;

/** Where and how the attach listener listens. */
export interface AttachListenerOptions {
  /** Address to bind, e.g. "0.0.0.0" or "127.0.0.1". */
  hostname: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** PEM certificate and key: TLS instead of plain TCP when given. */
  tls?: { cert: string; key: string };
  /** Time a client has to send its secret line (default ATTACH_HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  /**
   * Connections still in their handshake, in all (default 256): beyond it the
   * oldest unauthenticated connection of the address holding the most goes.
   */
  maxPendingHandshakes?: number;
  /** Connections in their handshake per source address; beyond it that address's oldest goes (default 16). */
  maxPendingPerAddress?: number;
  /** Where refused secrets (address and reason, never the secret) are logged. */
  log?: Logger;
  /** Failed handshakes per source address before refusing (default 10 per minute). */
  maxFailuresPerMinute?: number;
  /** Clock in epoch milliseconds, for tests. */
  now?: () => number;
  /** Told of each handshake's outcome (metrics); a refusal comes with its reason. */
  onHandshake?: (outcome: "accepted" | "refused", reason?: string) => void;
}

/**
 * A client that presented a valid secret. `initial` = bytes that followed the
 * newline in the same read(s): they belong to the process's stdin.
 */
export interface AttachedClient {
  /** The connection, now the run's to use and close. */
  conn: AttachConn;
  /** Bytes already read after the secret line. */
  initial: Uint8Array;
  /** The client's address, `host:port` (IPv6 hosts in brackets). */
  remoteAddr: string;
  /**
   * What the handshake line asked for (absent: raw): `framed` (our CLI's first
   * attach) or `resume` (a reattach, from output offset `outOffset`, null for
   * "whatever is still buffered").
   */
  handshake?: { mode: "raw" | "framed" } | { mode: "resume"; outOffset: number | null };
}

type OnAttach = (client: AttachedClient) => void;

/**
 * Which handshake lines a secret is for: a run's own secret (`first`) starts
 * a session, raw or framed; a framed session's resume secret (`resume`)
 * only reattaches it.
 */
export type SecretUse = "first" | "resume";

/** The port 5000 listener: matches incoming connections to waiting runs by secret. */
export class AttachListener {
  /** The bound port. */
  readonly port: number;
  /** The bound address. */
  readonly hostname: string;
  /** True when clients must speak TLS. */
  readonly tls: boolean;
  /** SHA-256 hex fingerprint of the certificate's DER (when TLS), for the CLI to pin. */
  readonly tlsFingerprint: string | undefined;

  #listener: AttachSource;
  #timeoutMs: number;
  #maxPending: number;
  #now: () => number;
  #onHandshake: AttachListenerOptions["onHandshake"];
  #secrets = new SecretTable<{ onAttach: OnAttach; use: SecretUse }>();
  #limiter: FailureLimiter;
  #pending: PendingSet<AttachConn>;
  #log: Logger | undefined;
  #tasks = new Set<Promise<void>>();
  #closed = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void>;

  /** Binds the listener and starts accepting. */
  static async listen(options: AttachListenerOptions): Promise<AttachListener> {
    const fingerprint = options.tls && await pemFingerprint(options.tls.cert);
    const where = { hostname: options.hostname, port: options.port };
    checkOptions(options);
    let source: AttachSource;
    try {
      // TLS is accepted as TCP and upgraded here, so that a client that never
      // starts its handshake is closed at the deadline like any other.
      source = options.tls ? await listenTlsSource(where, options.tls) : Deno.listen(where);
    } catch (cause) {
      throw new Error(`Cannot listen for attach on "${options.hostname}:${options.port}"`, {
        cause,
      });
    }
    return new AttachListener(options, source, fingerprint);
  }

  private constructor(
    options: AttachListenerOptions,
    source: AttachSource,
    fingerprint: string | undefined,
  ) {
    this.#timeoutMs = options.handshakeTimeoutMs ?? ATTACH_HANDSHAKE_TIMEOUT_MS;
    this.#maxPending = options.maxPendingHandshakes ?? 256;
    this.#pending = new PendingSet(this.#maxPending, options.maxPendingPerAddress ?? 16);
    this.#log = options.log;
    this.#limiter = new FailureLimiter(options.maxFailuresPerMinute ?? 10);
    this.#now = options.now ?? Date.now;
    this.#onHandshake = options.onHandshake;
    this.tlsFingerprint = fingerprint;
    this.#listener = source;
    const addr = this.#listener.addr as Deno.NetAddr;
    this.port = addr.port;
    this.hostname = addr.hostname;
    this.tls = options.tls !== undefined;
    this.#loop = this.#acceptLoop();
  }

  /**
   * Registers a run waiting for its client: secretSha256 is the hex SHA-256 of
   * the secret. `onAttach` is called at most once, with the connection;
   * a line of the wrong kind for `use` is refused and leaves the secret waiting.
   */
  expect(
    secretSha256: string,
    expiresAt: number,
    onAttach: OnAttach,
    use: SecretUse = "first",
  ): void {
    this.#secrets.expect(secretSha256, expiresAt, { onAttach, use }, this.#now());
  }

  /** Forgets a secret (run stopped or expired); later attempts are told why (`reason`, default expired). */
  cancel(secretSha256: string, reason?: string): void {
    this.#secrets.cancel(secretSha256, this.#now(), reason);
  }

  /** Stops listening and closes the connections still in their handshake. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      closeQuietly(this.#listener);
      this.#wake?.();
      for (const conn of this.#pending.all()) closeQuietly(conn);
    }
    await this.#loop;
    await Promise.all(this.#tasks);
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: AttachConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        if (this.#closed) return;
        await new Promise<void>((resolve) => {
          const id = setTimeout(resolve, ACCEPT_BACKOFF_MS);
          this.#wake = () => (clearTimeout(id), resolve());
        });
        continue;
      }
      this.#admit(conn);
    }
  }

  /**
   * Takes a connection that did not come through the port, the relay through
   * the server, into the very handshake of a TCP one (secret line, limit on
   * failed attempts, refusals). `remoteAddr` is the client's address as the
   * server saw it (`host` or `host:port`): the limit counts against it, not
   * against the server's.
   */
  acceptRelayed(conn: AttachConn, remoteAddr: string): void {
    this.#admit(withRemoteAddr(conn, remoteAddr));
  }

  /** Connections still in their handshake (for tests and metrics). */
  get pendingHandshakes(): number {
    return this.#pending.size;
  }

  #admit(conn: AttachConn): void {
    if (this.#closed) {
      closeQuietly(conn);
      return;
    }
    // A flood of idle connections must neither grow memory without bound nor
    // crowd out a client from elsewhere: the flood's own oldest goes instead.
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    const evicted = this.#pending.add(conn, address);
    if (evicted !== undefined) closeQuietly(evicted);
    const task: Promise<void> = this.#serve(conn)
      .catch(() => {})
      .finally(() => {
        this.#pending.delete(conn);
        this.#tasks.delete(task);
      });
    this.#tasks.add(task);
  }

  async #serve(conn: AttachConn): Promise<void> {
    const addr = conn.remoteAddr as Deno.NetAddr;
    const reader = new LineReader(conn, ATTACH_MAX_LINE);
    const timeout = timer(this.#timeoutMs);
    let attached = false;
    const refuse = async (reason: string, counts: boolean) => {
      if (counts) {
        this.#limiter.record(addr.hostname, this.#now());
        // The address, never what was sent: a near-miss secret must not land in logs.
        this.#log?.warn("attach refused", { address: addr.hostname, reason });
      }
      this.#onHandshake?.("refused", reason);
      await refuseConn(conn, reader, reason);
    };
    try {
      if (this.#limiter.blocked(addr.hostname, this.#now())) {
        return await refuse(REASONS.limited, false);
      }
      const outcome = await reader.readLine(timeout.done);
      switch (outcome.kind) {
        case "timeout":
          return await refuse(REASONS.timeout, true);
        case "too_long":
          return await refuse(REASONS.tooLong, true);
        case "eof":
          // An empty connection is a port probe or a health check, not an attempt.
          if (outcome.partial) await refuse(REASONS.noNewline, true);
          return;
        case "broken":
          return;
      }
      if (this.#limiter.blocked(addr.hostname, this.#now())) {
        return await refuse(REASONS.limited, false);
      }
      // The line's prefix chooses the mode; a line without one is a raw secret, as ever.
      const line = parseHandshake(outcome.secret);
      const resume = line.mode === "resume";
      const claim = this.#secrets.claim(
        await secretDigest(line.secret),
        this.#now(),
        (waiter) => (waiter.use === "resume") === resume,
      );
      if (!claim.ok) return await refuse(claim.reason, true);
      attached = true;
      this.#onHandshake?.("accepted");
      this.#pending.delete(conn);
      const remoteAddr = addr.hostname.includes(":")
        ? `[${addr.hostname}]:${addr.port}`
        : `${addr.hostname}:${addr.port}`;
      try {
        const handshake = line.mode === "resume"
          ? { mode: line.mode, outOffset: line.outOffset }
          : { mode: line.mode };
        claim.waiter.onAttach({ conn, initial: outcome.initial, remoteAddr, handshake });
      } catch {
        // The run could not take its client; nobody else will, so close it.
        attached = false;
      }
    } finally {
      timeout.cancel();
      if (!attached) closeQuietly(conn);
    }
  }
}

/** `conn` seen as coming from `address` (`host`, `host:port` or `[v6]:port`). */
function withRemoteAddr(conn: AttachConn, address: string): AttachConn {
  const match = /^\[(.*)\]:(\d+)$/.exec(address) ?? /^([^:]*):(\d+)$/.exec(address);
  const remoteAddr: Deno.NetAddr = {
    transport: "tcp",
    hostname: match ? match[1]! : address,
    port: match ? Number(match[2]) : 0,
  };
  return {
    remoteAddr,
    read: (buf) => conn.read(buf),
    write: (bytes) => conn.write(bytes),
    closeWrite: () => conn.closeWrite(),
    close: () => conn.close(),
  };
}

function checkOptions(options: AttachListenerOptions): void {
  const timeoutMs = options.handshakeTimeoutMs ?? ATTACH_HANDSHAKE_TIMEOUT_MS;
  const maxPending = options.maxPendingHandshakes ?? 256;
  if (!(timeoutMs > 0)) {
    throw new Error(`Invalid handshakeTimeoutMs "${timeoutMs}": use a positive number`);
  }
  if (!Number.isInteger(maxPending) || maxPending < 1) {
    throw new Error(`Invalid maxPendingHandshakes "${maxPending}": use an integer >= 1`);
  }
}

/** Writes the refusal line, half-closes, and waits (bounded) for the client to go. */
async function refuseConn(conn: AttachConn, reader: LineReader, reason: string): Promise<void> {
  const linger = timer(LINGER_MS);
  try {
    // Bounded: a TLS client that never finishes its handshake blocks the write.
    const sent = writeAll(conn, new TextEncoder().encode(attachRefusal(reason)))
      .then(() => conn.closeWrite())
      .catch(() => {});
    await Promise.race([sent, linger.done]);
    await reader.drain(linger.done, DRAIN_LIMIT);
  } finally {
    linger.cancel();
  }
}

async function writeAll(conn: AttachConn, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await conn.write(bytes.subarray(done));
}

function timer(ms: number): { done: Promise<void>; cancel: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => id = setTimeout(resolve, ms));
  return { done, cancel: () => clearTimeout(id) };
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Already closed: by the peer's reset, by close(), or by the run.
  }
}
