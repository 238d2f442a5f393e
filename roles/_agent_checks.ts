/**
 * What `oneoff agent` does before it joins: the host check (`--check`, and
 * at every start) and the metrics listener (`--metrics`), each module
 * loaded only when used.
 * @module
 */
import type { SandboxKind } from "../protocol/mod.ts";
import type { AgentMetrics, MetricsServer } from "../agent/metrics.ts";
import { UsageError } from "../cli/_io.ts";
import { createLogger } from "../util/log.ts";

/** `oneoff agent --check`: prints one line per probe; 0 when nothing required is missing. */
export async function checkOnly(sandbox: SandboxKind, maxRunsFlag?: string): Promise<number> {
  const maxRuns = Number(maxRunsFlag ?? 20);
  if (!Number.isInteger(maxRuns) || maxRuns < 1) {
    throw new UsageError(`Invalid --max-runs "${maxRunsFlag}": give a positive integer`);
  }
  const { checksPass, formatChecks, runChecks } = await import("../agent/check.ts");
  const checks = await runChecks({ sandbox, maxRuns });
  const pass = checksPass(checks);
  console.log(formatChecks(checks));
  console.log(
    pass
      ? `This host can run the ${sandbox} sandbox`
      : `This host cannot run the ${sandbox} sandbox: install or enable what is missing`,
  );
  return pass ? 0 : 1;
}

/**
 * The same probes at an agent's start, said on the agent's log (JSON lines,
 * as the rest of its output): an error line per missing required piece, a
 * warning per optional one. False when a required piece is missing: the
 * agent refuses to start.
 */
export async function hostReady(sandbox: SandboxKind, maxRuns: number): Promise<boolean> {
  const { checksPass, runChecks } = await import("../agent/check.ts");
  const log = createLogger("agent.check");
  const checks = await runChecks({ sandbox, maxRuns });
  for (const c of checks) {
    if (c.ok) continue;
    const fields = { check: c.name };
    if (c.required) log.error(`Cannot start: ${c.name} is missing: ${c.detail}`, fields);
    else log.warn(`${c.name}: ${c.detail}`, fields);
  }
  return checksPass(checks);
}

/** Starts the `--metrics` listener. */
export async function serveAgentMetrics(
  addr: { hostname: string; port: number },
): Promise<{ metrics: AgentMetrics; server: MetricsServer }> {
  const { AgentMetrics, serveMetrics } = await import("../agent/metrics.ts");
  const metrics = new AgentMetrics();
  return { metrics, server: await serveMetrics(addr, metrics) };
}
