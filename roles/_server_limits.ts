/**
 * `oneoff server`'s limit flags: `--max-slug-unpacked-bytes`,
 * `--max-timeout`, `--max-idle-timeout`, `--reattach-grace`,
 * `--max-reattach-grace`, `--log-quota-per-run`, `--app-log-quota`,
 * `--audit-quota-per-session`, `--max-artifact-bytes`, checked here so a bad value is a usage error.
 * @module
 */
import { parseDuration, UsageError } from "../cli/_io.ts";
import { MAX_TIMER_MS } from "../protocol/mod.ts";
import type { ServerConfig } from "../server/mod.ts";
import { parseBytes } from "./_flags.ts";

type Limits = Partial<
  Pick<
    ServerConfig,
    | "maxSlugUnpackedBytes"
    | "maxTimeoutMs"
    | "logQuotaBytes"
    | "auditQuotaBytes"
    | "reattachGraceMs"
    | "maxIdleTimeoutMs"
    | "maxReattachGraceMs"
    | "appLogQuotaBytes"
    | "maxArtifactBytes"
  >
>;

/** A maximum duration flag: from 1s to a timer's range (a longer timer fires at once). */
function timerFlag(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms < 1000 || ms > MAX_TIMER_MS) {
    throw new UsageError(`Invalid --${flag} "${text}": give from 1s to 24d (a timer's range)`);
  }
  return ms;
}

/** The limit settings given on the command line. */
export function limitFlags(v: Record<string, string | undefined>): Limits {
  const config: Limits = {};
  const unpacked = v["max-slug-unpacked-bytes"];
  if (unpacked !== undefined) {
    const bytes = Number(unpacked);
    if (!Number.isSafeInteger(bytes) || bytes < 1) {
      throw new UsageError(
        `Invalid --max-slug-unpacked-bytes "${unpacked}": give a positive number of bytes`,
      );
    }
    config.maxSlugUnpackedBytes = bytes;
  }
  const timeout = v["max-timeout"];
  if (timeout !== undefined) {
    const ms = parseDuration(timeout);
    // A longer timer would fire at once: the run would time out at its start.
    if (ms < 1000 || ms > MAX_TIMER_MS) {
      throw new UsageError(
        `Invalid --max-timeout "${timeout}": give from 1s to 24d (a timer's range)`,
      );
    }
    config.maxTimeoutMs = ms;
  }
  const maxIdle = v["max-idle-timeout"];
  if (maxIdle !== undefined) config.maxIdleTimeoutMs = timerFlag("max-idle-timeout", maxIdle);
  const maxGrace = v["max-reattach-grace"];
  if (maxGrace !== undefined) config.maxReattachGraceMs = timerFlag("max-reattach-grace", maxGrace);
  const appQuota = v["app-log-quota"];
  if (appQuota !== undefined) config.appLogQuotaBytes = parseBytes("--app-log-quota", appQuota);
  const logQuota = v["log-quota-per-run"];
  if (logQuota !== undefined) config.logQuotaBytes = parseBytes("--log-quota-per-run", logQuota);
  const auditQuota = v["audit-quota-per-session"];
  if (auditQuota !== undefined) {
    config.auditQuotaBytes = parseBytes("--audit-quota-per-session", auditQuota);
  }
  const artifacts = v["max-artifact-bytes"];
  if (artifacts !== undefined) {
    config.maxArtifactBytes = parseBytes("--max-artifact-bytes", artifacts);
  }
  const grace = v["reattach-grace"];
  if (grace !== undefined) {
    const ms = parseDuration(grace);
    if (ms < 1 || ms > MAX_TIMER_MS) {
      throw new UsageError(`Invalid --reattach-grace "${grace}": give from 1ms to 24d`);
    }
    config.reattachGraceMs = ms;
  }
  return config;
}
