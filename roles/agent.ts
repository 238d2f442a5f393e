/**
 * `oneoff agent`.
 * @module
 */
import { startAgent } from "../agent/mod.ts";
import { parseDuration, UsageError } from "../cli/_io.ts";
import { parseLabels } from "../protocol/mod.ts";
import { parseAddr } from "../util/addr.ts";
import { createLogger } from "../util/log.ts";
import { roleConfig } from "./_config.ts";
import { parseBytes, readTls, sandboxKind } from "./_flags.ts";
import { checkOnly, hostReady, serveAgentMetrics } from "./_agent_checks.ts";

/** A duration flag (`500ms`, `30s`, `2m`; bare numbers are seconds), named in its error. */
function flagDuration(flag: string, value: string): number {
  try {
    return parseDuration(value);
  } catch {
    throw new UsageError(`Invalid ${flag} "${value}": give e.g. 30s, 500ms or 2m`);
  }
}

/**
 * Runs an agent until SIGINT/SIGTERM, which drain it: no more runs, running
 * ones may finish for `--drain-timeout`, then are stopped. A second signal
 * stops at once.
 */
export async function agent(args: string[]): Promise<number> {
  const settings = await roleConfig("agent", args);
  const v = settings.values;
  if (v.check) return await checkOnly(sandboxKind(v.sandbox), v["max-runs"]);
  for (const warning of settings.warnings) createLogger("agent").warn(warning);
  // The join token only enrols: once the data dir holds the agent's credential it is not needed.
  if (!v.server) {
    throw new UsageError(
      "agent needs --server (or ONEOFF_SERVER), and --join-token-file to enrol the first time",
    );
  }
  const maxRuns = Number(v["max-runs"] ?? 20);
  if (!Number.isInteger(maxRuns) || maxRuns < 1) {
    throw new UsageError(`Invalid --max-runs "${v["max-runs"]}": give a positive integer`);
  }
  const spool = v["spool-max-bytes"];
  const drain = v["drain-timeout"];
  const grace = v["stop-grace"];
  if (!await hostReady(sandboxKind(v.sandbox), maxRuns)) return 1;
  const metrics = v.metrics ? await serveAgentMetrics(parseAddr(v.metrics)) : undefined;
  const tls = await readTls(v["tls-cert"], v["tls-key"]);
  const running = await startAgent({
    server: v.server,
    ...(v["join-token"] ? { joinToken: v["join-token"] } : {}),
    name: v.name ?? Deno.hostname().toLowerCase().replace(/[^a-z0-9-]/g, "-"),
    attach: parseAddr(v.attach ?? "0.0.0.0:5000"),
    ...(v.advertise ? { advertise: v.advertise } : {}),
    dataDir: v["data-dir"] ?? "./.oneoff-agent",
    sandbox: sandboxKind(v.sandbox),
    maxRuns,
    ...(v.labels ? { labels: agentLabels(v.labels) } : {}),
    ...(tls ? { tls } : {}),
    ...(spool ? { spoolMaxBytes: parseBytes("--spool-max-bytes", spool) } : {}),
    ...(drain ? { drainTimeoutMs: flagDuration("--drain-timeout", drain) } : {}),
    ...(grace ? { stopGraceMs: flagDuration("--stop-grace", grace) } : {}),
    ...(metrics ? { metrics: metrics.metrics } : {}),
  });
  const signals = signalCounter();
  try {
    // A refusal after a reconnect (the join token was changed) ends the
    // agent like one at start: one line from runRole, exit 1.
    await Promise.race([signals.first, running.refused]);
    await Promise.race([running.drain(), signals.second]);
  } finally {
    signals.remove();
    await running.close();
    await metrics?.server.close();
  }
  return 0;
}

/** SIGINT/SIGTERM: the first resolves `first` (drain), the second `second` (cut the drain short). */
export function signalCounter() {
  const first = Promise.withResolvers<void>();
  const second = Promise.withResolvers<void>();
  let count = 0;
  const listener = () => {
    count++;
    if (count === 1) first.resolve();
    else second.resolve();
  };
  const names = ["SIGINT", "SIGTERM"] as const;
  for (const name of names) Deno.addSignalListener(name, listener);
  return {
    first: first.promise,
    second: second.promise,
    remove() {
      for (const name of names) Deno.removeSignalListener(name, listener);
    },
  };
}

/** `--labels k=v,...`, a bad one a usage error. */
function agentLabels(text: string): Record<string, string> {
  try {
    return parseLabels(text);
  } catch (e) {
    throw new UsageError(`Invalid --labels "${text}": ${(e as Error).message}`);
  }
}
