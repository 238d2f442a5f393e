/**
 * `Idempotency-Key` on run creation: the key and the fingerprint a repeat
 * must match, and the first run a matching repeat gets back. The claim
 * itself is the store's (`claimIdempotencyKey`), atomic per app and key.
 * @module
 */
import { IDEMPOTENCY_HEADER, isIdempotencyKey, type RunRequestBody } from "../protocol/mod.ts";
import { sha256Hex } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import { HttpError } from "./http_error.ts";
import { runKey } from "./signals.ts";
import type { AppRow, RunRow } from "./store/mod.ts";

/** An `Idempotency-Key` and what it was sent with. */
export interface Idempotency {
  key: string;
  /** Hex SHA-256 of the actor and the request body: a repeat must match it. */
  fingerprint: string;
}

/** How long an idempotency key holds its run. */
export const IDEMPOTENCY_KEEP_MS = 24 * 3600_000;

/** How long a repeat waits for the first request to have created its run. */
const FIRST_REQUEST_WAIT_MS = 5_000;

/** JSON with object keys sorted, so that equal bodies give equal fingerprints. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The request's `Idempotency-Key`, if any, with the fingerprint a repeat must match. */
export function idempotencyOf(
  header: string | undefined,
  actor: string,
  body: RunRequestBody,
): Idempotency | undefined {
  if (header === undefined) return undefined;
  if (!isIdempotencyKey(header)) {
    throw new HttpError(
      400,
      "invalid_idempotency_key",
      `Invalid ${IDEMPOTENCY_HEADER} header: use 1-200 printable ASCII characters, e.g. a UUID`,
    );
  }
  return { key: header, fingerprint: sha256Hex(canonicalJson({ actor, body })) };
}

/**
 * The run a repeated request gets back: 422 when the key came with another
 * request, 409 when the first request has still not created its run.
 */
export async function replayedRun(
  ctx: ServerContext,
  repeat: { app: AppRow; held: { fingerprint: string; run_id: string }; idem: Idempotency },
): Promise<RunRow> {
  const { app, held, idem } = repeat;
  if (held.fingerprint !== idem.fingerprint) {
    throw new HttpError(
      422,
      "idempotency_mismatch",
      `Idempotency-Key "${idem.key}" was first used for a different request on "${app.name}": ` +
        "use a new key for a new run",
    );
  }
  // The first request may still be creating it (a retry racing the original).
  const deadline = Date.now() + FIRST_REQUEST_WAIT_MS;
  let run = await ctx.store.runById(held.run_id);
  while (!run && Date.now() < deadline && !ctx.signals.closed) {
    await ctx.signals.wait(runKey(held.run_id), 100);
    run = await ctx.store.runById(held.run_id);
  }
  if (!run) {
    throw new HttpError(
      409,
      "idempotency_in_progress",
      `The first request with Idempotency-Key "${idem.key}" is still being handled: try again`,
    );
  }
  return run;
}
