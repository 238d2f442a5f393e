/**
 * Test support for the run engine and the ingest: a server context on a
 * fresh SQLite store (no HTTP app), an app with a release, and in-process
 * fake agents that record what they are sent.
 * @module
 */
import { registerJoinToken } from "./join_tokens.ts";
import {
  type AgentMessage,
  DEFAULT_SIZES,
  type RunSpec,
  type RunState,
  type ServerMessage,
} from "../protocol/mod.ts";
import { createLogger } from "../util/log.ts";
import type { ConnectedAgent } from "./agent_directory.ts";
import { AuditService } from "./audit/mod.ts";
import { BlobStore } from "./blob_store.ts";
import type { ServerConfig, ServerContext } from "./context.ts";
import type { RunRequest } from "./run_engine.ts";
import { Signals } from "./signals.ts";
import type { AppRow, ReleaseRow } from "./store/mod.ts";
import { openStore } from "./store/open.ts";

/** A context with one app ("demo") and its first release; dispose it to clean up. */
export interface EngineFixture extends AsyncDisposable {
  ctx: ServerContext;
  app: AppRow;
  release: ReleaseRow;
}

/** Creates a context on a temp dir with `overrides` applied to the settings. */
export async function engineFixture(
  overrides: Partial<ServerConfig> = {},
): Promise<EngineFixture> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-engine-test-" });
  const store = await openStore(`sqlite:${dir}/oneoff.db`);
  const config: ServerConfig = {
    dataDir: dir,
    maxSlugBytes: 1024 * 1024,
    maxUploadBytes: 1024 * 1024,
    maxSlugUnpackedBytes: 64 * 1024 * 1024,
    maxTimeoutMs: 24 * 3600_000,
    maxRunsPerApp: 10,
    queueTimeoutMs: 60_000,
    attachWindowMs: 60_000,
    idleTimeoutMs: 60_000,
    maxDurationMs: 3600_000,
    sizes: { ...DEFAULT_SIZES },
    joinToken: "join_test",
    joinTokenFile: null,
    joinTokenUses: null,
    joinTokenTtlMs: null,
    autoApprove: true,
    agentGraceMs: 30_000,
    logsSettleMs: 60_000,
    heartbeatMs: 5_000,
    auditKeyFile: `${dir}/audit.key`,
    ...overrides,
  };
  const ctx: ServerContext = {
    config,
    store,
    blobs: new BlobStore(`${dir}/blobs`),
    log: createLogger("test", { level: "silent" }),
    signals: new Signals(),
    audit: await AuditService.open(store, config.auditKeyFile),
  };
  await registerJoinToken(store, config);
  const app = await store.createApp("demo");
  const release = await store.createRelease({
    app_id: app.id,
    sha256: "ab".repeat(32),
    size: 1234,
    process_types: { web: "node server.js" },
    actor: "alice",
  });
  return {
    ctx,
    app,
    release,
    async [Symbol.asyncDispose]() {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A detached run request, with `changes` applied. */
export function runRequest(changes: Partial<RunRequest> = {}): RunRequest {
  return {
    command: "echo hello",
    attached: false,
    tty: false,
    cols: 80,
    rows: 24,
    size: "M",
    env: {},
    timeoutMs: 3600_000,
    uploads: [],
    term: "xterm-256color",
    ...changes,
  };
}

/** An agent without a socket: `send` records, `open = false` makes it fail. */
export class FakeAgent implements ConnectedAgent {
  id: string;
  name: string;
  approved = true;
  capacity: number;
  endpoint = { host: "127.0.0.1", port: 5000, tls: false };
  active: Set<string>;
  lastSeen = 0;
  draining = false;
  /** Everything the server sent it, oldest first. */
  sent: ServerMessage[] = [];
  open = true;

  constructor(id: string, options: { capacity?: number; running?: string[] } = {}) {
    this.id = id;
    this.name = id;
    this.capacity = options.capacity ?? 4;
    this.active = new Set(options.running ?? []);
  }

  send(msg: ServerMessage): boolean {
    if (!this.open) return false;
    this.sent.push(msg);
    return true;
  }

  close(): void {
    this.open = false;
  }

  /** The specs of the runs it was asked to start. */
  started(): RunSpec[] {
    return this.sent.flatMap((m) => m.type === "start_run" ? [m.spec] : []);
  }
}

/** An agent's `run_state` report on a run. */
export function stateReport(
  runId: string,
  state: RunState,
  at: number,
  exitCode?: number,
): AgentMessage {
  return exitCode === undefined
    ? { type: "run_state", runId, state, at }
    : { type: "run_state", runId, state, at, exitCode };
}
