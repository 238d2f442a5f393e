/**
 * `oneoff server`.
 * @module
 */
import { parseDuration, UsageError } from "../cli/_io.ts";
import { type RunningServer, startServer } from "../server/mod.ts";
import { parseTrustedProxies, type TrustedProxies } from "../server/client_address.ts";
import { createLogger } from "../util/log.ts";
import { roleConfig, type Setting } from "./_config.ts";
import { readTls, waitForSignal } from "./_flags.ts";
import { limitFlags } from "./_server_limits.ts";
import { lifecycleFlags } from "./_server_lifecycle.ts";

/** `--join-token-uses`, `--join-token-ttl`, `--auto-approve`. */
export function joinTokenFlags(v: Record<string, unknown>) {
  const config: { joinTokenUses?: number; joinTokenTtlMs?: number; autoApprove?: boolean } = {};
  const uses = v["join-token-uses"];
  if (typeof uses === "string") {
    const n = Number(uses);
    if (!Number.isInteger(n) || n < 1) {
      throw new UsageError(`Invalid --join-token-uses "${uses}": give a positive integer`);
    }
    config.joinTokenUses = n;
  }
  const ttl = v["join-token-ttl"];
  if (typeof ttl === "string") {
    try {
      config.joinTokenTtlMs = parseDuration(ttl);
    } catch {
      throw new UsageError(`Invalid --join-token-ttl "${ttl}": give e.g. 1h, 30m or 7d`);
    }
  }
  // A boolean flag, whatever the parsed values' declared type says.
  if (v["auto-approve"]) config.autoApprove = true;
  return config;
}

/** Runs the server until SIGINT/SIGTERM. */
export async function server(args: string[]): Promise<number> {
  if (args[0] === "backup") {
    return await (await import("./_server_backup.ts")).backup(args.slice(1));
  }
  const settings = await roleConfig("server", args);
  const v = settings.values;
  for (const warning of settings.warnings) createLogger("server").warn(warning);
  if (v.to !== undefined) throw new UsageError("--to is for backups: server backup --to DIR");
  const config: Record<string, unknown> = {};
  if (v["join-token"]) config.joinToken = v["join-token"];
  Object.assign(config, joinTokenFlags(v));
  if (v["max-slug-bytes"]) config.maxSlugBytes = Number(v["max-slug-bytes"]);
  if (v["audit-key-file"]) config.auditKeyFile = v["audit-key-file"];
  Object.assign(config, limitFlags(v));
  const maxRunsPerApp = v["max-runs-per-app"];
  if (maxRunsPerApp !== undefined) {
    const max = Number(maxRunsPerApp);
    if (!Number.isInteger(max) || max < 1) {
      throw new UsageError(
        `Invalid --max-runs-per-app "${maxRunsPerApp}": give a positive integer`,
      );
    }
    config.maxRunsPerApp = max;
  }
  if (v["trust-proxy"]) config.trustProxy = trustedProxies(v["trust-proxy"]);
  const tls = await readTls(v["tls-cert"], v["tls-key"]);
  const running = await startServer({
    http: v.http ?? "0.0.0.0:8080",
    dataDir: v["data-dir"] ?? "./.oneoff",
    ...(v.database ? { database: v.database } : {}),
    ...(v["advertise-url"] ? { advertiseUrl: v["advertise-url"] } : {}),
    ...(tls ? { tls } : {}),
    config,
    lifecycle: lifecycleFlags(v),
  });
  // Where the tokens are, never their values: journald keeps what is printed.
  const dataDir = running.ctx.config.dataDir;
  if (running.newAdminToken) {
    console.log(
      `New admin token in ${dataDir}/admin.token (0600): oneoff login --server ${running.url} --token "$(cat ${dataDir}/admin.token)"`,
    );
  }
  console.log(`Agents join with: ${joinCommand(running, settings.settings.get("join-token"))}`);
  if (!running.ctx.config.autoApprove) {
    console.log("Then approve each one: oneoff agents approve NAME (see oneoff agents)");
  }
  await waitForSignal();
  await running.close();
  return 0;
}

/** `--trust-proxy`, a bad entry a usage error. */
function trustedProxies(spec: string): TrustedProxies {
  try {
    return parseTrustedProxies(spec);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** How agents join, naming where the join token is rather than what it is. */
function joinCommand(running: RunningServer, setting: Setting | undefined): string {
  const agent = `oneoff agent --server ${running.url}`;
  const file = running.joinTokenFile ?? setting?.secretFile;
  if (file) return `${agent} --join-token-file ${file} (a copy of that file, mode 0600)`;
  const from = setting?.source.kind === "env"
    ? setting.source.name
    : setting?.source.kind === "file"
    ? `the config file ${setting.source.path}`
    : "--join-token";
  return `${agent} --join-token-file PATH, PATH holding the join token given in ${from}`;
}
