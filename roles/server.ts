/**
 * `oneoff server`.
 * @module
 */
import { USAGE } from "../cli/mod.ts";
import { startServer } from "../server/mod.ts";
import { flags, waitForSignal } from "./_flags.ts";

/** Runs the server until SIGINT/SIGTERM. */
export async function server(args: string[]): Promise<number> {
  const v = flags("server", args, {
    http: { type: "string" },
    database: { type: "string" },
    "data-dir": { type: "string" },
    "join-token": { type: "string" },
    "max-slug-bytes": { type: "string" },
    "audit-key-file": { type: "string" },
    "max-runs-per-app": { type: "string" },
  });
  const config: Record<string, unknown> = {};
  if (v["join-token"]) config.joinToken = v["join-token"];
  if (v["max-slug-bytes"]) config.maxSlugBytes = Number(v["max-slug-bytes"]);
  if (v["audit-key-file"]) config.auditKeyFile = v["audit-key-file"];
  const maxRunsPerApp = v["max-runs-per-app"];
  if (maxRunsPerApp !== undefined) {
    const max = Number(maxRunsPerApp);
    if (!Number.isInteger(max) || max < 1) {
      throw new Error(
        `Invalid --max-runs-per-app "${maxRunsPerApp}": give a positive integer\nUsage: ${USAGE.server}`,
      );
    }
    config.maxRunsPerApp = max;
  }
  const running = await startServer({
    http: v.http ?? "0.0.0.0:8080",
    dataDir: v["data-dir"] ?? "./.oneoff",
    ...(v.database ? { database: v.database } : {}),
    config,
  });
  if (running.newAdminToken) {
    console.log(
      `Admin token (shown once, also in ${running.ctx.config.dataDir}/admin.token): ${running.newAdminToken}`,
    );
  }
  console.log(
    `Agents join with: oneoff agent --server ${running.url} --join-token ${running.joinToken}`,
  );
  await waitForSignal();
  await running.close();
  return 0;
}
