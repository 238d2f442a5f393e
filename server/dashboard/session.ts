/**
 * Dashboard sessions: a cookie that names a token by its hash (never the
 * token itself), a random session id and an expiry, signed with HMAC-SHA256
 * under a key kept in the data dir; and CSRF tokens derived from it. The
 * only server-side state is the ids of sessions signed out before their
 * expiry (`Store.revokeSession`).
 * @module
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/** What a valid session cookie says. */
export interface Session {
  /** Random, names the session for its revocation at sign-out. */
  id: string;
  /** Hex SHA-256 of the API token the user signed in with. */
  tokenHash: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

/** What a CSRF token is bound to: a session cookie, or a sign-in form's nonce. */
export type CsrfPurpose = "session" | "login";

const KEY_BYTES = 32;

/** Reads the session key at `path`, creating it (mode 0600) when missing. */
export async function loadSessionKey(path: string): Promise<Uint8Array> {
  try {
    return parseKey(path, await Deno.readTextFile(path));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  // Written aside and linked into place, so a concurrent reader (another
  // server on the same data dir) never sees a half-written key.
  const key = randomBytes(KEY_BYTES);
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, key.toString("hex") + "\n", { mode: 0o600, createNew: true });
  try {
    await Deno.chmod(tmp, 0o600);
    await Deno.link(tmp, path);
    return new Uint8Array(key);
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    return parseKey(path, await Deno.readTextFile(path));
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

function parseKey(path: string, text: string): Uint8Array {
  const hex = text.trim();
  if (!/^[0-9a-f]{64,}$/.test(hex) || hex.length % 2 !== 0) {
    throw new Error(
      `Session key "${path}" is malformed: expected at least 64 hex characters (delete it to make a new one)`,
    );
  }
  return new Uint8Array(Buffer.from(hex, "hex"));
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Signs and checks session cookies and CSRF tokens with one key. */
export class SessionSigner {
  #key: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.length < KEY_BYTES) {
      throw new Error(`Session key is too short: ${key.length} bytes, need ${KEY_BYTES}`);
    }
    this.#key = key;
  }

  // Every MAC starts with its purpose, so a value made for one use can
  // never be replayed as another (a CSRF token as a cookie signature).
  #mac(purpose: string, value: string): Buffer {
    return createHmac("sha256", this.#key).update(`${purpose}\0${value}`).digest();
  }

  /** A cookie value for a session. */
  sign(session: Session): string {
    const payload = Buffer.from(
      JSON.stringify({ id: session.id, h: session.tokenHash, exp: session.expiresAt }),
    ).toString("base64url");
    return `${payload}.${this.#mac("session", payload).toString("base64url")}`;
  }

  /** The session a cookie value stands for, or null when forged, malformed or expired. */
  verify(value: string, now: number = Date.now()): Session | null {
    const [payload, signature, ...rest] = value.split(".");
    if (!payload || !signature || rest.length > 0) return null;
    if (!sameBytes(Buffer.from(signature, "base64url"), this.#mac("session", payload))) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    } catch {
      return null;
    }
    const { id, h, exp } = (parsed ?? {}) as Record<string, unknown>;
    // A cookie without an id (signed before sessions had one) cannot be
    // revoked, so it is not accepted either: its user signs in again.
    if (typeof id !== "string" || !/^[A-Za-z0-9_-]{16,64}$/.test(id)) return null;
    if (typeof h !== "string" || !/^[0-9a-f]{64}$/.test(h)) return null;
    if (typeof exp !== "number" || !(exp > now)) return null;
    return { id, tokenHash: h, expiresAt: exp };
  }

  /** The CSRF token bound to a cookie value. */
  csrf(purpose: CsrfPurpose, value: string): string {
    return this.#mac(`csrf-${purpose}`, value).toString("base64url");
  }

  /** True when `presented` is the CSRF token bound to `value`, compared in constant time. */
  checkCsrf(purpose: CsrfPurpose, value: string, presented: string): boolean {
    return sameBytes(Buffer.from(presented, "base64url"), this.#mac(`csrf-${purpose}`, value));
  }
}

/** A new random session id. */
export function newSessionId(): string {
  return randomBytes(18).toString("base64url");
}

/** A signer whose key is read (or made) on first use, once. */
export function lazySigner(keyPath: string): () => Promise<SessionSigner> {
  let loading: Promise<SessionSigner> | undefined;
  return () => {
    loading ??= loadSessionKey(keyPath).then((key) => new SessionSigner(key)).catch((err) => {
      loading = undefined;
      throw err;
    });
    return loading;
  };
}
