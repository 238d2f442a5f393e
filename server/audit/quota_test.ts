import { deepEqual, equal, ok } from "node:assert/strict";
/**
 * The server's own recording quota: what an agent that ignores
 * `auditQuotaBytes` can get stored, on a real SQLite store.
 */
import { auditQuotaMarker } from "../../protocol/mod.ts";
import { openStore } from "../store/open.ts";
import type { RunRow, Store } from "../store/mod.ts";
import { AUDIT_QUOTA_SLACK, auditLimit, maxSeq, serverAuditMarker } from "./_quota.ts";
import { AuditService } from "./service.ts";

const T0 = Date.UTC(2030, 0, 2, 3, 4, 5);
const QUOTA = 1000;
const enc = (s: string) => new TextEncoder().encode(s);

function chunk(events: [number, string, string][], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ v: 1, t0: T0, events, ...extra });
}

function output(bytes: number, ms = 0): [number, string, string] {
  return [ms, "o", new Uint8Array(bytes).fill(0x61).toBase64()];
}

async function withStore(body: (store: Store, keyFile: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-audit-quota-test-" });
  const store = await openStore(`sqlite:${dir}/oneoff.db`);
  try {
    await body(store, `${dir}/audit.json`);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(store: Store): Promise<RunRow> {
  const app = await store.createApp("demo");
  const release = await store.createRelease({
    app_id: app.id,
    sha256: "ab".repeat(32),
    size: 1,
    process_types: {},
    actor: "alice",
  });
  const row = await store.createRun({
    id: crypto.randomUUID(),
    app_id: app.id,
    command: "cat /dev/zero",
    attached: true,
    tty: false,
    size: "M",
    release_id: release.id,
    env_overrides: {},
    uploads: [],
    cols: 80,
    rows: 24,
    timeout_ms: 60_000,
    actor: "mallory",
    secret_sha256: null,
    expires_at: null,
  });
  await store.updateRun(row.id, ["pending"], { state: "running", started_at: new Date(T0) });
  return row;
}

function recorded(events: { kind: string; bytes?: Uint8Array }[]): string {
  return events.map((e) => e.bytes === undefined ? "" : new TextDecoder().decode(e.bytes)).join("");
}

Deno.test("an honest session at its quota is stored whole, its marker too", async () => {
  await withStore(async (store, keyFile) => {
    const audit = await AuditService.open(store, keyFile, { quotaBytes: QUOTA });
    const r = await run(store);
    const marker = auditQuotaMarker(QUOTA);
    await audit.receive(r.id, 0, chunk([output(QUOTA - 10)]));
    await audit.receive(r.id, 1, chunk([output(10, 5), [6, "o", enc(marker).toBase64()]]));
    await audit.receive(r.id, 2, chunk([], { final: true }));
    const readout = await audit.read(r.id);
    deepEqual(readout.problems, []);
    const text = recorded(readout.events);
    equal(text, "a".repeat(QUOTA) + marker);
    ok(!text.includes("the server stopped"));
  });
});

Deno.test("a hostile agent past the quota gets a cut chunk with a marker, then nothing stored", async () => {
  await withStore(async (store, keyFile) => {
    const audit = await AuditService.open(store, keyFile, { quotaBytes: QUOTA });
    const r = await run(store);
    const limit = auditLimit(QUOTA);
    await audit.receive(r.id, 0, chunk([output(500)]));
    // Far past the limit in one chunk: cut where it goes over.
    await audit.receive(r.id, 1, chunk([output(100_000, 1), output(100_000, 2)]));
    // Everything after is refused, acknowledged without being stored...
    for (let seq = 2; seq < 50; seq++) await audit.receive(r.id, seq, chunk([output(10, seq)]));
    await audit.receive(r.id, 50, chunk([], { junk: "x".repeat(100_000) }));
    // ...but for one final chunk without events.
    await audit.receive(r.id, 51, chunk([], { final: true }));
    await audit.receive(r.id, 52, chunk([], { final: true }));

    const stored = await store.auditChunks(r.id);
    deepEqual(stored.map((c) => c.seq), [0, 1, 51]);
    ok(await store.auditRecordedBytes(r.id) <= limit);
    const readout = await audit.read(r.id);
    const text = recorded(readout.events);
    equal(text, "a".repeat(limit) + serverAuditMarker(QUOTA));
    ok(limit <= QUOTA + 200 + AUDIT_QUOTA_SLACK);
    deepEqual(readout.problems, ["Chunks 2 to 50 are missing"]);
    equal(readout.final, true);

    // A restarted server goes on from what is stored, not from zero.
    const again = new AuditService(store, keyFile, { quotaBytes: QUOTA });
    await again.receive(r.id, 53, chunk([output(10, 53)]));
    deepEqual((await store.auditChunks(r.id)).map((c) => c.seq), [0, 1, 51]);
  });
});

Deno.test("a seq no recorder reaches within the run's timeout is refused", async () => {
  await withStore(async (store, keyFile) => {
    const audit = await AuditService.open(store, keyFile, { quotaBytes: QUOTA });
    const r = await run(store);
    const last = maxSeq(1000, QUOTA);
    await audit.receive(r.id, last, chunk([output(1)]), { timeoutMs: 1000 });
    await audit.receive(r.id, last + 1, chunk([output(1)]), { timeoutMs: 1000 });
    deepEqual((await store.auditChunks(r.id)).map((c) => c.seq), [last]);
  });
});

Deno.test("floods of empty events, resizes or chunks are charged, not free", async () => {
  await withStore(async (store, keyFile) => {
    const audit = await AuditService.open(store, keyFile, { quotaBytes: QUOTA });
    const r = await run(store);
    const empties: [number, string, string][] = Array.from({ length: 40_000 }, () => [0, "o", ""]);
    const resizes: [number, string, string][] = Array.from(
      { length: 40_000 },
      () => [0, "r", "1x1"],
    );
    await audit.receive(r.id, 0, chunk(empties));
    await audit.receive(r.id, 1, chunk(resizes));
    for (let seq = 2; seq < 20; seq++) await audit.receive(r.id, seq, chunk([]));
    ok(await store.auditRecordedBytes(r.id) <= auditLimit(QUOTA));
    const stored = await store.auditChunks(r.id);
    deepEqual(stored.map((c) => c.seq), [0, 1]);
  });
});
