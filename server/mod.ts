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
import { openStore } from "./store/open.ts";
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

/** Starts the server; resolves once it listens. */
export async function startServer(given: ServerOptions): Promise<RunningServer> {
  const options = { ...given, dataDir: resolvePath(given.dataDir) };
  const log = options.log ?? createLogger("server");
  const lifecycleSettings = { ...DEFAULT_LIFECYCLE, ...options.lifecycle };
  checkLifecycle(lifecycleSettings);
  await Deno.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const metrics = new ServerMetrics();
  const store = instrumentStore(
    await openStore(options.database ?? `sqlite:${options.dataDir}/oneoff.db`),
    metrics,
  );
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
  const database = options.database ?? "";
  // With PostgreSQL the blobs live in the database: any server serves any
  // of them, and the data dir only caches them.
  const shared = /^postgres(ql)?:\/\//.test(database) ? new PostgresBlobs(database) : null;
  const ctx: ServerContext = {
    config,
    store,
    blobs: new BlobStore(`${options.dataDir}/blobs`, shared ? { shared } : {}),
    log,
    signals: new Signals(),
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
  log.info("server listening", { url });
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
      await store.close();
      log.info("server stopped");
    },
  };
}
