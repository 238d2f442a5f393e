/**
 * Stored rows as the API shows them (`protocol/api.ts`); the dashboard
 * renders the same views.
 * @module
 */
import {
  type AgentInfo,
  type AppInfo,
  type LogLine,
  type QueuedReason,
  type ReleaseInfo,
  type RunInfo,
  runLabel,
  type TimelineEvent,
  type TokenInfo,
} from "../protocol/mod.ts";
import type {
  AgentRow,
  AppRow,
  EventRow,
  LogRow,
  ReleaseRow,
  RunRow,
  Store,
  TokenRow,
} from "./store/mod.ts";
import { appSettingsInfo } from "./app_settings.ts";
import type { ServerConfig } from "./context.ts";

/** The API view of a token: never its hash. */
export function tokenInfo(token: TokenRow): TokenInfo {
  return {
    id: token.id,
    name: token.name,
    role: token.role,
    apps: token.apps,
    created_at: token.created_at.toISOString(),
  };
}

/**
 * The API view of a run; `agents` by id, to name the run's agent; `queue`
 * by run id, to say why a pending run waits.
 */
export function runInfo(
  run: RunRow,
  app: string,
  agents: Map<string, AgentRow>,
  queue?: Map<string, { reason: QueuedReason; position: number }>,
): RunInfo {
  const place = run.state === "pending" ? queue?.get(run.id) : undefined;
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
    purpose: run.purpose ?? null,
    created_at: run.created_at.toISOString(),
    started_at: run.started_at?.toISOString() ?? null,
    ended_at: run.ended_at?.toISOString() ?? null,
    idle_timeout_ms: run.attached ? run.idle_timeout_ms : null,
    queued_reason: place?.reason ?? null,
    queue_position: place?.position ?? null,
  };
}

/** Every agent by id, for {@link runInfo}. */
export async function agentMap(store: Store): Promise<Map<string, AgentRow>> {
  return new Map((await store.listAgents()).map((a) => [a.id, a]));
}

/** The API view of an app, with its current release and its settings. */
export async function appInfo(
  ctx: { store: Store; config: ServerConfig },
  app: AppRow,
): Promise<AppInfo> {
  const release = await ctx.store.latestRelease(app.id);
  return {
    name: app.name,
    created_at: app.created_at.toISOString(),
    release: release?.version ?? null,
    process_types: release?.process_types ?? {},
    settings: appSettingsInfo(ctx.config, app),
  };
}

/** The API view of a release. */
export function releaseInfo(release: ReleaseRow): ReleaseInfo {
  return {
    version: release.version,
    sha256: release.sha256,
    size: release.size,
    process_types: release.process_types,
  };
}

/** The API view of a stored log line. */
export function logLine(row: LogRow): LogLine {
  return {
    id: row.id,
    ts: row.ts.toISOString(),
    source: row.source,
    stream: row.stream,
    line: row.line,
  };
}

/** The API view of a timeline event. */
export function timelineEvent(row: EventRow): TimelineEvent {
  return {
    id: row.id,
    at: row.at.toISOString(),
    app: row.app_name,
    actor: row.actor,
    kind: row.kind,
    data: row.data,
  };
}

/** The API view of an agent; `live` tells whether its channel is open and what it runs. */
export function agentInfo(row: AgentRow, live: { running: number } | null): AgentInfo {
  return {
    id: row.id,
    name: row.name,
    state: live ? "online" : "offline",
    trust: row.trust,
    since: row.since.toISOString(),
    version: row.version,
    capacity: row.capacity,
    running: live?.running ?? 0,
    sandbox: row.sandbox,
    attach: `${row.attach_tls ? "tls" : "tcp"}://${row.attach_host}:${row.attach_port}`,
    warnings: row.warnings,
    labels: row.labels,
  };
}
