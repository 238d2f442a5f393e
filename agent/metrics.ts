/**
 * The agent's Prometheus metrics, served on `--metrics ADDR` (off by
 * default; the agent imports this module only then). Labels are outcomes,
 * refusal reasons and the sandbox kind: never an app, a command or a secret.
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { type AgentMessage, ATTACH_REFUSALS } from "../protocol/mod.ts";
import type { Sandbox } from "./sandbox/mod.ts";

/** Seconds, from a millisecond to half a minute. */
const SPAWN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30];

/** Where the scrape-time gauges read from, as far as the agent has them. */
export interface AgentSources {
  runsActive(): number;
  slugCacheBytes?(): number;
  /** Unacknowledged detached output on disk; a hook for the durable spool. */
  spoolBytes?(): number;
}

/** Every metric the agent keeps, in one registry. */
export class AgentMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: Registry = new Registry();
  /** Attach handshakes by outcome, and refusals by reason. */
  readonly handshakes: Counter<"outcome" | "reason">;
  /** Detached output lines sent to the server (resends included). */
  readonly logLinesSent: Counter;
  /** Time to start the sandbox tool for one run. */
  readonly spawnSeconds: Histogram<"sandbox" | "outcome">;
  #sources: AgentSources | undefined;

  constructor() {
    const registers = [this.registry];
    this.handshakes = new Counter({
      name: "oneoff_agent_attach_handshakes_total",
      help: "Handshakes on the attach port: accepted, or refused with a reason",
      labelNames: ["outcome", "reason"] as const,
      registers,
    });
    this.logLinesSent = new Counter({
      name: "oneoff_agent_log_lines_shipped_total",
      help: "Detached output lines sent to the server (a resent batch counts again)",
      registers,
    });
    this.spawnSeconds = new Histogram({
      name: "oneoff_agent_sandbox_spawn_seconds",
      help: "Time to start the sandbox tool of a run, by sandbox and outcome",
      labelNames: ["sandbox", "outcome"] as const,
      buckets: SPAWN_BUCKETS,
      registers,
    });
    const sources = () => this.#sources;
    new Gauge({
      name: "oneoff_agent_runs_active",
      help: "Runs this agent has (starting, waiting for their client, or running)",
      registers,
      collect() {
        this.set(sources()?.runsActive() ?? 0);
      },
    });
    new Gauge({
      name: "oneoff_agent_slug_cache_bytes",
      help: "Extracted slugs kept in the cache, in bytes",
      registers,
      collect() {
        this.set(sources()?.slugCacheBytes?.() ?? 0);
      },
    });
    new Gauge({
      name: "oneoff_agent_spool_bytes",
      help: "Unacknowledged detached output kept on disk, in bytes",
      registers,
      collect() {
        this.set(sources()?.spoolBytes?.() ?? 0);
      },
    });
  }

  /** Says where the scrape-time gauges read from. */
  watch(sources: AgentSources): void {
    this.#sources = sources;
  }

  /** Counts one handshake: accepted, or refused with the line the client got. */
  handshake(outcome: "accepted" | "refused", refusal?: string): void {
    if (outcome === "accepted") this.handshakes.inc({ outcome, reason: "" });
    else this.handshakes.inc({ outcome, reason: refusalKey(refusal) });
  }

  /** Counts what a message to the server carries. */
  sent(msg: AgentMessage): void {
    if (msg.type === "logs") this.logLinesSent.inc(msg.records.length);
  }
}

// The label is the refusal's key (`unknown`, `expired`, ...), not its text.
function refusalKey(text: string | undefined): string {
  const found = Object.entries(ATTACH_REFUSALS).find(([, t]) => t === text);
  return found ? found[0] : "other";
}

/** The sandbox, with each spawn timed. */
export function instrumentSandbox(sandbox: Sandbox, metrics: AgentMetrics): Sandbox {
  return {
    name: sandbox.name,
    warnings: sandbox.warnings,
    async spawn(spec) {
      const end = metrics.spawnSeconds.startTimer({ sandbox: sandbox.name });
      try {
        const process = await sandbox.spawn(spec);
        end({ outcome: "ok" });
        return process;
      } catch (error) {
        end({ outcome: "error" });
        throw error;
      }
    },
  };
}

/** A metrics listener: `GET /metrics`, anything else 404. */
export interface MetricsServer {
  hostname: string;
  port: number;
  close(): Promise<void>;
}

/** Serves `metrics` on `addr`; resolves once it listens. */
export async function serveMetrics(
  addr: { hostname: string; port: number },
  metrics: AgentMetrics,
): Promise<MetricsServer> {
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    ...addr,
    onListen: (a) => resolve(a as Deno.NetAddr),
  }, async (req) => {
    if (new URL(req.url).pathname !== "/metrics" || req.method !== "GET") {
      return new Response("Not found: the agent serves GET /metrics only\n", { status: 404 });
    }
    const text = await metrics.registry.metrics();
    return new Response(text, { headers: { "content-type": metrics.registry.contentType } });
  });
  const bound = await promise;
  return {
    hostname: bound.hostname,
    port: bound.port,
    async close() {
      await server.shutdown();
    },
  };
}
