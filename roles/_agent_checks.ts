/**
 * What `oneoff agent` does before it joins: the host check (`--check`, and
 * at every start) and the metrics listener (`--metrics`), each module
 * loaded only when used.
 * @module
 */
import type { SandboxKind } from "../protocol/mod.ts";
import type { AgentMetrics, MetricsServer } from "../agent/metrics.ts";
import { UsageError } from "../cli/_io.ts";

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
 * The same probes at an agent's start: what is not ok is said on stderr,
 * one line each; false when a required piece is missing (the agent refuses to start).
 */
export async function hostReady(sandbox: SandboxKind, maxRuns: number): Promise<boolean> {
  const { checksPass, formatChecks, runChecks } = await import("../agent/check.ts");
  const checks = await runChecks({ sandbox, maxRuns });
  const notOk = checks.filter((c) => !c.ok);
  if (notOk.length > 0) console.error(formatChecks(notOk).replace(/^/gm, "oneoff agent: "));
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
