/**
 * The app's aggregated log stream.
 * @module
 */
import { Hono } from "hono";
import type { LogsReply } from "../../protocol/mod.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { type AppEnv, intParam } from "../_lookup.ts";
import { logKey } from "../signals.ts";
import { logLine } from "../views.ts";

/** `GET /apps/:app/logs`, the app loaded by the `/apps/:app/*` middleware. */
export function logRoutes(ctx: ServerContext): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  // ?n=N the last N lines; ?after=ID lines after that id; ?wait=S long-poll
  // (with after) until new lines arrive; ?filter=one-off-N one source.
  app.get("/", async (c) => {
    const row = c.get("app");
    const filter = c.req.query("filter");
    if (filter !== undefined && !/^[a-z0-9-]{1,64}$/.test(filter)) {
      throw new HttpError(
        422,
        "invalid",
        `Invalid filter "${filter}": use a source such as one-off-3`,
      );
    }
    const limit = intParam(c, "n", 100, 10000);
    const afterRaw = c.req.query("after");
    const after = afterRaw === undefined
      ? undefined
      : intParam(c, "after", 0, Number.MAX_SAFE_INTEGER);
    const wait = intParam(c, "wait", 0, 60);
    const query = {
      limit,
      ...(filter ? { source: filter } : {}),
      ...(after !== undefined ? { after_id: after } : {}),
    };
    let lines = await store.readLogs(row.id, query);
    const deadline = Date.now() + wait * 1000;
    while (lines.length === 0 && after !== undefined && Date.now() < deadline) {
      await ctx.signals.wait(logKey(row.id), deadline - Date.now());
      lines = await store.readLogs(row.id, query);
    }
    return c.json({ lines: lines.map(logLine) } satisfies LogsReply);
  });

  return app;
}
