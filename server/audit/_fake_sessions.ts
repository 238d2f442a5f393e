/**
 * Recorded sessions made cheaply for tests and measurements: run rows as
 * the run engine writes them, and recordings stored through the audit
 * service's own ingest (encrypted and chained as an agent's would be),
 * without a sandbox or an agent.
 * @module
 */
import type { AppRow, RunRow, Store } from "../store/mod.ts";
import type { AuditService } from "./service.ts";

/** What each fake session holds. */
export interface FakeSession {
  /** Who started it. */
  actor?: string;
  command?: string;
  purpose?: string | null;
  /** Lines typed, each answered by the shell's echo of it. */
  typed: string[];
  /** Lines of output after each typed line. */
  output?: string[];
}

function b64(text: string): string {
  return new TextEncoder().encode(text).toBase64();
}

/** Stores a session of `app`: a started and ended attached run and its recording. */
export async function recordFakeSession(
  ctx: { store: Store; audit: AuditService },
  app: AppRow,
  session: FakeSession,
): Promise<RunRow> {
  const { store, audit } = ctx;
  const release = await store.latestRelease(app.id) ?? await store.createRelease({
    app_id: app.id,
    sha256: "ab".repeat(32),
    size: 1,
    process_types: {},
    actor: "admin",
  });
  const run = await store.createRun({
    id: crypto.randomUUID(),
    app_id: app.id,
    command: session.command ?? "bash",
    attached: true,
    tty: true,
    size: "M",
    release_id: release.id,
    env_overrides: {},
    uploads: [],
    cols: 100,
    rows: 30,
    timeout_ms: 3600_000,
    actor: session.actor ?? "alice",
    purpose: session.purpose ?? null,
    secret_sha256: null,
    expires_at: null,
  });
  const t0 = Date.now() - 60_000;
  await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date(t0) });
  // One chunk per typed line, as a recorder cuts one per pause.
  let ms = 0;
  const chunks = session.typed.map((line, i) => {
    const events: [number, string, string][] = [];
    if (i === 0) events.push([ms, "o", b64("$ ")]);
    events.push([ms += 400, "i", b64(`${line}\r`)]);
    const answer = (session.output ?? []).map((out) => `${out}\r\n`).join("");
    events.push([ms += 20, "o", b64(`${line}\r\n${answer}$ `)]);
    return {
      v: 1,
      t0,
      events,
      ...(i === 0 ? { size: { cols: 100, rows: 30 } } : {}),
      ...(i === session.typed.length - 1 ? { final: true } : {}),
    };
  });
  for (const [seq, chunk] of chunks.entries()) {
    await audit.receive(run.id, seq, JSON.stringify(chunk));
  }
  await store.updateRun(run.id, ["running"], {
    state: "exited",
    exit_code: 0,
    ended_at: new Date(t0 + ms + 100),
  });
  return (await store.runById(run.id))!;
}
