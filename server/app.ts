/**
 * The HTTP application: every route composed, one error handler.
 * @module
 */
import { Hono } from "hono";
import {
  AGENT_CHANNEL_PATH,
  AGENT_RELAY_PATH,
  type ApiError,
  type HealthReply,
} from "../protocol/mod.ts";
import { type Clock, realClock } from "../util/clock.ts";
import { ConnectedAgents } from "./agent_directory.ts";
import { routeAgentEvents } from "./agent_events.ts";
import { AgentHub } from "./agent_hub.ts";
import { agentArtifactRoutes, approvedAgent, artifactRoutes } from "./artifacts.ts";
import { clientAddress, FailureLimiter, requireToken, trustProxy } from "./auth.ts";
import { bodyLimit, serverLimits } from "./body_limit.ts";
import type { ServerContext } from "./context.ts";
import { dashboardRoutes, sessionAuth } from "./dashboard/mod.ts";
import { errorHandler, HttpError } from "./http_error.ts";
import { type AppEnv, appLoader } from "./_lookup.ts";
import { Ingest } from "./ingest.ts";
import { RelayHub } from "./relay.ts";
import { RunEngine } from "./run_engine.ts";
import { adminRoutes } from "./routes/admin.ts";
import { adminAuditRoutes, auditRoutes } from "./routes/audit.ts";
import { auditFindRoutes } from "./routes/audit_find.ts";
import { appRoutes } from "./routes/apps.ts";
import { logRoutes } from "./routes/logs.ts";
import { runRoutes } from "./routes/runs.ts";
import { timelineRoutes } from "./routes/timeline.ts";
import { uploadRoutes } from "./routes/uploads.ts";
import { watchRoutes } from "./routes/watch.ts";
import { Watchers } from "./watch.ts";
import { accessLog, withRequestId } from "./access_log.ts";
import { observabilityRoutes, ServerMetrics } from "./metrics.ts";

/** The composed application and the services behind it. */
export interface ServerApp {
  app: Hono;
  engine: RunEngine;
  hub: AgentHub;
  /** The relays through the server (CLI ↔ agent WebSockets). */
  relays: RelayHub;
  close(): void;
}

/** How {@link createApp} is built, beyond the context. */
export interface AppOptions {
  /** Time for the engine's and the hub's timers; the real clock by default. */
  clock?: Clock;
}

/** Builds the HTTP app on a context. */
export function createApp(ctx: ServerContext, options: AppOptions = {}): ServerApp {
  // The hub fills the directory the engine places runs through, and reports
  // what agents say to the engine and the ingest: no cycle to close later.
  const clock = options.clock ?? realClock;
  const agents = new ConnectedAgents();
  const engine = new RunEngine(ctx, { agents, clock });
  const ingest = new Ingest(ctx, { clock });
  const watchers = new Watchers(agents, ctx.cluster);
  const hub = new AgentHub(ctx, {
    agents,
    events: routeAgentEvents(engine, ingest, watchers),
    clock,
  });
  const limiter = new FailureLimiter({ limit: 10 });
  const relays = new RelayHub(ctx, { agents, limiter, clock });
  // Control messages other servers of the store send to agents held here.
  ctx.cluster.onAgentMessage((agentId, msg) => agents.get(agentId)?.send(msg) ?? false);

  const app = new Hono();
  const metrics = ctx.metrics ?? new ServerMetrics();
  metrics.watch({
    store: ctx.store,
    agentsOnline: () => agents.list().length,
    relays: () => ({ active: relays.active, queuedBytes: relays.queuedBytes }),
    watchers: () => watchers.total,
  });
  app.use("*", withRequestId, accessLog(ctx.log.child("http"), metrics));
  app.onError(errorHandler(ctx.log));
  app.notFound((c) =>
    c.json(
      {
        error: { code: "not_found", message: `No route ${c.req.method} ${c.req.path}` },
      } satisfies ApiError,
      404,
    )
  );

  // Before anything counts failures or logs by address.
  if (ctx.config.trustProxy) app.use("*", trustProxy(ctx.config.trustProxy));
  // Before any route reads a body: a size over its limit is refused while read.
  app.use("*", bodyLimit(serverLimits));

  app.get("/healthz", (c) => c.json({ ok: true } satisfies HealthReply));
  app.route("/", observabilityRoutes(ctx.store, metrics));

  // Agent-facing: the control channel authenticates in its first message,
  // blob downloads with an approved agent's credential as bearer.
  app.get(AGENT_CHANNEL_PATH, (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new HttpError(426, "upgrade_required", "This is the agents' WebSocket channel");
    }
    return hub.accept(c.req.raw, clientAddress(c));
  });
  // An agent's dial-back for one relayed session (its credential as bearer).
  app.get(
    `${AGENT_RELAY_PATH}/:id`,
    (c) => relays.acceptAgent(c.req.raw, c.req.param("id"), clientAddress(c)),
  );
  app.get("/agent/blobs/:sha", async (c) => {
    await approvedAgent(c, ctx, limiter);
    const sha = c.req.param("sha");
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new HttpError(404, "not_found", "No such blob");
    const blob = await ctx.blobs.read(sha);
    if (!blob) throw new HttpError(404, "not_found", `No blob "${sha}"`);
    const { size } = blob;
    return new Response(blob.body, {
      headers: { "content-type": "application/octet-stream", "content-length": String(size) },
    });
  });

  // What a run left in /tmp/downloads, sent by the agent that ran it.
  app.route("/agent/runs", agentArtifactRoutes(ctx, limiter));

  const api = new Hono<AppEnv>();
  api.use("*", requireToken(ctx.store, limiter, sessionAuth(ctx)));
  // Every route under one app finds it loaded (404, 403 said once, here).
  api.use("/apps/:app/*", appLoader(ctx.store));
  api.route("/apps", appRoutes(ctx));
  api.route("/apps/:app/runs", runRoutes(ctx, engine));
  api.route("/apps/:app/runs", relays.routes());
  api.route("/apps/:app/runs/:run/artifacts", artifactRoutes(ctx));
  api.route("/apps/:app/runs/:run", auditRoutes(ctx, ctx.audit));
  api.route("/apps/:app/runs/:run", watchRoutes(ctx, watchers));
  api.route("/apps/:app/audit", auditFindRoutes(ctx, ctx.audit));
  api.route("/apps/:app/uploads", uploadRoutes(ctx));
  api.route("/apps/:app/logs", logRoutes(ctx));
  api.route("/apps/:app/timeline", timelineRoutes(ctx));
  api.route("/", adminRoutes(ctx, hub));
  api.route("/", adminAuditRoutes(ctx.audit, ctx.store));
  app.route("/api", api);
  app.route("/", dashboardRoutes(ctx, engine));

  return {
    app,
    engine,
    hub,
    relays,
    close() {
      relays.close();
      hub.close();
      engine.close();
      ingest.close();
    },
  };
}
