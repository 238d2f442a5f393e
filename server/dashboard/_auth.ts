/**
 * The dashboard's side of sessions: the cookies, the guard in front of every
 * page, and the CSRF check of every form POST.
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import type { Auth } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import type { Store, TokenRow } from "../store/mod.ts";
import { lazySigner, newSessionId, type Session, type SessionSigner } from "./session.ts";

/** Hono variables of a signed-in dashboard request. */
export type DashEnv = { Variables: { auth: Auth; csrf?: string } };

/** Name of the session cookie. */
export const SESSION_COOKIE = "oneoff_session";
/** Name of the cookie that binds a sign-in form to its browser. */
export const LOGIN_COOKIE = "oneoff_login";
/** How long a session lasts by default. */
export const SESSION_TTL_MS = 12 * 3600_000;

/** Options of the dashboard's sessions. */
export interface SessionOptions {
  /** Lifetime of a session cookie (default 12 h). */
  sessionTtlMs?: number;
}

function isHttps(c: Context): boolean {
  // Behind a TLS-terminating proxy the request URL is http: trust its header
  // for this one purpose, where believing a lie only makes the cookie stricter.
  return new URL(c.req.url).protocol === "https:" || c.req.header("x-forwarded-proto") === "https";
}

/** Reads, starts and ends sessions; checks CSRF tokens. */
export class Sessions {
  #signer: () => Promise<SessionSigner>;
  #store: Store;
  #ttlMs: number;

  constructor(ctx: ServerContext, options: SessionOptions = {}) {
    this.#signer = lazySigner(`${ctx.config.dataDir}/session.key`);
    this.#store = ctx.store;
    this.#ttlMs = options.sessionTtlMs ?? SESSION_TTL_MS;
  }

  /**
   * The session, its token and CSRF token, or null without a valid one:
   * forged, expired, signed out, or its token revoked.
   */
  async read(c: Context): Promise<{ token: TokenRow; csrf: string; session: Session } | null> {
    const value = getCookie(c, SESSION_COOKIE);
    if (!value) return null;
    const signer = await this.#signer();
    const session = signer.verify(value);
    if (!session) return null;
    if (await this.#store.sessionRevoked(session.id)) return null;
    const token = await this.#store.tokenByHash(session.tokenHash);
    return token ? { token, csrf: signer.csrf("session", value), session } : null;
  }

  /** Signs the user in: sets the session cookie for this token. */
  async start(c: Context, token: TokenRow): Promise<void> {
    const signer = await this.#signer();
    const value = signer.sign({
      id: newSessionId(),
      tokenHash: token.hash,
      expiresAt: Date.now() + this.#ttlMs,
    });
    setCookie(c, SESSION_COOKIE, value, {
      httpOnly: true,
      sameSite: "Lax",
      path: "/",
      secure: isHttps(c),
      maxAge: Math.floor(this.#ttlMs / 1000),
    });
    deleteCookie(c, LOGIN_COOKIE, { path: "/login" });
  }

  /** Drops the session cookie from the browser. */
  end(c: Context): void {
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: isHttps(c) });
  }

  /**
   * Signs the user out: the session is revoked in the store, so its cookie
   * no longer works even where a copy of it was kept.
   */
  async revoke(c: Context): Promise<void> {
    const found = await this.read(c);
    if (found) await this.#store.revokeSession(found.session.id, found.session.expiresAt);
    this.end(c);
  }

  /** The CSRF token of the sign-in form, setting its nonce cookie when missing. */
  async loginCsrf(c: Context): Promise<string> {
    let nonce = getCookie(c, LOGIN_COOKIE);
    if (!nonce || !/^[A-Za-z0-9_-]{32,64}$/.test(nonce)) {
      nonce = randomBytes(24).toString("base64url");
      setCookie(c, LOGIN_COOKIE, nonce, {
        httpOnly: true,
        sameSite: "Strict",
        path: "/login",
        secure: isHttps(c),
      });
    }
    return (await this.#signer()).csrf("login", nonce);
  }

  /** Throws a 403 unless the sign-in form carries the token of its nonce cookie. */
  async checkLoginCsrf(c: Context, presented: unknown): Promise<void> {
    const nonce = getCookie(c, LOGIN_COOKIE);
    const signer = await this.#signer();
    if (!nonce || typeof presented !== "string" || !signer.checkCsrf("login", nonce, presented)) {
      throw new HttpError(
        403,
        "csrf",
        "This sign-in form has expired: reload the page and try again",
      );
    }
  }

  /** Middleware: a signed-in user, or a redirect to the sign-in page. */
  guard(): MiddlewareHandler<DashEnv> {
    return async (c, next) => {
      const found = await this.read(c);
      if (!found) {
        if (getCookie(c, SESSION_COOKIE) !== undefined) this.end(c);
        const url = new URL(c.req.url);
        const back = c.req.method === "GET"
          ? `?next=${encodeURIComponent(url.pathname + url.search)}`
          : "";
        return c.redirect(`/login${back}`, 303);
      }
      c.set("auth", { token: found.token, actor: found.token.name });
      c.set("csrf", found.csrf);
      await next();
    };
  }
}

/** Parses a form POST and throws a 403 unless it carries the session's CSRF token. */
export async function checkedForm(c: Context<DashEnv>): Promise<Record<string, unknown>> {
  const form = await c.req.parseBody();
  const presented = form._csrf;
  const expected = c.get("csrf");
  const given = Buffer.from(typeof presented === "string" ? presented : "");
  const wanted = Buffer.from(expected ?? "");
  const ok = wanted.length > 0 && given.length === wanted.length && timingSafeEqual(given, wanted);
  if (!ok) {
    throw new HttpError(
      403,
      "csrf",
      "This form is missing its security token: reload the page and try again",
    );
  }
  return form;
}

/**
 * For the API: validates the session cookie and returns its token row, or
 * null. The API should accept it for GET and HEAD requests only, so that a
 * cookie never authorises a change without the dashboard's CSRF check.
 */
export function sessionAuth(ctx: ServerContext): (c: Context) => Promise<TokenRow | null> {
  const sessions = new Sessions(ctx);
  return async (c) => (await sessions.read(c))?.token ?? null;
}
