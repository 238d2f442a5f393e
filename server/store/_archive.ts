/**
 * The audit trail's copy of a run (`audit_runs.run`): the run row as JSON,
 * without what is only needed until the run starts (env overrides, which
 * may hold secrets, and the attach secret's hash).
 * @module
 */
import type { ArchivedRun, RunRow } from "./mod.ts";

const DATES = ["expires_at", "created_at", "started_at", "ended_at"] as const;

/** The JSON kept for a run (SQLite writes it; PostgreSQL builds the same with to_jsonb). */
export function archiveJson(run: RunRow): string {
  return JSON.stringify({ ...run, env_overrides: {}, secret_sha256: null });
}

/** Reads a kept run back: times were written as ISO text. */
export function fromArchive(appName: string, json: unknown): ArchivedRun {
  const raw = (typeof json === "string" ? JSON.parse(json) : json) as Record<string, unknown>;
  const run = { ...raw, env_overrides: {}, secret_sha256: null } as Record<string, unknown>;
  for (const key of DATES) {
    const value = run[key];
    run[key] = value === null || value === undefined ? null : new Date(value as string);
  }
  run.timeout_ms = Number(run.timeout_ms);
  run.log_lines ??= null;
  run.purpose ??= null;
  return { app_name: appName, run: run as unknown as RunRow };
}
