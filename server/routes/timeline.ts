/**
 * The app's timeline: every change, newest first.
 * @module
 */
import { Hono } from "hono";
import type { TimelineReply } from "../../protocol/mod.ts";
import type { ServerContext } from "../context.ts";
import { type AppEnv, intParam } from "../_lookup.ts";
import { timelineEvent } from "../views.ts";

/** `GET /apps/:app/timeline` (`?limit=N&before=ID`), the app loaded by the middleware. */
export function timelineRoutes(ctx: ServerContext): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  app.get("/", async (c) => {
    const row = c.get("app");
    const limit = intParam(c, "limit", 100, 1000);
    const before = c.req.query("before");
    const events = await store.listEvents({
      app_id: row.id,
      limit,
      ...(before ? { before_id: intParam(c, "before", 0, Number.MAX_SAFE_INTEGER) } : {}),
    });
    return c.json({ events: events.map(timelineEvent) } satisfies TimelineReply);
  });

  return app;
}
