/**
 * The server's Prometheus metrics (`GET /metrics`) and readiness
 * (`GET /readyz`). Labels are states, methods, route patterns and statuses:
 * never an app name, an env key or a command, which is why neither route
 * needs a token.
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { Hono } from "hono";
import { type ApiError, RUN_STATES } from "../protocol/mod.ts";
import { errorMessage } from "../util/log.ts";
import { LATEST_SCHEMA_VERSION, type Store } from "./store/mod.ts";

/** Seconds, from a millisecond to a minute: store calls, requests, run starts. */
const LATENCY_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  60,
];

/** Where the scrape-time gauges read from. */
export interface MetricSources {
  store: Store;
  /** Agents connected to this server process. */
  agentsOnline(): number;
  /** Relays joined through this server process, and the bytes they hold. */
  relays?(): { active: number; queuedBytes: number };
  /** Watchers of running sessions (`oneoff watch`, the live run page) on this server process. */
  watchers?(): number;
}

/** Every metric the server keeps, in one registry. */
export class ServerMetrics {
  /** The registry `/metrics` renders. */
  readonly registry: Registry = new Registry();
  /** HTTP requests by method, route pattern and status. */
  readonly httpRequests: Counter<"method" | "route" | "status">;
  /** HTTP request duration by method and route pattern. */
  readonly httpSeconds: Histogram<"method" | "route">;
  /** Duration of each Store call, by method and outcome. */
  readonly storeSeconds: Histogram<"method" | "outcome">;
  /** From a run's creation to its process running. */
  readonly runStartSeconds: Histogram;
  /** Detached output lines newly stored. */
  readonly logLinesIngested: Counter;
  /** Lines of batches not stored, by why. */
  readonly logLinesDropped: Counter<"reason">;
  /** Bytes of encrypted audit chunks stored. */
  readonly auditBytes: Counter;
  /** Bytes relayed between CLIs and agents, by direction (`in` = to the process). */
  readonly relayBytes: Counter<"direction">;
  /** Relays ended, by outcome (`closed` cleanly, or `failed`). */
  readonly relays: Counter<"outcome">;
  #sources: MetricSources | undefined;

  constructor() {
    const registers = [this.registry];
    this.httpRequests = new Counter({
      name: "oneoff_http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status",
      labelNames: ["method", "route", "status"] as const,
      registers,
    });
    this.httpSeconds = new Histogram({
      name: "oneoff_http_request_duration_seconds",
      help: "Time to answer an HTTP request (to its headers for streams), by route pattern",
      labelNames: ["method", "route"] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.storeSeconds = new Histogram({
      name: "oneoff_store_query_duration_seconds",
      help: "Duration of each call to the store (SQLite or PostgreSQL), by method and outcome",
      labelNames: ["method", "outcome"] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.runStartSeconds = new Histogram({
      name: "oneoff_run_start_seconds",
      help: "From a run's creation to its process running (attached runs include the wait " +
        "for their client)",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.logLinesIngested = new Counter({
      name: "oneoff_log_lines_ingested_total",
      help: "Detached output lines stored (each line once, resent batches not counted again)",
      registers,
    });
    this.logLinesDropped = new Counter({
      name: "oneoff_log_lines_dropped_total",
      help: "Lines of log batches not stored, by reason (e.g. the run is gone or not the agent's)",
      labelNames: ["reason"] as const,
      registers,
    });
    this.auditBytes = new Counter({
      name: "oneoff_audit_bytes_recorded_total",
      help: "Bytes of encrypted audit chunks stored",
      registers,
    });
    this.relayBytes = new Counter({
      name: "oneoff_relay_bytes_total",
      help: "Bytes relayed through the server between CLIs and agents, by direction " +
        "(in = towards the process)",
      labelNames: ["direction"] as const,
      registers,
    });
    this.relays = new Counter({
      name: "oneoff_relays_total",
      help: "Relayed attach sessions ended, by outcome (closed cleanly, or failed)",
      labelNames: ["outcome"] as const,
      registers,
    });
    const sources = () => this.#sources;
    new Gauge({
      name: "oneoff_relays_active",
      help: "Relayed attach sessions joined through this server process",
      registers,
      collect() {
        this.set(sources()?.relays?.().active ?? 0);
      },
    });
    new Gauge({
      name: "oneoff_relay_queued_bytes",
      help: "Bytes the relays of this server process hold (bounded by the legs' credit windows)",
      registers,
      collect() {
        this.set(sources()?.relays?.().queuedBytes ?? 0);
      },
    });
    new Gauge({
      name: "oneoff_runs",
      help: "Runs in the store, by state",
      labelNames: ["state"] as const,
      registers,
      async collect() {
        const store = sources()?.store;
        if (!store) return;
        const counts = await store.countRunsByState();
        for (const state of RUN_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
    new Gauge({
      name: "oneoff_watchers",
      help: "Watchers of running attached sessions on this server process",
      registers,
      collect() {
        this.set(sources()?.watchers?.() ?? 0);
      },
    });
    new Gauge({
      name: "oneoff_agents_online",
      help: "Agents connected to this server process",
      registers,
      collect() {
        this.set(sources()?.agentsOnline() ?? 0);
      },
    });
  }

  /** Says where the scrape-time gauges read from (once the app is built). */
  watch(sources: MetricSources): void {
    this.#sources = sources;
  }
}

/**
 * Times every call of `store` into `metrics.storeSeconds`, labelled by
 * method only. Three facts are also counted here, because only a committed
 * write makes them true, whichever code path wrote it: log lines newly
 * stored, audit bytes stored, and a run's start (its `updateRun` to
 * `running`).
 */
export function instrumentStore(store: Store, metrics: ServerMetrics): Store {
  // Every method is wrapped, however many the Store interface grows to: an
  // explicit forwarder for each of its 40 methods would be a layer that only
  // forwards, and would drift from the interface.
  const timed: Record<string, unknown> = {};
  for (const method of methodNames(store)) {
    const call = (store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>)[
      method
    ]!.bind(store);
    timed[method] = async (...args: unknown[]) => {
      const end = metrics.storeSeconds.startTimer({ method });
      try {
        const result = await call(...args);
        end({ outcome: "ok" });
        observeWrite(metrics, method, args, result);
        return result;
      } catch (error) {
        end({ outcome: "error" });
        throw error;
      }
    };
  }
  return timed as unknown as Store;
}

function methodNames(store: Store): string[] {
  const names = new Set<string>();
  for (
    let o = Object.getPrototypeOf(store);
    o && o !== Object.prototype;
    o = Object.getPrototypeOf(o)
  ) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (
        name !== "constructor" &&
        typeof (store as unknown as Record<string, unknown>)[name] === "function"
      ) {
        names.add(name);
      }
    }
  }
  return [...names];
}

function observeWrite(metrics: ServerMetrics, method: string, args: unknown[], result: unknown) {
  if (method === "appendLogs" && typeof result === "number") {
    metrics.logLinesIngested.inc(result);
  } else if (method === "putAuditChunk" && result === true) {
    const payload = (args[0] as { payload?: unknown }).payload;
    if (typeof payload === "string") metrics.auditBytes.inc(base64Bytes(payload));
  } else if (method === "updateRun" && result !== null && typeof result === "object") {
    const run = result as { state?: unknown; created_at?: unknown; started_at?: unknown };
    const update = args[2] as { started_at?: unknown } | undefined;
    // The write that set started_at is the transition; later updates keep it.
    if (
      run.state === "running" && update?.started_at instanceof Date &&
      run.created_at instanceof Date
    ) {
      const seconds = (update.started_at.getTime() - run.created_at.getTime()) / 1000;
      metrics.runStartSeconds.observe(Math.max(0, seconds));
    }
  }
}

function base64Bytes(text: string): number {
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return Math.floor(text.length * 3 / 4) - padding;
}

/** `GET /readyz` and `GET /metrics`: no token, nothing named. */
export function observabilityRoutes(store: Store, metrics: ServerMetrics): Hono {
  const app = new Hono();
  app.get("/readyz", async (c) => {
    let message: string;
    try {
      const version = await store.schemaVersion();
      if (version === LATEST_SCHEMA_VERSION) return c.json({ ready: true });
      message = `The database schema is at version ${version}, this server needs ` +
        `${LATEST_SCHEMA_VERSION}: start a server of this version to migrate it`;
    } catch (error) {
      message = `The database cannot be queried: ${errorMessage(error)}`;
    }
    return c.json<ApiError>({ error: { code: "not_ready", message } }, 503);
  });
  app.get("/metrics", async (c) => {
    const text = await metrics.registry.metrics();
    return c.body(text, 200, { "content-type": metrics.registry.contentType });
  });
  return app;
}
