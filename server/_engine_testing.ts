/**
 * Test support for the run engine and the ingest: a server context on a
 * fresh SQLite store (no HTTP app), an app with a release, and in-process
 * fake agents that record what they are sent.
 * @module
 */
import type { AgentMessage, RunSpec, RunState, ServerMessage } from "../protocol/mod.ts";
import type { ConnectedAgent } from "./agent_directory.ts";
import type { ServerConfig, ServerContext } from "./context.ts";
import type { RunRequest } from "./run_engine.ts";
import type { AppRow, ReleaseRow } from "./store/mod.ts";
import { testContext } from "./_testing.ts";

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
  const { ctx, dir } = await testContext("oneoff-engine-test-", {
    maxSlugBytes: 1024 * 1024,
    maxUploadBytes: 1024 * 1024,
    agentGraceMs: 30_000,
    ...overrides,
  });
  const { store } = ctx;
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
