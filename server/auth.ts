/**
 * Bearer API tokens: made here, stored only as SHA-256 hashes, checked on
 * every route, with failed attempts rate-limited per client address.
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/deno";
import type { Store, TokenRow } from "./store/mod.ts";
import { HttpError } from "./http_error.ts";

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

/** Counts failures per key in a sliding minute; past the limit the key is refused. */
export class FailureLimiter {
  #limit: number;
  #windowMs: number;
  #now: () => number;
  #hits = new Map<string, number[]>();

  constructor(options: { limit: number; windowMs?: number; now?: () => number }) {
    this.#limit = options.limit;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#now = options.now ?? Date.now;
  }

  /** True when this key has failed too often recently. */
  blocked(key: string): boolean {
    return this.#recent(key).length >= this.#limit;
  }

  /** Records one failure for this key. */
  fail(key: string): void {
    const hits = this.#recent(key);
    hits.push(this.#now());
    this.#hits.set(key, hits);
    if (this.#hits.size > 10_000) this.#prune();
  }

  #recent(key: string): number[] {
    const since = this.#now() - this.#windowMs;
    return (this.#hits.get(key) ?? []).filter((t) => t > since);
  }

  #prune(): void {
    for (const key of [...this.#hits.keys()]) {
      if (this.#recent(key).length === 0) this.#hits.delete(key);
    }
  }
}

/** The client's address, or "local" for in-process requests. */
export function clientAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "local";
  } catch {
    return "local";
  }
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
    const address = clientAddress(c);
    if (limiter.blocked(address)) {
      throw new HttpError(
        429,
        "rate_limited",
        "Too many failed sign-ins from this address, try again in a minute",
      );
    }
    const presented = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
    if (!presented) {
      throw new HttpError(
        401,
        "unauthorized",
        "Missing API token: run `oneoff login` or set ONEOFF_TOKEN",
      );
    }
    const token = await store.tokenByHash(sha256Hex(presented));
    if (!token) {
      limiter.fail(address);
      throw new HttpError(401, "unauthorized", "Invalid API token");
    }
    c.set("auth", { token, actor: token.name });
    await next();
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
