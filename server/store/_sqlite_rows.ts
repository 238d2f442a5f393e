/**
 * Conversions between SQLite rows and the store's row types: SQLite keeps
 * times as integer milliseconds, booleans as 0/1 and JSON as text.
 * @module
 */
import type { SQLOutputValue } from "node:sqlite";
import type { NetworkMode, Role, RunState, SizeName } from "../../protocol/mod.ts";
import type {
  AgentRow,
  AppRow,
  AuditChunkRow,
  EventRow,
  LogRow,
  ReleaseRow,
  RunRow,
  TokenRow,
} from "./mod.ts";

/** A row as node:sqlite returns it. */
export type Row = Record<string, SQLOutputValue>;

function num(v: SQLOutputValue | undefined): number {
  return Number(v);
}

function str(v: SQLOutputValue | undefined): string {
  return String(v);
}

function strOrNull(v: SQLOutputValue | undefined): string | null {
  return v === null || v === undefined ? null : String(v);
}

function numOrNull(v: SQLOutputValue | undefined): number | null {
  return v === null || v === undefined ? null : Number(v);
}

function date(v: SQLOutputValue | undefined): Date {
  return new Date(Number(v));
}

function dateOrNull(v: SQLOutputValue | undefined): Date | null {
  return v === null || v === undefined ? null : new Date(Number(v));
}

function json<T>(v: SQLOutputValue | undefined): T {
  return JSON.parse(String(v)) as T;
}

/** A Date, or null, as SQLite stores it. */
export function millis(d: Date | null): number | null {
  return d === null ? null : d.getTime();
}

/** Reads a tokens row. */
export function toToken(r: Row): TokenRow {
  return {
    id: num(r.id),
    hash: str(r.hash),
    role: str(r.role) as Role,
    apps: json<string[]>(r.apps),
    name: str(r.name),
    created_at: date(r.created_at),
  };
}

/** Reads an apps row. */
export function toApp(r: Row): AppRow {
  return {
    id: num(r.id),
    name: str(r.name),
    network: str(r.network) as NetworkMode,
    host_ports: json<number[]>(r.host_ports),
    idle_timeout_ms: numOrNull(r.idle_timeout_ms),
    reattach_grace_ms: numOrNull(r.reattach_grace_ms),
    labels: json<Record<string, string>>(r.labels),
    require_reason: r.require_reason === 1,
    created_at: date(r.created_at),
  };
}

/** Reads a releases row. */
export function toRelease(r: Row): ReleaseRow {
  return {
    id: num(r.id),
    app_id: num(r.app_id),
    version: num(r.version),
    sha256: str(r.sha256),
    size: num(r.size),
    process_types: json<Record<string, string>>(r.process_types),
    actor: str(r.actor),
    created_at: date(r.created_at),
  };
}

/** Reads a runs row. */
export function toRun(r: Row): RunRow {
  return {
    id: str(r.id),
    app_id: num(r.app_id),
    number: num(r.number),
    command: str(r.command),
    state: str(r.state) as RunState,
    attached: r.attached === 1,
    tty: r.tty === 1,
    size: str(r.size) as SizeName,
    release_id: num(r.release_id),
    env_overrides: json<Record<string, string>>(r.env_overrides),
    uploads: json<RunRow["uploads"]>(r.uploads),
    cols: num(r.cols),
    rows: num(r.rows),
    timeout_ms: num(r.timeout_ms),
    idle_timeout_ms: numOrNull(r.idle_timeout_ms),
    agent_id: strOrNull(r.agent_id),
    exit_code: numOrNull(r.exit_code),
    reason: strOrNull(r.reason),
    actor: str(r.actor),
    purpose: strOrNull(r.purpose),
    secret_sha256: strOrNull(r.secret_sha256),
    expires_at: dateOrNull(r.expires_at),
    created_at: date(r.created_at),
    started_at: dateOrNull(r.started_at),
    ended_at: dateOrNull(r.ended_at),
    log_lines: numOrNull(r.log_lines),
  };
}

/** Reads an agents row. */
export function toAgent(r: Row): AgentRow {
  return {
    id: str(r.id),
    name: str(r.name),
    trust: str(r.trust) as AgentRow["trust"],
    online: r.online === 1,
    since: date(r.since),
    version: str(r.version),
    capacity: num(r.capacity),
    sandbox: str(r.sandbox),
    attach_host: str(r.attach_host),
    attach_port: num(r.attach_port),
    attach_tls: r.attach_tls === 1,
    tls_fingerprint: strOrNull(r.tls_fingerprint),
    warnings: json<string[]>(r.warnings),
    labels: json<Record<string, string>>(r.labels),
  };
}

/** Reads a logs row. */
export function toLog(r: Row): LogRow {
  return {
    id: num(r.id),
    app_id: num(r.app_id),
    ts: date(r.ts),
    source: str(r.source),
    stream: str(r.stream),
    line: str(r.line),
  };
}

/** Reads an events row. */
export function toEvent(r: Row): EventRow {
  return {
    id: num(r.id),
    app_id: numOrNull(r.app_id),
    app_name: strOrNull(r.app_name),
    actor: str(r.actor),
    kind: str(r.kind),
    data: json<Record<string, unknown>>(r.data),
    at: date(r.at),
  };
}

/** Reads an audit_chunks row. */
export function toAuditChunk(r: Row): AuditChunkRow {
  return {
    run_id: str(r.run_id),
    seq: num(r.seq),
    key_id: str(r.key_id),
    // Bytes since the rowid table (see sqlite.ts); rows written before are base64 text.
    payload: r.payload instanceof Uint8Array ? r.payload.toBase64() : str(r.payload),
    prev_hash: str(r.prev_hash),
    at: date(r.at),
  };
}
