/**
 * An app's timeline: every change with its actor — deploys, env keys, runs
 * created and ended, stops, audit views — newest first, paginated by id.
 * @module
 */
import { parseRunLabel } from "../../protocol/mod.ts";
import type { Handler } from "hono";
import type { Child } from "hono/jsx";
import type { ServerContext } from "../context.ts";
import { loadApp } from "../_lookup.ts";
import type { EventRow } from "../store/mod.ts";
import type { DashEnv } from "./_auth.ts";
import { bytes, cursor, duration } from "./_format.ts";
import { AppTabs, Heading, Pager, render, Time } from "./_layout.tsx";
import { releaseLine } from "./app_page.tsx";

/** Events per page. */
export const EVENTS_PER_PAGE = 50;

function str(value: unknown): string {
  return typeof value === "string" ? value : typeof value === "number" ? String(value) : "";
}

function list(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}

function Keys(props: { keys: string[] }) {
  return (
    <>
      {props.keys.map((k, i) => (
        <>
          {i > 0 && ", "}
          <code>{k}</code>
        </>
      ))}
    </>
  );
}

function RunLink(props: { app: string; run: unknown }) {
  const label = str(props.run);
  if (parseRunLabel(label) === null) return <span>a one-off</span>;
  return <a class="mono" href={`/apps/${props.app}/runs/${label}`}>{label}</a>;
}

/** What happened, in a sentence; unknown kinds show their data as it is. */
function describe(app: string, event: EventRow): Child {
  const d = event.data;
  switch (event.kind) {
    case "app.created":
      return <>created the app</>;
    case "deploy":
      return (
        <>
          deployed release <strong>v{str(d.release)}</strong>
          {typeof d.size === "number" && <span class="muted">{` (${bytes(d.size)})`}</span>}
          {list(d.process_types).length > 0 && (
            <>
              {" with process types "}
              <Keys keys={list(d.process_types)} />
            </>
          )}
        </>
      );
    case "env.set":
      return (
        <>
          set <Keys keys={list(d.keys)} />
        </>
      );
    case "env.unset":
      return (
        <>
          unset <Keys keys={list(d.keys)} />
        </>
      );
    case "run.created":
      return (
        <>
          started <RunLink app={app} run={d.run} />
          {` ${d.attached ? "attached" : "detached"}${d.size ? `, size ${str(d.size)}` : ""}: `}
          <code class="cmd">{str(d.command)}</code>
          {list(d.env_keys).length > 0 && (
            <>
              {" with "}
              <Keys keys={list(d.env_keys)} />
            </>
          )}
        </>
      );
    case "run.ended":
      return (
        <>
          <RunLink app={app} run={d.run} /> ended{" "}
          <span class={`badge state-${str(d.state)}`}>{str(d.state)}</span>
          {typeof d.exit_code === "number" && (
            <>
              {" with exit code "}
              <span class={d.exit_code === 0 ? "exit-ok" : "exit-bad"}>{d.exit_code}</span>
            </>
          )}
          {typeof d.duration_ms === "number" && ` after ${duration(d.duration_ms)}`}
          {d.reason ? <span class="muted">{` (${str(d.reason)})`}</span> : ""}
          {": "}
          <code class="cmd">{str(d.command)}</code>
        </>
      );
    case "run.stop":
      return (
        <>
          stopped <RunLink app={app} run={d.run} />
        </>
      );
    case "token.created":
      return <>created a {str(d.role)} token "{str(d.name)}"</>;
    default:
      if (event.kind === "audit.viewed") {
        return (
          <>
            viewed the session recording of <RunLink app={app} run={d.run} />
            {d.format ? <span class="muted">{` (${str(d.format)})`}</span> : ""}
          </>
        );
      }
      return <code class="muted">{JSON.stringify(d)}</code>;
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
                      <strong class="actor">{event.actor}</strong> {describe(app.name, event)}
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
