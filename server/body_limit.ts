/**
 * Request body limits, enforced while the body is read: a declared
 * `Content-Length` over the limit is refused before a byte is read, and any
 * other body is counted as it streams and refused at the first byte past the
 * limit, so no route ever holds more than its limit in memory.
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { HttpError } from "./http_error.ts";

/** Largest JSON body of an API route. */
export const JSON_BODY_LIMIT = 1024 * 1024;
/** Largest dashboard form (sign-in, sign-out, stop). */
export const FORM_BODY_LIMIT = 16 * 1024;

/**
 * The limit of a request: a number of bytes, or null for a route that
 * streams its body to disk under its own cap.
 */
export type LimitOf = (c: Context) => number | null;

function tooLarge(limit: number): HttpError {
  return new HttpError(
    413,
    "too_large",
    `Request body is larger than the limit of ${limit} bytes for ${limitName(limit)}`,
  );
}

function limitName(limit: number): string {
  return limit >= 1024 * 1024 ? `${limit / (1024 * 1024)} MiB` : `${limit / 1024} KiB`;
}

/** The body, counted: the stream errors with a 413 at the first byte past `limit`. */
function counted(body: ReadableStream<Uint8Array>, limit: number): ReadableStream<Uint8Array> {
  let size = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        size += chunk.length;
        // Erroring cancels the source: the rest of the body is never read.
        if (size > limit) controller.error(tooLarge(limit));
        else controller.enqueue(chunk);
      },
    }),
  );
}

/**
 * Middleware: refuses bodies over the limit `limitOf` gives the request with
 * 413 `too_large`. Nothing is read here: the handler reads the counted body
 * when (and if) it wants it, after authentication.
 */
export function bodyLimit(limitOf: LimitOf): MiddlewareHandler {
  return async (c, next) => {
    const body = c.req.raw.body;
    const limit = limitOf(c);
    if (body === null || limit === null) return await next();
    const declared = c.req.header("content-length");
    if (declared !== undefined && Number(declared) > limit) {
      await body.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    // Built from its parts, not `new Request(raw)`: copying the request
    // would read its `signal`, which makes Deno.serve warn on every request.
    const raw = c.req.raw;
    c.req.raw = new Request(raw.url, {
      method: raw.method,
      headers: raw.headers,
      body: counted(body, limit),
    });
    await next();
  };
}

/**
 * The server's limits: the streaming routes (deploy, uploads, artifacts) are left to
 * their own caps, dashboard forms get {@link FORM_BODY_LIMIT}, everything
 * else {@link JSON_BODY_LIMIT}.
 */
export function serverLimits(c: Context): number | null {
  const path = c.req.path;
  if (c.req.method === "POST" && /^\/api\/apps\/[^/]+\/(deploy|uploads)\/?$/.test(path)) {
    return null;
  }
  // An artifact's upload is capped by the run's artifact limit as it is stored.
  if (c.req.method === "PUT" && /^\/agent\/runs\/[^/]+\/artifacts\/[^/]+$/.test(path)) return null;
  return path.startsWith("/api/") ? JSON_BODY_LIMIT : FORM_BODY_LIMIT;
}
