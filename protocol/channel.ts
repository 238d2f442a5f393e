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
  fail,
  integer,
  number,
  object,
  oneOf,
  record,
  string,
} from "./_decode.ts";
import { labelsDecoder } from "./labels.ts";
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
  /**
   * Attached runs in framed mode: how long the process keeps running after
   * its client's connection dropped without a clean close, waiting for a
   * reattach (absent: REATTACH_GRACE_MS).
   */
  reattachGraceMs?: number;
  uploads: UploadRef[];
  network: NetworkMode;
  /** Network `isolated`: TCP ports of the host's loopback the run may reach at 127.0.0.1:PORT. */
  hostPorts?: number[];
  /** Detached runs: bytes of output stored at most; lines beyond are counted and marked (absent: no limit). */
  logQuotaBytes?: number;
  /** Attached runs: bytes of the session recorded at most; past it, one marker and no more (absent: no limit). */
  auditQuotaBytes?: number;
  /** Bytes of files in `/tmp/downloads` kept at the run's end (absent: DEFAULT_ARTIFACT_MAX_BYTES). */
  artifactMaxBytes?: number;
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

/**
 * How a run ended, as the agent reports it. The agent keeps each report on
 * its disk until the server answers `state_ack`, and sends the ones still
 * unconfirmed in its `hello`, so that an outage never turns a run that
 * ended cleanly into `lost`.
 */
export interface RunEnded {
  runId: string;
  state: RunState;
  exitCode?: number;
  reason?: string;
  at: number;
  /** Detached runs: how many log lines the run produced (seq 0 to lines - 1). */
  lines?: number;
}

/** Messages from the agent to the server. */
export type AgentMessage =
  | {
    type: "hello";
    /** The join token: only to enrol, when the agent has no credential yet. */
    token?: string;
    /** The agent's own credential, given by `enrolled`. */
    credential?: string;
    name: string;
    version: string;
    capacity: number;
    sandbox: SandboxKind;
    attach: AttachEndpoint;
    /** Runs the agent still has (after a reconnect). */
    running: string[];
    /** Runs that ended while the server was away, not yet acknowledged. */
    ended: RunEnded[];
    /** What the sandbox cannot enforce on this host, said once. */
    warnings: string[];
    /** `--labels`: what apps may require of the agent that runs their one-offs. */
    labels?: Record<string, string>;
  }
  | { type: "heartbeat"; running: string[] }
  /** `running`, or an end (then answered by `state_ack`). */
  | ({ type: "run_state" } & RunEnded)
  /** An attached run is ready: its secret is expected on the attach port. */
  | { type: "attach_ready"; runId: string; expiresAt: number }
  /**
   * Batch `batch` (0, 1, 2... per run) of detached output; spooled on the
   * agent's disk until the server answers `logs_ack` for that very batch.
   */
  | { type: "logs"; runId: string; batch: number; records: LogRecord[] }
  | { type: "audit"; runId: string; seq: number; data: string }
  /** Something happened to a framed session: a client reattached from `address`. */
  | { type: "session_event"; runId: string; kind: "reattached"; at: number; address: string }
  /** The agent is stopping: place no more runs on it. */
  | { type: "draining" };

/** Messages from the server to the agent. */
export type ServerMessage =
  /**
   * Answer to a hello with the join token, before `welcome`: the agent's own
   * credential, said once; the agent keeps it and presents it from then on.
   */
  | { type: "enrolled"; agentId: string; credential: string }
  /** `pending` agents are connected but get no run until an admin approves them. */
  | { type: "welcome"; agentId: string; heartbeatMs: number; trust?: "pending" | "approved" }
  | { type: "refused"; reason: string }
  | { type: "start_run"; spec: RunSpec }
  | { type: "stop_run"; runId: string }
  | { type: "resize"; runId: string; cols: number; rows: number }
  /**
   * Another terminal reattaches to a framed session (`oneoff attach`): the
   * agent accepts this one-use resume secret (its hex SHA-256) until `expiresAt`.
   */
  | { type: "reattach"; runId: string; secretSha256: string; expiresAt: number }
  /**
   * A CLI attaches to `runId` through the server: dial back a WebSocket to
   * AGENT_RELAY_PATH/`relayId` (one use, short-lived) and treat it as a
   * connection to the attach port from `clientAddress` (the CLI's address as
   * the server saw it, for the failed-attempt limit).
   */
  | { type: "open_relay"; relayId: string; runId: string; clientAddress: string }
  /** The server has no message for a while; the agent treats silence as a dead channel. */
  | { type: "heartbeat" }
  /** Batch `batch` of the run's output is committed to the store. */
  | { type: "logs_ack"; runId: string; batch: number }
  /** Batch `batch` could not be stored (the store failed): send it again later. */
  | { type: "logs_nack"; runId: string; batch: number; reason: string }
  /** Audit chunk `seq` is committed. */
  | { type: "audit_ack"; runId: string; seq: number }
  /** Audit chunk `seq` could not be stored: send it again later. */
  | { type: "audit_nack"; runId: string; seq: number; reason: string }
  /** The end of the run is recorded: the agent may forget it. */
  | { type: "state_ack"; runId: string }
  /**
   * `count` people watch the attached session now (`oneoff watch`, the
   * dashboard): while any do, its recording is cut every WATCHED_FLUSH_MS.
   * `joined` started watching (its user is told, the recording marks it),
   * `left` stopped (the recording marks it).
   */
  | {
    type: "watchers";
    runId: string;
    /** How many watch the run through the server that sends this. */
    count: number;
    joined?: string;
    left?: string;
    /** The server whose watchers `count` counts (several servers: one count each). */
    server?: string;
  };

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

/**
 * A batch of log records, checked as {@link logRecord} would check each:
 * a batch holds thousands, and the generic decoders build every field's
 * path ("records[1234].seq") whether or not it is wrong. Here a path is
 * built only for a record that fails, by the generic decoder's message.
 */
const logRecords: Decoder<LogRecord[]> = (value, field) => {
  if (!Array.isArray(value)) fail(field, "must be a list");
  const out = new Array<LogRecord>(value.length);
  for (let i = 0; i < value.length; i++) {
    const r: unknown = value[i];
    if (
      typeof r === "object" && r !== null && "seq" in r && "stream" in r && "ts" in r &&
      "line" in r && Number.isSafeInteger(r.seq) &&
      (r.stream === "stdout" || r.stream === "stderr") && typeof r.ts === "number" &&
      Number.isFinite(r.ts) && typeof r.line === "string"
    ) {
      out[i] = { seq: r.seq as number, stream: r.stream, ts: r.ts, line: r.line };
    } else out[i] = logRecord(r, `${field}[${i}]`);
  }
  return out;
};

const runEndedFields = { runId: string, state: oneOf(RUN_STATES), at: number };
const runEndedOptional = { exitCode: integer, reason: string, lines: integer };
const runEnded: Decoder<RunEnded> = object(runEndedFields, runEndedOptional);

const agentMessage: Decoder<AgentMessage> = byType({
  hello: object({
    name: string,
    version: string,
    capacity: integer,
    sandbox: oneOf(SANDBOX_KINDS),
    attach: attachEndpoint,
    running: strings,
    ended: array(runEnded),
    warnings: strings,
  }, { token: string, credential: string, labels: labelsDecoder }),
  heartbeat: object({ running: strings }),
  run_state: object(runEndedFields, runEndedOptional),
  attach_ready: object({ runId: string, expiresAt: number }),
  logs: object({ runId: string, batch: integer, records: logRecords }),
  audit: object({ runId: string, seq: integer, data: string }),
  session_event: object({
    runId: string,
    kind: oneOf(["reattached"] as const),
    at: number,
    address: string,
  }),
  draining: object({}),
});

const limits: Decoder<Limits> = object({
  memoryBytes: integer,
  pids: integer,
  cpuMillis: integer,
  tmpBytes: integer,
  openFiles: integer,
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
}, {
  attach: object({ secretSha256: string, expiresAt: number }),
  hostPorts: array(integer),
  reattachGraceMs: number,
  logQuotaBytes: integer,
  auditQuotaBytes: integer,
  artifactMaxBytes: integer,
});

const serverMessage: Decoder<ServerMessage> = byType({
  enrolled: object({ agentId: string, credential: string }),
  welcome: object({ agentId: string, heartbeatMs: number }, {
    trust: oneOf(["pending", "approved"] as const),
  }),
  refused: object({ reason: string }),
  start_run: object({ spec: runSpec }),
  stop_run: object({ runId: string }),
  resize: object({ runId: string, cols: integer, rows: integer }),
  reattach: object({ runId: string, secretSha256: string, expiresAt: number }),
  open_relay: object({ relayId: string, runId: string, clientAddress: string }),
  heartbeat: object({}),
  logs_ack: object({ runId: string, batch: integer }),
  logs_nack: object({ runId: string, batch: integer, reason: string }),
  audit_ack: object({ runId: string, seq: integer }),
  audit_nack: object({ runId: string, seq: integer, reason: string }),
  state_ack: object({ runId: string }),
  watchers: object(
    { runId: string, count: integer },
    { joined: string, left: string, server: string },
  ),
});

/** Parses and checks one frame from an agent; the error names what was wrong. */
export function decodeAgentMessage(text: string): Decoding<AgentMessage> {
  return decodeJson(agentMessage, text);
}

/** Parses and checks one frame from the server; the error names what was wrong. */
export function decodeServerMessage(text: string): Decoding<ServerMessage> {
  return decodeJson(serverMessage, text);
}
