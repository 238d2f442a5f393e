/**
 * Join tokens: the secret that enrols a new agent (never one that runs
 * anything). The configured one is registered in the store at start; a
 * rotation revokes every token and makes a new one.
 * @module
 */
import { newToken, sha256Hex } from "./auth.ts";
import type { ServerConfig } from "./context.ts";
import type { JoinTokenRow, Store } from "./store/mod.ts";

/** Limits of a new join token. */
export interface JoinTokenLimits {
  /** Enrolments it allows; null for any number. */
  uses: number | null;
  /** How long it enrols, in ms; null for ever. */
  ttlMs: number | null;
}

function row(token: string, limits: JoinTokenLimits, now: number): JoinTokenRow {
  return {
    sha256: sha256Hex(token),
    uses_left: limits.uses,
    expires_at: limits.ttlMs === null ? null : new Date(now + limits.ttlMs),
  };
}

/**
 * Registers the configured join token, with its limits, unless the store
 * knows it already: a rotated-out token given again stays revoked, and its
 * uses and expiry count from its first start.
 */
export async function registerJoinToken(store: Store, config: ServerConfig): Promise<void> {
  const limits = { uses: config.joinTokenUses, ttlMs: config.joinTokenTtlMs };
  await store.ensureJoinToken(row(config.joinToken, limits, Date.now()));
}

/**
 * Makes a new join token and revokes every other; kept in the join token
 * file when the server has one, so that a restart enrols with it.
 */
export async function rotateJoinToken(
  store: Store,
  config: ServerConfig,
  limits: JoinTokenLimits,
): Promise<string> {
  const token = newToken("join");
  await store.rotateJoinTokens(row(token, limits, Date.now()));
  config.joinToken = token;
  if (config.joinTokenFile) {
    await Deno.writeTextFile(config.joinTokenFile, token + "\n", { mode: 0o600 });
    await Deno.chmod(config.joinTokenFile, 0o600);
  }
  return token;
}
