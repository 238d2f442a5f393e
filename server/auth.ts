/**
 * Bearer API tokens: made here, stored only as SHA-256 hashes, checked on
 * every route, with failed attempts rate-limited per client address and per
 * presented token.
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/deno";
import type { Store, TokenRow } from "./store/mod.ts";
import { HttpError } from "./http_error.ts";
import type { TrustedProxies } from "./client_address.ts";

/** What an authenticated request carries. */
export interface Auth {
  token: TokenRow;
  /** Shown as the actor of changes. */
  actor: string;
}

/** Hono variables set by the auth middleware. */
export type AuthEnv = { Variables: { auth: Auth } };

/** A new random token with a recognisable prefix. */
export function newToken(prefix = "oo"): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

/** Hex SHA-256 of a token or secret. */
export function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

/** Keys a {@link FailureLimiter} keeps at most. */
const MAX_KEYS = 10_000;

/** Options of a {@link FailureLimiter}. */
export interface FailureLimiterOptions {
  /** Failures per key and window before the key is blocked. */
  limit: number;
  /** The sliding window (default a minute). */
  windowMs?: number;
  /** How long a refusal of a blocked key waits before it answers (default 500 ms). */
  penaltyMs?: number;
  now?: () => number;
}

/**
 * Counts failures per key in a sliding window; past the limit the key is
 * blocked. Callers check the credential first and consult the limiter only
 * for one that failed, so a valid credential is never refused: see
 * {@link failureKeys}.
 */
export class FailureLimiter {
  #limit: number;
  #windowMs: number;
  #penaltyMs: number;
  #now: () => number;
  #hits = new Map<string, number[]>();

  constructor(options: FailureLimiterOptions) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#penaltyMs = options.penaltyMs ?? 500;
    this.#now = options.now ?? Date.now;
  }

  /** How many keys are held: at most 10,000, whatever the flood. */
  get size(): number {
    return this.#hits.size;
  }

  /** True when any of these keys has failed too often recently. */
  blocked(...keys: string[]): boolean {
    return keys.some((key) => this.#recent(key).length >= this.#limit);
  }

  /** Records one failure under each of these keys. */
  fail(...keys: string[]): void {
    for (const key of keys) {
      // Only the newest `limit` failures matter: a key stays bounded while blocked.
      const hits = this.#recent(key).slice(-(this.#limit - 1));
      hits.push(this.#now());
      // Re-inserted, so the map is ordered by last failure, oldest first.
      this.#hits.delete(key);
      this.#hits.set(key, hits);
    }
    if (this.#hits.size > MAX_KEYS) this.#prune();
  }

  /**
   * Waits before a refusal of a blocked key is answered, so a guesser that
   * waits for each answer is slowed even though every guess is checked.
   */
  penalty(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.#penaltyMs));
  }

  /**
   * Counts one invalid secret presented from `address` (its hash `hash`,
   * see {@link failureKeys}); resolves true, after the penalty delay, when
   * either was already past the limit: the caller then refuses with a 429.
   */
  async failed(address: string, hash: string): Promise<boolean> {
    const keys = failureKeys(address, hash);
    const blocked = this.blocked(...keys);
    this.fail(...keys);
    if (blocked) await this.penalty();
    return blocked;
  }

  #recent(key: string): number[] {
    const since = this.#now() - this.#windowMs;
    return (this.#hits.get(key) ?? []).filter((t) => t > since);
  }

  // Oldest first: what expired goes, then, under a flood of distinct
  // tokens, the keys that failed least recently. A guesser's own address
  // fails with every guess, so it is the last key to go.
  #prune(): void {
    const since = this.#now() - this.#windowMs;
    for (const [key, hits] of this.#hits) {
      const expired = (hits.at(-1) ?? 0) <= since;
      if (!expired && this.#hits.size <= MAX_KEYS * 0.9) break;
      this.#hits.delete(key);
    }
  }
}

/**
 * The keys a failed token is counted under: the client's address, and the
 * first 8 hex digits of the presented token's hash, so that one address
 * cannot lock out valid tokens (they are never refused) and retrying one
 * wrong token is slowed from wherever it comes.
 */
export function failureKeys(address: string, presentedHash: string): string[] {
  return [`address:${address}`, `token:${presentedHash.slice(0, 8)}`];
}

/**
 * The client's address, or "local" for in-process requests: the one
 * {@link trustProxy} found behind a trusted proxy, else the peer's.
 */
export function clientAddress(c: Context): string {
  const behindProxy: unknown = c.get(CLIENT_ADDRESS);
  return typeof behindProxy === "string" ? behindProxy : peerAddress(c);
}

const CLIENT_ADDRESS = "clientAddress";

function peerAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "local";
  } catch {
    return "local";
  }
}

/**
 * Middleware: the client's address from `X-Forwarded-For` when the peer is
 * a trusted proxy, for every later {@link clientAddress}.
 */
export function trustProxy(proxies: TrustedProxies): MiddlewareHandler {
  return async (c, next) => {
    const peer = peerAddress(c);
    c.set(CLIENT_ADDRESS, proxies.clientAddress(peer, c.req.header("x-forwarded-for")));
    await next();
  };
}

/**
 * Middleware: a valid bearer token or 401. Reads (GET/HEAD) without a bearer
 * may also come from a signed-in dashboard session; writes never do, so a
 * cookie alone cannot change anything (no CSRF on the API).
 */
export function requireToken(
  store: Store,
  limiter: FailureLimiter,
  session?: (c: Context) => Promise<TokenRow | null>,
): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const header = c.req.header("authorization");
    if (!header && session && (c.req.method === "GET" || c.req.method === "HEAD")) {
      const token = await session(c);
      if (token) {
        c.set("auth", { token, actor: token.name });
        return await next();
      }
    }
    const presented = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
    if (!presented) {
      throw new HttpError(
        401,
        "unauthorized",
        "Missing API token: run `oneoff login` or set ONEOFF_TOKEN",
      );
    }
    // The token is checked first: one that validates is never refused, so
    // a process sharing the host's address cannot lock its admin out.
    const hash = sha256Hex(presented);
    const token = await store.tokenByHash(hash);
    if (token) {
      c.set("auth", { token, actor: token.name });
      return await next();
    }
    if (await limiter.failed(clientAddress(c), hash)) {
      throw new HttpError(
        429,
        "rate_limited",
        "Too many invalid API tokens from this address or with this token: " +
          "try again in a minute (valid tokens still work)",
      );
    }
    throw new HttpError(401, "unauthorized", "Invalid API token");
  };
}

/** Throws 403 unless the request is an admin's. */
export function requireAdmin(auth: Auth): void {
  if (auth.token.role !== "admin") {
    throw new HttpError(403, "forbidden", "This needs an admin token");
  }
}

/** True when the token may use this app. */
export function canUseApp(auth: Auth, app: string): boolean {
  return auth.token.role === "admin" || auth.token.apps.includes(app);
}
