/**
 * The embedded store: one SQLite file through `node:sqlite`, in WAL mode.
 * Every call runs synchronously to its end, so a transaction never
 * interleaves with another call of the same process.
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
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
import { MIGRATIONS, SQLITE_MIGRATIONS_TABLE } from "./_migrations.ts";
import { withoutNul } from "./_log_line.ts";
import { archiveJson, fromArchive } from "./_archive.ts";
import {
  millis,
  type Row,
  toAgent,
  toApp,
  toAuditChunk,
  toEvent,
  toLog,
  toRelease,
  toRun,
  toToken,
} from "./_sqlite_rows.ts";

/** Opens (creating if needed) the SQLite database at `path`; call `migrate()` before use. */
export function openSqliteStore(path: string): Store {
  return new SqliteStore(path);
}

// Runs a synchronous body as an async method would: a throw becomes a rejection.
function settle<T>(body: () => T): Promise<T> {
  try {
    return Promise.resolve(body());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The WHERE clause of a run query. */
function runFilter(query: RunCount): { filter: string; params: SQLInputValue[] } {
  const where: string[] = [];
  const params: SQLInputValue[] = [];
  if (query.app_id !== undefined) where.push("app_id = ?"), params.push(query.app_id);
  if (query.states !== undefined) {
    where.push("state IN (SELECT value FROM json_each(?))");
    params.push(JSON.stringify(query.states));
  }
  if (query.agent_id !== undefined) where.push("agent_id = ?"), params.push(query.agent_id);
  if (query.max_number !== undefined) where.push("number <= ?"), params.push(query.max_number);
  return { filter: where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`, params };
}

function isUniqueViolation(error: unknown): boolean {
  // Deno's node:sqlite errors carry no errcode: the message is all there is.
  return error instanceof Error && error.message.startsWith("UNIQUE constraint failed");
}

const RUN_COLUMNS = "id, app_id, number, command, state, attached, tty, size, release_id, " +
  "env_overrides, uploads, cols, rows, timeout_ms, idle_timeout_ms, actor, purpose, " +
  "secret_sha256, expires_at, created_at";

/** The columns `updateAppSettings` may write (names of {@link AppSettings}). */
const APP_SETTING_COLUMNS = [
  "network",
  "host_ports",
  "idle_timeout_ms",
  "reattach_grace_ms",
  "labels",
  "require_reason",
] as const;

class SqliteStore implements Store {
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    // busy_timeout first: switching to WAL needs a lock another process may hold.
    this.#db.exec("PRAGMA busy_timeout = 5000");
    this.#db.exec("PRAGMA journal_mode = WAL");
    // NORMAL is durable across application crashes in WAL mode and much faster.
    this.#db.exec("PRAGMA synchronous = NORMAL");
    this.#db.exec("PRAGMA foreign_keys = ON");
  }

  // Prepares each distinct statement once and keeps it for the store's life.
  #q(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.#q(sql).get(...params) as Row | undefined;
  }

  // A write with RETURNING, stepped to its end: `get()` stops at the first
  // row, before the implicit commit, so a commit that fails (a full disk)
  // would go unnoticed and the row be reported written. Every RETURNING
  // write goes through `all()` (here, or inline with named parameters).
  #write(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.#q(sql).all(...params)[0] as Row | undefined;
  }

  #all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.#q(sql).all(...params) as Row[];
  }

  // IMMEDIATE takes the write lock up front, so two processes wait on
  // busy_timeout instead of failing when both try to upgrade a read lock.
  #tx<T>(body: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = body();
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      // SQLite rolls back by itself on some errors (a full disk): a second
      // ROLLBACK would throw and hide the error that matters.
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  migrate(): Promise<void> {
    return settle(() => {
      this.#db.exec(SQLITE_MIGRATIONS_TABLE);
      for (const migration of MIGRATIONS) {
        this.#tx(() => {
          const sql = "SELECT 1 FROM schema_migrations WHERE version = ?";
          if (this.#get(sql, migration.version) !== undefined) return;
          this.#db.exec(migration.sqlite);
          this.#q("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .run(migration.version, Date.now());
        });
      }
    });
  }

  close(): Promise<void> {
    return settle(() => {
      this.#statements.clear();
      if (this.#db.isOpen) this.#db.close();
    });
  }

  schemaVersion(): Promise<number> {
    return settle(() =>
      Number(this.#get("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")!.v)
    );
  }

  countRunsByState(): Promise<Partial<Record<RunState, number>>> {
    return settle(() => {
      const rows = this.#all("SELECT state, count(*) AS n FROM runs GROUP BY state");
      return Object.fromEntries(rows.map((r) => [String(r.state), Number(r.n)]));
    });
  }

  createToken(row: Omit<TokenRow, "id" | "created_at">): Promise<TokenRow> {
    return settle(() =>
      toToken(
        this.#write(
          "INSERT INTO tokens (hash, role, apps, name, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *",
          row.hash,
          row.role,
          JSON.stringify(row.apps),
          row.name,
          Date.now(),
        )!,
      )
    );
  }

  tokenByHash(hash: string): Promise<TokenRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM tokens WHERE hash = ?", hash);
      return row === undefined ? null : toToken(row);
    });
  }

  countTokens(): Promise<number> {
    return settle(() => Number(this.#get("SELECT count(*) AS n FROM tokens")!.n));
  }

  listTokens(): Promise<TokenRow[]> {
    return settle(() => this.#all("SELECT * FROM tokens ORDER BY id").map(toToken));
  }

  deleteToken(id: number): Promise<boolean> {
    return settle(() => Number(this.#q("DELETE FROM tokens WHERE id = ?").run(id).changes) === 1);
  }

  revokeSession(id: string, expiresAt: number): Promise<void> {
    return settle(() => {
      this.#q("DELETE FROM revoked_sessions WHERE expires_at <= ?").run(Date.now());
      this.#q("INSERT OR IGNORE INTO revoked_sessions (id, expires_at) VALUES (?, ?)")
        .run(id, expiresAt);
    });
  }

  sessionRevoked(id: string): Promise<boolean> {
    return settle(() => {
      const sql = "SELECT 1 FROM revoked_sessions WHERE id = ? AND expires_at > ?";
      return this.#get(sql, id, Date.now()) !== undefined;
    });
  }

  createApp(name: string): Promise<AppRow> {
    return settle(() => {
      try {
        const sql =
          "INSERT INTO apps (name, created_at, network) VALUES (?, ?, 'isolated') RETURNING *";
        return toApp(this.#write(sql, name, Date.now())!);
      } catch (error) {
        if (isUniqueViolation(error)) {
          throw new ConflictError(`App "${name}" already exists`, { cause: error });
        }
        throw error;
      }
    });
  }

  appByName(name: string): Promise<AppRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM apps WHERE name = ?", name);
      return row === undefined ? null : toApp(row);
    });
  }

  appById(id: number): Promise<AppRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM apps WHERE id = ?", id);
      return row === undefined ? null : toApp(row);
    });
  }

  listApps(): Promise<AppRow[]> {
    return settle(() => this.#all("SELECT * FROM apps ORDER BY name").map(toApp));
  }

  setAppNetwork(id: number, network: NetworkMode): Promise<void> {
    return settle(() => {
      this.#q("UPDATE apps SET network = ? WHERE id = ?").run(network, id);
    });
  }

  updateAppSettings(id: number, settings: AppSettings): Promise<AppRow | null> {
    return settle(() => {
      const sets: string[] = [];
      const values: SQLInputValue[] = [];
      for (const column of APP_SETTING_COLUMNS) {
        const value = settings[column];
        if (value === undefined) continue;
        sets.push(`${column} = ?`);
        values.push(
          typeof value === "boolean"
            ? (value ? 1 : 0)
            : value !== null && typeof value === "object"
            ? JSON.stringify(value)
            : value as SQLInputValue,
        );
      }
      const row = sets.length === 0
        ? this.#get("SELECT * FROM apps WHERE id = ?", id)
        : this.#write(`UPDATE apps SET ${sets.join(", ")} WHERE id = ? RETURNING *`, ...values, id);
      return row === undefined ? null : toApp(row);
    });
  }

  destroyApp(id: number): Promise<void> {
    // Foreign keys cascade to env, releases, runs and logs, and null the app
    // on events, whose app_name keeps the timeline readable. Audit chunks
    // stay, and each run is copied to the audit trail first.
    return settle(() =>
      this.#tx(() => {
        this.#archive(this.#all("SELECT * FROM runs WHERE app_id = ?", id).map(toRun));
        this.#q("DELETE FROM apps WHERE id = ?").run(id);
      })
    );
  }

  // Copies runs to the audit trail (inside the caller's transaction).
  #archive(runs: RunRow[]): void {
    const insert = this.#q(
      "INSERT INTO audit_runs (run_id, app_name, run, at) " +
        "VALUES (?, (SELECT name FROM apps WHERE id = ?), ?, ?) ON CONFLICT (run_id) DO NOTHING",
    );
    for (const run of runs) {
      insert.run(run.id, run.app_id, archiveJson(run), (run.ended_at ?? run.created_at).getTime());
    }
  }

  getEnv(appId: number): Promise<Record<string, string>> {
    return settle(() => {
      const env: Record<string, string> = {};
      for (const row of this.#all("SELECT key, value FROM env WHERE app_id = ?", appId)) {
        env[String(row.key)] = String(row.value);
      }
      return env;
    });
  }

  updateEnv(appId: number, set: Record<string, string>, unset: string[]): Promise<void> {
    return settle(() =>
      this.#tx(() => {
        const put = this.#q(
          "INSERT INTO env (app_id, key, value) VALUES (?, ?, ?) " +
            "ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value",
        );
        for (const [key, value] of Object.entries(set)) put.run(appId, key, value);
        const remove = this.#q("DELETE FROM env WHERE app_id = ? AND key = ?");
        for (const key of unset) remove.run(appId, key);
      })
    );
  }

  createRelease(row: Omit<ReleaseRow, "id" | "version" | "created_at">): Promise<ReleaseRow> {
    // One statement holds the write lock from the MAX() read to the insert.
    return settle(() =>
      toRelease(
        this.#q(
          `INSERT INTO releases (app_id, version, sha256, size, process_types, actor, created_at)
           VALUES (:app_id,
             (SELECT coalesce(max(version), 0) + 1 FROM releases WHERE app_id = :app_id),
             :sha256, :size, :process_types, :actor, :created_at)
           RETURNING *`,
        ).all({
          app_id: row.app_id,
          sha256: row.sha256,
          size: row.size,
          process_types: JSON.stringify(row.process_types),
          actor: row.actor,
          created_at: Date.now(),
        })[0] as Row,
      )
    );
  }

  latestRelease(appId: number): Promise<ReleaseRow | null> {
    return settle(() => {
      const sql = "SELECT * FROM releases WHERE app_id = ? ORDER BY version DESC LIMIT 1";
      const row = this.#get(sql, appId);
      return row === undefined ? null : toRelease(row);
    });
  }

  releaseById(id: number): Promise<ReleaseRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM releases WHERE id = ?", id);
      return row === undefined ? null : toRelease(row);
    });
  }

  releaseShas(): Promise<string[]> {
    return settle(() =>
      this.#all("SELECT DISTINCT sha256 FROM releases").map((row) => String(row.sha256))
    );
  }

  createRun(row: NewRun): Promise<RunRow> {
    return settle(() =>
      toRun(
        this.#q(
          `INSERT INTO runs (${RUN_COLUMNS})
           VALUES (:id, :app_id,
             (SELECT coalesce(max(number), 0) + 1 FROM runs WHERE app_id = :app_id),
             :command, 'pending', :attached, :tty, :size, :release_id, :env_overrides, :uploads,
             :cols, :rows, :timeout_ms, :idle_timeout_ms, :actor, :purpose, :secret_sha256,
             :expires_at, :created_at)
           RETURNING *`,
        ).all({
          ...row,
          idle_timeout_ms: row.idle_timeout_ms ?? null,
          purpose: row.purpose ?? null,
          attached: row.attached ? 1 : 0,
          tty: row.tty ? 1 : 0,
          env_overrides: JSON.stringify(row.env_overrides),
          uploads: JSON.stringify(row.uploads),
          expires_at: millis(row.expires_at),
          created_at: Date.now(),
        })[0] as Row,
      )
    );
  }

  runById(id: string): Promise<RunRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM runs WHERE id = ?", id);
      return row === undefined ? null : toRun(row);
    });
  }

  runByNumber(appId: number, number: number): Promise<RunRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM runs WHERE app_id = ? AND number = ?", appId, number);
      return row === undefined ? null : toRun(row);
    });
  }

  listRuns(query: RunQuery): Promise<RunRow[]> {
    return settle(() => {
      const { filter, params } = runFilter(query);
      const sql = `SELECT * FROM runs ${filter} ORDER BY created_at DESC, number DESC LIMIT ?`;
      return this.#all(sql, ...params, query.limit ?? 100).map(toRun);
    });
  }

  countRuns(query: RunCount): Promise<number> {
    return settle(() => {
      const { filter, params } = runFilter(query);
      return Number(this.#get(`SELECT count(*) AS n FROM runs ${filter}`, ...params)!.n);
    });
  }

  updateRun(id: string, from: RunState[], update: RunUpdate): Promise<RunRow | null> {
    // One statement for every shape of update: a flag per column says
    // whether the update carries it, so absent fields keep their value.
    return settle(() => {
      const row = this.#q(
        `UPDATE runs SET state = :state,
           agent_id = CASE WHEN :set_agent_id THEN :agent_id ELSE agent_id END,
           exit_code = CASE WHEN :set_exit_code THEN :exit_code ELSE exit_code END,
           reason = CASE WHEN :set_reason THEN :reason ELSE reason END,
           started_at = CASE WHEN :set_started_at THEN :started_at ELSE started_at END,
           ended_at = CASE WHEN :set_ended_at THEN :ended_at ELSE ended_at END,
           expires_at = CASE WHEN :set_expires_at THEN :expires_at ELSE expires_at END,
           log_lines = CASE WHEN :set_log_lines THEN :log_lines ELSE log_lines END
         WHERE id = :id AND state IN (SELECT value FROM json_each(:from))
         RETURNING *`,
      ).all({
        id,
        from: JSON.stringify(from),
        state: update.state,
        set_agent_id: update.agent_id === undefined ? 0 : 1,
        agent_id: update.agent_id ?? null,
        set_exit_code: update.exit_code === undefined ? 0 : 1,
        exit_code: update.exit_code ?? null,
        set_reason: update.reason === undefined ? 0 : 1,
        reason: update.reason ?? null,
        set_started_at: update.started_at === undefined ? 0 : 1,
        started_at: millis(update.started_at ?? null),
        set_ended_at: update.ended_at === undefined ? 0 : 1,
        ended_at: millis(update.ended_at ?? null),
        set_expires_at: update.expires_at === undefined ? 0 : 1,
        expires_at: millis(update.expires_at ?? null),
        set_log_lines: update.log_lines === undefined ? 0 : 1,
        log_lines: update.log_lines ?? null,
      })[0] as Row | undefined;
      return row === undefined ? null : toRun(row);
    });
  }

  upsertAgent(given: NewAgent & { id?: string }): Promise<AgentRow> {
    // An agent that comes back under its name keeps the id it was given first.
    // A row read back (with its trust) may be given: trust is never set here.
    const { trust: _, ...row } = given as typeof given & { trust?: unknown };
    return settle(() =>
      toAgent(
        this.#q(
          `INSERT INTO agents (id, name, online, since, version, capacity, sandbox,
             attach_host, attach_port, attach_tls, tls_fingerprint, warnings, labels)
           VALUES (:id, :name, :online, :since, :version, :capacity, :sandbox,
             :attach_host, :attach_port, :attach_tls, :tls_fingerprint, :warnings, :labels)
           ON CONFLICT (name) DO UPDATE SET online = excluded.online, since = excluded.since,
             version = excluded.version, capacity = excluded.capacity,
             sandbox = excluded.sandbox, attach_host = excluded.attach_host,
             attach_port = excluded.attach_port, attach_tls = excluded.attach_tls,
             tls_fingerprint = excluded.tls_fingerprint, warnings = excluded.warnings,
             labels = excluded.labels
           RETURNING *`,
        ).all({
          ...row,
          labels: JSON.stringify(row.labels ?? {}),
          id: row.id ?? crypto.randomUUID(),
          online: row.online ? 1 : 0,
          since: row.since.getTime(),
          attach_tls: row.attach_tls ? 1 : 0,
          warnings: JSON.stringify(row.warnings),
        })[0] as Row,
      )
    );
  }

  enrolAgent(
    row: NewAgent & Pick<AgentRow, "trust"> & { credential_sha256: string },
  ): Promise<AgentRow | null> {
    // The WHERE of the upsert is the check: a name enrolled and not revoked
    // is not taken, even by two enrolments racing.
    return settle(() => {
      const written = this.#q(
        `INSERT INTO agents (id, name, trust, credential_sha256, online, since, version,
           capacity, sandbox, attach_host, attach_port, attach_tls, tls_fingerprint, warnings,
           labels)
         VALUES (:id, :name, :trust, :credential_sha256, :online, :since, :version,
           :capacity, :sandbox, :attach_host, :attach_port, :attach_tls, :tls_fingerprint,
           :warnings, :labels)
         ON CONFLICT (name) DO UPDATE SET trust = excluded.trust,
           credential_sha256 = excluded.credential_sha256, online = excluded.online,
           since = excluded.since, version = excluded.version, capacity = excluded.capacity,
           sandbox = excluded.sandbox, attach_host = excluded.attach_host,
           attach_port = excluded.attach_port, attach_tls = excluded.attach_tls,
           tls_fingerprint = excluded.tls_fingerprint, warnings = excluded.warnings,
           labels = excluded.labels
         WHERE agents.credential_sha256 IS NULL OR agents.trust = 'revoked'
         RETURNING *`,
      ).all({
        ...row,
        labels: JSON.stringify(row.labels ?? {}),
        id: crypto.randomUUID(),
        online: row.online ? 1 : 0,
        since: row.since.getTime(),
        attach_tls: row.attach_tls ? 1 : 0,
        warnings: JSON.stringify(row.warnings),
      })[0] as Row | undefined;
      return written === undefined ? null : toAgent(written);
    });
  }

  agentByCredential(credentialSha256: string): Promise<AgentRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM agents WHERE credential_sha256 = ?", credentialSha256);
      return row === undefined ? null : toAgent(row);
    });
  }

  setAgentTrust(id: string, trust: AgentTrust): Promise<boolean> {
    return settle(() =>
      this.#write("UPDATE agents SET trust = ? WHERE id = ? RETURNING id", trust, id) !==
        undefined
    );
  }

  ensureJoinToken(row: JoinTokenRow): Promise<void> {
    return settle(() => {
      this.#q(
        `INSERT INTO join_tokens (sha256, uses_left, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (sha256) DO NOTHING`,
      ).run(row.sha256, row.uses_left, row.expires_at?.getTime() ?? null);
    });
  }

  rotateJoinTokens(row: JoinTokenRow): Promise<void> {
    return settle(() =>
      this.#tx(() => {
        this.#q("UPDATE join_tokens SET revoked = 1").run();
        this.#q("INSERT INTO join_tokens (sha256, uses_left, expires_at) VALUES (?, ?, ?)")
          .run(row.sha256, row.uses_left, row.expires_at?.getTime() ?? null);
      })
    );
  }

  useJoinToken(sha256: string, now: Date): Promise<boolean> {
    return settle(() =>
      this.#write(
        `UPDATE join_tokens SET uses_left = uses_left - 1
         WHERE sha256 = ? AND revoked = 0 AND (expires_at IS NULL OR expires_at > ?)
           AND (uses_left IS NULL OR uses_left > 0)
         RETURNING sha256`,
        sha256,
        now.getTime(),
      ) !== undefined
    );
  }

  agentById(id: string): Promise<AgentRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM agents WHERE id = ?", id);
      return row === undefined ? null : toAgent(row);
    });
  }

  listAgents(): Promise<AgentRow[]> {
    return settle(() => this.#all("SELECT * FROM agents ORDER BY name").map(toAgent));
  }

  setAgentOnline(id: string, online: boolean, since: Date): Promise<void> {
    return settle(() => {
      this.#q("UPDATE agents SET online = ?, since = ? WHERE id = ?")
        .run(online ? 1 : 0, since.getTime(), id);
    });
  }

  claimIdempotencyKey(
    row: Omit<IdempotencyRow, "created_at">,
    expiredBefore: Date,
  ): Promise<IdempotencyRow | null> {
    return settle(() =>
      this.#tx(() => {
        this.#q("DELETE FROM idempotency_keys WHERE app_id = ? AND key = ? AND created_at < ?")
          .run(row.app_id, row.key, expiredBefore.getTime());
        const claimed = this.#q(
          "INSERT INTO idempotency_keys (app_id, key, fingerprint, run_id, created_at) " +
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (app_id, key) DO NOTHING",
        ).run(row.app_id, row.key, row.fingerprint, row.run_id, Date.now());
        if (Number(claimed.changes) === 1) return null;
        const held = this.#get(
          "SELECT * FROM idempotency_keys WHERE app_id = ? AND key = ?",
          row.app_id,
          row.key,
        )!;
        return {
          app_id: Number(held.app_id),
          key: String(held.key),
          fingerprint: String(held.fingerprint),
          run_id: String(held.run_id),
          created_at: new Date(Number(held.created_at)),
        };
      })
    );
  }

  releaseIdempotencyKey(appId: number, key: string, runId: string): Promise<void> {
    return settle(() => {
      this.#q("DELETE FROM idempotency_keys WHERE app_id = ? AND key = ? AND run_id = ?")
        .run(appId, key, runId);
    });
  }

  countRunLogs(runId: string): Promise<number> {
    return settle(() =>
      Number(this.#get("SELECT count(*) AS n FROM logs WHERE run_id = ?", runId)!.n)
    );
  }

  runLogUsage(runId: string): Promise<RunLogUsage> {
    return settle(() => {
      const row = this.#get("SELECT * FROM run_log_usage WHERE run_id = ?", runId);
      return {
        bytes: row ? Number(row.bytes) : 0,
        seq: row ? Number(row.seq) : -1,
        overLines: row ? Number(row.over_lines) : 0,
        overBytes: row ? Number(row.over_bytes) : 0,
      };
    });
  }

  saveLogOverage(runId: string, overage: LogOverage): Promise<void> {
    return settle(() => {
      // A run already gone (pruned, its app destroyed) has nothing to count.
      this.#q(
        `INSERT INTO run_log_usage (run_id, app_id, seq, over_lines, over_bytes)
           SELECT id, app_id, ?, ?, ? FROM runs WHERE id = ?
         ON CONFLICT (run_id) DO UPDATE SET seq = max(seq, excluded.seq),
           over_lines = excluded.over_lines, over_bytes = excluded.over_bytes`,
      ).run(overage.seq, overage.lines, overage.bytes, runId);
    });
  }

  appLogBytes(appId: number): Promise<number> {
    return settle(() =>
      Number(
        this.#get(
          "SELECT coalesce(sum(bytes), 0) AS n FROM run_log_usage WHERE app_id = ?",
          appId,
        )!.n,
      )
    );
  }

  trimLogBytes(
    appId: number,
    bytes: number,
    limit: number,
  ): Promise<{ lines: number; bytes: number }> {
    if (bytes <= 0) return Promise.resolve({ lines: 0, bytes: 0 });
    return settle(() =>
      this.#tx(() => {
        const oldest = this.#all(
          "SELECT id, length(CAST(line AS BLOB)) + 1 AS n FROM logs WHERE app_id = ? " +
            "ORDER BY id LIMIT ?",
          appId,
          limit,
        );
        let removed = 0;
        let last = -1;
        let lines = 0;
        for (const row of oldest) {
          if (removed >= bytes) break;
          removed += Number(row.n);
          last = Number(row.id);
          lines++;
        }
        if (lines > 0) this.#deleteLogs("app_id = ? AND id <= ?", appId, last);
        return { lines, bytes: removed };
      })
    );
  }

  /** Deletes the log lines `where` selects and takes them off their runs' usage; in a transaction. */
  #deleteLogs(where: string, ...params: SQLInputValue[]): number {
    const gone = this.#all(
      `DELETE FROM logs WHERE ${where} RETURNING run_id, length(CAST(line AS BLOB)) + 1 AS n`,
      ...params,
    );
    const perRun = new Map<string, number>();
    for (const row of gone) {
      perRun.set(String(row.run_id), (perRun.get(String(row.run_id)) ?? 0) + Number(row.n));
    }
    const less = this.#q("UPDATE run_log_usage SET bytes = bytes - ? WHERE run_id = ?");
    for (const [runId, n] of perRun) less.run(n, runId);
    return gone.length;
  }

  appendLogs(appId: number, lines: NewLog[]): Promise<number> {
    // One statement and one transaction per batch: per-line commits would cap
    // us at the disk's sync rate, and per-line statements cost more than the
    // rows (the lines go in as one JSON array, in its order).
    return settle(() => {
      const rows = lines.map((l) => [
        l.run_id,
        l.seq,
        l.ts.getTime(),
        l.source,
        l.stream,
        withoutNul(l.line),
      ]);
      const insert = this.#q(
        "INSERT INTO logs (app_id, run_id, seq, ts, source, stream, line) " +
          "SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 " +
          "FROM json_each(?) ORDER BY key ON CONFLICT (run_id, seq) DO NOTHING " +
          "RETURNING run_id, seq, length(CAST(line AS BLOB)) AS bytes",
      );
      return this.#tx(() => {
        // The lines actually added (a resent batch adds none), for what each
        // run's lines take, in the same transaction as the lines.
        const added = insert.all(appId, JSON.stringify(rows)) as Row[];
        const usage = new Map<string, { bytes: number; seq: number }>();
        for (const row of added) {
          const runId = String(row.run_id);
          const run = usage.get(runId) ?? { bytes: 0, seq: -1 };
          run.bytes += Number(row.bytes) + 1;
          run.seq = Math.max(run.seq, Number(row.seq));
          usage.set(runId, run);
        }
        const more = this.#q(
          `INSERT INTO run_log_usage (run_id, app_id, bytes, seq) VALUES (?, ?, ?, ?)
           ON CONFLICT (run_id) DO UPDATE SET bytes = bytes + excluded.bytes,
             seq = max(seq, excluded.seq)`,
        );
        for (const [runId, run] of usage) more.run(runId, appId, run.bytes, run.seq);
        return added.length;
      });
    });
  }

  readLogs(appId: number, query: LogQuery): Promise<LogRow[]> {
    return settle(() => {
      const params: SQLInputValue[] = [appId];
      let filter = "app_id = ?";
      if (query.source !== undefined) filter += " AND source = ?", params.push(query.source);
      const limit = query.limit ?? 100;
      if (query.after_id !== undefined) {
        const sql = `SELECT * FROM logs WHERE ${filter} AND id > ? ORDER BY id LIMIT ?`;
        return this.#all(sql, ...params, query.after_id, limit).map(toLog);
      }
      if (query.before_id !== undefined) filter += " AND id < ?", params.push(query.before_id);
      // The last `limit` lines, read backwards on the index and turned around.
      const sql = `SELECT * FROM logs WHERE ${filter} ORDER BY id DESC LIMIT ?`;
      return this.#all(sql, ...params, limit).map(toLog).reverse();
    });
  }

  addEvent(event: NewEvent): Promise<EventRow> {
    return settle(() =>
      toEvent(
        this.#write(
          "INSERT INTO events (app_id, app_name, actor, kind, data, at) " +
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
          event.app_id,
          event.app_name,
          event.actor,
          event.kind,
          JSON.stringify(event.data),
          (event.at ?? new Date()).getTime(),
        )!,
      )
    );
  }

  listEvents(query: { app_id?: number; limit?: number; before_id?: number }): Promise<EventRow[]> {
    return settle(() => {
      const where: string[] = [];
      const params: SQLInputValue[] = [];
      if (query.app_id !== undefined) where.push("app_id = ?"), params.push(query.app_id);
      if (query.before_id !== undefined) where.push("id < ?"), params.push(query.before_id);
      const filter = where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`;
      const sql = `SELECT * FROM events ${filter} ORDER BY id DESC LIMIT ?`;
      return this.#all(sql, ...params, query.limit ?? 100).map(toEvent);
    });
  }

  putAuditChunk(row: AuditChunkRow, options: { bytes?: number } = {}): Promise<boolean> {
    return settle(() => {
      const result = this.#q(
        "INSERT INTO audit_chunks (run_id, seq, key_id, payload, prev_hash, at, bytes) " +
          "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, seq) DO NOTHING",
      ).run(
        row.run_id,
        row.seq,
        row.key_id,
        payloadBytes(row.payload),
        row.prev_hash,
        row.at.getTime(),
        options.bytes ?? 0,
      );
      return Number(result.changes) === 1;
    });
  }

  auditChunkPage(runId: string, page: { after: number; limit: number }): Promise<AuditChunkRow[]> {
    return settle(() =>
      this.#all(
        "SELECT * FROM audit_chunks WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        runId,
        page.after,
        page.limit,
      ).map(toAuditChunk)
    );
  }

  auditChunk(runId: string, seq: number): Promise<AuditChunkRow | null> {
    return settle(() => {
      const row = this.#get("SELECT * FROM audit_chunks WHERE run_id = ? AND seq = ?", runId, seq);
      return row === undefined ? null : toAuditChunk(row);
    });
  }

  listRecordedSessions(query: SessionQuery): Promise<RecordedSession[]> {
    return settle(() => {
      const rows = this.#all(
        `SELECT r.*, (SELECT COALESCE(SUM(c.bytes), 0) FROM audit_chunks c WHERE c.run_id = r.id)
           AS audit_bytes
         FROM runs r
         WHERE r.app_id = ? AND r.attached = 1 AND r.started_at IS NOT NULL AND r.created_at >= ?
           AND (? IS NULL OR r.actor = ?) AND (? IS NULL OR r.number < ?)
         ORDER BY r.number DESC LIMIT ?`,
        query.app_id,
        query.since.getTime(),
        query.actor ?? null,
        query.actor ?? null,
        query.before_number ?? null,
        query.before_number ?? null,
        query.limit,
      );
      return rows.map((row) => ({ run: toRun(row), bytes: Number(row.audit_bytes ?? 0) }));
    });
  }

  lastAuditSeq(runId: string): Promise<number> {
    return settle(() => {
      const row = this.#get(
        "SELECT COALESCE(MAX(seq), -1) AS n FROM audit_chunks WHERE run_id = ?",
        runId,
      );
      return Number(row?.n ?? -1);
    });
  }

  auditRecordedBytes(runId: string): Promise<number> {
    return settle(() => {
      const row = this.#get(
        "SELECT COALESCE(SUM(bytes), 0) AS n FROM audit_chunks WHERE run_id = ?",
        runId,
      );
      return Number(row?.n ?? 0);
    });
  }

  auditChunks(runId: string): Promise<AuditChunkRow[]> {
    return settle(() =>
      this.#all("SELECT * FROM audit_chunks WHERE run_id = ? ORDER BY seq", runId)
        .map(toAuditChunk)
    );
  }

  archivedRun(runId: string): Promise<ArchivedRun | null> {
    return settle(() => {
      const row = this.#get("SELECT app_name, run FROM audit_runs WHERE run_id = ?", runId);
      return row === undefined ? null : fromArchive(String(row.app_name), row.run);
    });
  }

  listArchivedRuns(appName: string, limit: number): Promise<ArchivedRun[]> {
    return settle(() =>
      this.#all(
        "SELECT app_name, run FROM audit_runs WHERE app_name = ? ORDER BY at DESC LIMIT ?",
        appName,
        limit,
      ).map((row) => fromArchive(String(row.app_name), row.run))
    );
  }

  pruneLogs(appId: number, prune: LogPrune): Promise<number> {
    return settle(() =>
      this.#tx(() => {
        const floor = this.#get(
          "SELECT id FROM logs WHERE app_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
          appId,
          prune.keepLines,
        );
        // Ids follow arrival, which follows time closely enough: looking at the
        // oldest lines by id needs no index on ts (which every insert would pay).
        return this.#deleteLogs(
          `id IN (SELECT id FROM logs WHERE app_id = ? ORDER BY id LIMIT ?) AND (ts < ? OR id <= ?)`,
          appId,
          prune.limit,
          prune.before.getTime(),
          floor === undefined ? 0 : Number(floor.id),
        );
      })
    );
  }

  putArtifact(row: ArtifactRow): Promise<boolean> {
    return settle(() => {
      // A run already gone (pruned, its app destroyed) keeps nothing.
      const result = this.#q(
        `INSERT INTO run_artifacts (run_id, name, sha256, size, refused, created_at)
           SELECT id, ?, ?, ?, ?, ? FROM runs WHERE id = ?
         ON CONFLICT (run_id, name) DO UPDATE SET sha256 = excluded.sha256,
           size = excluded.size, refused = excluded.refused, created_at = excluded.created_at`,
      ).run(row.name, row.sha256, row.size, row.refused, row.created_at.getTime(), row.run_id);
      return Number(result.changes) > 0;
    });
  }

  listArtifacts(runId: string): Promise<ArtifactRow[]> {
    return settle(() =>
      this.#all("SELECT * FROM run_artifacts WHERE run_id = ? ORDER BY name", runId).map((row) => ({
        run_id: String(row.run_id),
        name: String(row.name),
        sha256: row.sha256 === null ? null : String(row.sha256),
        size: Number(row.size),
        refused: row.refused === null ? null : String(row.refused),
        created_at: new Date(Number(row.created_at)),
      }))
    );
  }

  artifactSummaries(
    runIds: string[],
  ): Promise<Map<string, { files: number; bytes: number; refused: number }>> {
    return settle(() => {
      const rows = this.#all(
        `SELECT run_id, count(sha256) AS files, coalesce(sum(CASE WHEN sha256 IS NULL THEN 0 ELSE size END), 0) AS bytes,
           count(refused) AS refused
         FROM run_artifacts WHERE run_id IN (SELECT value FROM json_each(?)) GROUP BY run_id`,
        JSON.stringify(runIds),
      );
      return new Map(rows.map((row) => [String(row.run_id), {
        files: Number(row.files),
        bytes: Number(row.bytes),
        refused: Number(row.refused),
      }]));
    });
  }

  pruneRuns(before: Date, limit: number): Promise<number> {
    return settle(() =>
      this.#tx(() => {
        const runs = this.#q(
          `SELECT * FROM runs WHERE created_at < :before
             AND coalesce(ended_at, created_at) < :before
             AND state NOT IN (SELECT value FROM json_each(:live))
           ORDER BY created_at LIMIT :limit`,
        ).all({ before: before.getTime(), live: JSON.stringify(LIVE_STATES), limit }).map((row) =>
          toRun(row as Row)
        );
        this.#archive(runs);
        const remove = this.#q("DELETE FROM runs WHERE id = ?");
        for (const run of runs) remove.run(run.id);
        return runs.length;
      })
    );
  }

  pruneAudit(before: Date, limit: number): Promise<number> {
    return settle(() =>
      this.#tx(() => {
        const cutoff = before.getTime();
        const runIds = this.#all(
          `SELECT DISTINCT run_id FROM audit_chunks a WHERE at < ?
             AND NOT EXISTS (SELECT 1 FROM audit_chunks b WHERE b.run_id = a.run_id AND b.at >= ?)
           LIMIT ?`,
          cutoff,
          cutoff,
          limit,
        ).map((row) => String(row.run_id));
        const chunks = this.#q("DELETE FROM audit_chunks WHERE run_id = ?");
        for (const id of runIds) chunks.run(id);
        // Metadata of runs that had no recording (detached ones) ends the same way.
        const kept = this.#q(
          "DELETE FROM audit_runs WHERE run_id IN (SELECT run_id FROM audit_runs WHERE at < ? LIMIT ?)",
        ).run(cutoff, limit);
        return runIds.length + Number(kept.changes);
      })
    );
  }

  pruneReleases(keep: number, limit: number): Promise<number> {
    return settle(() => {
      const result = this.#q(
        `DELETE FROM releases WHERE id IN (
           SELECT r.id FROM releases r
           WHERE r.version <= (SELECT max(version) FROM releases m WHERE m.app_id = r.app_id) - ?
             AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.release_id = r.id)
           LIMIT ?)`,
      ).run(keep, limit);
      return Number(result.changes);
    });
  }

  blobReferences(keepReleases: number): Promise<Set<string>> {
    return settle(() => {
      const shas = new Set<string>();
      const recent = this.#all(
        `SELECT sha256 FROM releases r
         WHERE r.version > (SELECT max(version) FROM releases m WHERE m.app_id = r.app_id) - ?`,
        keepReleases,
      );
      for (const row of recent) shas.add(String(row.sha256));
      const live = this.#all(
        `SELECT releases.sha256 AS slug, runs.uploads FROM runs
         JOIN releases ON releases.id = runs.release_id
         WHERE runs.state IN (SELECT value FROM json_each(?))`,
        JSON.stringify(LIVE_STATES),
      );
      for (const row of live) {
        shas.add(String(row.slug));
        for (const upload of JSON.parse(String(row.uploads)) as RunRow["uploads"]) {
          shas.add(upload.sha256);
        }
      }
      const artifacts = this.#all(
        "SELECT DISTINCT sha256 FROM run_artifacts WHERE sha256 IS NOT NULL",
      );
      for (const row of artifacts) shas.add(String(row.sha256));
      return shas;
    });
  }
}

// Payloads are stored as their bytes, a quarter smaller than their base64
// (the time of a recorded session goes into these inserts); a payload that
// is not base64 (none the audit service writes) is kept as text.
function payloadBytes(payload: string): Uint8Array | string {
  try {
    const bytes = Uint8Array.fromBase64(payload, { lastChunkHandling: "strict" });
    // Only when reading it back gives the very same text (no whitespace, no other form).
    return bytes.length === payload.length / 4 * 3 - padding(payload) ? bytes : payload;
  } catch {
    return payload;
  }
}

function padding(payload: string): number {
  return payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0;
}
