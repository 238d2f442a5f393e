/**
 * The one error type of the HTTP API, turned into `{error:{code,message}}`
 * by a single handler.
 * @module
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ApiError, Decoding } from "../protocol/mod.ts";
import type { Logger } from "../util/log.ts";
import { ConflictError, isStorageFull, isStoreUnavailable } from "./store/mod.ts";

/** An error with an HTTP status and a stable machine-readable code. */
export class HttpError extends Error {
  readonly status: ContentfulStatusCode;
  readonly code: string;
  constructor(status: ContentfulStatusCode, code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
  }
}

/** Creates the `app.onError` handler: known errors become JSON, the rest a logged 500. */
export function errorHandler(log: Logger): (err: Error, c: Context) => Response {
  return (err, c) => {
    if (err instanceof HttpError) {
      return c.json<ApiError>({ error: { code: err.code, message: err.message } }, err.status);
    }
    if (err instanceof ConflictError) {
      return c.json<ApiError>({ error: { code: "conflict", message: err.message } }, 409);
    }
    if (isStorageFull(err)) {
      log.error("request failed: disk full", {
        request_id: c.get("requestId"),
        method: c.req.method,
        path: c.req.path,
        error: String(err),
      });
      // Said to the client: nothing was changed, and it is worth retrying later.
      return c.json<ApiError>({
        error: {
          code: "insufficient_storage",
          message: `The server's disk is full: ${err.message}. Nothing was changed; ` +
            "free some space on the server and try again",
        },
      }, 507);
    }
    if (isStoreUnavailable(err)) {
      log.error("request failed: database unreachable", {
        request_id: c.get("requestId"),
        method: c.req.method,
        path: c.req.path,
        error: String(err),
      });
      return c.json<ApiError>({
        error: {
          code: "store_unavailable",
          message: "The server's database cannot be reached right now: try again shortly",
        },
      }, 503);
    }
    log.error("request failed", {
      request_id: c.get("requestId"),
      method: c.req.method,
      path: c.req.path,
      error: String(err),
    });
    return c.json<ApiError>(
      { error: { code: "internal", message: "Internal server error, see the server log" } },
      500,
    );
  };
}

/** Parses a JSON body, with a 400 for anything that is not a JSON object. */
async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch (err) {
    // A body over its limit (server/body_limit.ts) is a 413, not bad JSON.
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, "bad_json", "Request body is not valid JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "bad_json", "Request body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/**
 * Parses a JSON body and checks it with its decoder from `protocol/api.ts`:
 * 400 when it is not a JSON object, 422 naming the field when its shape is wrong.
 */
export async function decodeBody<T>(
  c: Context,
  decode: (body: unknown) => Decoding<T>,
): Promise<T> {
  const decoded = decode(await jsonBody(c));
  if (!decoded.ok) throw new HttpError(422, decoded.code, decoded.error);
  return decoded.value;
}
