/**
 * The control channel between agent and server: a WebSocket the agent
 * dials, one JSON text frame per message.
 * @module
 */
import {
  array,
  boolean,
  byType,
  decodeJson,
  type Decoder,
  type Decoding,
  integer,
  number,
  object,
  oneOf,
  record,
  string,
} from "./_decode.ts";
import {
  type Limits,
  NETWORK_MODES,
  type NetworkMode,
  RUN_STATES,
  type RunState,
  SANDBOX_KINDS,
  type SandboxKind,
  SIZE_NAMES,
  type SizeName,
} from "./run.ts";

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

const strings = array(string);

const attachEndpoint: Decoder<AttachEndpoint> = object(
  { host: string, port: integer, tls: boolean },
  { tlsFingerprint: string },
);

const logRecord: Decoder<LogRecord> = object({
  seq: integer,
  stream: oneOf(["stdout", "stderr"]),
  ts: number,
  line: string,
});

const agentMessage: Decoder<AgentMessage> = byType({
  hello: object({
    token: string,
    name: string,
    version: string,
    capacity: integer,
    sandbox: oneOf(SANDBOX_KINDS),
    attach: attachEndpoint,
    running: strings,
    warnings: strings,
  }),
  heartbeat: object({ running: strings }),
  run_state: object(
    { runId: string, state: oneOf(RUN_STATES), at: number },
    { exitCode: integer, reason: string },
  ),
  attach_ready: object({ runId: string, expiresAt: number }),
  logs: object({ runId: string, records: array(logRecord) }),
  audit: object({ runId: string, seq: integer, data: string }),
});

const limits: Decoder<Limits> = object({
  memoryBytes: integer,
  pids: integer,
  cpuMillis: integer,
  tmpBytes: integer,
});

const runSpec: Decoder<RunSpec> = object({
  runId: string,
  app: string,
  label: string,
  command: string,
  env: record(string),
  slug: object({ sha256: string, size: integer }),
  size: oneOf(SIZE_NAMES),
  limits,
  tty: boolean,
  cols: integer,
  rows: integer,
  timeoutMs: number,
  idleTimeoutMs: number,
  uploads: array(object({ name: string, sha256: string, size: integer })),
  network: oneOf(NETWORK_MODES),
}, { attach: object({ secretSha256: string, expiresAt: number }) });

const serverMessage: Decoder<ServerMessage> = byType({
  welcome: object({ agentId: string, heartbeatMs: number }),
  refused: object({ reason: string }),
  start_run: object({ spec: runSpec }),
  stop_run: object({ runId: string }),
  resize: object({ runId: string, cols: integer, rows: integer }),
  logs_ack: object({ runId: string, seq: integer }),
  audit_ack: object({ runId: string, seq: integer }),
});

/** Parses and checks one frame from an agent; the error names what was wrong. */
export function decodeAgentMessage(text: string): Decoding<AgentMessage> {
  return decodeJson(agentMessage, text);
}

/** Parses and checks one frame from the server; the error names what was wrong. */
export function decodeServerMessage(text: string): Decoding<ServerMessage> {
  return decodeJson(serverMessage, text);
}
