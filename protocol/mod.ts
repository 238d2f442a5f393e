/**
 * The types and constants that cross the wire: run states, sizes, the
 * messages between agent and server, the port 5000 handshake and the shapes
 * of the HTTP API. Both the server and the agent import this module; they
 * never import each other.
 * @module
 */

/** The version the agent reports and the server shows. */
export const VERSION = "0.1.0";

/** Every state a run can be in, in lifecycle order. */
export const RUN_STATES = [
  "pending",
  "starting",
  "running",
  "exited",
  "failed",
  "timed_out",
  "stopped",
  "expired",
  "lost",
] as const;

/** One state of a run. */
export type RunState = typeof RUN_STATES[number];

/** States a run never leaves. */
export const TERMINAL_STATES: ReadonlySet<RunState> = new Set([
  "exited",
  "failed",
  "timed_out",
  "stopped",
  "expired",
  "lost",
]);

/** States of a run that has not ended: it counts against the app's limit. */
export const LIVE_STATES: RunState[] = ["pending", "starting", "running"];

/** True when a run in this state has ended for good. */
export function isTerminal(state: RunState): boolean {
  return TERMINAL_STATES.has(state);
}

/** App names, also used for process types' owners and agents' names. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{1,62}$/;

/** Names of the run sizes (`--size`). */
export const SIZE_NAMES = ["S", "M", "L", "XL"] as const;

/** One run size name. */
export type SizeName = typeof SIZE_NAMES[number];

/** The limits a size stands for inside the sandbox. */
export interface Limits {
  /** Memory limit in bytes (cgroup memory). */
  memoryBytes: number;
  /** Maximum number of tasks (cgroup pids). */
  pids: number;
  /** CPU share in thousandths of a core (1000 = one core). */
  cpuMillis: number;
  /** Size of the `/tmp` tmpfs in bytes. */
  tmpBytes: number;
}

const MiB = 1024 * 1024;

/** Default sizes; the server may be configured with others. */
export const DEFAULT_SIZES: Readonly<Record<SizeName, Limits>> = {
  S: { memoryBytes: 256 * MiB, pids: 128, cpuMillis: 500, tmpBytes: 64 * MiB },
  M: { memoryBytes: 512 * MiB, pids: 256, cpuMillis: 1000, tmpBytes: 128 * MiB },
  L: { memoryBytes: 1024 * MiB, pids: 512, cpuMillis: 2000, tmpBytes: 256 * MiB },
  XL: { memoryBytes: 2048 * MiB, pids: 1024, cpuMillis: 2000, tmpBytes: 512 * MiB },
};

/** Roles of API tokens. */
export type Role = "admin" | "member";

// ---------------------------------------------------------------------------
// Port 5000: the attach handshake

/** Longest secret line the agent accepts, newline included. */
export const ATTACH_MAX_LINE = 256;
/** Time a client has to send its secret line. */
export const ATTACH_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Default attach window: how long an attached run waits for its client. */
export const ATTACH_WINDOW_MS = 60_000;
/** Default idle timeout of an attached session. */
export const IDLE_TIMEOUT_MS = 30 * 60_000;
/** Default maximum duration of a detached run. */
export const MAX_DURATION_MS = 24 * 3600_000;

/** The one line the agent writes before closing a refused attach. */
export function attachRefusal(reason: string): string {
  return `oneoff: ${reason}\r\n`;
}

/** What `oneoff run --attach-info` prints and what the run API returns. */
export interface AttachInfo {
  run: string;
  app: string;
  host: string;
  port: number;
  tls: boolean;
  /** SHA-256 fingerprint (hex) of the agent's certificate, for pinning. */
  tls_fingerprint?: string;
  secret: string;
  expires_at: string;
}

// ---------------------------------------------------------------------------
// Server <-> agent control channel (WebSocket, JSON text frames)

/** An uploaded file to place in `/tmp/uploads`. */
export interface UploadRef {
  name: string;
  sha256: string;
  size: number;
}

/** Everything an agent needs to start one run. */
export interface RunSpec {
  runId: string;
  app: string;
  label: string;
  command: string;
  /** The whole environment: app env, overrides, then platform variables. */
  env: Record<string, string>;
  slug: { sha256: string; size: number };
  size: SizeName;
  limits: Limits;
  tty: boolean;
  cols: number;
  rows: number;
  /** Present for attached runs: the agent waits for a client with this secret. */
  attach?: { secretSha256: string; expiresAt: number };
  /** Maximum duration; the run is killed and `timed_out` past it. */
  timeoutMs: number;
  /** Attached runs: no byte either way for this long → `timed_out`. */
  idleTimeoutMs: number;
  uploads: UploadRef[];
  network: "host" | "none";
}

/** One line of detached output as shipped by the agent. */
export interface LogRecord {
  seq: number;
  stream: "stdout" | "stderr";
  /** Milliseconds since the epoch. */
  ts: number;
  line: string;
}

/** The agent's listener for attached streams, as it reports it. */
export interface AttachEndpoint {
  host: string;
  port: number;
  tls: boolean;
  tlsFingerprint?: string;
}

/** Messages from the agent to the server. */
export type AgentMessage =
  | {
    type: "hello";
    token: string;
    name: string;
    version: string;
    capacity: number;
    sandbox: string;
    attach: AttachEndpoint;
    /** Runs the agent still has (after a reconnect). */
    running: string[];
    /** What the sandbox cannot enforce on this host, said once. */
    warnings: string[];
  }
  | { type: "heartbeat"; running: string[] }
  | {
    type: "run_state";
    runId: string;
    state: RunState;
    exitCode?: number;
    reason?: string;
    at: number;
  }
  /** An attached run is ready: its secret is expected on the attach port. */
  | { type: "attach_ready"; runId: string; expiresAt: number }
  | { type: "logs"; runId: string; records: LogRecord[] }
  | { type: "audit"; runId: string; seq: number; data: string };

/** Messages from the server to the agent. */
export type ServerMessage =
  | { type: "welcome"; agentId: string; heartbeatMs: number }
  | { type: "refused"; reason: string }
  | { type: "start_run"; spec: RunSpec }
  | { type: "stop_run"; runId: string }
  | { type: "resize"; runId: string; cols: number; rows: number }
  | { type: "logs_ack"; runId: string; seq: number }
  | { type: "audit_ack"; runId: string; seq: number };

/** Path of the control channel on the server. */
export const AGENT_CHANNEL_PATH = "/agent/channel";

// ---------------------------------------------------------------------------
// HTTP API shapes

/** An app as the API shows it. */
export interface AppInfo {
  name: string;
  created_at: string;
  release: number | null;
  process_types: Record<string, string>;
}

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
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

/** A stored log line as the API shows it. */
export interface LogLine {
  id: number;
  ts: string;
  source: string;
  stream: string;
  line: string;
}

/** A timeline event as the API shows it. */
export interface TimelineEvent {
  id: number;
  at: string;
  app: string | null;
  actor: string;
  kind: string;
  data: Record<string, unknown>;
}

/** An agent as the API shows it. */
export interface AgentInfo {
  id: string;
  name: string;
  state: "online" | "offline";
  since: string;
  version: string;
  capacity: number;
  running: number;
  sandbox: string;
  attach: string;
  warnings: string[];
}

/** The JSON body of every API error. */
export interface ApiError {
  error: { code: string; message: string };
}
