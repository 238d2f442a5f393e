/**
 * `GET /apps/:app/runs/:run/watch`: a running attached session, read-only,
 * as it happens (`oneoff watch`, the dashboard's live player). The app's
 * admin or members only (the `/apps/:app/*` middleware says 403 to others);
 * a GET, so nothing can be typed or resized through it. Each watcher is on
 * the timeline when it starts and when it stops, in the recording (a
 * marker), and told to the session's user.
 * @module
 */
import { Hono } from "hono";
import { runLabel, type WatchLine } from "../../protocol/mod.ts";
import { EscapingDecoder } from "../audit/mod.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { type AppEnv, loadRun } from "../_lookup.ts";
import { unwatchable, type Watchers, watchFeed } from "../watch.ts";

const encoder = new TextEncoder();

/**
 * The route, under `/apps/:app/runs/:run`. NDJSON lines (`WatchLine`), or
 * with `?format=sse` (or `Accept: text/event-stream`) server-sent events in
 * the form asciinema-player's `eventsource` driver plays: a size, then
 * `[seconds, "o", text]` events, then a `done` event. `?from=now` starts
 * with what is recorded from now on.
 */
export function watchRoutes(ctx: ServerContext, watchers: Watchers): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  app.get("/watch", async (c) => {
    const row = c.get("app");
    const run = await loadRun(c, store, row);
    const why = unwatchable(run, row.name);
    if (why !== null) throw new HttpError(409, "not_watchable", why);
    const from = c.req.query("from") ?? "start";
    if (from !== "start" && from !== "now") {
      throw new HttpError(422, "invalid", `Invalid from "${from}": use start or now`);
    }
    const sse = c.req.query("format") === "sse" ||
      (c.req.header("accept") ?? "").includes("text/event-stream");
    const actor = c.get("auth").actor;
    const label = runLabel(run.number);
    const startedAt = Date.now();
    await store.addEvent({
      app_id: row.id,
      app_name: row.name,
      actor,
      kind: "run.watch_started",
      data: { run: label },
    });
    const leave = watchers.join(run, actor);
    const stop = new AbortController();
    let ended = false;
    // Once, however the watch ends: its end, the client gone, or the server closing.
    const finish = () => {
      if (ended) return;
      ended = true;
      stop.abort();
      leave();
      store.addEvent({
        app_id: row.id,
        app_name: row.name,
        actor,
        kind: "run.watch_ended",
        data: { run: label, duration_ms: Date.now() - startedAt },
      }).catch((err) =>
        ctx.log.child("watch").warn("a watch's end could not be put on the timeline", {
          run: label,
          error: err instanceof Error ? err.message : String(err),
        })
      );
    };
    const feed = watchFeed(ctx, run, { fromNow: from === "now", signal: stop.signal });
    const lines = sse ? sseLines(feed) : ndjsonLines(feed);
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const next = await lines.next();
          if (next.done) {
            finish();
            controller.close();
          } else controller.enqueue(encoder.encode(next.value));
        } catch (err) {
          finish();
          controller.error(err);
        }
      },
      cancel() {
        finish();
      },
    });
    return new Response(body, {
      headers: {
        "content-type": sse ? "text/event-stream" : "application/x-ndjson",
        "cache-control": "no-cache",
        // nginx would hold the stream in its buffers: each line goes out as it comes.
        "x-accel-buffering": "no",
      },
    });
  });

  return app;
}

async function* ndjsonLines(feed: AsyncIterable<WatchLine>): AsyncGenerator<string> {
  for await (const line of feed) yield JSON.stringify(line) + "\n";
}

// The player's eventsource driver: JSON `message`s, a `done` event at the end.
async function* sseLines(feed: AsyncIterable<WatchLine>): AsyncGenerator<string> {
  const decoder = new EscapingDecoder();
  let last = 0;
  const event = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`;
  for await (const line of feed) {
    switch (line.type) {
      case "start":
        // A no-TTY session has no size: the replay's default.
        yield event({ cols: line.tty ? line.cols : 80, rows: line.tty ? line.rows : 24 });
        break;
      case "o": {
        last = line.t / 1000;
        let bytes: Uint8Array;
        try {
          bytes = Uint8Array.fromBase64(line.data);
        } catch {
          yield event([last, "o", "\r\n[oneoff: an event of the recording cannot be read]\r\n"]);
          break;
        }
        const text = decoder.decode(bytes);
        if (text !== "") yield event([last, "o", text]);
        break;
      }
      case "r":
        last = line.t / 1000;
        yield event([last, "r", `${line.cols}x${line.rows}`]);
        break;
      case "problem":
        yield event([last, "o", `\r\n[oneoff: ${line.message}]\r\n`]);
        break;
      case "keepalive":
        yield ": keepalive\n\n";
        break;
      case "end": {
        const rest = decoder.flush();
        if (rest !== "") yield event([last, "o", rest]);
        yield `event: done\ndata: ${JSON.stringify(line)}\n\n`;
        break;
      }
    }
  }
}
