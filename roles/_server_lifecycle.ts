/**
 * `oneoff server`'s data lifecycle flags (retention, blob GC), checked here
 * so a bad value is a usage error.
 * @module
 */
import { parseDuration, UsageError } from "../cli/_io.ts";
import { checkLifecycle, DEFAULT_LIFECYCLE, type LifecycleSettings } from "../server/lifecycle.ts";
import { errorMessage } from "../util/log.ts";

const DURATIONS = {
  "log-retention": "logRetentionMs",
  "run-retention": "runRetentionMs",
  "audit-retention": "auditRetentionMs",
  "blob-grace": "blobGraceMs",
} as const;

const COUNTS = {
  "log-max-lines-per-app": "logMaxLinesPerApp",
  "keep-releases": "keepReleases",
} as const;

/** The lifecycle settings given on the command line, checked together. */
export function lifecycleFlags(
  v: Record<string, string | undefined>,
): Partial<LifecycleSettings> {
  const settings: Partial<LifecycleSettings> = {};
  for (const [flag, key] of Object.entries(DURATIONS)) {
    const text = v[flag];
    if (text === undefined) continue;
    const ms = parseDuration(text);
    if (ms < 1000) throw new UsageError(`Invalid --${flag} "${text}": give at least 1s`);
    settings[key] = ms;
  }
  for (const [flag, key] of Object.entries(COUNTS)) {
    const text = v[flag];
    if (text === undefined) continue;
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new UsageError(`Invalid --${flag} "${text}": give a positive integer`);
    }
    settings[key] = n;
  }
  try {
    checkLifecycle({ ...DEFAULT_LIFECYCLE, ...settings });
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
  return settings;
}
