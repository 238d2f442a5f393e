/**
 * One JSON line per HTTP request on the server's logger, with a request id
 * (the client's `X-Request-Id` when it is a plain token, else a new one,
 * echoed on the response), and the request counted in the metrics by route
 * pattern, never by raw path: app names are in paths.
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { requestId } from "hono/request-id";
import { routePath } from "hono/route";
import type { Logger } from "../util/log.ts";
import { clientAddress } from "./auth.ts";
import type { ServerMetrics } from "./metrics.ts";

/** The request id middleware: sets `c.get("requestId")` and the `X-Request-Id` header. */
export const withRequestId: MiddlewareHandler = requestId({ limitLength: 128 });

/** Logs and counts each request once it is answered. */
export function accessLog(log: Logger, metrics: ServerMetrics): MiddlewareHandler {
  return async (c, next) => {
    const start = performance.now();
    await next();
    const seconds = (performance.now() - start) / 1000;
    const status = c.res.status;
    // The pattern of the handler that answered; unmatched paths share one label.
    const pattern = routePath(c, c.req.routeIndex);
    const route = status === 404 && (pattern === "" || pattern.endsWith("*"))
      ? "unmatched"
      : pattern;
    metrics.httpRequests.inc({ method: c.req.method, route, status: String(status) });
    metrics.httpSeconds.observe({ method: c.req.method, route }, seconds);
    // The path without its query: a dashboard login or a link may carry a secret there.
    log.info("request", {
      request_id: c.get("requestId"),
      method: c.req.method,
      path: c.req.path,
      route,
      status,
      ms: Math.round(seconds * 1e4) / 10,
      client: clientAddress(c),
    });
  };
}
