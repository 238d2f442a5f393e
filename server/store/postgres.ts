/**
 * The shared store: PostgreSQL through postgres.js, for several servers
 * behind one load balancer. Atomic numbering relies on row locks, not on
 * the single-writer luck SQLite gives.
 * @module
 */
import postgres from "postgres";
import { LIVE_STATES, type NetworkMode, type RunState } from "../../protocol/mod.ts";
import {
  type AgentRow,
  type AgentTrust,
  type AppRow,
  type AppSettings,
  type ArchivedRun,
  type ArtifactRow,
  type AuditChunkRow,
  ConflictError,
  type EventRow,
  type IdempotencyRow,
  type JoinTokenRow,
  type LogOverage,
  type LogPrune,
  type LogQuery,
  type LogRow,
  type NewAgent,
  type NewEvent,
  type NewLog,
  type NewRun,
  type RecordedSession,
  type ReleaseRow,
  type RunCount,
  type RunLogUsage,
  type RunQuery,
  type RunRow,
  type RunUpdate,
  type SessionQuery,
  type Store,
  type TokenRow,
} from "./mod.ts";
import { MIGRATIONS, POSTGRES_MIGRATIONS_TABLE } from "./_migrations.ts";
import { withoutNul } from "./_log_line.ts";
import { fromArchive } from "./_archive.ts";

/**
 * Connects to the database at `url` (a pool of at most 5 connections); call
 * `migrate()` before use. Extra URL parameters such as `?search_path=oneoff`
 * are sent to the server as connection settings.
 */
export function openPostgresStore(url: string): Store {
  return new PostgresStore(url);
}

// int8 columns (log and event ids, sizes) come back as numbers: they stay far
// below 2^53, and the store's types promise numbers.
const int8 = {
  to: 20,
  from: [20],
  serialize: (value: number) => String(value),
  parse: (value: string) => Number(value),
};

type Sql = postgres.Sql<{ int8: number }>;

function isUniqueViolation(error: unknown): boolean {
  return error instanceof postgres.PostgresError && error.code === "23505";
}

async function lockMigrations(tx: postgres.TransactionSql<{ int8: number }>): Promise<void> {
  // Per schema, so servers of different installations sharing one database
  // do not wait on each other; released when the transaction ends.
  await tx`select pg_advisory_xact_lock(hashtext('oneoff:' || coalesce(current_schema(), '')))`;
}

const APP_COLUMNS =
  "id, name, network, host_ports, idle_timeout_ms, reattach_grace_ms, labels, require_reason, " +
  "created_at";
const LOG_COLUMNS = "id, app_id, ts, source, stream, line";
const OPTIONAL_RUN_FIELDS = [
  "agent_id",
  "exit_code",
  "reason",
  "started_at",
  "ended_at",
  "expires_at",
  "log_lines",
] as const;

class PostgresStore implements Store {
  #sql: Sql;

  constructor(url: string) {
    this.#sql = postgres(url, {
      max: 5,
      types: { int8 },
      // "relation already exists, skipping" and the like are not worth a line.
      onnotice: () => {},
    });
  }

  async migrate(): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await lockMigrations(tx);
      await tx.unsafe(POSTGRES_MIGRATIONS_TABLE);
    });
    for (const migration of MIGRATIONS) {
      await this.#sql.begin(async (tx) => {
        await lockMigrations(tx);
        const done = await tx`select 1 from schema_migrations where version = ${migration.version}`;
        if (done.length > 0) return;
        await tx.unsafe(migration.postgres);
        await tx`insert into schema_migrations (version) values (${migration.version})`;
      });
    }
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }

  async schemaVersion(): Promise<number> {
    const [row] = await this.#sql<{ v: number }[]>`
      select coalesce(max(version), 0)::int as v from schema_migrations`;
    return row!.v;
  }

  async countRunsByState(): Promise<Partial<Record<RunState, number>>> {
    const rows = await this.#sql<{ state: RunState; n: number }[]>`
      select state, count(*)::int as n from runs group by state`;
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  async createToken(row: Omit<TokenRow, "id" | "created_at">): Promise<TokenRow> {
    const sql = this.#sql;
    const [token] = await sql<TokenRow[]>`
      insert into tokens (hash, role, apps, name)
      values (${row.hash}, ${row.role}, ${sql.json(row.apps)}, ${row.name})
      returning *`;
    return token!;
  }

  async tokenByHash(hash: string): Promise<TokenRow | null> {
    const [token] = await this.#sql<TokenRow[]>`select * from tokens where hash = ${hash}`;
    return token ?? null;
  }

  async countTokens(): Promise<number> {
    const [row] = await this.#sql<{ n: number }[]>`select count(*) as n from tokens`;
    return row!.n;
  }

  async listTokens(): Promise<TokenRow[]> {
    return [...await this.#sql<TokenRow[]>`select * from tokens order by id`];
  }

  async deleteToken(id: number): Promise<boolean> {
    const rows = await this.#sql`delete from tokens where id = ${id} returning id`;
    return rows.length > 0;
  }

  async revokeSession(id: string, expiresAt: number): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await tx`delete from revoked_sessions where expires_at <= now()`;
      await tx`
        insert into revoked_sessions (id, expires_at) values (${id}, ${new Date(expiresAt)})
        on conflict (id) do nothing`;
    });
  }

  async sessionRevoked(id: string): Promise<boolean> {
    const rows = await this.#sql`
      select 1 from revoked_sessions where id = ${id} and expires_at > now()`;
    return rows.length > 0;
  }

  async createApp(name: string): Promise<AppRow> {
    const sql = this.#sql;
    try {
      const [app] = await sql<AppRow[]>`
        insert into apps (name) values (${name}) returning ${sql.unsafe(APP_COLUMNS)}`;
      return app!;
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new ConflictError(`App "${name}" already exists`, { cause: error });
      }
      throw error;
    }
  }

  async appByName(name: string): Promise<AppRow | null> {
    const sql = this.#sql;
    const [app] = await sql<AppRow[]>`
      select ${sql.unsafe(APP_COLUMNS)} from apps where name = ${name}`;
    return app ?? null;
  }

  async appById(id: number): Promise<AppRow | null> {
    const sql = this.#sql;
    const [app] = await sql<AppRow[]>`
      select ${sql.unsafe(APP_COLUMNS)} from apps where id = ${id}`;
    return app ?? null;
  }

  async listApps(): Promise<AppRow[]> {
    const sql = this.#sql;
    return [...await sql<AppRow[]>`select ${sql.unsafe(APP_COLUMNS)} from apps order by name`];
  }

  async setAppNetwork(id: number, network: NetworkMode): Promise<void> {
    await this.#sql`update apps set network = ${network} where id = ${id}`;
  }

  async updateAppSettings(id: number, settings: AppSettings): Promise<AppRow | null> {
    const sql = this.#sql;
    const s = settings;
    // coalesce keeps what is not given; a null given (the server's default)
    // is told apart by its own flag, since coalesce cannot.
    const [app] = await sql<AppRow[]>`
      update apps set
        network = coalesce(${s.network ?? null}::text, network),
        host_ports = coalesce(${s.host_ports ? sql.json(s.host_ports) : null}::jsonb, host_ports),
        idle_timeout_ms = case when ${s.idle_timeout_ms !== undefined}::boolean
          then ${s.idle_timeout_ms ?? null}::int8 else idle_timeout_ms end,
        reattach_grace_ms = case when ${s.reattach_grace_ms !== undefined}::boolean
          then ${s.reattach_grace_ms ?? null}::int8 else reattach_grace_ms end,
        labels = coalesce(${s.labels ? sql.json(s.labels) : null}::jsonb, labels),
        require_reason = coalesce(${s.require_reason ?? null}::boolean, require_reason)
      where id = ${id}
      returning ${sql.unsafe(APP_COLUMNS)}`;
    return app ?? null;
  }

  async destroyApp(id: number): Promise<void> {
    // Foreign keys cascade to env, releases and runs, and null the app on
    // events, whose app_name keeps the timeline readable. Logs have no
    // foreign key (it slows every insert): they go explicitly. Audit chunks
    // stay, and each run is copied to the audit trail first.
    await this.#sql.begin(async (tx) => {
      await tx`
        insert into audit_runs (run_id, app_name, run, at)
        select r.id, a.name, to_jsonb(r) - 'env_overrides' - 'secret_sha256', coalesce(r.ended_at, r.created_at)
        from runs r join apps a on a.id = r.app_id where r.app_id = ${id}
        on conflict (run_id) do nothing`;
      await tx`delete from logs where app_id = ${id}`;
      await tx`delete from apps where id = ${id}`;
    });
  }

  async getEnv(appId: number): Promise<Record<string, string>> {
    const rows = await this.#sql<{ key: string; value: string }[]>`
      select key, value from env where app_id = ${appId}`;
    return Object.fromEntries(rows.map((row) => [row.key, row.value]));
  }

  async updateEnv(appId: number, set: Record<string, string>, unset: string[]): Promise<void> {
    const rows = Object.entries(set).map(([key, value]) => ({ app_id: appId, key, value }));
    await this.#sql.begin(async (tx) => {
      if (rows.length > 0) {
        await tx`insert into env ${tx(rows)}
          on conflict (app_id, key) do update set value = excluded.value`;
      }
      if (unset.length > 0) {
        await tx`delete from env where app_id = ${appId} and key = any(${unset}::text[])`;
      }
    });
  }

  async createRelease(
    row: Omit<ReleaseRow, "id" | "version" | "created_at">,
  ): Promise<ReleaseRow> {
    const sql = this.#sql;
    const [release] = await sql<ReleaseRow[]>`
      with app as (
        update apps set last_release = last_release + 1 where id = ${row.app_id}
        returning id, last_release
      )
      insert into releases (app_id, version, sha256, size, process_types, actor)
      select id, last_release, ${row.sha256}::text, ${row.size}::int8,
        ${sql.json(row.process_types)}::jsonb, ${row.actor}::text
      from app
      returning *`;
    if (release === undefined) {
      throw new Error(`Cannot create a release: app ${row.app_id} does not exist`);
    }
    return release;
  }

  async latestRelease(appId: number): Promise<ReleaseRow | null> {
    const [release] = await this.#sql<ReleaseRow[]>`
      select * from releases where app_id = ${appId} order by version desc limit 1`;
    return release ?? null;
  }

  async releaseById(id: number): Promise<ReleaseRow | null> {
    const [release] = await this.#sql<ReleaseRow[]>`select * from releases where id = ${id}`;
    return release ?? null;
  }

  async releaseShas(): Promise<string[]> {
    const rows = await this.#sql<{ sha256: string }[]>`select distinct sha256 from releases`;
    return rows.map((row) => row.sha256);
  }

  async createRun(row: NewRun): Promise<RunRow> {
    const sql = this.#sql;
    const [run] = await sql<RunRow[]>`
      with app as (
        update apps set last_run = last_run + 1 where id = ${row.app_id}
        returning id, last_run
      )
      insert into runs (id, app_id, number, command, state, attached, tty, size, release_id,
        env_overrides, uploads, cols, rows, timeout_ms, idle_timeout_ms, actor, purpose,
        secret_sha256, expires_at)
      select ${row.id}::text, id, last_run, ${row.command}::text, 'pending',
        ${row.attached}::boolean, ${row.tty}::boolean, ${row.size}::text, ${row.release_id}::int,
        ${sql.json(row.env_overrides)}::jsonb, ${sql.json(row.uploads)}::jsonb,
        ${row.cols}::int, ${row.rows}::int, ${row.timeout_ms}::int8,
        ${row.idle_timeout_ms ?? null}::int8, ${row.actor}::text, ${row.purpose ?? null}::text,
        ${row.secret_sha256}::text, ${row.expires_at}::timestamptz
      from app
      returning *`;
    if (run === undefined) {
      throw new Error(`Cannot create run "${row.id}": app ${row.app_id} does not exist`);
    }
    return run;
  }

  async runById(id: string): Promise<RunRow | null> {
    const [run] = await this.#sql<RunRow[]>`select * from runs where id = ${id}`;
    return run ?? null;
  }

  async runByNumber(appId: number, number: number): Promise<RunRow | null> {
    const [run] = await this.#sql<RunRow[]>`
      select * from runs where app_id = ${appId} and number = ${number}`;
    return run ?? null;
  }

  async listRuns(query: RunQuery): Promise<RunRow[]> {
    const sql = this.#sql;
    const { app, states, agent } = this.#runFilter(query);
    return [
      ...await sql<RunRow[]>`
        select * from runs where true ${app} ${states} ${agent}
        order by created_at desc, number desc limit ${query.limit ?? 100}`,
    ];
  }

  async countRuns(query: RunCount): Promise<number> {
    const { app, states, agent } = this.#runFilter(query);
    const upTo = query.max_number === undefined
      ? this.#sql``
      : this.#sql`and number <= ${query.max_number}`;
    const [row] = await this.#sql<{ n: string }[]>`
      select count(*) as n from runs where true ${app} ${states} ${agent} ${upTo}`;
    return Number(row!.n);
  }

  #runFilter(query: RunCount) {
    const sql = this.#sql;
    return {
      app: query.app_id === undefined ? sql`` : sql`and app_id = ${query.app_id}`,
      states: query.states === undefined ? sql`` : sql`and state = any(${query.states}::text[])`,
      agent: query.agent_id === undefined ? sql`` : sql`and agent_id = ${query.agent_id}`,
    };
  }

  async updateRun(id: string, from: RunState[], update: RunUpdate): Promise<RunRow | null> {
    const sql = this.#sql;
    const fields: Record<string, unknown> = { state: update.state };
    for (const key of OPTIONAL_RUN_FIELDS) {
      if (update[key] !== undefined) fields[key] = update[key];
    }
    const [run] = await sql<RunRow[]>`
      update runs set ${sql(fields)}
      where id = ${id} and state = any(${from}::text[])
      returning *`;
    return run ?? null;
  }

  async upsertAgent(row: NewAgent & { id?: string }): Promise<AgentRow> {
    // An agent that comes back under its name keeps the id it was given first.
    const sql = this.#sql;
    const [agent] = await sql<StoredAgent[]>`
      insert into agents (id, name, online, since, version, capacity, sandbox,
        attach_host, attach_port, attach_tls, tls_fingerprint, warnings, labels)
      values (${row.id ?? crypto.randomUUID()}, ${row.name}, ${row.online}, ${row.since},
        ${row.version}, ${row.capacity}, ${row.sandbox}, ${row.attach_host},
        ${row.attach_port}, ${row.attach_tls}, ${row.tls_fingerprint}, ${sql.json(row.warnings)},
        ${sql.json(row.labels ?? {})})
      on conflict (name) do update set online = excluded.online, since = excluded.since,
        version = excluded.version, capacity = excluded.capacity, sandbox = excluded.sandbox,
        attach_host = excluded.attach_host, attach_port = excluded.attach_port,
        attach_tls = excluded.attach_tls, tls_fingerprint = excluded.tls_fingerprint,
        warnings = excluded.warnings, labels = excluded.labels
      returning *`;
    return withoutCredential(agent!);
  }

  async enrolAgent(
    row: NewAgent & Pick<AgentRow, "trust"> & { credential_sha256: string },
  ): Promise<AgentRow | null> {
    // The WHERE of the upsert is the check: a name enrolled and not revoked
    // is not taken, even by two enrolments racing.
    const sql = this.#sql;
    const [agent] = await sql<StoredAgent[]>`
      insert into agents (id, name, trust, credential_sha256, online, since, version, capacity,
        sandbox, attach_host, attach_port, attach_tls, tls_fingerprint, warnings, labels)
      values (${crypto.randomUUID()}, ${row.name}, ${row.trust}, ${row.credential_sha256},
        ${row.online}, ${row.since}, ${row.version}, ${row.capacity}, ${row.sandbox},
        ${row.attach_host}, ${row.attach_port}, ${row.attach_tls}, ${row.tls_fingerprint},
        ${sql.json(row.warnings)}, ${sql.json(row.labels ?? {})})
      on conflict (name) do update set trust = excluded.trust,
        credential_sha256 = excluded.credential_sha256, online = excluded.online,
        since = excluded.since, version = excluded.version, capacity = excluded.capacity,
        sandbox = excluded.sandbox, attach_host = excluded.attach_host,
        attach_port = excluded.attach_port, attach_tls = excluded.attach_tls,
        tls_fingerprint = excluded.tls_fingerprint, warnings = excluded.warnings,
        labels = excluded.labels
      where agents.credential_sha256 is null or agents.trust = 'revoked'
      returning *`;
    return agent ? withoutCredential(agent) : null;
  }

  async agentByCredential(credentialSha256: string): Promise<AgentRow | null> {
    const [agent] = await this.#sql<StoredAgent[]>`
      select * from agents where credential_sha256 = ${credentialSha256}`;
    return agent ? withoutCredential(agent) : null;
  }

  async setAgentTrust(id: string, trust: AgentTrust): Promise<boolean> {
    const rows = await this.#sql`update agents set trust = ${trust} where id = ${id} returning id`;
    return rows.length > 0;
  }

  async ensureJoinToken(row: JoinTokenRow): Promise<void> {
    await this.#sql`
      insert into join_tokens (sha256, uses_left, expires_at)
      values (${row.sha256}, ${row.uses_left}, ${row.expires_at})
      on conflict (sha256) do nothing`;
  }

  async rotateJoinTokens(row: JoinTokenRow): Promise<void> {
    await this.#sql.begin(async (tx) => {
      await tx`update join_tokens set revoked = true`;
      await tx`insert into join_tokens (sha256, uses_left, expires_at)
        values (${row.sha256}, ${row.uses_left}, ${row.expires_at})`;
    });
  }

  async useJoinToken(sha256: string, now: Date): Promise<boolean> {
    const rows = await this.#sql`
      update join_tokens set uses_left = uses_left - 1
      where sha256 = ${sha256} and not revoked and (expires_at is null or expires_at > ${now})
        and (uses_left is null or uses_left > 0)
      returning sha256`;
    return rows.length > 0;
  }

  async agentById(id: string): Promise<AgentRow | null> {
    const [agent] = await this.#sql<StoredAgent[]>`select * from agents where id = ${id}`;
    return agent ? withoutCredential(agent) : null;
  }

  async listAgents(): Promise<AgentRow[]> {
    return (await this.#sql<StoredAgent[]>`select * from agents order by name`)
      .map(withoutCredential);
  }

  async setAgentOnline(id: string, online: boolean, since: Date): Promise<void> {
    await this.#sql`update agents set online = ${online}, since = ${since} where id = ${id}`;
  }

  async claimIdempotencyKey(
    row: Omit<IdempotencyRow, "created_at">,
    expiredBefore: Date,
  ): Promise<IdempotencyRow | null> {
    return await this.#sql.begin(async (tx) => {
      await tx`delete from idempotency_keys
        where app_id = ${row.app_id} and key = ${row.key} and created_at < ${expiredBefore}`;
      const claimed = await tx`
        insert into idempotency_keys (app_id, key, fingerprint, run_id, created_at)
        values (${row.app_id}, ${row.key}, ${row.fingerprint}, ${row.run_id}, now())
        on conflict (app_id, key) do nothing`;
      if (claimed.count === 1) return null;
      const [held] = await tx<IdempotencyRow[]>`
        select * from idempotency_keys where app_id = ${row.app_id} and key = ${row.key}`;
      return held ?? null;
    });
  }

  async releaseIdempotencyKey(appId: number, key: string, runId: string): Promise<void> {
    await this.#sql`delete from idempotency_keys
      where app_id = ${appId} and key = ${key} and run_id = ${runId}`;
  }

  async countRunLogs(runId: string): Promise<number> {
    const [row] = await this.#sql<{ n: number }[]>`
      select count(*)::int8 as n from logs where run_id = ${runId}`;
    return row!.n;
  }

  async runLogUsage(runId: string): Promise<RunLogUsage> {
    const [row] = await this.#sql<
      { bytes: number; seq: number; over_lines: number; over_bytes: number }[]
    >`select bytes, seq, over_lines, over_bytes from run_log_usage where run_id = ${runId}`;
    return {
      bytes: row?.bytes ?? 0,
      seq: row?.seq ?? -1,
      overLines: row?.over_lines ?? 0,
      overBytes: row?.over_bytes ?? 0,
    };
  }

  async saveLogOverage(runId: string, overage: LogOverage): Promise<void> {
    // A run already gone (pruned, its app destroyed) has nothing to count.
    await this.#sql`
      insert into run_log_usage (run_id, app_id, seq, over_lines, over_bytes)
      select id, app_id, ${overage.seq}::int8, ${overage.lines}::int8, ${overage.bytes}::int8
      from runs where id = ${runId}
      on conflict (run_id) do update set seq = greatest(run_log_usage.seq, excluded.seq),
        over_lines = excluded.over_lines, over_bytes = excluded.over_bytes`;
  }

  async appLogBytes(appId: number): Promise<number> {
    const [row] = await this.#sql<{ n: number }[]>`
      select coalesce(sum(bytes), 0)::int8 as n from run_log_usage where app_id = ${appId}`;
    return row!.n;
  }

  async trimLogBytes(
    appId: number,
    bytes: number,
    limit: number,
  ): Promise<{ lines: number; bytes: number }> {
    if (bytes <= 0) return { lines: 0, bytes: 0 };
    // The oldest lines by id, with a running total: the cut is the first
    // line at which the total reaches `bytes`.
    const [row] = await this.#sql<{ lines: number; bytes: number }[]>`
      with oldest as (
        select id, sum(octet_length(line) + 1) over (order by id) as total
        from (select id, line from logs where app_id = ${appId} order by id limit ${limit}) o
      ), cut as (
        select coalesce(
          (select min(id) from oldest where total >= ${bytes}),
          (select max(id) from oldest)
        ) as last
      ), gone as (
        delete from logs where app_id = ${appId} and id <= (select last from cut)
        returning run_id, octet_length(line) + 1 as n
      ), less as (
        update run_log_usage u set bytes = u.bytes - g.n
        from (select run_id, sum(n) as n from gone group by run_id) g where u.run_id = g.run_id
      )
      select count(*)::int8 as lines, coalesce(sum(n), 0)::int8 as bytes from gone`;
    return { lines: row!.lines, bytes: row!.bytes };
  }

  async appendLogs(appId: number, lines: NewLog[]): Promise<number> {
    if (lines.length === 0) return 0;
    // Six arrays and one statement text whatever the batch size: one
    // prepared statement, a handful of parameters, one round trip.
    const n = lines.length;
    const runIds = new Array<string>(n), seqs = new Array<number>(n), ts = new Array<number>(n);
    const sources = new Array<string>(n), streams = new Array<string>(n);
    const texts = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const l = lines[i]!;
      runIds[i] = l.run_id, seqs[i] = l.seq, ts[i] = l.ts.getTime();
      sources[i] = l.source, streams[i] = l.stream, texts[i] = withoutNul(l.line);
    }
    const sql = this.#sql;
    // Each run's usage grows in the same statement as its lines (one round trip).
    const insert = (skipStored: postgres.PendingQuery<postgres.Row[]>) =>
      sql<{ count: number }[]>`
        with added as (
          insert into logs (app_id, run_id, seq, ts, source, stream, line)
          select ${appId}::int, run_id, seq, timestamptz 'epoch' + ms * interval '1 millisecond',
            source, stream, line
          from unnest(${runIds}::text[], ${seqs}::int8[], ${ts}::int8[], ${sources}::text[],
            ${streams}::text[], ${texts}::text[]) as l(run_id, seq, ms, source, stream, line)
          ${skipStored}
          returning run_id, seq, octet_length(line) + 1 as n
        ), more as (
          insert into run_log_usage (run_id, app_id, bytes, seq)
          select run_id, ${appId}::int, sum(n), max(seq) from added group by run_id
          on conflict (run_id) do update set bytes = run_log_usage.bytes + excluded.bytes,
            seq = greatest(run_log_usage.seq, excluded.seq)
        )
        select count(*)::int8 as count from added`;
    // Batches are almost always new, and a plain insert costs a fifth less
    // than ON CONFLICT; a batch replayed after a reconnect fails on the
    // unique index (atomically: nothing stored) and goes again skipping
    // what is there.
    try {
      return (await insert(sql``))[0]!.count;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
    return (await insert(sql`on conflict (run_id, seq) do nothing`))[0]!.count;
  }

  async readLogs(appId: number, query: LogQuery): Promise<LogRow[]> {
    const sql = this.#sql;
    const columns = sql.unsafe(LOG_COLUMNS);
    const source = query.source === undefined ? sql`` : sql`and source = ${query.source}`;
    const limit = query.limit ?? 100;
    if (query.after_id !== undefined) {
      return [
        ...await sql<LogRow[]>`
          select ${columns} from logs where app_id = ${appId} ${source}
          and id > ${query.after_id} order by id limit ${limit}`,
      ];
    }
    const before = query.before_id === undefined ? sql`` : sql`and id < ${query.before_id}`;
    // The last `limit` lines, read backwards on the index and turned around.
    const rows = await sql<LogRow[]>`
      select ${columns} from logs where app_id = ${appId} ${source} ${before}
      order by id desc limit ${limit}`;
    return [...rows].reverse();
  }

  async addEvent(event: NewEvent): Promise<EventRow> {
    const sql = this.#sql;
    const [row] = await sql<EventRow[]>`
      insert into events (app_id, app_name, actor, kind, data, at)
      values (${event.app_id}, ${event.app_name}, ${event.actor}, ${event.kind},
        ${sql.json(event.data as postgres.JSONValue)}, ${event.at ?? new Date()})
      returning *`;
    return row!;
  }

  async listEvents(
    query: { app_id?: number; limit?: number; before_id?: number },
  ): Promise<EventRow[]> {
    const sql = this.#sql;
    const app = query.app_id === undefined ? sql`` : sql`and app_id = ${query.app_id}`;
    const before = query.before_id === undefined ? sql`` : sql`and id < ${query.before_id}`;
    return [
      ...await sql<EventRow[]>`
        select * from events where true ${app} ${before}
        order by id desc limit ${query.limit ?? 100}`,
    ];
  }

  async putAuditChunk(row: AuditChunkRow, options: { bytes?: number } = {}): Promise<boolean> {
    const result = await this.#sql`
      insert into audit_chunks (run_id, seq, key_id, payload, prev_hash, at, bytes)
      values (${row.run_id}, ${row.seq}, ${row.key_id}, ${row.payload}, ${row.prev_hash}, ${row.at},
        ${options.bytes ?? 0})
      on conflict (run_id, seq) do nothing`;
    return result.count === 1;
  }

  async auditChunks(runId: string): Promise<AuditChunkRow[]> {
    return [
      ...await this.#sql<AuditChunkRow[]>`
        select run_id, seq, key_id, payload, prev_hash, at from audit_chunks
        where run_id = ${runId} order by seq`,
    ];
  }

  async auditChunkPage(
    runId: string,
    page: { after: number; limit: number },
  ): Promise<AuditChunkRow[]> {
    return [
      ...await this.#sql<AuditChunkRow[]>`
        select run_id, seq, key_id, payload, prev_hash, at from audit_chunks
        where run_id = ${runId} and seq > ${page.after} order by seq limit ${page.limit}`,
    ];
  }

  async auditChunk(runId: string, seq: number): Promise<AuditChunkRow | null> {
    const [row] = await this.#sql<AuditChunkRow[]>`
      select run_id, seq, key_id, payload, prev_hash, at from audit_chunks
      where run_id = ${runId} and seq = ${seq}`;
    return row ?? null;
  }

  async listRecordedSessions(query: SessionQuery): Promise<RecordedSession[]> {
    const sql = this.#sql;
    const rows = await sql<(RunRow & { audit_bytes: string })[]>`
      select r.*, (select coalesce(sum(c.bytes), 0) from audit_chunks c where c.run_id = r.id)::text
        as audit_bytes
      from runs r
      where r.app_id = ${query.app_id} and r.attached and r.started_at is not null
        and r.created_at >= ${query.since}
        ${query.actor === undefined ? sql`` : sql`and r.actor = ${query.actor}`}
        ${query.before_number === undefined ? sql`` : sql`and r.number < ${query.before_number}`}
      order by r.number desc limit ${query.limit}`;
    return rows.map(({ audit_bytes, ...run }) => ({ run, bytes: Number(audit_bytes) }));
  }

  async lastAuditSeq(runId: string): Promise<number> {
    const [row] = await this.#sql<{ n: number }[]>`
      select coalesce(max(seq), -1)::int as n from audit_chunks where run_id = ${runId}`;
    return Number(row?.n ?? -1);
  }

  async auditRecordedBytes(runId: string): Promise<number> {
    const [row] = await this.#sql<{ n: string }[]>`
      select coalesce(sum(bytes), 0)::text as n from audit_chunks where run_id = ${runId}`;
    return Number(row?.n ?? 0);
  }

  async archivedRun(runId: string): Promise<ArchivedRun | null> {
    const [row] = await this.#sql<{ app_name: string; run: unknown }[]>`
      select app_name, run from audit_runs where run_id = ${runId}`;
    return row === undefined ? null : fromArchive(row.app_name, row.run);
  }

  async listArchivedRuns(appName: string, limit: number): Promise<ArchivedRun[]> {
    const rows = await this.#sql<{ app_name: string; run: unknown }[]>`
      select app_name, run from audit_runs where app_name = ${appName}
      order by at desc limit ${limit}`;
    return rows.map((row) => fromArchive(row.app_name, row.run));
  }

  async pruneLogs(appId: number, prune: LogPrune): Promise<number> {
    const sql = this.#sql;
    const [floor] = await sql<{ id: number }[]>`
      select id from logs where app_id = ${appId} order by id desc limit 1 offset ${prune.keepLines}`;
    // Ids follow arrival, which follows time closely enough: looking at the
    // oldest lines by id needs no index on ts (which every insert would pay).
    const [result] = await sql<{ count: number }[]>`
      with gone as (
        delete from logs where id in (
          select id from logs where app_id = ${appId} order by id limit ${prune.limit}
        ) and (ts < ${prune.before} or id <= ${floor?.id ?? 0})
        returning run_id, octet_length(line) + 1 as n
      ), less as (
        update run_log_usage u set bytes = u.bytes - g.n
        from (select run_id, sum(n) as n from gone group by run_id) g where u.run_id = g.run_id
      )
      select count(*)::int8 as count from gone`;
    return result!.count;
  }

  async pruneRuns(before: Date, limit: number): Promise<number> {
    return await this.#sql.begin(async (tx) => {
      const rows = await tx`
        with old as (
          select r.id from runs r
          where r.created_at < ${before} and coalesce(r.ended_at, r.created_at) < ${before}
            and r.state <> all(${LIVE_STATES as string[]})
          order by r.created_at limit ${limit}
          for update skip locked
        ), kept as (
          insert into audit_runs (run_id, app_name, run, at)
          select r.id, a.name, to_jsonb(r) - 'env_overrides' - 'secret_sha256', coalesce(r.ended_at, r.created_at)
          from runs r join apps a on a.id = r.app_id where r.id in (select id from old)
          on conflict (run_id) do nothing
        )
        delete from runs where id in (select id from old) returning id`;
      return rows.length;
    });
  }

  async pruneAudit(before: Date, limit: number): Promise<number> {
    return await this.#sql.begin(async (tx) => {
      const runs = await tx<{ run_id: string }[]>`
        select distinct run_id from audit_chunks a where at < ${before}
          and not exists (select 1 from audit_chunks b where b.run_id = a.run_id and b.at >= ${before})
        limit ${limit}`;
      const ids = runs.map((row) => row.run_id);
      if (ids.length > 0) await tx`delete from audit_chunks where run_id = any(${ids})`;
      // Metadata of runs that had no recording (detached ones) ends the same way.
      const kept = await tx`
        delete from audit_runs where run_id in (
          select run_id from audit_runs where at < ${before} limit ${limit})`;
      return ids.length + kept.count;
    });
  }

  async pruneReleases(keep: number, limit: number): Promise<number> {
    const result = await this.#sql`
      delete from releases where id in (
        select r.id from releases r
        where r.version <= (select max(version) from releases m where m.app_id = r.app_id) - ${keep}
          and not exists (select 1 from runs where runs.release_id = r.id)
        limit ${limit})`;
    return result.count;
  }

  async putArtifact(row: ArtifactRow): Promise<boolean> {
    // A run already gone (pruned, its app destroyed) keeps nothing.
    const result = await this.#sql`
      insert into run_artifacts (run_id, name, sha256, size, refused, created_at)
      select id, ${row.name}, ${row.sha256}, ${row.size}::int8, ${row.refused}, ${row.created_at}
      from runs where id = ${row.run_id}
      on conflict (run_id, name) do update set sha256 = excluded.sha256, size = excluded.size,
        refused = excluded.refused, created_at = excluded.created_at`;
    return result.count > 0;
  }

  async listArtifacts(runId: string): Promise<ArtifactRow[]> {
    return await this.#sql<ArtifactRow[]>`
      select run_id, name, sha256, size, refused, created_at from run_artifacts
      where run_id = ${runId} order by name collate "C"`;
  }

  async artifactSummaries(
    runIds: string[],
  ): Promise<Map<string, { files: number; bytes: number; refused: number }>> {
    if (runIds.length === 0) return new Map();
    const rows = await this.#sql<
      { run_id: string; files: number; bytes: number; refused: number }[]
    >`
      select run_id, count(sha256)::int8 as files,
        coalesce(sum(case when sha256 is null then 0 else size end), 0)::int8 as bytes,
        count(refused)::int8 as refused
      from run_artifacts where run_id = any(${runIds}) group by run_id`;
    return new Map(rows.map(({ run_id, ...summary }) => [run_id, summary]));
  }

  async blobReferences(keepReleases: number): Promise<Set<string>> {
    const sql = this.#sql;
    const recent = await sql<{ sha256: string }[]>`
      select sha256 from releases r
      where r.version > (select max(version) from releases m where m.app_id = r.app_id) - ${keepReleases}`;
    const live = await sql<{ slug: string; uploads: RunRow["uploads"] }[]>`
      select releases.sha256 as slug, runs.uploads from runs
      join releases on releases.id = runs.release_id
      where runs.state = any(${LIVE_STATES as string[]})`;
    const shas = new Set(recent.map((row) => row.sha256));
    for (const row of live) {
      shas.add(row.slug);
      for (const upload of row.uploads) shas.add(upload.sha256);
    }
    const artifacts = await sql<{ sha256: string }[]>`
      select distinct sha256 from run_artifacts where sha256 is not null`;
    for (const row of artifacts) shas.add(row.sha256);
    return shas;
  }
}

type StoredAgent = AgentRow & { credential_sha256?: string | null };

// The credential's hash stays in the store: nothing above it needs it.
function withoutCredential(row: StoredAgent): AgentRow {
  const { credential_sha256: _, ...agent } = row;
  return agent;
}
