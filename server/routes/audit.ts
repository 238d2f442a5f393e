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
  type AuditReadout,
  type AuditService,
  displayEvents,
  toAsciicast,
  toTranscript,
} from "../audit/mod.ts";
import { type AuthEnv, requireAdmin } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { type AppEnv, loadRun } from "../_lookup.ts";
import type { AppRow, RunRow, Store } from "../store/mod.ts";
import { agentMap, runInfo } from "../views.ts";

const FORMATS = ["json", "transcript", "cast"] as const;
type Format = typeof FORMATS[number];

/**
 * Routes under `/apps/:app/runs/:run` (the app loaded by the `/apps/:app/*`
 * middleware): `GET /audit` (JSON; `?format=transcript` or `?format=cast`
 * put that text in the JSON instead of the events) and `GET /audit.cast`
 * (the asciicast file itself).
 */
export function auditRoutes(ctx: ServerContext, audit: AuditService): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  // Loads, decrypts and records who looked: every display is on the timeline.
  async function view(c: Context<AppEnv>, format: Format) {
    const row = c.get("app");
    const run = await loadRun(c, store, row);
    const readout = await audit.read(run.id);
    const label = runLabel(run.number);
    await store.addEvent({
      app_id: row.id,
      app_name: row.name,
      actor: c.get("auth").actor,
      kind: "audit.viewed",
      data: { run: label, format },
    });
    return { row, run, readout, label };
  }

  app.get("/audit", async (c) => {
    const format = parseFormat(c.req.query("format"));
    const { row, run, readout, label } = await view(c, format);
    const body: AuditReply = {
      run: label,
      meta: runInfo(run, row.name, await agentMap(store)),
      t0: readout.t0 === null ? null : new Date(readout.t0).toISOString(),
      size: readout.size,
      final: readout.final,
      problems: readout.problems,
    };
    if (format === "json") body.events = displayEvents(readout);
    else if (format === "transcript") body.transcript = toTranscript(readout);
    else body.cast = cast(readout, row, run);
    return c.json(body);
  });

  app.get("/audit.cast", async (c) => {
    const { row, run, readout, label } = await view(c, "cast");
    return new Response(cast(readout, row, run), {
      headers: {
        "content-type": "application/x-asciicast",
        "content-disposition": `attachment; filename="${row.name}-${label}.cast"`,
        // Problems travel beside the file, which has no place for them.
        "x-oneoff-audit-problems": encodeURIComponent(JSON.stringify(readout.problems)),
      },
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
    const readout = await audit.read(id);
    const label = runLabel(found.run.number);
    await store.addEvent({
      app_id: found.app_id,
      app_name: found.app_name,
      actor: auth.actor,
      kind: "audit.viewed",
      data: { run: label, format },
    });
    const body: AuditReply = {
      run: label,
      meta: runInfo(found.run, found.app_name, await agentMap(store)),
      t0: readout.t0 === null ? null : new Date(readout.t0).toISOString(),
      size: readout.size,
      final: readout.final,
      problems: readout.problems,
    };
    const title = `${found.app_name} ${label}: ${found.run.command}`;
    if (format === "json") body.events = displayEvents(readout);
    else if (format === "transcript") body.transcript = toTranscript(readout);
    else body.cast = toAsciicast(readout, { title });
    return c.json(body);
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

function cast(readout: AuditReadout, app: AppRow, run: RunRow): string {
  return toAsciicast(readout, { title: `${app.name} ${runLabel(run.number)}: ${run.command}` });
}
