/**
 * Displaying a run's audit recording (JSON readout, transcript, asciicast)
 * to an admin or a member of its app, each display on the timeline; and
 * the admin's key rotation.
 * @module
 */
import { type AuditReply, type RotateKeyReply, runLabel } from "../../protocol/mod.ts";
import type { Context } from "hono";
import { Hono } from "hono";
import {
  type AuditRecording,
  type AuditService,
  type CastMeta,
  streamAsciicast,
  streamEventsJson,
  streamTranscript,
} from "../audit/mod.ts";
import { type AuthEnv, requireAdmin } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { type AppEnv, loadRun } from "../_lookup.ts";
import type { RunRow, Store } from "../store/mod.ts";
import { agentMap, runInfo } from "../views.ts";

const FORMATS = ["json", "transcript", "cast"] as const;
type Format = typeof FORMATS[number];

/**
 * Routes under `/apps/:app/runs/:run` (the app loaded by the `/apps/:app/*`
 * middleware): `GET /audit` (JSON; `?format=transcript` or `?format=cast`
 * put that text in the JSON instead of the events), `GET /audit.cast`
 * (the asciicast file itself) and `GET /audit.txt` (the transcript itself).
 * Every answer is streamed as the recording is read, a chunk at a time.
 */
export function auditRoutes(ctx: ServerContext, audit: AuditService): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  // Loads, decrypts and records who looked: every display is on the timeline.
  async function view(c: Context<AppEnv>, format: Format) {
    const row = c.get("app");
    const run = await loadRun(c, store, row);
    const recording = await audit.open(run.id);
    const label = runLabel(run.number);
    await store.addEvent({
      app_id: row.id,
      app_name: row.name,
      actor: c.get("auth").actor,
      kind: "audit.viewed",
      data: { run: label, format },
    });
    return { row, run, recording, label };
  }

  app.get("/audit", async (c) => {
    const format = parseFormat(c.req.query("format"));
    const { row, run, recording, label } = await view(c, format);
    const head = replyHead(recording, label, runInfo(run, row.name, await agentMap(store)));
    return streamed(streamReply(head, format, recording, castMeta(row.name, run)), {
      "content-type": "application/json",
    });
  });

  app.get("/audit.cast", async (c) => {
    const { row, run, recording, label } = await view(c, "cast");
    return streamed(streamAsciicast(recording, castMeta(row.name, run)), {
      "content-type": "application/x-asciicast",
      "content-disposition": `attachment; filename="${row.name}-${label}.cast"`,
      // Problems travel beside the file, which has no place for them.
      [PROBLEMS_HEADER]: problemsHeader(recording.problems),
    });
  });

  app.get("/audit.txt", async (c) => {
    const { recording } = await view(c, "transcript");
    return streamed(streamTranscript(recording), {
      "content-type": "text/plain; charset=utf-8",
      [PROBLEMS_HEADER]: problemsHeader(recording.problems),
    });
  });

  return app;
}

/**
 * `POST /audit/rotate-key` (admin only): a new current audit key; answers
 * its id. `GET /audit/runs/:id` (admin only): a recording by run id, also
 * once its app is destroyed or its run row pruned (the audit trail keeps
 * who ran what until the audit retention ends); `?format=` as above.
 */
export function adminAuditRoutes(audit: AuditService, store: Store): Hono<AuthEnv> {
  const app = new Hono<AuthEnv>();
  // `GET /audit/runs?app=NAME` (admin only): the runs the audit trail keeps
  // of an app whose rows are gone (destroyed app, pruned runs), with their ids.
  app.get("/audit/runs", async (c) => {
    requireAdmin(c.get("auth"));
    const name = c.req.query("app");
    if (!name) throw new HttpError(422, "invalid", "Give the app: /api/audit/runs?app=NAME");
    const agents = await agentMap(store);
    const kept = await store.listArchivedRuns(name, 1000);
    return c.json({ runs: kept.map((a) => runInfo(a.run, a.app_name, agents)) });
  });
  app.get("/audit/runs/:id", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const format = parseFormat(c.req.query("format"));
    const id = c.req.param("id");
    const live = await store.runById(id);
    const liveApp = live === null ? null : await store.appById(live.app_id);
    const found = live !== null && liveApp !== null
      ? { run: live, app_name: liveApp.name, app_id: liveApp.id as number | null }
      : await store.archivedRun(id).then((a) => a && { ...a, app_id: null });
    if (found === null) throw new HttpError(404, "not_found", `No audit record of run "${id}"`);
    const recording = await audit.open(id);
    const label = runLabel(found.run.number);
    await store.addEvent({
      app_id: found.app_id,
      app_name: found.app_name,
      actor: auth.actor,
      kind: "audit.viewed",
      data: { run: label, format },
    });
    const head = replyHead(
      recording,
      label,
      runInfo(found.run, found.app_name, await agentMap(store)),
    );
    const meta = castMeta(found.app_name, found.run);
    return streamed(streamReply(head, format, recording, meta), {
      "content-type": "application/json",
    });
  });
  app.post("/audit/rotate-key", async (c) => {
    const auth = c.get("auth");
    requireAdmin(auth);
    const key = await audit.rotateKey({ actor: auth.actor });
    return c.json({ key } satisfies RotateKeyReply);
  });
  return app;
}

function parseFormat(raw = "json"): Format {
  if (!(FORMATS as readonly string[]).includes(raw)) {
    throw new HttpError(422, "invalid", `Unknown format "${raw}": use json, transcript or cast`);
  }
  return raw as Format;
}

function castMeta(app: string, run: RunRow): CastMeta {
  return {
    title: `${app} ${runLabel(run.number)}: ${run.command}`,
    command: run.command,
    user: run.actor,
    ...(run.purpose ? { reason: run.purpose } : {}),
  };
}

/** The header that carries a recording's problems beside a file that has no place for them. */
const PROBLEMS_HEADER = "x-oneoff-audit-problems";
// A header larger than this may be refused by clients and proxies.
const MAX_PROBLEMS_HEADER = 16 * 1024;

function problemsHeader(problems: string[]): string {
  const encode = (list: string[]) => encodeURIComponent(JSON.stringify(list));
  let kept = problems;
  let header = encode(kept);
  while (header.length > MAX_PROBLEMS_HEADER && kept.length > 1) {
    kept = kept.slice(0, Math.floor(kept.length / 2));
    const more = problems.length - kept.length;
    header = encode([...kept, `...and ${more} more problems: see the JSON readout (--json)`]);
  }
  return header;
}

type ReplyHead = Omit<AuditReply, "events" | "transcript" | "cast">;

function replyHead(recording: AuditRecording, run: string, meta: AuditReply["meta"]): ReplyHead {
  return {
    run,
    meta,
    t0: recording.t0 === null ? null : new Date(recording.t0).toISOString(),
    size: recording.size,
    final: recording.final,
    problems: recording.problems,
  };
}

// The AuditReply JSON written as the recording is read: the head, then the
// events (or the text) field by field, so that no piece holds the whole.
async function* streamReply(
  head: ReplyHead,
  format: Format,
  recording: AuditRecording,
  meta: CastMeta,
): AsyncGenerator<string> {
  const open = JSON.stringify(head).slice(0, -1);
  if (format === "json") {
    yield `${open},"events":[`;
    yield* streamEventsJson(recording);
    yield "]}";
    return;
  }
  yield `${open},"${format}":"`;
  const text = format === "transcript"
    ? streamTranscript(recording)
    : streamAsciicast(recording, meta);
  // Each piece is whole lines of valid text: escaped on its own, it joins up.
  for await (const piece of text) yield JSON.stringify(piece).slice(1, -1);
  yield `"}`;
}

// A response whose body is pulled from `pieces` as the client reads it.
function streamed(pieces: AsyncIterable<string>, headers: Record<string, string>): Response {
  const body = ReadableStream.from(pieces).pipeThrough(new TextEncoderStream());
  return new Response(body, { headers });
}
