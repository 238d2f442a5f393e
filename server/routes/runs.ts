/**
 * One-off runs of an app: create, list, show (with long-poll), attach
 * details, stop, resize, and uploads.
 * @module
 */
import { Hono } from "hono";
import {
  type AttachInfo,
  isTerminal,
  type RunInfo,
  runLabel,
  SIZE_NAMES,
  type SizeName,
} from "../../protocol/mod.ts";
import type { AuthEnv } from "../auth.ts";
import { BlobTooLargeError } from "../blob_store.ts";
import type { ServerContext } from "../context.ts";
import { HttpError, jsonBody } from "../http_error.ts";
import type { RunEngine, RunRequest } from "../run_engine.ts";
import { runKey } from "../signals.ts";
import type { AgentRow, AppRow, RunRow, Store } from "../store/mod.ts";
import { intParam, loadApp, loadRun } from "./_load.ts";

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
const UPLOAD_NAME = /^[A-Za-z0-9._-][A-Za-z0-9._ -]{0,254}$/;

/** The API view of a run. */
export function runInfo(run: RunRow, app: string, agents: Map<string, AgentRow>): RunInfo {
  return {
    id: run.id,
    app,
    label: runLabel(run.number),
    command: run.command,
    state: run.state,
    attached: run.attached,
    tty: run.tty,
    size: run.size,
    agent: run.agent_id ? agents.get(run.agent_id)?.name ?? null : null,
    exit_code: run.exit_code,
    reason: run.reason,
    actor: run.actor,
    created_at: run.created_at.toISOString(),
    started_at: run.started_at?.toISOString() ?? null,
    ended_at: run.ended_at?.toISOString() ?? null,
  };
}

async function agentMap(store: Store): Promise<Map<string, AgentRow>> {
  return new Map((await store.listAgents()).map((a) => [a.id, a]));
}

function parseDuration(value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value === "number" && Number.isInteger(value) && value > 0) return value * 1000;
  throw new HttpError(422, "invalid", `Field "timeout" must be a positive number of seconds`);
}

/** Checks a run request body field by field. */
async function parseRequest(ctx: ServerContext, app: AppRow, body: Record<string, unknown>) {
  const release = await ctx.store.latestRelease(app.id);
  if (!release) {
    throw new HttpError(
      422,
      "no_release",
      `App "${app.name}" has no slug yet: deploy one with \`oneoff deploy -a ${app.name} PATH\``,
    );
  }
  let command = body.command;
  if (body.type !== undefined) {
    if (typeof body.type !== "string" || !(body.type in release.process_types)) {
      const known = Object.keys(release.process_types).join(", ") || "none";
      throw new HttpError(
        422,
        "unknown_type",
        `No process type "${String(body.type)}" in the Procfile of "${app.name}" (known: ${known})`,
      );
    }
    const base = release.process_types[body.type] ?? "";
    command = typeof command === "string" && command.trim() ? `${base} ${command}` : base;
  }
  if (typeof command !== "string" || command.trim() === "" || command.length > 65536) {
    throw new HttpError(
      422,
      "invalid_command",
      "Give a command to run (or a process type with -t)",
    );
  }
  const size = body.size ?? "M";
  if (typeof size !== "string" || !(SIZE_NAMES as readonly string[]).includes(size)) {
    throw new HttpError(
      422,
      "unknown_size",
      `Unknown size "${String(size)}": use one of ${SIZE_NAMES.join(", ")}`,
    );
  }
  const env: Record<string, string> = {};
  const rawEnv = body.env ?? {};
  if (typeof rawEnv !== "object" || rawEnv === null || Array.isArray(rawEnv)) {
    throw new HttpError(422, "invalid", `Field "env" must be an object`);
  }
  for (const [key, value] of Object.entries(rawEnv)) {
    if (!ENV_KEY.test(key) || typeof value !== "string") {
      throw new HttpError(422, "invalid_env", `Invalid variable "${key}": give KEY=VALUE`);
    }
    env[key] = value;
  }
  const uploads: RunRequest["uploads"] = [];
  for (const item of Array.isArray(body.uploads) ? body.uploads : []) {
    const { name, sha256 } = item as Record<string, unknown>;
    if (typeof name !== "string" || !UPLOAD_NAME.test(name) || name === "." || name === "..") {
      throw new HttpError(422, "invalid_upload", `Invalid upload name "${String(name)}"`);
    }
    if (
      typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256) || !await ctx.blobs.has(sha256)
    ) {
      throw new HttpError(422, "invalid_upload", `Upload "${name}" was not uploaded first`);
    }
    const file = await ctx.blobs.open(sha256);
    const size = file ? (await file.stat()).size : 0;
    file?.close();
    uploads.push({ name, sha256, size });
  }
  const attached = body.attached === true;
  const tty = attached && body.tty === true;
  const dims = (
    v: unknown,
    d: number,
  ) => (typeof v === "number" && Number.isInteger(v) && v > 0 && v < 10000 ? v : d);
  const request: RunRequest = {
    command: command.trim(),
    attached,
    tty,
    cols: dims(body.cols, 80),
    rows: dims(body.rows, 24),
    size: size as SizeName,
    env,
    timeoutMs: parseDuration(body.timeout, ctx.config.maxDurationMs),
    uploads,
    term: typeof body.term === "string" && /^[A-Za-z0-9._+-]{1,64}$/.test(body.term)
      ? body.term
      : "xterm-256color",
  };
  return { release, request };
}

/** Routes under `/apps/:app/runs` and `/apps/:app/uploads`. */
export function runRoutes(ctx: ServerContext, engine: RunEngine): Hono<AuthEnv> {
  const { store } = ctx;
  const app = new Hono<AuthEnv>();

  /** Waits up to `wait` seconds until the run's agent expects its client. */
  async function waitAttachable(
    initial: RunRow,
    appName: string,
    wait: number,
  ): Promise<Omit<AttachInfo, "secret"> | null> {
    let run = initial;
    const deadline = Date.now() + wait * 1000;
    while (
      !engine.readiness(run.id) && !isTerminal(run.state) && run.state !== "running" &&
      Date.now() < deadline
    ) {
      await ctx.signals.wait(runKey(run.id), deadline - Date.now());
      run = await store.runById(run.id) ?? run;
    }
    const ready = engine.readiness(run.id);
    if (!ready) {
      if (isTerminal(run.state) || run.state === "running") {
        throw new HttpError(
          409,
          "not_attachable",
          `${runLabel(run.number)} is ${run.state}${
            run.reason ? ` (${run.reason})` : ""
          }: it cannot be attached to`,
        );
      }
      return null;
    }
    const agent = await store.agentById(ready.agentId);
    if (!agent) throw new HttpError(503, "agent_unreachable", "The run's agent is gone");
    const info: Omit<AttachInfo, "secret"> = {
      run: runLabel(run.number),
      app: appName,
      host: agent.attach_host,
      port: agent.attach_port,
      tls: agent.attach_tls,
      expires_at: new Date(ready.expiresAt).toISOString(),
    };
    if (agent.tls_fingerprint) info.tls_fingerprint = agent.tls_fingerprint;
    return info;
  }

  app.post("/:app/runs", async (c) => {
    const row = await loadApp(c, store);
    const { release, request } = await parseRequest(ctx, row, await jsonBody(c));
    const { run, secret } = await engine.create(row, release, request, c.get("auth").actor);
    // ?wait=S on an attached run: answer once its agent expects the client,
    // which saves the CLI a round trip before it connects.
    const wait = intParam(c, "wait", 0, 60);
    const attach = run.attached && wait > 0 ? await waitAttachable(run, row.name, wait) : null;
    const fresh = await store.runById(run.id) ?? run;
    return c.json({ run: runInfo(fresh, row.name, await agentMap(store)), secret, attach }, 201);
  });

  app.get("/:app/runs", async (c) => {
    const row = await loadApp(c, store);
    const limit = intParam(c, "limit", 100, 10000);
    const runs = await store.listRuns({ app_id: row.id, limit });
    const agents = await agentMap(store);
    return c.json({ runs: runs.map((r) => runInfo(r, row.name, agents)) });
  });

  app.get("/:app/runs/:run", async (c) => {
    const row = await loadApp(c, store);
    let run = await loadRun(c, store, row);
    // ?wait=S: long-poll until the run has ended (or S seconds passed).
    const wait = intParam(c, "wait", 0, 60);
    const deadline = Date.now() + wait * 1000;
    while (!isTerminal(run.state) && Date.now() < deadline) {
      await ctx.signals.wait(runKey(run.id), deadline - Date.now());
      run = await store.runById(run.id) ?? run;
    }
    return c.json({ run: runInfo(run, row.name, await agentMap(store)) });
  });

  app.get("/:app/runs/:run/attach", async (c) => {
    const row = await loadApp(c, store);
    const run = await loadRun(c, store, row);
    if (!run.attached) {
      throw new HttpError(409, "not_attached", `${c.req.param("run")} is a detached run`);
    }
    const attach = await waitAttachable(run, row.name, intParam(c, "wait", 0, 60));
    return attach ? c.json({ ready: true, attach }) : c.json({ ready: false }, 202);
  });

  app.post("/:app/runs/:run/stop", async (c) => {
    const row = await loadApp(c, store);
    const run = await loadRun(c, store, row);
    const label = runLabel(run.number);
    if (isTerminal(run.state)) {
      throw new HttpError(409, "not_running", `${label} has already ended (${run.state})`);
    }
    await engine.stop(run, c.get("auth").actor, label, row.name);
    return c.json({ stopping: label }, 202);
  });

  app.post("/:app/runs/:run/resize", async (c) => {
    const row = await loadApp(c, store);
    const run = await loadRun(c, store, row);
    const { cols, rows } = await jsonBody(c);
    const ok = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0 && v < 10000;
    if (!ok(cols) || !ok(rows)) {
      throw new HttpError(422, "invalid", "Give cols and rows as positive integers");
    }
    engine.resize(run, cols as number, rows as number);
    return c.json({ cols, rows });
  });

  app.post("/:app/uploads", async (c) => {
    await loadApp(c, store);
    const body = c.req.raw.body;
    if (!body) throw new HttpError(422, "empty_upload", "Empty upload");
    try {
      const blob = await ctx.blobs.put(body, { maxBytes: ctx.config.maxUploadBytes });
      return c.json({ sha256: blob.sha256, size: blob.size }, 201);
    } catch (err) {
      if (err instanceof BlobTooLargeError) {
        throw new HttpError(
          413,
          "upload_too_large",
          `Upload is larger than the limit of ${ctx.config.maxUploadBytes} bytes`,
        );
      }
      throw err;
    }
  });

  return app;
}
