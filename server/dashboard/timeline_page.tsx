/**
 * An app's timeline: every change with its actor — deploys, env keys, runs
 * created and ended, stops, audit views — newest first, paginated by id.
 * @module
 */
import { describeEvent, type Segment } from "../../protocol/mod.ts";
import type { Handler } from "hono";
import type { ServerContext } from "../context.ts";
import { loadApp } from "../_lookup.ts";
import type { DashEnv } from "./_auth.ts";
import { cursor } from "./_format.ts";
import { AppTabs, Heading, Pager, render, Time } from "./_layout.tsx";
import { releaseLine } from "./app_page.tsx";

/** Events per page. */
export const EVENTS_PER_PAGE = 50;

// How each piece of an event's sentence shows: run labels link to the run.
function Piece(props: { app: string; segment: Segment }) {
  const { type, text } = props.segment;
  switch (type) {
    case "text":
      return <>{text}</>;
    case "run":
      return <a class="mono" href={`/apps/${props.app}/runs/${text}`}>{text}</a>;
    case "name":
      return <code>{text}</code>;
    case "command":
      return <code class="cmd">{text}</code>;
    case "release":
      return <strong>{text}</strong>;
    case "state":
      return <span class={`badge state-${text}`}>{text}</span>;
    case "exit":
      return <span class={text === "0" ? "exit-ok" : "exit-bad"}>{text}</span>;
    case "note":
      return <span class="muted">{text}</span>;
    case "reason":
      return <q class="reason">{text}</q>;
    case "data":
      return <code class="muted">{text}</code>;
  }
}

/** `GET /apps/:app/timeline`. */
export function timelinePage(ctx: ServerContext): Handler<DashEnv> {
  const { store } = ctx;
  return async (c) => {
    const app = await loadApp(c, store);
    const before = cursor(c.req.query("before"));
    // One more than a page tells whether an older page exists.
    const [found, release] = await Promise.all([
      store.listEvents({
        app_id: app.id,
        limit: EVENTS_PER_PAGE + 1,
        ...(before ? { before_id: before } : {}),
      }),
      store.latestRelease(app.id),
    ]);
    const events = found.slice(0, EVENTS_PER_PAGE);
    const base = `/apps/${app.name}/timeline`;
    const last = events.at(-1);
    return render(
      c,
      { title: `${app.name} timeline`, auth: c.get("auth"), csrf: c.get("csrf"), nav: "apps" },
      <>
        <Heading title={app.name} sub={releaseLine(release)} />
        <AppTabs app={app.name} current="timeline" />
        <section class="section">
          {events.length === 0
            ? <p class="empty">Nothing happened here yet.</p>
            : (
              <ol class="timeline">
                {events.map((event) => (
                  <li class={`event kind-${event.kind.replace(/[^a-z0-9]+/g, "-")}`}>
                    <span class="event-time">
                      <Time at={event.at} />
                    </span>
                    <span class="event-kind">{event.kind}</span>
                    <span class="event-text">
                      <strong class="actor">{event.actor}</strong>{" "}
                      {describeEvent(event).map((segment) => (
                        <Piece app={app.name} segment={segment} />
                      ))}
                    </span>
                  </li>
                ))}
              </ol>
            )}
          <Pager
            newer={before ? base : undefined}
            newerLabel="Newest"
            older={found.length > EVENTS_PER_PAGE && last ? `${base}?before=${last.id}` : undefined}
          />
        </section>
      </>,
    );
  };
}
