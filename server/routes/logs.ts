/**
 * The app's aggregated log stream and its timeline.
 * @module
 */
import { Hono } from "hono";
import type { LogLine, TimelineEvent } from "../../protocol/mod.ts";
import type { AuthEnv } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { logKey } from "../signals.ts";
import type { EventRow, LogRow } from "../store/mod.ts";
import { intParam, loadApp } from "./_load.ts";

function logLine(row: LogRow): LogLine {
  return {
    id: row.id,
    ts: row.ts.toISOString(),
    source: row.source,
    stream: row.stream,
    line: row.line,
  };
}

/** The API view of a timeline event. */
export function timelineEvent(row: EventRow): TimelineEvent {
  return {
    id: row.id,
    at: row.at.toISOString(),
    app: row.app_name,
    actor: row.actor,
    kind: row.kind,
    data: row.data,
  };
}

/** Routes `/apps/:app/logs` and `/apps/:app/timeline`. */
export function logRoutes(ctx: ServerContext): Hono<AuthEnv> {
  const { store } = ctx;
  const app = new Hono<AuthEnv>();

  // ?n=N the last N lines; ?after=ID lines after that id; ?wait=S long-poll
  // (with after) until new lines arrive; ?filter=one-off-N one source.
  app.get("/:app/logs", async (c) => {
    const row = await loadApp(c, store);
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
    return c.json({ lines: lines.map(logLine) });
  });

  app.get("/:app/timeline", async (c) => {
    const row = await loadApp(c, store);
    const limit = intParam(c, "limit", 100, 1000);
    const before = c.req.query("before");
    const events = await store.listEvents({
      app_id: row.id,
      limit,
      ...(before ? { before_id: intParam(c, "before", 0, Number.MAX_SAFE_INTEGER) } : {}),
    });
    return c.json({ events: events.map(timelineEvent) });
  });

  return app;
}
