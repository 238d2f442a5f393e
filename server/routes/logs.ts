/**
 * The app's aggregated log stream.
 * @module
 */
import { type Context, Hono } from "hono";
import { type LogsReply, MAX_LONG_POLL_S } from "../../protocol/mod.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { type AppEnv, intParam } from "../_lookup.ts";
import { logKey } from "../signals.ts";
import { logLine } from "../views.ts";

/** The most lines one reply carries; page with `before` for more. */
const MAX_LINES = 10_000;

function optionalId(c: Context, name: string): number | undefined {
  return c.req.query(name) === undefined
    ? undefined
    : intParam(c, name, 0, Number.MAX_SAFE_INTEGER);
}

/** `GET /apps/:app/logs`, the app loaded by the `/apps/:app/*` middleware. */
export function logRoutes(ctx: ServerContext): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  // ?n=N the last N lines (at most 10,000 a reply); ?before=ID the last N
  // before that id (paging backwards); ?after=ID lines after that id;
  // ?wait=S long-poll (with after) until new lines arrive; ?filter=one-off-N.
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
    const asked = intParam(c, "n", 100, Number.MAX_SAFE_INTEGER);
    const limit = Math.min(asked, MAX_LINES);
    const after = optionalId(c, "after");
    const before = optionalId(c, "before");
    if (after !== undefined && before !== undefined) {
      throw new HttpError(422, "invalid", `Give "after" or "before", not both`);
    }
    const wait = intParam(c, "wait", 0, MAX_LONG_POLL_S);
    const query = {
      limit,
      ...(filter ? { source: filter } : {}),
      ...(after !== undefined ? { after_id: after } : {}),
      ...(before !== undefined ? { before_id: before } : {}),
    };
    if (after !== undefined) {
      let lines = await store.readLogs(row.id, query);
      const deadline = Date.now() + wait * 1000;
      while (lines.length === 0 && Date.now() < deadline && !ctx.signals.closed) {
        await ctx.signals.wait(logKey(row.id), deadline - Date.now());
        lines = await store.readLogs(row.id, query);
      }
      return c.json({ lines: lines.map(logLine) } satisfies LogsReply);
    }
    // The last lines (before `before`): one more than asked says whether
    // older ones remain, so that nothing is cut without a word.
    const read = await store.readLogs(row.id, { ...query, limit: limit + 1 });
    const more = read.length > limit;
    const lines = more ? read.slice(1) : read;
    return c.json(
      {
        lines: lines.map(logLine),
        more,
        before: more ? lines[0]?.id ?? null : null,
        truncated: asked > limit,
      } satisfies LogsReply,
    );
  });

  return app;
}
