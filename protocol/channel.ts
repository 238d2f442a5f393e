/**
 * The control channel between agent and server: a WebSocket the agent
 * dials, one JSON text frame per message.
 * @module
 */
import type { Limits, NetworkMode, RunState, SandboxKind, SizeName } from "./run.ts";

/** The version the agent reports and the server shows. */
export const VERSION = "0.1.0";

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
  network: NetworkMode;
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
    sandbox: SandboxKind;
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
