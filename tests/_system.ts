/**
 * End-to-end test support: a real server and a real agent (real sandboxes,
 * real sockets) in this process, and the real CLI as a subprocess.
 * @module
 */
import { type SandboxKind } from "../protocol/mod.ts";
import { startAgent } from "../agent/mod.ts";
import type { AgentMetrics } from "../agent/metrics.ts";
import { type RunningServer, type ServerConfig, startServer } from "../server/mod.ts";
import { createLogger } from "../util/log.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A running system for one test. */
export interface TestSystem extends AsyncDisposable {
  server: RunningServer;
  url: string;
  token: string;
  dir: string;
  attachPort: number;
  /** Runs the CLI; resolves with its exit code and output. */
  cli(
    args: string[],
    options?: { stdin?: Uint8Array | string; env?: Record<string, string> },
  ): Promise<CliResult>;
  /** A JSON API call with the admin token. */
  api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  /** Env for a CLI subprocess started by the test itself. */
  cliEnv(): Record<string, string>;
}

/** What a CLI invocation did. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  bytes: Uint8Array;
}

/** Options of a test system. */
export interface SystemOptions {
  config?: Partial<ServerConfig>;
  sandbox?: SandboxKind;
  /** Deploy examples/demo as app "demo" (default true). */
  demo?: boolean;
  maxRuns?: number;
  /** A `--database` URL; SQLite in the temp dir by default. */
  database?: string;
  /** Time a client has to send its secret (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Record attached sessions (default true). */
  record?: boolean;
  /** PEM certificate and key: the agent's attach port speaks TLS. */
  tls?: { cert: string; key: string };
  /** Metrics for the agent to keep. */
  agentMetrics?: AgentMetrics;
  /** The agent's attach port on 127.0.0.1 (default a free one). */
  attachPort?: number;
  /** The host the agent tells clients to attach to (e.g. a proxy's address). */
  advertise?: string;
  /** Where the server's and agent's log lines go, every level (default: nowhere). */
  logSink?: (line: string) => void;
  /** PostgreSQL: wake other servers by NOTIFY (default true; false to measure what it costs). */
  notify?: boolean;
}

/** Starts server + agent on free ports in a temp dir. */
export async function startSystem(options: SystemOptions = {}): Promise<TestSystem> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-e2e-" });
  const log = options.logSink
    ? createLogger("test", { sink: options.logSink, level: "debug" })
    : createLogger("test", { level: "silent" });
  const server = await startServer({
    http: "127.0.0.1:0",
    dataDir: `${dir}/server`,
    log,
    // The system's own agent takes runs at once; tests of approval start their own agents.
    config: { autoApprove: true, ...options.config },
    ...(options.database ? { database: options.database } : {}),
    ...(options.notify === false ? { notify: false } : {}),
  });
  const agent = await startAgent({
    server: server.url,
    joinToken: server.joinToken,
    name: "test-agent",
    attach: { hostname: "127.0.0.1", port: options.attachPort ?? 0 },
    ...(options.advertise ? { advertise: options.advertise } : {}),
    dataDir: `${dir}/agent`,
    sandbox: options.sandbox ?? "bwrap",
    maxRuns: options.maxRuns ?? 20,
    log,
    ...(options.handshakeTimeoutMs ? { handshakeTimeoutMs: options.handshakeTimeoutMs } : {}),
    ...(options.record === false ? { record: false } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.agentMetrics ? { metrics: options.agentMetrics } : {}),
  });
  const token = server.newAdminToken!;
  const env = () => ({ ONEOFF_SERVER: server.url, ONEOFF_TOKEN: token, HOME: dir, NO_COLOR: "1" });
  const system: TestSystem = {
    server,
    url: server.url,
    token,
    dir,
    attachPort: agent.attachPort,
    cliEnv: env,
    async cli(args, opts = {}) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", MAIN, ...args],
        env: { ...env(), ...opts.env },
        stdin: opts.stdin === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Output is read while stdin is written, or a large input would deadlock.
      const output = child.output();
      if (opts.stdin !== undefined) {
        const writer = child.stdin.getWriter();
        await writer.write(
          typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
        );
        await writer.close();
      }
      const out = await output;
      const decoder = new TextDecoder();
      return {
        code: out.code,
        stdout: decoder.decode(out.stdout),
        stderr: decoder.decode(out.stderr),
        bytes: out.stdout,
      };
    },
    async api(method, path, body) {
      const res = await fetch(`${server.url}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const json = await res.json();
      if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    async [Symbol.asyncDispose]() {
      await agent.close();
      await server.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  if (options.demo ?? true) {
    const created = await system.cli(["apps", "create", "demo"]);
    if (created.code !== 0) throw new Error(created.stderr);
    const deployed = await system.cli([
      "deploy",
      "-a",
      "demo",
      new URL("../examples/demo", import.meta.url).pathname,
    ]);
    if (deployed.code !== 0) throw new Error(deployed.stderr);
  }
  return system;
}
