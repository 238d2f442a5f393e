/**
 * `oneoff agent`: joins the server, caches slugs, runs sandboxes and serves
 * the attach port.
 * @module
 */
import { resolve as resolvePath } from "node:path";
import { type AgentMessage, type SandboxKind, VERSION } from "../protocol/mod.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { AttachListener } from "./attach_listener.ts";
import { raiseFileLimit } from "./_fd_limit.ts";
import { ControlChannel } from "./control.ts";

export { JoinRefusedError } from "./control.ts";
import { Recorder } from "./recorder.ts";
import { Runner } from "./runner.ts";
import { createSandbox, SANDBOX_UID } from "./sandbox/mod.ts";
import { SlugCache } from "./slug_cache.ts";
import type { AgentMetrics } from "./metrics.ts";

/** Options of `oneoff agent`. */
export interface AgentOptions {
  /** The server's base URL, e.g. http://10.0.0.2:8080. */
  server: string;
  joinToken: string;
  name: string;
  /** `HOST:PORT` of the attach listener. */
  attach: { hostname: string; port: number };
  /** The host clients should connect to; default the listener's or this host's address. */
  advertise?: string;
  dataDir: string;
  sandbox: SandboxKind;
  maxRuns: number;
  tls?: { cert: string; key: string };
  /** Time a client has to send its secret (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Record attached sessions (default true; false only for the recording-overhead benchmark). */
  record?: boolean;
  /** Disk budget of the slug cache. */
  cacheBytes?: number;
  log?: Logger;
  /** Prometheus metrics to keep (`--metrics`); none by default. */
  metrics?: AgentMetrics;
}

/** A running agent. */
export interface RunningAgent {
  name: string;
  attachPort: number;
  warnings: string[];
  /** Rejects with a `JoinRefusedError` if the server refuses the agent on a reconnect. */
  refused: Promise<never>;
  close(): Promise<void>;
}

function advertisedHost(listen: string): string {
  if (listen !== "0.0.0.0" && listen !== "::") return listen;
  for (const iface of Deno.networkInterfaces()) {
    if (iface.family === "IPv4" && !iface.address.startsWith("127.")) return iface.address;
  }
  return "127.0.0.1";
}

/** Starts an agent; resolves once the server has welcomed it. */
export async function startAgent(given: AgentOptions): Promise<RunningAgent> {
  // Sandboxes are set up from other working directories: paths must be absolute.
  const options = { ...given, dataDir: resolvePath(given.dataDir) };
  const log = options.log ?? createLogger("agent");
  await Deno.mkdir(`${options.dataDir}/work`, { recursive: true, mode: 0o700 });
  await Deno.chmod(options.dataDir, 0o700);
  const files = await raiseFileLimit();
  const warnings: string[] = [];
  if (files !== null && files < 5 * options.maxRuns + 64) {
    warnings.push(
      `The open-file limit is ${files}: about ${
        Math.floor((files - 64) / 5)
      } attached sessions fit; raise it (LimitNOFILE) for --max-runs ${options.maxRuns}`,
    );
  }
  const created = await createSandbox(options.sandbox, { workDir: `${options.dataDir}/work` });
  const { metrics } = options;
  const sandbox = metrics
    ? (await import("./metrics.ts")).instrumentSandbox(created, metrics)
    : created;
  warnings.push(...sandbox.warnings);
  for (const warning of warnings) log.warn(warning);
  const base = options.server.replace(/\/+$/, "");
  const fetchBlob = async (sha256: string) => {
    const res = await fetch(`${base}/agent/blobs/${sha256}`, {
      headers: {
        authorization: `Bearer ${options.joinToken}`,
        "user-agent": `oneoff-agent/${VERSION} (deno ${Deno.version.deno}; ${Deno.build.os})`,
      },
    });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new Error(`Cannot download blob "${sha256}" from the server: HTTP ${res.status}`);
    }
    return res.body;
  };
  const slugs = new SlugCache({
    dir: `${options.dataDir}/slugs`,
    maxDiskBytes: options.cacheBytes ?? 10 * 1024 ** 3,
    maxExtractBytes: 8 * 1024 ** 3,
    fetch: fetchBlob,
    // As root, the slug belongs to the sandbox's uid: inside, /app is the
    // app's own. The cache stays out of reach under the 0700 data dir.
    ...(Deno.uid() === 0 ? { owner: { uid: SANDBOX_UID, gid: SANDBOX_UID } } : {}),
  });
  const listener = await AttachListener.listen({
    ...options.attach,
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.handshakeTimeoutMs ? { handshakeTimeoutMs: options.handshakeTimeoutMs } : {}),
    ...(metrics ? { onHandshake: metrics.handshake.bind(metrics) } : {}),
  });
  // The channel's handlers use `runner`, made next; none runs before start().
  const channel: ControlChannel = new ControlChannel(base, {
    hello: () => ({
      type: "hello",
      token: options.joinToken,
      name: options.name,
      version: VERSION,
      capacity: options.maxRuns,
      sandbox: sandbox.name,
      attach: {
        host: options.advertise ?? advertisedHost(listener.hostname),
        port: listener.port,
        tls: listener.tls,
        ...(listener.tlsFingerprint ? { tlsFingerprint: listener.tlsFingerprint } : {}),
      },
      running: runner.running(),
      ended: [],
      warnings,
    }),
    running: () => runner.running(),
    message: (msg) => {
      if (msg.type === "start_run") runner.start(msg.spec);
      else if (msg.type === "stop_run") runner.stop(msg.runId);
      else if (msg.type === "resize") runner.resize(msg.runId, msg.cols, msg.rows);
      else if (msg.type === "logs_ack") runner.ackLogs(msg.runId, msg.batch);
      else if (msg.type === "audit_ack") runner.ackAudit(msg.runId, msg.seq);
    },
    connected: () => runner.reconnected(),
  }, log.child("control"));
  const send = (msg: AgentMessage) => {
    metrics?.sent(msg);
    return channel.send(msg);
  };
  const auditDir = `${options.dataDir}/audit`;
  await Deno.mkdir(auditDir, { recursive: true, mode: 0o700 });
  const leftovers = await Recorder.recover(auditDir, send);
  const runner = new Runner({
    sandbox,
    slugs,
    listener,
    send,
    fetchBlob,
    workDir: `${options.dataDir}/work`,
    auditDir,
    leftovers,
    ...(options.record === false ? { record: false } : {}),
    log: log.child("runner"),
  });
  metrics?.watch({
    runsActive: () => runner.running().length,
    slugCacheBytes: () => slugs.bytes(),
  });
  try {
    await channel.start();
  } catch (err) {
    channel.close();
    await listener.close();
    throw err;
  }
  log.info("agent ready", {
    name: options.name,
    attach: `${listener.hostname}:${listener.port}`,
    sandbox: sandbox.name,
  });
  return {
    name: options.name,
    attachPort: listener.port,
    warnings,
    refused: channel.refused,
    async close() {
      channel.close();
      await runner.close();
      await listener.close();
    },
  };
}
