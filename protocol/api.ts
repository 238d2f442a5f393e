/**
 * The HTTP API's replies: every route's JSON shape, named, for the server
 * to return and the CLI to ask for. The request bodies are in
 * `api_requests.ts`.
 * @module
 */
import type { ArtifactSummary } from "./artifacts.ts";
import type { AttachInfo } from "./attach.ts";
import type { ResizeBody } from "./api_requests.ts";
import type { NetworkMode, Role, RunState, SizeName } from "./run.ts";
import type { TimelineEvent } from "./timeline.ts";

/** An app as the API shows it. */
export interface AppInfo {
  name: string;
  created_at: string;
  release: number | null;
  process_types: Record<string, string>;
  settings: AppSettingsInfo;
}

/** An app's settings (`oneoff apps set`), each as it applies now. */
export interface AppSettingsInfo {
  network: NetworkMode;
  /** Host loopback TCP ports an isolated run may reach. */
  host_ports: number[];
  /** Labels an agent must have to run the app's one-offs (none: any agent). */
  labels: Record<string, string>;
  /** Attached runs' idle timeout in ms: the app's, else the server's default. */
  idle_timeout_ms: number;
  /** False when the idle timeout is the server's default. */
  idle_timeout_set: boolean;
  /** A dropped framed session's reattach grace in ms: the app's, else the default. */
  reattach_grace_ms: number;
  /** False when the reattach grace is the default. */
  reattach_grace_set: boolean;
  /** The server's maxima, which a setting may not exceed. */
  max_idle_timeout_ms: number;
  max_reattach_grace_ms: number;
  /** Its runs must give a reason (`--reason`). */
  require_reason?: boolean;
}

/** A release (a deployed slug) as the API shows it. */
export interface ReleaseInfo {
  version: number;
  sha256: string;
  size: number;
  process_types: Record<string, string>;
}

/**
 * Why a pending run waits: its app is at its limit of live one-offs
 * (`app_limit`), or no agent has free capacity (`no_capacity`).
 */
export type QueuedReason = "app_limit" | "no_capacity";

/** A run as the API shows it. */
export interface RunInfo {
  id: string;
  app: string;
  label: string;
  command: string;
  state: RunState;
  attached: boolean;
  tty: boolean;
  size: SizeName;
  agent: string | null;
  exit_code: number | null;
  reason: string | null;
  actor: string;
  /** The reason its user gave (`--reason`); null: none. */
  purpose?: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  /** Attached runs: the idle timeout it runs with, in ms (null: detached, or not known). */
  idle_timeout_ms?: number | null;
  /** Pending runs: why it waits (else null). */
  queued_reason?: QueuedReason | null;
  /** Pending runs: its place in the app's queue, 1 = next (else null). */
  queue_position?: number | null;
  /** The files it left in /tmp/downloads: kept (and their bytes), refused; null: none. */
  artifacts?: ArtifactSummary | null;
}

/** A stored log line as the API shows it. */
export interface LogLine {
  id: number;
  ts: string;
  source: string;
  stream: string;
  line: string;
}

/** An agent as the API shows it. */
export interface AgentInfo {
  id: string;
  name: string;
  state: "online" | "offline";
  /** `pending` until an admin approves it; `revoked` agents cannot connect. */
  trust: "pending" | "approved" | "revoked";
  since: string;
  version: string;
  capacity: number;
  running: number;
  sandbox: string;
  attach: string;
  warnings: string[];
  /** What it declared with `--labels` (as of its approval). */
  labels?: Record<string, string>;
}

/** Where to attach to a run: the `--attach-info` object less its secret. */
export type AttachTarget = Omit<AttachInfo, "secret">;

/** `GET /whoami`. */
export interface WhoamiReply {
  name: string;
  role: Role;
  apps: string[];
}

/** `GET /apps`. */
export interface AppsReply {
  apps: AppInfo[];
}

/** `POST /apps`, `GET /apps/:app`. */
export interface AppReply {
  app: AppInfo;
}

/** `DELETE /apps/:app`. */
export interface AppDestroyedReply {
  destroyed: string;
}

/** `GET` and `PATCH /apps/:app/env`: the whole environment after the change. */
export interface EnvReply {
  env: Record<string, string>;
}

/** `POST /apps/:app/deploy`. */
export interface DeployReply {
  release: ReleaseInfo;
}

/** `POST /apps/:app/uploads`. */
export interface UploadReply {
  sha256: string;
  size: number;
}

/**
 * `POST /apps/:app/runs`: the secret of an attached run (only ever here),
 * and with `?wait=S` where to attach once the agent expects the client.
 */
export interface RunCreatedReply {
  run: RunInfo;
  secret: string | null;
  attach: AttachTarget | null;
}

/** The app's limit of live one-offs and how it is used: what `ps` shows above the runs. */
export interface RunsQueueInfo {
  /** Live (`starting`, `running`) one-offs the app may have at once. */
  limit: number;
  /** How many it has now. */
  active: number;
  /** How many wait `pending` in its queue. */
  pending: number;
}

/** `GET /apps/:app/runs`. */
export interface RunsReply {
  runs: RunInfo[];
  queue?: RunsQueueInfo;
}

/** `GET /apps/:app/runs/:run`. */
export interface RunReply {
  run: RunInfo;
}

/** `GET /apps/:app/runs/:run/attach`: 200 when ready, 202 while the agent prepares it. */
export type AttachReply = { ready: true; attach: AttachTarget } | { ready: false };

/**
 * `POST /apps/:app/runs/:run/attach`: reattach to a running framed session
 * from another terminal, with the one-use `secret` (`oneoff-resume/1 SECRET -`).
 */
export interface ReattachReply {
  attach: AttachTarget;
  secret: string;
}

/** `POST /apps/:app/runs/:run/stop` (202). */
export interface StopReply {
  stopping: string;
}

/** `POST /apps/:app/runs/:run/resize`. */
export type ResizeReply = ResizeBody;

/**
 * `GET /apps/:app/logs`. Without `after`, `more` tells whether older lines
 * exist before the first one returned: ask again with `before` set to
 * `before` (that first line's id) to page backwards. `truncated` says the
 * `n` asked for was more than one reply gives (at most 10,000 lines).
 */
export interface LogsReply {
  lines: LogLine[];
  more?: boolean;
  before?: number | null;
  truncated?: boolean;
}

/** `GET /apps/:app/timeline`. */
export interface TimelineReply {
  events: TimelineEvent[];
}

/** One recorded event for display: seconds since the start, input/output/resize, text. */
export type AuditDisplayEvent = [number, "i" | "o" | "r", string];

/**
 * `GET /apps/:app/runs/:run/audit`: `events` by default, `transcript` or
 * `cast` with `?format=`; `problems` says what of the recording could not
 * be read or trusted.
 */
export interface AuditReply {
  run: string;
  meta: RunInfo;
  t0: string | null;
  size: { cols: number; rows: number } | null;
  final: boolean;
  problems: string[];
  events?: AuditDisplayEvent[];
  transcript?: string;
  cast?: string;
}

/** `GET /agents`. */
export interface AgentsReply {
  agents: AgentInfo[];
}

/** `POST /agents/NAME/approve` and `/revoke`. */
export interface AgentReply {
  agent: AgentInfo;
}

/** `POST /agents/join-token` (201): the new join token, shown only here; the old ones stop enrolling. */
export interface JoinTokenReply {
  token: string;
  /** Enrolments it allows; null for any number. */
  uses: number | null;
  expires_at: string | null;
}

/** `POST /tokens` (201): the token itself, shown only here. */
export interface TokenCreatedReply {
  token: string;
  role: Role;
  apps: string[];
  name: string;
}

/** A token as `GET /tokens` shows it: never its secret or hash. */
export interface TokenInfo {
  id: number;
  name: string;
  role: Role;
  apps: string[];
  created_at: string;
}

/** `GET /tokens`. */
export interface TokensReply {
  tokens: TokenInfo[];
}

/** `DELETE /tokens/:ref`: the token that was revoked. */
export interface TokenReply {
  token: TokenInfo;
}

/** `POST /audit/rotate-key`: the id of the new current key. */
export interface RotateKeyReply {
  key: string;
}

/** `GET /healthz` (outside `/api`, no token). */
export interface HealthReply {
  ok: true;
}

/** The JSON body of every API error. */
export interface ApiError {
  error: { code: string; message: string };
}

/**
 * The longest a `?wait=` long-poll is held, in seconds: under the 60 s idle
 * timeout of nginx and the usual cloud load balancers, so a proxy never
 * cuts a poll short with a 504. Clients poll again.
 */
export const MAX_LONG_POLL_S = 25;
