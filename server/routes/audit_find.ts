/**
 * Finding an app's recorded sessions, for an admin or a member of the app:
 * `GET /apps/:app/audit/sessions` lists them, `POST /apps/:app/audit/search`
 * decrypts them one at a time, newest first, and keeps only the lines that
 * hold the text. Each search is on the timeline, without its text.
 * @module
 */
import { Hono } from "hono";
import {
  type AuditSearchBody,
  type AuditSearchReply,
  type AuditSearchResult,
  type AuditSessionInfo,
  type AuditSessionsReply,
  decodeAuditSearchBody,
  DEFAULT_AUDIT_SINCE_MS,
  MAX_SEARCH_HITS,
  MAX_SEARCH_SESSIONS,
  MAX_SESSION_HITS,
  MAX_SESSIONS_PAGE,
  runLabel,
} from "../../protocol/mod.ts";
import type { AuditService } from "../audit/mod.ts";
import { searchRecording } from "../audit/search.ts";
import type { ServerContext } from "../context.ts";
import { decodeBody } from "../http_error.ts";
import { type AppEnv, intParam } from "../_lookup.ts";
import type { AppRow, RecordedSession, Store } from "../store/mod.ts";

// Sessions read from the store at once while searching.
const SEARCH_PAGE = 100;

/** The API view of a recorded session. */
export function sessionInfo({ run, bytes }: RecordedSession): AuditSessionInfo {
  const started = run.started_at!;
  return {
    run: runLabel(run.number),
    id: run.id,
    user: run.actor,
    command: run.command,
    reason: run.purpose,
    state: run.state,
    exit_code: run.exit_code,
    started_at: started.toISOString(),
    ended_at: run.ended_at?.toISOString() ?? null,
    duration_ms: run.ended_at ? run.ended_at.getTime() - started.getTime() : null,
    bytes,
  };
}

/** Routes under `/apps/:app/audit`, the app loaded (and access checked) by the middleware. */
export function auditFindRoutes(ctx: ServerContext, audit: AuditService): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  app.get("/sessions", async (c) => {
    const row = c.get("app");
    const sinceMs = intParam(c, "since_ms", DEFAULT_AUDIT_SINCE_MS, Number.MAX_SAFE_INTEGER);
    const limit = Math.max(1, intParam(c, "limit", 50, MAX_SESSIONS_PAGE));
    const before = c.req.query("before");
    const user = c.req.query("user");
    const found = await store.listRecordedSessions({
      app_id: row.id,
      since: new Date(Date.now() - sinceMs),
      limit: limit + 1,
      ...(user ? { actor: user } : {}),
      ...(before ? { before_number: intParam(c, "before", 0, Number.MAX_SAFE_INTEGER) } : {}),
    });
    const page = found.slice(0, limit);
    const last = page.at(-1);
    return c.json(
      {
        sessions: page.map(sessionInfo),
        next_before: found.length > limit && last ? last.run.number : null,
      } satisfies AuditSessionsReply,
    );
  });

  app.post("/search", async (c) => {
    const row = c.get("app");
    const body = await decodeBody(c, decodeAuditSearchBody);
    const reply = await searchSessions({ store, audit }, {
      app: row,
      actor: c.get("auth").actor,
      query: body,
    });
    return c.json(reply satisfies AuditSearchReply);
  });

  return app;
}

/**
 * Searches an app's sessions of the last `since_ms` (default 7 days),
 * newest first and one recording at a time, up to the bounds of
 * `protocol/audit_find.ts`; the search goes on the timeline with how many
 * sessions and hits, never its text.
 */
export async function searchSessions(
  ctx: { store: Store; audit: AuditService },
  request: { app: AppRow; actor: string; query: AuditSearchBody },
): Promise<AuditSearchReply> {
  const { store, audit } = ctx;
  const { app: row, query: body } = request;
  const started = performance.now();
  const sinceMs = body.since_ms ?? DEFAULT_AUDIT_SINCE_MS;
  const since = new Date(Date.now() - sinceMs);
  const results: AuditSearchResult[] = [];
  let searched = 0;
  let hits = 0;
  let truncated = false;
  let moreHits = false;
  let before: number | undefined;
  search: while (true) {
    const page = await store.listRecordedSessions({
      app_id: row.id,
      since,
      limit: SEARCH_PAGE,
      ...(body.user ? { actor: body.user } : {}),
      ...(before !== undefined ? { before_number: before } : {}),
    });
    for (const session of page) {
      if (searched >= MAX_SEARCH_SESSIONS) {
        truncated = true;
        break search;
      }
      if (hits >= MAX_SEARCH_HITS) {
        moreHits = true;
        break search;
      }
      searched++;
      // One recording open at a time, read a chunk at a time: constant memory.
      const recording = await audit.open(session.run.id);
      const found = await searchRecording(recording, body.text, {
        maxHits: Math.min(MAX_SESSION_HITS, MAX_SEARCH_HITS - hits),
      });
      if (found.hits.length === 0) continue;
      hits += found.hits.length;
      results.push({
        session: sessionInfo(session),
        hits: found.hits,
        more: found.more,
        problems: recording.problems,
      });
    }
    if (page.length < SEARCH_PAGE) break;
    before = page.at(-1)!.run.number;
  }
  await store.addEvent({
    app_id: row.id,
    app_name: row.name,
    actor: request.actor,
    kind: "audit.searched",
    data: { sessions: searched, hits, since_ms: sinceMs },
  });
  return {
    results,
    searched,
    truncated,
    more_hits: moreHits,
    took_ms: Math.round(performance.now() - started),
  };
}
