/**
 * `oneoff agent`.
 * @module
 */
import { startAgent } from "../agent/mod.ts";
import { UsageError } from "../cli/_io.ts";
import { parseAddr } from "../util/addr.ts";
import { flags, readTls, sandboxKind, waitForSignal } from "./_flags.ts";
import { checkOnly, hostReady, serveAgentMetrics } from "./_agent_checks.ts";

/** Runs an agent until SIGINT/SIGTERM. */
export async function agent(args: string[]): Promise<number> {
  const v = flags("agent", args);
  if (v.check) return await checkOnly(sandboxKind(v.sandbox), v["max-runs"]);
  if (!v.server || !v["join-token"]) {
    throw new UsageError("agent needs --server and --join-token");
  }
  const maxRuns = Number(v["max-runs"] ?? 20);
  if (!Number.isInteger(maxRuns) || maxRuns < 1) {
    throw new UsageError(`Invalid --max-runs "${v["max-runs"]}": give a positive integer`);
  }
  if (!await hostReady(sandboxKind(v.sandbox), maxRuns)) return 1;
  const metrics = v.metrics ? await serveAgentMetrics(parseAddr(v.metrics)) : undefined;
  const tls = await readTls(v["tls-cert"], v["tls-key"]);
  const running = await startAgent({
    server: v.server,
    joinToken: v["join-token"],
    name: v.name ?? Deno.hostname().toLowerCase().replace(/[^a-z0-9-]/g, "-"),
    attach: parseAddr(v.attach ?? "0.0.0.0:5000"),
    ...(v.advertise ? { advertise: v.advertise } : {}),
    dataDir: v["data-dir"] ?? "./.oneoff-agent",
    sandbox: sandboxKind(v.sandbox),
    maxRuns,
    ...(tls ? { tls } : {}),
    ...(metrics ? { metrics: metrics.metrics } : {}),
  });
  try {
    // A refusal after a reconnect (the join token was changed) ends the
    // agent like one at start: one line from runRole, exit 1.
    await Promise.race([waitForSignal(), running.refused]);
  } finally {
    await running.close();
    await metrics?.server.close();
  }
  return 0;
}
