/**
 * An app's recorded sessions: the newest listed with who ran what and why,
 * and a search through their recordings. The search form is a POST (with
 * the session's CSRF token), so the text stays out of URLs, history and
 * access logs; each hit links to the run's replay at its moment (`?t=`),
 * which carries only the time.
 * @module
 */
// Pages are rendered once on the server: there is no list to reconcile, and
// hono/jsx would print a `key` prop as an HTML attribute.
// deno-lint-ignore-file jsx-key
import type { Handler } from "hono";
import {
  type AuditSearchReply,
  type AuditSessionInfo,
  decodeAuditSearchBody,
  DEFAULT_AUDIT_SINCE_MS,
} from "../../protocol/mod.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { loadApp } from "../_lookup.ts";
import { searchSessions, sessionInfo } from "../routes/audit_find.ts";
import type { AppRow } from "../store/mod.ts";
import { bytes, duration } from "../../util/format.ts";
import { checkedForm, type DashEnv } from "./_auth.ts";
import { AppTabs, Heading, render, StateBadge, Time } from "./_layout.tsx";
import { releaseLine } from "./app_page.tsx";

/** Sessions listed on the page. */
const LISTED = 50;

function SessionRow(props: { app: string; session: AuditSessionInfo }) {
  const s = props.session;
  return (
    <tr>
      <td>
        <a class="mono" href={`/apps/${props.app}/runs/${s.run}`}>{s.run}</a>
      </td>
      <td>{s.user}</td>
      <td>
        <code class="cmd">{s.command}</code>
      </td>
      <td>{s.reason ?? <span class="muted">–</span>}</td>
      <td>
        <Time at={new Date(s.started_at)} />
      </td>
      <td class="num">
        {s.duration_ms === null ? <StateBadge state={s.state} /> : duration(s.duration_ms)}
      </td>
      <td class="num">{s.exit_code ?? "–"}</td>
      <td class="num">{bytes(s.bytes)}</td>
    </tr>
  );
}

function Sessions(props: { app: string; sessions: AuditSessionInfo[] }) {
  if (props.sessions.length === 0) {
    return <p class="empty">No recorded session in the last 7 days.</p>;
  }
  return (
    <div class="table-wrap">
      <table class="table sessions">
        <thead>
          <tr>
            <th>Name</th>
            <th>User</th>
            <th>Command</th>
            <th>Reason</th>
            <th>Started</th>
            <th class="num">Duration</th>
            <th class="num">Exit</th>
            <th class="num">Recorded</th>
          </tr>
        </thead>
        <tbody>
          {props.sessions.map((session) => <SessionRow app={props.app} session={session} />)}
        </tbody>
      </table>
    </div>
  );
}

function SearchForm(props: { app: string; csrf: string | undefined; text?: string }) {
  return (
    <form method="post" action={`/apps/${props.app}/audit`} class="search" data-audit-search>
      <input type="hidden" name="_csrf" value={props.csrf ?? ""} />
      <label>
        Search the recordings of the last 7 days{" "}
        <input
          type="search"
          name="text"
          required
          maxlength={200}
          autocomplete="off"
          value={props.text ?? ""}
        />
      </label>{" "}
      <button type="submit" class="button">Search</button>
    </form>
  );
}

function Results(props: { app: string; reply: AuditSearchReply }) {
  const { reply } = props;
  const hits = reply.results.reduce((n, r) => n + r.hits.length, 0);
  return (
    <section class="section" data-search-results>
      <h2>
        {hits} hit{hits === 1 ? "" : "s"} in {reply.results.length} of {reply.searched}{" "}
        session{reply.searched === 1 ? "" : "s"}
      </h2>
      {reply.truncated && (
        <p class="muted">More sessions than one search reads: the oldest were not searched.</p>
      )}
      {reply.more_hits && (
        <p class="muted">The search stopped at its most hits: older sessions were not searched.</p>
      )}
      {reply.results.map(({ session: s, hits, more }) => (
        <div class="search-result">
          <h3>
            <a class="mono" href={`/apps/${props.app}/runs/${s.run}`}>{s.run}</a>{" "}
            <span class="muted">by {s.user}:</span> <code class="cmd">{s.command}</code>
            {s.reason && <span class="muted">{` (${s.reason})`}</span>}
          </h3>
          <ol class="hits">
            {hits.map((hit) => (
              <li>
                <a class="mono" href={`/apps/${props.app}/runs/${s.run}?t=${hit.t}`} data-hit>
                  {`+${hit.t.toFixed(1)} s`}
                </a>{" "}
                <span class="muted">{hit.stream === "input" ? "⟩" : ""}</span>{" "}
                <code>{hit.line}</code>
              </li>
            ))}
            {more && <li class="muted">…and more in this session</li>}
          </ol>
        </div>
      ))}
    </section>
  );
}

async function page(
  c: Parameters<Handler<DashEnv>>[0],
  ctx: ServerContext,
  app: AppRow,
  search?: { text: string; reply: AuditSearchReply },
) {
  const [found, release] = await Promise.all([
    ctx.store.listRecordedSessions({
      app_id: app.id,
      since: new Date(Date.now() - DEFAULT_AUDIT_SINCE_MS),
      limit: LISTED,
    }),
    ctx.store.latestRelease(app.id),
  ]);
  const csrf = c.get("csrf");
  return render(
    c,
    { title: `${app.name} sessions`, auth: c.get("auth"), csrf, nav: "apps" },
    <>
      <Heading title={app.name} sub={releaseLine(release)} />
      <AppTabs app={app.name} current="sessions" />
      <section class="section">
        <SearchForm app={app.name} csrf={csrf} {...(search ? { text: search.text } : {})} />
      </section>
      {search && <Results app={app.name} reply={search.reply} />}
      <section class="section">
        <h2>Recorded sessions</h2>
        <Sessions app={app.name} sessions={found.map(sessionInfo)} />
      </section>
    </>,
  );
}

/** `GET /apps/:app/audit`: the app's recorded sessions and the search form. */
export function sessionsPage(ctx: ServerContext): Handler<DashEnv> {
  return async (c) => page(c, ctx, await loadApp(c, ctx.store));
}

/** `POST /apps/:app/audit`: a search, answered with its hits above the sessions. */
export function searchPage(ctx: ServerContext): Handler<DashEnv> {
  return async (c) => {
    const form = await checkedForm(c);
    const app = await loadApp(c, ctx.store);
    const decoded = decodeAuditSearchBody({ text: form.text });
    if (!decoded.ok) throw new HttpError(422, decoded.code, decoded.error);
    const reply = await searchSessions(ctx, {
      app,
      actor: c.get("auth").actor,
      query: decoded.value,
    });
    return page(c, ctx, app, { text: decoded.value.text, reply });
  };
}
