/**
 * `oneoff server`: opens the store, bootstraps the admin token and serves
 * the API, the agents' channel and the dashboard.
 * @module
 */
import { resolve as resolvePath } from "node:path";
import {
  ATTACH_WINDOW_MS,
  DEFAULT_SIZES,
  IDLE_TIMEOUT_MS,
  MAX_DURATION_MS,
} from "../protocol/mod.ts";
import { parseAddr } from "../util/addr.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { createApp } from "./app.ts";
import { newToken, sha256Hex } from "./auth.ts";
import { AuditService } from "./audit/mod.ts";
import { BlobStore } from "./blob_store.ts";
import { PostgresBlobs } from "./blob_postgres.ts";
import type { ServerConfig, ServerContext } from "./context.ts";
import { registerJoinToken } from "./join_tokens.ts";
import { checkTimeouts } from "./run_limits.ts";
import {
  checkLifecycle,
  DEFAULT_LIFECYCLE,
  Lifecycle,
  type LifecycleSettings,
} from "./lifecycle.ts";
import { Signals } from "./signals.ts";
import { openStore, sqlitePath } from "./store/open.ts";
import { type Cluster, localCluster, openPostgresCluster } from "./cluster/mod.ts";
import { auditKeys, checkSharedKeys, type SharedKey } from "./key_checks.ts";
import { lockSqlite } from "./single_server.ts";
import { loadSessionKey } from "./dashboard/session.ts";
import { AttachSecrets } from "./_attach_secret.ts";
import { loadKeyring } from "./audit/keyring.ts";
import { instrumentStore, ServerMetrics } from "./metrics.ts";

export type { ServerConfig } from "./context.ts";

/** Options of `oneoff server`. */
export interface ServerOptions {
  /** `HOST:PORT` to listen on; port 0 picks a free one. */
  http: string;
  dataDir: string;
  /** `sqlite:PATH` or `postgres://...`; default SQLite in the data dir. */
  database?: string;
  /** Overrides of the default settings. */
  config?: Partial<ServerConfig>;
  /** PEM certificate and key: the API is served over HTTPS. */
  tls?: { cert: string; key: string };
  /** Retention and garbage collection (server/lifecycle.ts); defaults otherwise. */
  lifecycle?: Partial<LifecycleSettings>;
  log?: Logger;
  /** PostgreSQL: signals reach the other servers by NOTIFY (default true; false: this one only). */
  notify?: boolean;
  /** The URL the other servers of a PostgreSQL store reach this one at (relays); default its own. */
  advertiseUrl?: string;
}

/** A running server. */
export interface RunningServer {
  url: string;
  /** The admin token if this start created it (printed once), else null. */
  newAdminToken: string | null;
  /** The join token as the server started: a rotation changes `ctx.config.joinToken`. */
  joinToken: string;
  /** The file the join token was read from or written to; null when it was given. */
  joinTokenFile: string | null;
  ctx: ServerContext;
  close(): Promise<void>;
}

async function readOrCreateSecret(path: string, make: () => string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const value = make();
  await Deno.writeTextFile(path, value + "\n", { mode: 0o600, createNew: true });
  return value;
}

// Every server of one store must hold the same keys (server/key_checks.ts):
// each is made now, if missing, so that its check is known from the start.
async function checkKeys(cluster: Cluster, config: ServerConfig): Promise<void> {
  if (!cluster.shared) return;
  const dir = config.dataDir;
  const read = (path: string) => Deno.readTextFile(path).then((text) => text.trim());
  await new AttachSecrets(`${dir}/attach.key`).secret("check");
  const keys: SharedKey[] = [
    { name: "join token", file: config.joinTokenFile ?? "--join-token", key: config.joinToken },
    {
      name: "session key",
      file: `${dir}/session.key`,
      key: await loadSessionKey(`${dir}/session.key`),
    },
    { name: "attach key", file: `${dir}/attach.key`, key: await read(`${dir}/attach.key`) },
    ...await loadKeyring(config.auditKeyFile).then(() => auditKeys(config.auditKeyFile)),
  ];
  await checkSharedKeys(cluster, keys, [{ prefix: "audit key ", file: config.auditKeyFile }]);
}

/** Starts the server; resolves once it listens. */
export async function startServer(given: ServerOptions): Promise<RunningServer> {
  const options = { ...given, dataDir: resolvePath(given.dataDir) };
  const log = options.log ?? createLogger("server");
  const lifecycleSettings = { ...DEFAULT_LIFECYCLE, ...options.lifecycle };
  checkLifecycle(lifecycleSettings);
  await Deno.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const metrics = new ServerMetrics();
  const database = options.database ?? `sqlite:${options.dataDir}/oneoff.db`;
  const sqlite = sqlitePath(database);
  const sqliteLock = sqlite ? await lockSqlite(sqlite) : null;
  let cluster: Cluster | undefined;
  let store;
  try {
    store = instrumentStore(await openStore(database), metrics);
    cluster = sqlite === null
      ? await openPostgresCluster(database, {
        // A hold on an agent counts while its server has said so within three heartbeats.
        staleMs: 3 * (options.config?.heartbeatMs ?? 5_000) + 1000,
        log,
      })
      : localCluster();
  } catch (err) {
    await store?.close();
    sqliteLock?.close();
    throw err;
  }
  const joinTokenFile = options.config?.joinToken ? null : `${options.dataDir}/join.token`;
  const joinToken = options.config?.joinToken ||
    await readOrCreateSecret(`${options.dataDir}/join.token`, () => newToken("join"));
  const config: ServerConfig = {
    dataDir: options.dataDir,
    maxSlugBytes: 2 * 1024 ** 3,
    maxUploadBytes: 1024 ** 3,
    maxSlugUnpackedBytes: 8 * 1024 ** 3,
    maxTimeoutMs: MAX_DURATION_MS,
    maxRunsPerApp: 10,
    queueTimeoutMs: 5 * 60_000,
    attachWindowMs: ATTACH_WINDOW_MS,
    idleTimeoutMs: IDLE_TIMEOUT_MS,
    maxDurationMs: MAX_DURATION_MS,
    sizes: { ...DEFAULT_SIZES },
    agentGraceMs: 30_000,
    logsSettleMs: 60_000,
    heartbeatMs: 5_000,
    auditKeyFile: `${options.dataDir}/audit.key`,
    joinTokenUses: null,
    joinTokenTtlMs: null,
    autoApprove: false,
    ...options.config,
    joinToken,
    joinTokenFile,
  };
  checkTimeouts(config);
  try {
    await checkKeys(cluster, config);
  } catch (err) {
    await cluster.close();
    await store.close();
    sqliteLock?.close();
    throw err;
  }
  await registerJoinToken(store, config);
  let newAdminToken: string | null = null;
  if (await store.countTokens() === 0) {
    newAdminToken = newToken();
    await store.createToken({
      hash: sha256Hex(newAdminToken),
      role: "admin",
      apps: [],
      name: "admin",
    });
    const path = `${options.dataDir}/admin.token`;
    await Deno.writeTextFile(path, newAdminToken + "\n", { mode: 0o600 });
    await Deno.chmod(path, 0o600);
  }
  // With PostgreSQL the blobs live in the database: any server serves any
  // of them, and the data dir only caches them.
  const shared = /^postgres(ql)?:\/\//.test(database) ? new PostgresBlobs(database) : null;
  const ctx: ServerContext = {
    config,
    store,
    blobs: new BlobStore(`${options.dataDir}/blobs`, shared ? { shared } : {}),
    log,
    signals: new Signals(
      cluster.transport && options.notify !== false ? { transport: cluster.transport } : {},
    ),
    cluster,
    audit: await AuditService.open(store, config.auditKeyFile, {
      ...(config.auditQuotaBytes !== undefined ? { quotaBytes: config.auditQuotaBytes } : {}),
      log,
    }),
    metrics,
  };
  if (shared) {
    // Before serving: a file the database lacks would look like a stale cache entry.
    const imported = await ctx.blobs.importFiles();
    if (imported.blobs > 0) log.info("blob files stored in PostgreSQL", { ...imported });
    for (const path of imported.skipped) {
      log.warn("blob file does not match its name, left out of PostgreSQL", { path });
    }
  }
  const server = createApp(ctx);
  const lifecycle = new Lifecycle(ctx, { settings: lifecycleSettings });
  const { hostname, port } = parseAddr(options.http);
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const http = Deno.serve({
    hostname,
    port,
    ...(options.tls ?? {}),
    onListen: (addr) => resolve(addr as Deno.NetAddr),
    onError: (err) => {
      log.error("request failed", { error: String(err) });
      return new Response("Internal server error", { status: 500 });
    },
  }, server.app.fetch);
  const addr = await listening;
  const shownHost = addr.hostname === "0.0.0.0" ? "127.0.0.1" : addr.hostname;
  const scheme = options.tls ? "https" : "http";
  const url = `${scheme}://${shownHost.includes(":") ? `[${shownHost}]` : shownHost}:${addr.port}`;
  log.info("server listening", { url, server: cluster.serverId });
  await cluster.advertise(options.advertiseUrl ?? url);
  lifecycle.start();
  return {
    url,
    newAdminToken,
    joinToken,
    joinTokenFile,
    ctx,
    // Graceful: agents' channels close (they keep what they have until
    // the next server acks it), requests in flight finish (long polls are
    // woken), then the store closes cleanly.
    async close() {
      server.close();
      await lifecycle.close();
      ctx.signals.close();
      await http.shutdown();
      await ctx.blobs.close();
      await cluster.close();
      await store.close();
      sqliteLock?.close();
      log.info("server stopped");
    },
  };
}
