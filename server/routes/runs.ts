/**
 * One-off runs of an app: create, list, show (with long-poll), attach
 * details, stop and resize.
 * @module
 */
import { Hono } from "hono";
import {
  type AttachReply,
  type AttachTarget,
  decodeResizeBody,
  decodeRunRequestBody,
  IDEMPOTENCY_HEADER,
  isTerminal,
  MAX_LONG_POLL_S,
  type ReattachReply,
  type ResizeReply,
  type RunCreatedReply,
  runLabel,
  type RunReply,
  type RunRequestBody,
  type RunsReply,
  type StopReply,
} from "../../protocol/mod.ts";
import type { ServerContext } from "../context.ts";
import { decodeBody, HttpError } from "../http_error.ts";
import { type AppEnv, intParam, loadRun } from "../_lookup.ts";
import { RunEngine, type RunRequest } from "../run_engine.ts";
import { idempotencyOf } from "../_idempotency.ts";
import { runTimeoutMs } from "../run_limits.ts";
import { runKey } from "../signals.ts";
import { requireLabelledAgent, requireReason } from "../app_settings.ts";
import type { AppRow, RunRow } from "../store/mod.ts";
import { agentMap, runInfo } from "../views.ts";

/**
 * Turns a decoded run request into what the engine runs: the process type's
 * command, the defaults, and the uploads' sizes. The shape was checked by
 * the body's decoder; these are the checks that need the store.
 */
async function runRequest(ctx: ServerContext, app: AppRow, body: RunRequestBody) {
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
    if (!Object.hasOwn(release.process_types, body.type)) {
      const known = Object.keys(release.process_types).join(", ") || "none";
      throw new HttpError(
        422,
        "unknown_type",
        `No process type "${body.type}" in the Procfile of "${app.name}" (known: ${known})`,
      );
    }
    const base = release.process_types[body.type] ?? "";
    command = command?.trim() ? `${base} ${command}` : base;
  }
  if (command === undefined || command.trim() === "" || command.length > 65536) {
    throw new HttpError(
      422,
      "invalid_command",
      "Give a command to run (or a process type with -t)",
    );
  }
  const uploads: RunRequest["uploads"] = [];
  for (const { name, sha256 } of body.uploads ?? []) {
    const size = await ctx.blobs.size(sha256);
    if (size === null) {
      throw new HttpError(422, "invalid_upload", `Upload "${name}" was not uploaded first`);
    }
    uploads.push({ name, sha256, size });
  }
  const attached = body.attached === true;
  const request: RunRequest = {
    command: command.trim(),
    attached,
    tty: attached && body.tty === true,
    cols: body.cols ?? 80,
    rows: body.rows ?? 24,
    size: body.size ?? "M",
    env: body.env ?? {},
    timeoutMs: runTimeoutMs(ctx.config, body.timeout),
    uploads,
    term: body.term ?? "xterm-256color",
    failFast: body.fail_fast === true,
  };
  if (body.reason !== undefined) request.reason = body.reason;
  return { release, request };
}

/** Routes under `/apps/:app/runs`, the app loaded by the `/apps/:app/*` middleware. */
export function runRoutes(ctx: ServerContext, engine: RunEngine): Hono<AppEnv> {
  const { store } = ctx;
  const app = new Hono<AppEnv>();

  /** Waits up to `wait` seconds until the run's agent expects its client. */
  async function waitAttachable(
    initial: RunRow,
    appName: string,
    wait: number,
  ): Promise<AttachTarget | null> {
    let run = initial;
    const deadline = Date.now() + wait * 1000;
    while (
      !RunEngine.readiness(run) && !isTerminal(run.state) && run.state !== "running" &&
      Date.now() < deadline && !ctx.signals.closed
    ) {
      await ctx.signals.wait(runKey(run.id), deadline - Date.now());
      run = await store.runById(run.id) ?? run;
    }
    const ready = RunEngine.readiness(run);
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
    const info: AttachTarget = {
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

  app.post("/", async (c) => {
    const row = c.get("app");
    const body = await decodeBody(c, decodeRunRequestBody);
    const actor = c.get("auth").actor;
    const idem = idempotencyOf(c.req.header(IDEMPOTENCY_HEADER), actor, body);
    const { release, request } = await runRequest(ctx, row, body);
    requireReason(row, body.reason);
    await requireLabelledAgent(store, row);
    const { run, secret, replayed } = await engine.create(
      row,
      release,
      request,
      actor,
      idem ? { idempotency: idem } : {},
    );
    // ?wait=S on an attached run: answer once its agent expects the client,
    // which saves the CLI a round trip before it connects.
    const wait = intParam(c, "wait", 0, MAX_LONG_POLL_S);
    const attach = run.attached && wait > 0 ? await waitAttachable(run, row.name, wait) : null;
    const fresh = await store.runById(run.id) ?? run;
    if (replayed) c.header("Idempotent-Replayed", "true");
    const queue = fresh.state === "pending" ? await engine.placeOf(fresh) : undefined;
    return c.json(
      {
        run: runInfo(fresh, row.name, await agentMap(store), queue),
        secret,
        attach,
      } satisfies RunCreatedReply,
      replayed ? 200 : 201,
    );
  });

  app.get("/", async (c) => {
    const row = c.get("app");
    const limit = intParam(c, "limit", 100, 10000);
    const runs = await store.listRuns({ app_id: row.id, limit });
    const agents = await agentMap(store);
    const { places, limit: max, active, pending } = await engine.queue(row.id);
    const files = await store.artifactSummaries(runs.map((r) => r.id));
    return c.json(
      {
        runs: runs.map((r) => ({
          ...runInfo(r, row.name, agents, places),
          artifacts: files.get(r.id) ?? null,
        })),
        queue: { limit: max, active, pending },
      } satisfies RunsReply,
    );
  });

  app.get("/:run", async (c) => {
    const row = c.get("app");
    let run = await loadRun(c, store, row);
    // ?wait=S: long-poll until the run has ended (or S seconds passed).
    const wait = intParam(c, "wait", 0, MAX_LONG_POLL_S);
    const deadline = Date.now() + wait * 1000;
    while (!isTerminal(run.state) && Date.now() < deadline && !ctx.signals.closed) {
      await ctx.signals.wait(runKey(run.id), deadline - Date.now());
      run = await store.runById(run.id) ?? run;
    }
    const queue = run.state === "pending" ? (await engine.queue(row.id)).places : undefined;
    const files = (await store.artifactSummaries([run.id])).get(run.id) ?? null;
    return c.json(
      {
        run: { ...runInfo(run, row.name, await agentMap(store), queue), artifacts: files },
      } satisfies RunReply,
    );
  });

  app.get("/:run/attach", async (c) => {
    const row = c.get("app");
    const run = await loadRun(c, store, row);
    if (!run.attached) {
      throw new HttpError(409, "not_attached", `${c.req.param("run")} is a detached run`);
    }
    const attach = await waitAttachable(run, row.name, intParam(c, "wait", 0, MAX_LONG_POLL_S));
    return attach
      ? c.json({ ready: true, attach } satisfies AttachReply)
      : c.json({ ready: false } satisfies AttachReply, 202);
  });

  // Another terminal takes over a running framed session: only the one who
  // started it, or an admin (a session is someone's shell).
  app.post("/:run/attach", async (c) => {
    const row = c.get("app");
    const run = await loadRun(c, store, row);
    const label = runLabel(run.number);
    if (!run.attached) throw new HttpError(409, "not_attached", `${label} is a detached run`);
    const auth = c.get("auth");
    if (auth.token.role !== "admin" && auth.actor !== run.actor) {
      throw new HttpError(
        403,
        "forbidden",
        `Cannot attach to ${label}: only "${run.actor}", who started it, or an admin may`,
      );
    }
    if (isTerminal(run.state)) {
      throw new HttpError(
        409,
        "ended",
        `Cannot attach to ${label}: it has already ended (${run.state}${
          run.exit_code !== null ? `, exit code ${run.exit_code}` : ""
        })`,
      );
    }
    if (run.state !== "running") {
      throw new HttpError(
        409,
        "not_running",
        `Cannot attach to ${label}: it is ${run.state}, its own client attaches first`,
      );
    }
    const granted = await engine.reattach(run);
    const agent = granted && run.agent_id ? await store.agentById(run.agent_id) : null;
    if (!granted || !agent) {
      throw new HttpError(503, "agent_unreachable", `Cannot attach to ${label}: its agent is away`);
    }
    const attach: AttachTarget = {
      run: label,
      app: row.name,
      host: agent.attach_host,
      port: agent.attach_port,
      tls: agent.attach_tls,
      expires_at: new Date(granted.expiresAt).toISOString(),
    };
    if (agent.tls_fingerprint) attach.tls_fingerprint = agent.tls_fingerprint;
    return c.json({ attach, secret: granted.secret } satisfies ReattachReply);
  });

  app.post("/:run/stop", async (c) => {
    const row = c.get("app");
    const run = await loadRun(c, store, row);
    const label = runLabel(run.number);
    if (isTerminal(run.state)) {
      throw new HttpError(409, "not_running", `${label} has already ended (${run.state})`);
    }
    await engine.stop(run, c.get("auth").actor, label, row.name);
    return c.json({ stopping: label } satisfies StopReply, 202);
  });

  app.post("/:run/resize", async (c) => {
    const run = await loadRun(c, store, c.get("app"));
    const { cols, rows } = await decodeBody(c, decodeResizeBody);
    await engine.resize(run, cols, rows);
    return c.json({ cols, rows } satisfies ResizeReply);
  });

  return app;
}
