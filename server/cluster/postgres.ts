/**
 * The servers of one PostgreSQL database: signals and agents' control
 * messages go by NOTIFY on channels named after the schema (installations
 * sharing a database do not hear each other), the periodic work goes to
 * whoever holds an advisory lock on its own connection (a dead server's
 * connection closes and the lock goes with it), and each server writes
 * which agents it holds, with a time, so that none is taken for lost while
 * connected elsewhere.
 * @module
 */
import postgres from "postgres";
import { decodeServerMessage, type ServerMessage } from "../../protocol/mod.ts";
import type { Logger } from "../../util/log.ts";
import { errorMessage } from "../../util/log.ts";
import type { SignalTransport } from "../signals.ts";
import type { Cluster } from "./mod.ts";

/** How a PostgreSQL cluster member is set up. */
export interface PostgresClusterOptions {
  /** Silence after which a server's hold on an agent (or the server itself) no longer counts. */
  staleMs: number;
  /** How often the leadership is tried for and this server's row refreshed (default 1000 ms). */
  leaseCheckMs?: number;
  log: Logger;
}

type Sql = postgres.Sql<Record<string, never>>;

/** How long a control message sent through another server waits for its word. */
const DELIVERY_TIMEOUT_MS = 2000;

/** Joins the servers of the database at `url`; resolves once LISTEN is on and leadership was tried. */
export async function openPostgresCluster(
  url: string,
  options: PostgresClusterOptions,
): Promise<Cluster> {
  const sql: Sql = postgres(url, { max: 3, onnotice: () => {} });
  // The lock's connection must live as long as the server: postgres.js ends a
  // connection after 30–60 min by default (max_lifetime), which would hand the
  // leadership around (and briefly to two servers) every half hour.
  const lock: Sql = postgres(url, {
    max: 1,
    onnotice: () => {},
    max_lifetime: null,
  });
  try {
    const [row] = await sql<{ schema: string; key: number }[]>`
      select coalesce(current_schema(), '') as schema,
             hashtext('oneoff-leader:' || coalesce(current_schema(), '')) as key`;
    const cluster = new PostgresCluster({ main: sql, lock }, row!.schema, row!.key, options);
    await cluster.start();
    return cluster;
  } catch (err) {
    await sql.end({ timeout: 1 });
    await lock.end({ timeout: 1 });
    throw err;
  }
}

// Channel names are identifiers of at most 63 bytes: a hash of the schema.
function channelBase(schema: string): string {
  let h = 0x811c9dc5;
  for (const c of new TextEncoder().encode(schema)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return `oneoff_${h.toString(16)}`;
}

class PostgresCluster implements Cluster {
  readonly serverId = crypto.randomUUID();
  readonly shared = true;
  readonly transport: SignalTransport;
  #sql: Sql;
  #lockKey: number;
  #signalChannel: string;
  #agentChannel: string;
  #options: PostgresClusterOptions;
  #lockSql: Sql;
  #leaderPid: number | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #wakes: ((key: string) => void)[] = [];
  #deliveries: ((agentId: string, msg: ServerMessage) => boolean)[] = [];
  /** Control messages sent, by id, waiting for the holder's word. */
  #awaiting = new Map<string, () => void>();
  #url = "";
  #closed = false;
  #ticking = false;
  #unlisten: (() => Promise<void>)[] = [];

  constructor(
    sql: { main: Sql; lock: Sql },
    schema: string,
    lockKey: number,
    options: PostgresClusterOptions,
  ) {
    this.#sql = sql.main;
    this.#lockSql = sql.lock;
    this.#lockKey = lockKey;
    this.#options = options;
    const base = channelBase(schema);
    this.#signalChannel = `${base}_signal`;
    this.#agentChannel = `${base}_agent`;
    this.transport = {
      publish: (key) => this.#notify(this.#signalChannel, `${this.serverId} ${key}`),
      subscribe: (wake) => this.#wakes.push(wake),
    };
  }

  get #log(): Logger {
    return this.#options.log.child("cluster");
  }

  async start(): Promise<void> {
    const signals = await this.#sql.listen(this.#signalChannel, (payload) => {
      const space = payload.indexOf(" ");
      if (payload.slice(0, space) === this.serverId) return;
      const key = payload.slice(space + 1);
      for (const wake of this.#wakes) wake(key);
    });
    const agents = await this.#sql.listen(this.#agentChannel, (payload) => {
      this.#received(payload);
    });
    this.#unlisten.push(() => signals.unlisten(), () => agents.unlisten());
    await this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.#options.leaseCheckMs ?? 1000);
  }

  #received(payload: string): void {
    let parsed: { from?: unknown; to?: unknown; msg?: unknown; id?: unknown; acked?: unknown };
    try {
      parsed = JSON.parse(payload);
    } catch {
      return;
    }
    if (parsed.from === this.serverId) return;
    if (typeof parsed.acked === "string") {
      this.#awaiting.get(parsed.acked)?.();
      return;
    }
    if (typeof parsed.to !== "string" || typeof parsed.id !== "string") return;
    const decoded = decodeServerMessage(JSON.stringify(parsed.msg));
    if (!decoded.ok) {
      this.#log.warn("malformed control message from another server dropped", {
        error: decoded.error,
      });
      return;
    }
    let passed = false;
    for (const deliver of this.#deliveries) passed = deliver(parsed.to, decoded.value) || passed;
    if (passed) {
      this.#notify(this.#agentChannel, JSON.stringify({ from: this.serverId, acked: parsed.id }));
    }
  }

  #notify(channel: string, payload: string): void {
    if (this.#closed) return;
    this.#sql.notify(channel, payload).catch((err) =>
      this.#log.warn("notify failed", { channel, error: errorMessage(err) })
    );
  }

  // Leadership on a reserved connection: held as long as it lives. Each
  // tick also says this server is alive (its URL, for relays).
  async #tick(): Promise<void> {
    if (this.#closed || this.#ticking) return;
    this.#ticking = true;
    try {
      await this.#lead();
    } finally {
      this.#ticking = false;
    }
  }

  // The lock lives as long as the session of a one-connection pool: a new
  // backend pid means the connection was lost (and the lock with it).
  async #lead(): Promise<void> {
    try {
      if (this.#leaderPid === null) {
        const [row] = await this.#lockSql<{ held: boolean; pid: number }[]>`
          select pg_try_advisory_lock(${this.#lockKey}) as held, pg_backend_pid() as pid`;
        if (row?.held) {
          this.#leaderPid = row.pid;
          this.#log.info("this server leads the periodic work", { server: this.serverId });
        }
      } else {
        const [row] = await this.#lockSql<{ pid: number }[]>`select pg_backend_pid() as pid`;
        if (row?.pid !== this.#leaderPid) {
          this.#leaderPid = null;
          this.#log.warn("the leadership was lost with its connection", { server: this.serverId });
        }
      }
    } catch (err) {
      this.#log.warn("leadership check failed", { error: errorMessage(err) });
      this.#leaderPid = null;
    }
    if (this.#url) {
      await this.#sql`
        insert into cluster_servers (id, url, seen_at) values (${this.serverId}, ${this.#url}, now())
        on conflict (id) do update set url = excluded.url, seen_at = now()`
        .catch((err) => this.#log.warn("server row refresh failed", { error: errorMessage(err) }));
    }
  }

  isLeader(): boolean {
    return this.#leaderPid !== null;
  }

  // Every server hears it; the one holding the agent passes it on and says
  // so, so that the caller knows (a reattach secret must be there before
  // its client dials, a stop with no taker ends the run here).
  async sendElsewhere(agentId: string, msg: ServerMessage): Promise<boolean> {
    if (this.#closed || !await this.heldElsewhere(agentId)) return false;
    const id = crypto.randomUUID();
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const timer = setTimeout(() => resolve(false), DELIVERY_TIMEOUT_MS);
    this.#awaiting.set(id, () => resolve(true));
    try {
      // NOTIFY payloads stop at 8000 bytes: control messages are small ones.
      await this.#sql.notify(
        this.#agentChannel,
        JSON.stringify({ from: this.serverId, to: agentId, id, msg }),
      );
      return await promise;
    } finally {
      clearTimeout(timer);
      this.#awaiting.delete(id);
    }
  }

  onAgentMessage(deliver: (agentId: string, msg: ServerMessage) => boolean): void {
    this.#deliveries.push(deliver);
  }

  async touchAgents(agentIds: string[]): Promise<void> {
    if (agentIds.length === 0 || this.#closed) return;
    await this.#sql`
      insert into cluster_presence (agent_id, server_id, seen_at)
      select id, ${this.serverId}, now() from unnest(${agentIds}::text[]) as id
      on conflict (agent_id) do update set server_id = excluded.server_id, seen_at = now()`;
  }

  async releaseAgent(agentId: string): Promise<void> {
    if (this.#closed) return;
    await this.#sql`
      delete from cluster_presence where agent_id = ${agentId} and server_id = ${this.serverId}`;
  }

  async heldElsewhere(agentId: string): Promise<boolean> {
    const rows = await this.#sql`
      select 1 from cluster_presence
      where agent_id = ${agentId} and server_id <> ${this.serverId}
        and seen_at > now() - make_interval(secs => ${this.#options.staleMs / 1000})`;
    return rows.length > 0;
  }

  async serverUrl(serverId: string): Promise<string | null> {
    const [row] = await this.#sql<{ url: string }[]>`
      select url from cluster_servers
      where id = ${serverId}
        and seen_at > now() - make_interval(secs => ${this.#options.staleMs / 1000})`;
    return row?.url ?? null;
  }

  async advertise(url: string): Promise<void> {
    this.#url = url;
    await this.#tick();
  }

  async keyCheck(name: string, check: string): Promise<string> {
    await this.#sql`
      insert into key_checks (name, check_value) values (${name}, ${check})
      on conflict (name) do nothing`;
    const [row] = await this.#sql<{ check_value: string }[]>`
      select check_value from key_checks where name = ${name}`;
    return row!.check_value;
  }

  async keyChecks(): Promise<Map<string, string>> {
    const rows = await this.#sql<{ name: string; check_value: string }[]>`
      select name, check_value from key_checks`;
    return new Map(rows.map((row) => [row.name, row.check_value]));
  }

  async setKeyCheck(name: string, check: string): Promise<void> {
    await this.#sql`
      insert into key_checks (name, check_value) values (${name}, ${check})
      on conflict (name) do update set check_value = excluded.check_value`;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const unlisten of this.#unlisten) await unlisten().catch(() => {});
    await this.#sql`delete from cluster_servers where id = ${this.serverId}`.catch(() => {});
    await this.#sql`delete from cluster_presence where server_id = ${this.serverId}`
      .catch(() => {});
    if (this.#leaderPid !== null) {
      await this.#lockSql`select pg_advisory_unlock(${this.#lockKey})`.catch(() => {});
    }
    this.#leaderPid = null;
    await this.#lockSql.end({ timeout: 2 });
    await this.#sql.end({ timeout: 2 });
  }
}
