/**
 * `oneoff agent`: joins the server, caches slugs, runs sandboxes and serves
 * the attach port.
 * @module
 */
import { absolutePath } from "../util/path.ts";
import { type AgentMessage, type SandboxKind, VERSION } from "../protocol/mod.ts";
import { createLogger, errorMessage, type Logger } from "../util/log.ts";
import { httpArtifactSink } from "./_artifact_http.ts";
import { leftArtifacts } from "./artifacts.ts";
import { AttachListener } from "./attach_listener.ts";
import { raiseFileLimit } from "./_fd_limit.ts";
import { ControlChannel } from "./control.ts";
import { dialRelayBack } from "./relay_dial.ts";

export { JoinRefusedError } from "./control.ts";
import { SpoolBudget } from "./log_shipper.ts";
import { Outcomes } from "./outcomes.ts";
import { Recorder } from "./recorder.ts";
import { Runner } from "./runner.ts";
import { createSandbox, removeLeftovers, SANDBOX_UID } from "./sandbox/mod.ts";
import { SlugCache } from "./slug_cache.ts";
import { recoverSpools } from "./spool.ts";

/** Default bound of the log spool: unacknowledged detached output on disk, over all runs. */
export const DEFAULT_SPOOL_MAX_BYTES = 1024 ** 3;
/** Default time detached runs of a stopping agent have to finish. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** How long a stopping agent waits for the server to acknowledge the last logs and ends. */
const FLUSH_TIMEOUT_MS = 5_000;
import type { AgentMetrics } from "./metrics.ts";

/** The agent's credential, in its data dir (0600). */
export const CREDENTIAL_FILE = "agent.credential";

async function readCredential(path: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path)).trim() || undefined;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** Options of `oneoff agent`. */
export interface AgentOptions {
  /** The server's base URL, e.g. http://10.0.0.2:8080. */
  server: string;
  /** Enrols the agent when its data dir has no credential yet; not needed after. */
  joinToken?: string;
  name: string;
  /** `HOST:PORT` of the attach listener. */
  attach: { hostname: string; port: number };
  /** The host clients should connect to; default the listener's or this host's address. */
  advertise?: string;
  dataDir: string;
  sandbox: SandboxKind;
  maxRuns: number;
  /** `--labels`: what apps may require of this agent. */
  labels?: Record<string, string>;
  tls?: { cert: string; key: string };
  /** Time a client has to send its secret (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Record attached sessions (default true; false only for the recording-overhead benchmark). */
  record?: boolean;
  /** Disk budget of the slug cache. */
  cacheBytes?: number;
  /**
   * Bound on unacknowledged detached output on disk, over all runs (default
   * 1 GiB); past it the runs' output is not read (their processes pause on
   * the full pipe) until the server acknowledges some. Nothing is dropped.
   */
  spoolMaxBytes?: number;
  /** How long detached runs may finish when the agent is stopped (default 30 s). */
  drainTimeoutMs?: number;
  /** SIGTERM → SIGKILL grace when a run is stopped (default 10 s). */
  stopGraceMs?: number;
  /** First resend of an unacknowledged log batch or run end (default 5 s). */
  resendMs?: number;
  /** How long a run's artifact is tried again while the server cannot be reached (default 2 min). */
  artifactRetryMs?: number;
  /** Seconds of server silence, in heartbeats, before the channel counts as dead (default 3). */
  silentHeartbeats?: number;
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
  /**
   * Stops gracefully: tells the server (`draining`), takes no more runs, lets
   * runs finish for the drain timeout, then stops them (`stopped`, "The
   * agent was stopped"), waits a while for the server to acknowledge the
   * last logs and ends, and closes.
   */
  drain(): Promise<void>;
  /** Stops at once: runs are killed; what is unacknowledged stays on disk for the next start. */
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
  const options = { ...given, dataDir: absolutePath(given.dataDir) };
  const log = options.log ?? createLogger("agent");
  await Deno.mkdir(`${options.dataDir}/work`, { recursive: true, mode: 0o700 });
  await Deno.chmod(options.dataDir, 0o700);
  // Filled in once the channel exists; nothing is sent before start().
  let send: (msg: AgentMessage) => boolean = () => false;
  const { outcomes, started, interrupted } = await Outcomes.open(options.dataDir, {
    send: (msg) => send(msg),
    // Read before the leftovers go: the run's end says its files were lost with it.
    interruptedNote: (runId) => leftArtifacts(`${options.dataDir}/work`, runId),
    ...(options.resendMs !== undefined ? { resendMs: options.resendMs } : {}),
  });
  // An earlier process of this agent died with runs: its sandboxes died with it, their traces go.
  const leftover = await removeLeftovers(`${options.dataDir}/work`, started);
  for (const failure of leftover.failures) {
    log.error("cannot remove what an earlier agent process left", {
      error: failure instanceof Error ? failure.message : String(failure),
    });
  }
  if (interrupted.length > 0) {
    log.warn("runs of an earlier agent process ended with it", { runs: interrupted });
  }
  // The agent's own credential, given once by the server when the join
  // token enrolled it; from then on it is what the agent presents.
  const credentialFile = `${options.dataDir}/${CREDENTIAL_FILE}`;
  let credential = await readCredential(credentialFile);
  if (!credential && !options.joinToken) {
    throw new Error(
      `No credential in "${credentialFile}": give --join-token to enrol this agent`,
    );
  }
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
        authorization: `Bearer ${credential ?? ""}`,
        "user-agent": `oneoff-agent/${VERSION} (deno ${Deno.version.deno}; ${Deno.build.os})`,
      },
    });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new Error(`Cannot download blob "${sha256}" from the server: HTTP ${res.status}`);
    }
    return res.body;
  };
  const artifacts = httpArtifactSink(base, () => credential, options.artifactRetryMs);
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
    log: log.child("attach"),
  });
  // The channel's handlers use `runner`, made next; none runs before start().
  const channel: ControlChannel = new ControlChannel(
    base,
    {
      hello: () => ({
        type: "hello",
        ...(credential ? { credential } : { token: options.joinToken ?? "" }),
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
        ended: outcomes.pending(),
        warnings,
        ...(options.labels && Object.keys(options.labels).length ? { labels: options.labels } : {}),
      }),
      running: () => runner.running(),
      message: (msg) => {
        if (msg.type === "enrolled") {
          // Written before the welcome is handled: a crash right after still finds it.
          Deno.writeTextFileSync(credentialFile, msg.credential + "\n", { mode: 0o600 });
          Deno.chmodSync(credentialFile, 0o600);
          credential = msg.credential;
          log.info("enrolled: the credential is kept for the next connections", {
            agentId: msg.agentId,
            file: credentialFile,
          });
        } else if (msg.type === "start_run") runner.start(msg.spec);
        else if (msg.type === "stop_run") runner.stop(msg.runId);
        else if (msg.type === "resize") runner.resize(msg.runId, msg.cols, msg.rows);
        else if (msg.type === "watchers") {
          runner.watchers(msg.runId, msg.count, {
            ...(msg.joined !== undefined ? { joined: msg.joined } : {}),
            ...(msg.left !== undefined ? { left: msg.left } : {}),
            ...(msg.server !== undefined ? { server: msg.server } : {}),
          });
        } else if (msg.type === "reattach") {
          runner.reattach(msg.runId, msg.secretSha256, msg.expiresAt);
        } else if (msg.type === "open_relay") {
          dialRelayBack(msg, {
            server: base,
            credential: () => credential,
            listener,
            log: log.child("relay"),
          });
        } else if (msg.type === "logs_ack") runner.ackLogs(msg.runId, msg.batch);
        else if (msg.type === "logs_nack") {
          log.warn("the server could not store a log batch: it goes again", {
            run: msg.runId,
            batch: msg.batch,
            reason: msg.reason,
          });
          runner.nackLogs(msg.runId, msg.batch);
        } else if (msg.type === "audit_ack") runner.ackAudit(msg.runId, msg.seq);
        else if (msg.type === "audit_nack") runner.nackAudit(msg.runId);
        else if (msg.type === "state_ack") outcomes.ack(msg.runId);
      },
      connected: () => {
        outcomes.sentInHello();
        runner.reconnected();
      },
    },
    log.child("control"),
    {
      ...(options.silentHeartbeats !== undefined
        ? { silentHeartbeats: options.silentHeartbeats }
        : {}),
    },
  );
  send = (msg: AgentMessage) => {
    metrics?.sent(msg);
    return channel.send(msg);
  };
  const auditDir = `${options.dataDir}/audit`;
  await Deno.mkdir(auditDir, { recursive: true, mode: 0o700 });
  const leftovers = await Recorder.recover(auditDir, send);
  const logDir = `${options.dataDir}/logs`;
  await Deno.mkdir(logDir, { recursive: true, mode: 0o700 });
  const logLeftovers = await recoverSpools(logDir);
  const budget = new SpoolBudget(
    options.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES,
    log.child("logs"),
  );
  const runner = new Runner({
    sandbox,
    slugs,
    listener,
    send,
    fetchBlob,
    artifacts,
    workDir: `${options.dataDir}/work`,
    auditDir,
    leftovers,
    outcomes,
    logDir,
    budget,
    logLeftovers,
    ...(options.resendMs !== undefined ? { logResendMs: options.resendMs } : {}),
    ...(options.stopGraceMs !== undefined ? { stopGraceMs: options.stopGraceMs } : {}),
    ...(options.record === false ? { record: false } : {}),
    log: log.child("runner"),
  });
  metrics?.watch({
    runsActive: () => runner.running().length,
    slugCacheBytes: () => slugs.bytes(),
    spoolBytes: () => budget.usedBytes,
  });
  try {
    await channel.start();
  } catch (err) {
    channel.close();
    await runner.close();
    await listener.close();
    throw err;
  }
  log.info("agent ready", {
    name: options.name,
    attach: `${listener.hostname}:${listener.port}`,
    sandbox: sandbox.name,
  });
  // Slugs of releases no run asks for any more go after a week idle, even under the budget.
  const sweepSlugs = () =>
    slugs.sweepIdle().then(
      (removed) => removed > 0 && log.info("idle slugs removed", { removed }),
      (err) => log.warn("slug cache sweep failed", { error: errorMessage(err) }),
    );
  const slugSweep = setInterval(sweepSlugs, 3600_000);
  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= (async () => {
      clearInterval(slugSweep);
      // Killed runs end first (their ends go to disk), then the channel closes.
      await runner.close();
      channel.close();
      await listener.close();
    })();
    return closing;
  }
  return {
    name: options.name,
    attachPort: listener.port,
    warnings,
    refused: channel.refused,
    async drain() {
      log.info("agent draining: no more runs; the running ones may finish", {
        runs: runner.running().length,
      });
      await runner.drain(options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
      const logs = await runner.logsDelivered(FLUSH_TIMEOUT_MS);
      const ends = await outcomes.settled(FLUSH_TIMEOUT_MS);
      if (!logs || !ends) {
        log.warn("stopping with output or run ends the server has not acknowledged", {
          detail: "they stay on disk and are delivered when this agent starts again",
        });
      }
      await close();
    },
    close,
  };
}
