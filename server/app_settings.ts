/**
 * An app's settings (`oneoff apps set`, `PATCH /apps/:app`): who may change
 * which, their bounds, what applies when one is not set, and the timeline
 * event that says who changed what.
 *
 * Members of the app may change the idle timeout and the reattach grace:
 * they only decide how long their own sessions wait, within the server's
 * maxima. The network and the host ports are for admins: they weaken the
 * isolation between a one-off and the host (its loopback services, its
 * abstract sockets, other runs), which the operator, not an app's member,
 * answers for. So are the labels an agent must have (which hosts see the
 * app's runs and secrets). Any member may require a reason of every run
 * (`--require-reason`); only an admin may stop requiring one, since the
 * reasons are for whoever audits the app.
 * @module
 */
import {
  type AppSettingsBody,
  type AppSettingsInfo,
  hasLabels,
  labelsText,
  REATTACH_GRACE_MS,
  type TimelineEventData,
} from "../protocol/mod.ts";
import { durationFlag } from "../util/format.ts";
import type { Auth } from "./auth.ts";
import type { ServerConfig } from "./context.ts";
import { HttpError } from "./http_error.ts";
import type { AppRow, AppSettings, Store } from "./store/mod.ts";

/** The longest idle timeout an app may set unless `--max-idle-timeout` says otherwise. */
export const DEFAULT_MAX_IDLE_TIMEOUT_MS = 24 * 3600_000;
/** The longest reattach grace an app may set unless `--max-reattach-grace` says otherwise. */
export const DEFAULT_MAX_REATTACH_GRACE_MS = 3600_000;
/** Bytes of log lines an app may keep unless `--app-log-quota` says otherwise. */
export const DEFAULT_APP_LOG_QUOTA_BYTES = 4 * 1024 ** 3;

type Bounds = Pick<
  ServerConfig,
  "idleTimeoutMs" | "maxIdleTimeoutMs" | "reattachGraceMs" | "maxReattachGraceMs"
>;

/**
 * The idle timeout an attached run of the app gets: its setting, never
 * above the server's maximum now (which may have been lowered since).
 */
export function appIdleTimeoutMs(config: Bounds, app: AppRow): number {
  if (app.idle_timeout_ms === null) return config.idleTimeoutMs;
  return Math.min(app.idle_timeout_ms, config.maxIdleTimeoutMs ?? DEFAULT_MAX_IDLE_TIMEOUT_MS);
}

/** The reattach grace a framed session of the app gets, within the server's maximum now. */
export function appReattachGraceMs(config: Bounds, app: AppRow): number {
  // The server's --reattach-grace is the default of apps that set none.
  if (app.reattach_grace_ms === null) return config.reattachGraceMs ?? REATTACH_GRACE_MS;
  return Math.min(
    app.reattach_grace_ms,
    config.maxReattachGraceMs ?? DEFAULT_MAX_REATTACH_GRACE_MS,
  );
}

/** The API view of an app's settings. */
export function appSettingsInfo(config: Bounds, app: AppRow): AppSettingsInfo {
  return {
    network: app.network,
    host_ports: app.host_ports,
    labels: app.labels,
    idle_timeout_ms: appIdleTimeoutMs(config, app),
    idle_timeout_set: app.idle_timeout_ms !== null,
    reattach_grace_ms: appReattachGraceMs(config, app),
    reattach_grace_set: app.reattach_grace_ms !== null,
    max_idle_timeout_ms: config.maxIdleTimeoutMs ?? DEFAULT_MAX_IDLE_TIMEOUT_MS,
    max_reattach_grace_ms: config.maxReattachGraceMs ?? DEFAULT_MAX_REATTACH_GRACE_MS,
    require_reason: app.require_reason,
  };
}

/**
 * The store change a request asks for, once checked: 403 for a member
 * asking for the network or host ports, 422 for a duration over the
 * server's maximum or host ports on a network that has no use for them.
 */
export function checkedSettings(
  config: Bounds,
  request: { auth: Auth; app: AppRow; body: AppSettingsBody },
): AppSettings {
  const { auth, app, body } = request;
  if (auth.token.role !== "admin") {
    const asked = [
      body.network !== undefined ? "--network" : null,
      body.host_ports !== undefined ? "--host-ports" : null,
      body.labels !== undefined ? "--labels" : null,
      body.require_reason === false && app.require_reason ? "--no-require-reason" : null,
    ].filter((flag) => flag !== null);
    if (asked.length > 0) {
      throw new HttpError(
        403,
        "forbidden",
        `Cannot set ${asked.join(" and ")} of "${app.name}": only an admin may, since they ` +
          "decide how far its one-offs are isolated from the host (its loopback services, " +
          "other runs), which hosts see them and what its audit keeps; ask an admin",
      );
    }
  }
  const maxIdle = config.maxIdleTimeoutMs ?? DEFAULT_MAX_IDLE_TIMEOUT_MS;
  const maxGrace = config.maxReattachGraceMs ?? DEFAULT_MAX_REATTACH_GRACE_MS;
  within("idle timeout", body.idle_timeout_ms, { max: maxIdle, flag: "--max-idle-timeout" });
  within("reattach grace", body.reattach_grace_ms, { max: maxGrace, flag: "--max-reattach-grace" });
  const network = body.network ?? app.network;
  const ports = body.host_ports ?? app.host_ports;
  if (body.host_ports?.length && network !== "isolated") {
    throw new HttpError(
      422,
      "invalid",
      `Cannot set --host-ports of "${app.name}": its network is "${network}", and host ports ` +
        'are forwarded only into an "isolated" one (add --network isolated)',
    );
  }
  const settings: AppSettings = {};
  if (body.network !== undefined) settings.network = body.network;
  // Leaving "isolated" drops the ports: nothing would forward them.
  if (body.host_ports !== undefined) settings.host_ports = [...new Set(body.host_ports)].sort();
  else if (network !== "isolated" && ports.length > 0) settings.host_ports = [];
  if (body.idle_timeout_ms !== undefined) settings.idle_timeout_ms = body.idle_timeout_ms;
  if (body.reattach_grace_ms !== undefined) settings.reattach_grace_ms = body.reattach_grace_ms;
  if (body.labels !== undefined) settings.labels = body.labels;
  if (body.require_reason !== undefined) settings.require_reason = body.require_reason;
  return settings;
}

function within(
  name: string,
  ms: number | null | undefined,
  bound: { max: number; flag: string },
): void {
  if (ms === undefined || ms === null || ms <= bound.max) return;
  throw new HttpError(
    422,
    "setting_too_long",
    `Cannot set the ${name} to ${durationFlag(ms)}: this server's maximum is ` +
      `${durationFlag(bound.max)} (its ${bound.flag})`,
  );
}

/** What changed between two rows of an app, as the timeline says it; empty when nothing did. */
export function settingChanges(
  config: Bounds,
  before: AppRow,
  after: AppRow,
): TimelineEventData["app.settings"]["changes"] {
  const shown = (app: AppRow) => ({
    "network": app.network,
    "host-ports": app.host_ports.length ? app.host_ports.join(",") : "none",
    "labels": labelsText(app.labels),
    "idle-timeout": app.idle_timeout_ms === null
      ? `default (${durationFlag(config.idleTimeoutMs)})`
      : durationFlag(app.idle_timeout_ms),
    "reattach-grace": app.reattach_grace_ms === null
      ? `default (${durationFlag(REATTACH_GRACE_MS)})`
      : durationFlag(app.reattach_grace_ms),
    "require-reason": app.require_reason ? "yes" : "no",
  });
  const from = shown(before);
  const to = shown(after);
  return (Object.keys(from) as (keyof typeof from)[])
    .filter((setting) => from[setting] !== to[setting])
    .map((setting) => ({ setting, from: from[setting], to: to[setting] }));
}

/** Refuses (422 `reason_required`) a run without a reason of an app that requires one. */
export function requireReason(app: AppRow, reason: string | undefined): void {
  if (!app.require_reason || reason !== undefined) return;
  throw new HttpError(
    422,
    "reason_required",
    `Cannot start a one-off of "${app.name}": the app requires a reason for every run; ` +
      `say why with --reason "..."`,
  );
}

/**
 * Refuses (422) a run of an app that requires labels no approved agent
 * has: it would wait in the queue for an agent that may never come. An
 * agent with them that is offline or busy is waited for, as any other.
 */
export async function requireLabelledAgent(store: Store, app: AppRow): Promise<void> {
  if (Object.keys(app.labels).length === 0) return;
  const agents = await store.listAgents();
  if (agents.some((a) => a.trust === "approved" && hasLabels(a.labels, app.labels))) return;
  throw new HttpError(
    422,
    "no_matching_agent",
    `Cannot start a one-off of "${app.name}": no approved agent has the labels it requires ` +
      `(${labelsText(app.labels)}); start one with oneoff agent --labels ${
        labelsText(app.labels)
      }, or change them with oneoff apps set ${app.name} --labels`,
  );
}
