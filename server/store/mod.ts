/**
 * The server's state behind one interface, with two real implementations:
 * SQLite (embedded default) and PostgreSQL.
 * @module
 */
import type {
  NetworkMode,
  Role,
  RunState,
  SizeName,
  TimelineEventBody,
  UncheckedEventBody,
} from "../../protocol/mod.ts";
import { MIGRATIONS } from "./_migrations.ts";

/** An API token as stored: only its hash. */
export interface TokenRow {
  id: number;
  /** Hex SHA-256 of the token. */
  hash: string;
  role: Role;
  /** Apps a member may use (empty for admins). */
  apps: string[];
  /** Who the token stands for, shown as the actor of its changes. */
  name: string;
  created_at: Date;
}

/** An app as stored. */
export interface AppRow {
  id: number;
  name: string;
  /** The network its one-offs' sandboxes get ("isolated" unless set). */
  network: NetworkMode;
  /** Host loopback TCP ports an isolated one-off may reach (on its own 127.0.0.1). */
  host_ports: number[];
  /** Attached runs' idle timeout; null: the server's default. */
  idle_timeout_ms: number | null;
  /** How long a dropped framed session waits for a reattach; null: the default. */
  reattach_grace_ms: number | null;
  /** Labels an agent must have to run its one-offs ({}: any agent). */
  labels: Record<string, string>;
  /** Its runs must say why (`oneoff run --reason`). */
  require_reason: boolean;
  created_at: Date;
}

/** The settings `oneoff apps set` changes; an absent field stays as it is. */
export type AppSettings = Partial<
  Pick<
    AppRow,
    | "network"
    | "host_ports"
    | "idle_timeout_ms"
    | "reattach_grace_ms"
    | "labels"
    | "require_reason"
  >
>;

/** What a run counted past its log quota, kept so that a restart does not forget it. */
export interface LogOverage {
  /** The highest seq counted (stored or not). */
  seq: number;
  lines: number;
  bytes: number;
}

/** What the server holds of a run's output: the stored bytes and lines, and what was counted past its quota. */
export interface RunLogUsage {
  /** Bytes of stored lines (each line's UTF-8 bytes + 1 for its newline). */
  bytes: number;
  /** The highest seq stored or counted; -1 when none. */
  seq: number;
  overLines: number;
  overBytes: number;
}

/** One release: a deployed slug. */
export interface ReleaseRow {
  id: number;
  app_id: number;
  version: number;
  sha256: string;
  size: number;
  /** Procfile process types: name → command. */
  process_types: Record<string, string>;
  actor: string;
  created_at: Date;
}

/** A run as stored. */
export interface RunRow {
  id: string;
  app_id: number;
  /** Per-app increasing number: the label is `one-off-${number}`. */
  number: number;
  command: string;
  state: RunState;
  attached: boolean;
  tty: boolean;
  size: SizeName;
  release_id: number;
  /** `-e` overrides, needed until the run starts. */
  env_overrides: Record<string, string>;
  /** Uploaded files: name, sha256, size. */
  uploads: { name: string; sha256: string; size: number }[];
  cols: number;
  rows: number;
  timeout_ms: number;
  /** Attached runs: the idle timeout it got from its app at its start (null: detached, or older rows). */
  idle_timeout_ms: number | null;
  agent_id: string | null;
  exit_code: number | null;
  reason: string | null;
  actor: string;
  /** The reason its user gave for it (`oneoff run --reason`); null: none given. */
  purpose: string | null;
  /** Hex SHA-256 of the attach secret (attached runs). */
  secret_sha256: string | null;
  /** End of the attach window (attached runs). */
  expires_at: Date | null;
  created_at: Date;
  started_at: Date | null;
  ended_at: Date | null;
  /** Detached runs: how many log lines the agent said the run produced, once it ended. */
  log_lines: number | null;
}

/** The fields a new run is created with (`idle_timeout_ms` may be left out: null). */
export type NewRun =
  & Omit<
    RunRow,
    | "idle_timeout_ms"
    | "purpose"
    | "number"
    | "state"
    | "agent_id"
    | "exit_code"
    | "reason"
    | "created_at"
    | "started_at"
    | "ended_at"
    | "log_lines"
  >
  & { idle_timeout_ms?: number | null; purpose?: string | null };

/** A change of a run's state and what comes with it. */
export interface RunUpdate {
  state: RunState;
  agent_id?: string | null;
  exit_code?: number | null;
  reason?: string | null;
  started_at?: Date | null;
  ended_at?: Date | null;
  /** Attached runs: set once the agent expects the client, until this time. */
  expires_at?: Date | null;
  log_lines?: number | null;
}

/** Whether an enrolled agent may take runs: `pending` until an admin approves it. */
export type AgentTrust = "pending" | "approved" | "revoked";

/** An agent as stored (never its credential's hash). */
export interface AgentRow {
  id: string;
  name: string;
  trust: AgentTrust;
  online: boolean;
  /** When it came online or went offline. */
  since: Date;
  version: string;
  capacity: number;
  sandbox: string;
  attach_host: string;
  attach_port: number;
  attach_tls: boolean;
  tls_fingerprint: string | null;
  warnings: string[];
  /** What it declared with `--labels`, kept as of its approval. */
  labels: Record<string, string>;
}

/** An agent's fields as the hub writes them (`labels` {} when not given). */
export type NewAgent = Omit<AgentRow, "id" | "trust" | "labels"> & {
  labels?: Record<string, string>;
};

/** A join token as stored: only its hash. */
export interface JoinTokenRow {
  sha256: string;
  /** Enrolments it may still make; null for any number. */
  uses_left: number | null;
  expires_at: Date | null;
}

/** One line of app log as stored. */
export interface LogRow {
  id: number;
  app_id: number;
  ts: Date;
  /** `one-off-N` for one-offs. */
  source: string;
  stream: string;
  line: string;
}

/** A log line to store; `(run_id, seq)` makes storing it idempotent. */
export interface NewLog {
  run_id: string;
  seq: number;
  ts: Date;
  source: string;
  stream: string;
  line: string;
}

/** An `Idempotency-Key` of a run creation, as stored. */
export interface IdempotencyRow {
  app_id: number;
  key: string;
  /** Hex SHA-256 of who asked and what they asked for. */
  fingerprint: string;
  run_id: string;
  created_at: Date;
}

/** What a timeline event has besides its kind and data. */
export interface EventFields {
  app_id: number | null;
  app_name: string | null;
  actor: string;
}

/** A timeline event as stored: older rows may hold kinds and data no longer written. */
export type EventRow =
  & EventFields
  & { id: number; at: Date }
  & (TimelineEventBody | UncheckedEventBody);

/** An event to record: its kind and data are checked together. */
export type NewEvent = EventFields & { at?: Date } & TimelineEventBody;

/** One encrypted audit chunk. */
export interface AuditChunkRow {
  run_id: string;
  seq: number;
  key_id: string;
  /** IV + ciphertext, base64. */
  payload: string;
  /** Hex SHA-256 chaining: hash of the previous chunk's payload. */
  prev_hash: string;
  at: Date;
}

/**
 * A run whose row is gone (its app destroyed, or pruned by the run
 * retention) as its audit trail keeps it: who ran what, where, when, and
 * how it ended. Its env overrides and attach secret are not kept.
 */
export interface ArchivedRun {
  app_name: string;
  run: RunRow;
}

/** What one batch of log pruning removes from an app. */
export interface LogPrune {
  /** Lines with a timestamp before this go. */
  before: Date;
  /** Lines beyond the app's newest this many go. */
  keepLines: number;
  /** At most this many lines are looked at (and removed) in one call. */
  limit: number;
}

/** A file a run left in `/tmp/downloads`: kept (its blob's sha256), or refused (why). */
export interface ArtifactRow {
  run_id: string;
  /** The file's name; a refused file's as `quoteName` shows it. */
  name: string;
  /** The blob of the bytes; null for a refused file. */
  sha256: string | null;
  size: number;
  /** Why it was not kept; null when it was. */
  refused: string | null;
  created_at: Date;
}

/** Which runs to list. */
export interface RunQuery {
  app_id?: number;
  states?: RunState[];
  agent_id?: string;
  limit?: number;
}

/** Which runs to count. */
export type RunCount = Omit<RunQuery, "limit"> & { max_number?: number };

/** Which recorded sessions to list. */
export interface SessionQuery {
  app_id: number;
  /** Only sessions created at or after this time. */
  since: Date;
  /** Only sessions started by this actor. */
  actor?: string;
  /** Only runs numbered below this (the next page). */
  before_number?: number;
  limit: number;
}

/** A recorded session: its run, and the bytes its stored chunks were charged. */
export interface RecordedSession {
  run: RunRow;
  bytes: number;
}

/** Which log lines to read. */
export interface LogQuery {
  /** Only lines after this id (for following). */
  after_id?: number;
  /** Only lines before this id: the last `limit` of them (for paging backwards). */
  before_id?: number;
  /** Only this source, e.g. `one-off-3`. */
  source?: string;
  /** The last N lines (default 100). */
  limit?: number;
}

/** The schema version `migrate()` brings a store to: a ready store reports it. */
export const LATEST_SCHEMA_VERSION: number = Math.max(...MIGRATIONS.map((m) => m.version));

/** The server's state. All writes of one call are atomic. */
export interface Store {
  /** Applies pending migrations; safe to call on every start. */
  migrate(): Promise<void>;
  close(): Promise<void>;
  /** The newest schema version applied (0 before any): one cheap query, for readiness. */
  schemaVersion(): Promise<number>;
  /** How many runs are in each state (states with none are absent), for metrics. */
  countRunsByState(): Promise<Partial<Record<RunState, number>>>;

  createToken(row: Omit<TokenRow, "id" | "created_at">): Promise<TokenRow>;
  tokenByHash(hash: string): Promise<TokenRow | null>;
  countTokens(): Promise<number>;
  /** Oldest first. */
  listTokens(): Promise<TokenRow[]>;
  /** Deletes a token: it stops working at once. False when there was none. */
  deleteToken(id: number): Promise<boolean>;

  /**
   * Refuses a dashboard session (by its id) until `expiresAt` (epoch ms),
   * when its cookie would have expired anyway; forgets expired ones.
   */
  revokeSession(id: string, expiresAt: number): Promise<void>;
  /** True when the session was revoked (signed out) and has not expired. */
  sessionRevoked(id: string): Promise<boolean>;

  /** Creates an app; throws `ConflictError` when the name is taken. */
  createApp(name: string): Promise<AppRow>;
  appByName(name: string): Promise<AppRow | null>;
  appById(id: number): Promise<AppRow | null>;
  listApps(): Promise<AppRow[]>;
  /** Sets the network the app's next one-offs get. */
  setAppNetwork(id: number, network: NetworkMode): Promise<void>;
  /** Changes the given settings of an app in one write; returns the app as it is now (null: none). */
  updateAppSettings(id: number, settings: AppSettings): Promise<AppRow | null>;
  /** Deletes the app and everything that belongs to it. */
  destroyApp(id: number): Promise<void>;

  getEnv(appId: number): Promise<Record<string, string>>;
  /** Sets and removes keys in one transaction. */
  updateEnv(appId: number, set: Record<string, string>, unset: string[]): Promise<void>;

  /** Adds a release with the next version number. */
  createRelease(row: Omit<ReleaseRow, "id" | "version" | "created_at">): Promise<ReleaseRow>;
  latestRelease(appId: number): Promise<ReleaseRow | null>;
  releaseById(id: number): Promise<ReleaseRow | null>;
  /** Every sha256 referenced by a release (for blob garbage collection). */
  releaseShas(): Promise<string[]>;

  /** Creates a run with the app's next number, state `pending`. */
  createRun(row: NewRun): Promise<RunRow>;
  runById(id: string): Promise<RunRow | null>;
  runByNumber(appId: number, number: number): Promise<RunRow | null>;
  /** Most recent first. */
  listRuns(query: RunQuery): Promise<RunRow[]>;
  /**
   * How many runs `listRuns` would give without its limit (no row is read);
   * `max_number`: only those numbered up to it (with `app_id`: a queue place).
   */
  countRuns(query: RunCount): Promise<number>;
  /**
   * Changes a run's state only if it is currently in one of `from`;
   * returns the updated row, or null when it was not.
   */
  updateRun(id: string, from: RunState[], update: RunUpdate): Promise<RunRow | null>;

  /** Inserts or updates an agent by name (its trust untouched; `pending` when new). */
  upsertAgent(row: NewAgent & { id?: string }): Promise<AgentRow>;
  /**
   * Enrols an agent under its name with a new credential, unless that name
   * is already enrolled (has a credential and is not revoked): then null.
   * A revoked or never-enrolled row of that name keeps its id.
   */
  enrolAgent(
    row: NewAgent & Pick<AgentRow, "trust"> & { credential_sha256: string },
  ): Promise<AgentRow | null>;
  /** The agent holding this credential, whatever its trust. */
  agentByCredential(credentialSha256: string): Promise<AgentRow | null>;
  /** Sets an agent's trust; false when there is no such agent. */
  setAgentTrust(id: string, trust: AgentTrust): Promise<boolean>;
  agentById(id: string): Promise<AgentRow | null>;
  listAgents(): Promise<AgentRow[]>;
  setAgentOnline(id: string, online: boolean, since: Date): Promise<void>;

  /** Adds a join token unless its hash is known already (a revoked one stays revoked). */
  ensureJoinToken(row: JoinTokenRow): Promise<void>;
  /** Revokes every join token and adds this one, in one transaction. */
  rotateJoinTokens(row: JoinTokenRow): Promise<void>;
  /**
   * Spends one use of a join token: true when it exists, is not revoked,
   * not expired at `now` and has a use left.
   */
  useJoinToken(sha256: string, now: Date): Promise<boolean>;

  /**
   * Claims an idempotency key for a run about to be created: null when this
   * call claimed it, else the row that holds it. A row created before
   * `expiredBefore` no longer holds it and is replaced.
   */
  claimIdempotencyKey(
    row: Omit<IdempotencyRow, "created_at">,
    expiredBefore: Date,
  ): Promise<IdempotencyRow | null>;
  /** Gives a key up again (the creation it was claimed for failed). */
  releaseIdempotencyKey(appId: number, key: string, runId: string): Promise<void>;

  /** Stores lines once each; returns how many were new. */
  appendLogs(appId: number, lines: NewLog[]): Promise<number>;
  /** How many lines of this run are stored. */
  countRunLogs(runId: string): Promise<number>;
  /** What the server holds of a run's output, for its quota after a restart. */
  runLogUsage(runId: string): Promise<RunLogUsage>;
  /** Records what a run counted past its quota (the whole count, replacing the last). */
  saveLogOverage(runId: string, overage: LogOverage): Promise<void>;
  /** Bytes of the app's stored log lines (UTF-8 bytes + 1 per line). */
  appLogBytes(appId: number): Promise<number>;
  /**
   * Removes the app's oldest lines until at least `bytes` are gone, at most
   * `limit` lines in one call; returns what it removed.
   */
  trimLogBytes(
    appId: number,
    bytes: number,
    limit: number,
  ): Promise<{ lines: number; bytes: number }>;
  /** Oldest first. */
  readLogs(appId: number, query: LogQuery): Promise<LogRow[]>;

  addEvent(event: NewEvent): Promise<EventRow>;
  /** Most recent first. */
  listEvents(query: { app_id?: number; limit?: number; before_id?: number }): Promise<EventRow[]>;

  /**
   * Stores a chunk once; false when (run_id, seq) was already there. `bytes`:
   * what it counts against the run's recording quota (default 0).
   */
  putAuditChunk(row: AuditChunkRow, options?: { bytes?: number }): Promise<boolean>;
  /** In sequence order. Holds the whole recording: for tests and small ones; read in pages. */
  auditChunks(runId: string): Promise<AuditChunkRow[]>;
  /** At most `page.limit` chunks with a seq above `page.after`, in sequence order. */
  auditChunkPage(runId: string, page: { after: number; limit: number }): Promise<AuditChunkRow[]>;
  /** Chunk `seq` of a run, or null. */
  auditChunk(runId: string, seq: number): Promise<AuditChunkRow | null>;
  /** The quota bytes the stored chunks of a run were charged, summed. */
  auditRecordedBytes(runId: string): Promise<number>;
  /** The highest seq stored of a run's recording, -1 when none is (`oneoff watch --from-now`). */
  lastAuditSeq(runId: string): Promise<number>;
  /**
   * An app's recorded sessions (attached runs that started), newest first,
   * each with its recorded bytes: `listRecordedSessions` for `audit list`
   * and `audit search`.
   */
  listRecordedSessions(query: SessionQuery): Promise<RecordedSession[]>;
  /** The audit trail's copy of a run whose row is gone, or null. */
  archivedRun(runId: string): Promise<ArchivedRun | null>;
  /** The audit trail's runs of an app by its name (destroyed or not), most recent first. */
  listArchivedRuns(appName: string, limit: number): Promise<ArchivedRun[]>;

  /** Stores a run's artifact, replacing one of the same name (an upload sent again); false when the run is gone. */
  putArtifact(row: ArtifactRow): Promise<boolean>;
  /** A run's artifacts, kept and refused, by name. */
  listArtifacts(runId: string): Promise<ArtifactRow[]>;
  /** Per run (only those with any): files kept, their bytes, files refused. */
  artifactSummaries(
    runIds: string[],
  ): Promise<Map<string, { files: number; bytes: number; refused: number }>>;

  // Data lifecycle (server/lifecycle.ts): each call removes one bounded
  // batch, so a big table is never locked for long; callers loop while a
  // call removes something.

  /**
   * Removes, among the app's oldest `limit` lines (by id), those older than
   * `before` or beyond its newest `keepLines`; returns how many.
   */
  pruneLogs(appId: number, prune: LogPrune): Promise<number>;
  /**
   * Removes up to `limit` ended runs that ended (or were created, if they
   * never started) before `before`, copying each to the audit trail first.
   */
  pruneRuns(before: Date, limit: number): Promise<number>;
  /**
   * Removes the recordings (and archived metadata) of up to `limit` runs
   * whose last audit record is older than `before`; returns how many runs.
   */
  pruneAudit(before: Date, limit: number): Promise<number>;
  /**
   * Removes up to `limit` releases older than each app's newest `keep`
   * that no run row refers to; returns how many.
   */
  pruneReleases(keep: number, limit: number): Promise<number>;
  /**
   * Every blob still needed: the slugs of each app's newest `keepReleases`
   * releases, the slug and uploads of every run not yet ended, and the
   * artifacts of every run still stored.
   */
  blobReferences(keepReleases: number): Promise<Set<string>>;
}

/** Thrown when a unique name is already taken. */
export class ConflictError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConflictError";
  }
}

const FULL_MESSAGES = [
  "No space left on device",
  "database or disk is full",
  "could not extend file",
  "Disk quota exceeded",
];

/**
 * Whether an error (or one of its causes) says the disk is full: SQLite's
 * SQLITE_FULL, PostgreSQL's disk_full (53100), a file write's ENOSPC.
 */
export function isStorageFull(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === "ENOSPC" || code === "53100" || code === "EDQUOT") return true;
    if (FULL_MESSAGES.some((m) => e instanceof Error && e.message.includes(m))) return true;
  }
  return false;
}

const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
]);

/** Whether an error says the database cannot be reached right now (a restart, a network cut). */
export function isStoreUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) return true;
    if (e instanceof Deno.errors.ConnectionRefused) return true;
  }
  return false;
}
