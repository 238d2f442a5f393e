/**
 * The schema's history, one step per version, each written for both
 * dialects side by side so the two stores cannot drift apart unnoticed.
 * Never edit a released step: add a new one.
 * @module
 */

/** One versioned schema change. */
export interface Migration {
  version: number;
  name: string;
  sqlite: string;
  postgres: string;
}

/** Creates the table that records which versions were applied (SQLite). */
export const SQLITE_MIGRATIONS_TABLE = `
  CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
  )`;

/** Creates the table that records which versions were applied (PostgreSQL). */
export const POSTGRES_MIGRATIONS_TABLE = `
  create table if not exists schema_migrations (
    version integer primary key,
    applied_at timestamptz not null default now()
  )`;

// SQLite keeps times as integer milliseconds and JSON as text; the store
// converts them. PostgreSQL uses timestamptz and jsonb.
const INITIAL_SQLITE = `
  CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    apps TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE env (
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app_id, key)
  ) WITHOUT ROWID;
  CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    process_types TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (app_id, version)
  );
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    attached INTEGER NOT NULL,
    tty INTEGER NOT NULL,
    size TEXT NOT NULL,
    release_id INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    env_overrides TEXT NOT NULL,
    uploads TEXT NOT NULL,
    cols INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    agent_id TEXT,
    exit_code INTEGER,
    reason TEXT,
    actor TEXT NOT NULL,
    secret_sha256 TEXT,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    UNIQUE (app_id, number)
  );
  CREATE INDEX runs_app_created ON runs (app_id, created_at, number);
  CREATE INDEX runs_created ON runs (created_at, number);
  CREATE INDEX runs_state ON runs (state);
  CREATE INDEX runs_release ON runs (release_id);
  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    online INTEGER NOT NULL,
    since INTEGER NOT NULL,
    version TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    sandbox TEXT NOT NULL,
    attach_host TEXT NOT NULL,
    attach_port INTEGER NOT NULL,
    attach_tls INTEGER NOT NULL,
    tls_fingerprint TEXT,
    warnings TEXT NOT NULL
  );
  CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
  );
  CREATE UNIQUE INDEX logs_run_seq ON logs (run_id, seq);
  CREATE INDEX logs_app ON logs (app_id, id);
  CREATE INDEX logs_app_source ON logs (app_id, source, id);
  CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER REFERENCES apps (id) ON DELETE SET NULL,
    app_name TEXT,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at INTEGER NOT NULL
  );
  CREATE INDEX events_app ON events (app_id, id);
  CREATE TABLE audit_chunks (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
  ) WITHOUT ROWID;
`;

// The per-app counters on apps make the next release version and run
// number atomic under concurrent writers: the UPDATE that bumps one takes
// the app row's lock, where a MAX()+1 read would race.
const INITIAL_POSTGRES = `
  create table tokens (
    id serial primary key,
    hash text not null unique,
    role text not null,
    apps jsonb not null,
    name text not null,
    created_at timestamptz not null default now()
  );
  create table apps (
    id serial primary key,
    name text not null unique,
    created_at timestamptz not null default now(),
    last_release integer not null default 0,
    last_run integer not null default 0
  );
  create table env (
    app_id integer not null references apps (id) on delete cascade,
    key text not null,
    value text not null,
    primary key (app_id, key)
  );
  create table releases (
    id serial primary key,
    app_id integer not null references apps (id) on delete cascade,
    version integer not null,
    sha256 text not null,
    size bigint not null,
    process_types jsonb not null,
    actor text not null,
    created_at timestamptz not null default now(),
    unique (app_id, version)
  );
  create table runs (
    id text primary key,
    app_id integer not null references apps (id) on delete cascade,
    number integer not null,
    command text not null,
    state text not null,
    attached boolean not null,
    tty boolean not null,
    size text not null,
    release_id integer not null references releases (id) on delete cascade,
    env_overrides jsonb not null,
    uploads jsonb not null,
    cols integer not null,
    rows integer not null,
    timeout_ms bigint not null,
    agent_id text,
    exit_code integer,
    reason text,
    actor text not null,
    secret_sha256 text,
    expires_at timestamptz,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    ended_at timestamptz,
    unique (app_id, number)
  );
  create index runs_app_created on runs (app_id, created_at, number);
  create index runs_created on runs (created_at, number);
  create index runs_state on runs (state);
  create index runs_release on runs (release_id);
  create table agents (
    id text primary key,
    name text not null unique,
    online boolean not null,
    since timestamptz not null,
    version text not null,
    capacity integer not null,
    sandbox text not null,
    attach_host text not null,
    attach_port integer not null,
    attach_tls boolean not null,
    tls_fingerprint text,
    warnings jsonb not null
  );
  -- No foreign key on logs.app_id: its per-row check cost a third of the
  -- insert rate; destroyApp deletes an app's logs itself.
  create table logs (
    id bigserial primary key,
    app_id integer not null,
    run_id text not null,
    seq bigint not null,
    ts timestamptz not null,
    source text not null,
    stream text not null,
    line text not null
  );
  create unique index logs_run_seq on logs (run_id, seq);
  create index logs_app on logs (app_id, id);
  create index logs_app_source on logs (app_id, source, id);
  create table events (
    id bigserial primary key,
    app_id integer references apps (id) on delete set null,
    app_name text,
    actor text not null,
    kind text not null,
    data jsonb not null,
    at timestamptz not null default now()
  );
  create index events_app on events (app_id, id);
  create table audit_chunks (
    run_id text not null references runs (id) on delete cascade,
    seq integer not null,
    key_id text not null,
    payload text not null,
    prev_hash text not null,
    at timestamptz not null,
    primary key (run_id, seq)
  );
`;

// The network a one-off of the app gets (protocol NETWORK_MODES). "host"
// for existing apps: what every run had before the column existed.
const APP_NETWORK_SQLITE = `ALTER TABLE apps ADD COLUMN network TEXT NOT NULL DEFAULT 'host'`;
const APP_NETWORK_POSTGRES = `alter table apps add column network text not null default 'host'`;

// Keys of `Idempotency-Key` run creations, kept 24 h per app; the run's id
// is known before the run row exists, so no foreign key to runs.
const IDEMPOTENCY_SQLITE = `
  CREATE TABLE idempotency_keys (
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, key)
  ) WITHOUT ROWID`;
const IDEMPOTENCY_POSTGRES = `
  create table idempotency_keys (
    app_id integer not null references apps (id) on delete cascade,
    key text not null,
    fingerprint text not null,
    run_id text not null,
    created_at timestamptz not null,
    primary key (app_id, key)
  )`;

// How many log lines a detached run's end reported, so that a shortfall is
// still found after a server restart.
const LOG_LINES_SQLITE = `ALTER TABLE runs ADD COLUMN log_lines INTEGER`;
const LOG_LINES_POSTGRES = `alter table runs add column log_lines bigint`;

// Dashboard sessions signed out before their cookie expires, kept until then.
const REVOKED_SESSIONS_SQLITE = `
  CREATE TABLE revoked_sessions (
    id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID`;
const REVOKED_SESSIONS_POSTGRES = `
  create table revoked_sessions (
    id text primary key,
    expires_at timestamptz not null
  )`;

// Network "isolated" becomes every app's default. Nothing could set an app's
// network before (no route or command did), so every "host" is the old
// default, not a choice: those move too. SQLite cannot change a column's
// default, so its inserts name the network (sqlite.ts); PostgreSQL can.
const APP_NETWORK_ISOLATED_SQLITE = `UPDATE apps SET network = 'isolated' WHERE network = 'host'`;
const APP_NETWORK_ISOLATED_POSTGRES = `
  alter table apps alter column network set default 'isolated';
  update apps set network = 'isolated' where network = 'host';
`;

// An audit trail outlives what it audits: a run's recording and who ran
// what stay after its app is destroyed or its row is pruned, until the
// audit retention ends. So audit chunks lose their foreign key to runs
// (SQLite rebuilds the table; nothing references it), and a run's
// metadata is copied to audit_runs when its row goes. An index on `at`
// lets the retention sweep find old recordings without reading payloads.
const AUDIT_OUTLIVES_SQLITE = `
  CREATE TABLE audit_chunks_kept (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
  ) WITHOUT ROWID;
  INSERT INTO audit_chunks_kept SELECT run_id, seq, key_id, payload, prev_hash, at FROM audit_chunks;
  DROP TABLE audit_chunks;
  ALTER TABLE audit_chunks_kept RENAME TO audit_chunks;
  CREATE INDEX audit_chunks_at ON audit_chunks (at);
  CREATE TABLE audit_runs (
    run_id TEXT PRIMARY KEY,
    app_name TEXT NOT NULL,
    run TEXT NOT NULL,
    at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX audit_runs_at ON audit_runs (at);
  CREATE INDEX audit_runs_app ON audit_runs (app_name, at);
`;
const AUDIT_OUTLIVES_POSTGRES = `
  alter table audit_chunks drop constraint if exists audit_chunks_run_id_fkey;
  create index audit_chunks_at on audit_chunks (at);
  create table audit_runs (
    run_id text primary key,
    app_name text not null,
    run jsonb not null,
    at timestamptz not null
  );
  create index audit_runs_at on audit_runs (at);
  create index audit_runs_app on audit_runs (app_name, at);
`;

// Agents enrol with a join token and then hold a credential of their own
// (its hash here); an admin approves them. Join tokens move to a table so
// that they can be rotated, limited in uses and expire. Existing agents
// have no credential: they enrol again on their next connection.
const AGENT_CREDENTIALS_SQLITE = `
  ALTER TABLE agents ADD COLUMN trust TEXT NOT NULL DEFAULT 'pending';
  ALTER TABLE agents ADD COLUMN credential_sha256 TEXT;
  CREATE UNIQUE INDEX agents_credential ON agents (credential_sha256);
  CREATE TABLE join_tokens (
    sha256 TEXT PRIMARY KEY,
    uses_left INTEGER,
    expires_at INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
`;
const AGENT_CREDENTIALS_POSTGRES = `
  alter table agents add column trust text not null default 'pending';
  alter table agents add column credential_sha256 text unique;
  create table join_tokens (
    sha256 text primary key,
    uses_left integer,
    expires_at timestamptz,
    revoked boolean not null default false
  );
`;

// App settings (`oneoff apps set`): the host ports an isolated run may
// reach, the labels its agent must have (and an agent's own labels), and
// the idle timeout and reattach grace of attached runs (null: the
// server's default). A run keeps the idle timeout it started with, so
// `ps` shows what applies to it.
//
// What each run's stored log lines take (bytes, highest seq), kept up to
// date by every write and delete of logs, and what it counted past its
// quota: so that the per-app byte quota is one small sum, not a read of
// every line, and a run's quota survives a restart. Rows outlive their run
// (its lines may stay longer than it does) and go with their app.
const APP_SETTINGS_SQLITE = `
  ALTER TABLE apps ADD COLUMN host_ports TEXT NOT NULL DEFAULT '[]';
  ALTER TABLE apps ADD COLUMN idle_timeout_ms INTEGER;
  ALTER TABLE apps ADD COLUMN reattach_grace_ms INTEGER;
  ALTER TABLE runs ADD COLUMN idle_timeout_ms INTEGER;
  ALTER TABLE apps ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE agents ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
  CREATE TABLE run_log_usage (
    run_id TEXT PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    bytes INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT -1,
    over_lines INTEGER NOT NULL DEFAULT 0,
    over_bytes INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE INDEX run_log_usage_app ON run_log_usage (app_id);
  INSERT INTO run_log_usage (run_id, app_id, bytes, seq)
    SELECT run_id, app_id, sum(length(CAST(line AS BLOB)) + 1), max(seq)
    FROM logs GROUP BY run_id, app_id;
`;
const APP_SETTINGS_POSTGRES = `
  alter table apps add column host_ports jsonb not null default '[]';
  alter table apps add column idle_timeout_ms bigint;
  alter table apps add column reattach_grace_ms bigint;
  alter table runs add column idle_timeout_ms bigint;
  alter table apps add column labels jsonb not null default '{}';
  alter table agents add column labels jsonb not null default '{}';
  create table run_log_usage (
    run_id text primary key,
    app_id integer not null references apps (id) on delete cascade,
    bytes bigint not null default 0,
    seq bigint not null default -1,
    over_lines bigint not null default 0,
    over_bytes bigint not null default 0
  );
  create index run_log_usage_app on run_log_usage (app_id);
  insert into run_log_usage (run_id, app_id, bytes, seq)
    select run_id, app_id, sum(octet_length(line) + 1), max(seq)
    from logs group by run_id, app_id;
`;

// The server checks a session's recording quota itself (an agent may not
// keep to it): each chunk carries what it was charged, summed on demand.
// Chunks stored before count 0. SQLite also rebuilds the table with a rowid
// and stores new payloads as bytes rather than base64 (old rows stay text):
// a WITHOUT ROWID table is meant for small rows, and a chunk is hundreds of
// KiB (inserting one took 1.7 times as long, most of the server's time while
// a session streams).
const AUDIT_CHUNK_BYTES_SQLITE = `
  CREATE TABLE audit_chunks_rowid (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    prev_hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, seq)
  );
  INSERT INTO audit_chunks_rowid (run_id, seq, key_id, payload, prev_hash, at)
    SELECT run_id, seq, key_id, payload, prev_hash, at FROM audit_chunks;
  DROP TABLE audit_chunks;
  ALTER TABLE audit_chunks_rowid RENAME TO audit_chunks;
  CREATE INDEX audit_chunks_at ON audit_chunks (at);
`;
const AUDIT_CHUNK_BYTES_POSTGRES = `
  alter table audit_chunks add column bytes bigint not null default 0;
`;

// A run may carry the reason its user gave (`oneoff run --reason`), and an
// app may require one: kept beside the run for ps, the timeline and the audit.
const RUN_REASON_SQLITE = `
  ALTER TABLE apps ADD COLUMN require_reason INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE runs ADD COLUMN purpose TEXT;
`;
const RUN_REASON_POSTGRES = `
  alter table apps add column require_reason boolean not null default false;
  alter table runs add column purpose text;
`;

// Several servers on one PostgreSQL (server/cluster/): which server holds
// each agent's channel and when it last said so, the servers alive and the
// URL the others reach them at (relays), and a check value of each key
// that must be the same on every server (server/key_checks.ts). SQLite has
// them too, one server only ever writes them.
const CLUSTER_SQLITE = `
  CREATE TABLE cluster_presence (
    agent_id TEXT PRIMARY KEY,
    server_id TEXT NOT NULL,
    seen_at INTEGER NOT NULL
  );
  CREATE TABLE cluster_servers (id TEXT PRIMARY KEY, url TEXT NOT NULL, seen_at INTEGER NOT NULL);
  CREATE TABLE key_checks (name TEXT PRIMARY KEY, check_value TEXT NOT NULL);
`;
const CLUSTER_POSTGRES = `
  create table cluster_presence (
    agent_id text primary key,
    server_id text not null,
    seen_at timestamptz not null
  );
  create table cluster_servers (id text primary key, url text not null, seen_at timestamptz not null);
  create table key_checks (name text primary key, check_value text not null);
`;

// With PostgreSQL, blobs (slugs, uploads) live in the database so that every
// server behind a load balancer serves every one (server/blob_postgres.ts);
// a server's data dir only caches them. A blob's chunks are written by one
// COPY in the transaction that also inserts its `blobs` row: a reader sees
// all of a blob or none of it. The chunks are gzip data or already
// compressed more often than not: stored without TOAST's compression.
// SQLite keeps its blobs as files in the data dir: nothing to create.
const BLOBS_POSTGRES = `
  create sequence blob_data_ids;
  create table blobs (
    sha256 text primary key,
    size bigint not null,
    data_id bigint not null unique,
    created_at timestamptz not null default now()
  );
  create table blob_chunks (
    data_id bigint not null,
    seq integer not null,
    data bytea not null,
    primary key (data_id, seq)
  );
  alter table blob_chunks alter column data set storage external;
`;

// The files a run left in /tmp/downloads (server/artifacts.ts): the bytes are
// a blob of the BlobStore, a refused file keeps its reason and no blob. A
// run's rows go with it (the run retention), and with them the blobs' last
// references.
const RUN_ARTIFACTS_SQLITE = `
  CREATE TABLE run_artifacts (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sha256 TEXT,
    size INTEGER NOT NULL,
    refused TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
  ) WITHOUT ROWID;
`;
const RUN_ARTIFACTS_POSTGRES = `
  create table run_artifacts (
    run_id text not null references runs (id) on delete cascade,
    name text not null,
    sha256 text,
    size bigint not null,
    refused text,
    created_at timestamptz not null,
    primary key (run_id, name)
  );
`;

// A run's creation answers its place in the app's queue by counting the
// app's pending runs ahead of it and its active ones: without an index on
// the state within the app, each count read every run the app ever had
// (1,000 runs created at once read a million rows).
const RUNS_APP_STATE_SQLITE = `CREATE INDEX runs_app_state ON runs (app_id, state, number)`;
const RUNS_APP_STATE_POSTGRES = `create index runs_app_state on runs (app_id, state, number)`;

/** Every migration, in the order they apply. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: "initial schema", sqlite: INITIAL_SQLITE, postgres: INITIAL_POSTGRES },
  { version: 2, name: "app network", sqlite: APP_NETWORK_SQLITE, postgres: APP_NETWORK_POSTGRES },
  {
    version: 3,
    name: "idempotency keys",
    sqlite: IDEMPOTENCY_SQLITE,
    postgres: IDEMPOTENCY_POSTGRES,
  },
  { version: 4, name: "run log lines", sqlite: LOG_LINES_SQLITE, postgres: LOG_LINES_POSTGRES },
  {
    version: 5,
    name: "revoked sessions",
    sqlite: REVOKED_SESSIONS_SQLITE,
    postgres: REVOKED_SESSIONS_POSTGRES,
  },
  {
    version: 6,
    name: "app network isolated by default",
    sqlite: APP_NETWORK_ISOLATED_SQLITE,
    postgres: APP_NETWORK_ISOLATED_POSTGRES,
  },
  {
    version: 7,
    name: "audit outlives its app",
    sqlite: AUDIT_OUTLIVES_SQLITE,
    postgres: AUDIT_OUTLIVES_POSTGRES,
  },
  {
    version: 8,
    name: "agent credentials and join tokens",
    sqlite: AGENT_CREDENTIALS_SQLITE,
    postgres: AGENT_CREDENTIALS_POSTGRES,
  },
  {
    version: 9,
    name: "app settings and log overage",
    sqlite: APP_SETTINGS_SQLITE,
    postgres: APP_SETTINGS_POSTGRES,
  },
  {
    version: 10,
    name: "audit chunk sizes",
    sqlite: AUDIT_CHUNK_BYTES_SQLITE,
    postgres: AUDIT_CHUNK_BYTES_POSTGRES,
  },
  { version: 11, name: "run reasons", sqlite: RUN_REASON_SQLITE, postgres: RUN_REASON_POSTGRES },
  { version: 12, name: "blobs in PostgreSQL", sqlite: "", postgres: BLOBS_POSTGRES },
  {
    version: 13,
    name: "run artifacts",
    sqlite: RUN_ARTIFACTS_SQLITE,
    postgres: RUN_ARTIFACTS_POSTGRES,
  },
  {
    version: 14,
    name: "runs by app and state",
    sqlite: RUNS_APP_STATE_SQLITE,
    postgres: RUNS_APP_STATE_POSTGRES,
  },
  { version: 15, name: "cluster", sqlite: CLUSTER_SQLITE, postgres: CLUSTER_POSTGRES },
];
