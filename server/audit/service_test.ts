import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
/**
 * The audit service on real stores: SQLite on a temp file, and PostgreSQL in
 * a fresh schema per test when ONEOFF_TEST_POSTGRES is set. Tampering goes
 * straight to the database, as an attacker with database access would.
 */
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import type { RunRow, Store } from "../store/mod.ts";
import { openStore } from "../store/open.ts";
import { AuditService } from "./service.ts";
import { needs, PG_URL } from "../../tests/_tools.ts";

/** A store under test, a way around it, and a folder for key files. */
interface Fixture {
  store: Store;
  dir: string;
  keyFile: string;
  /** Runs SQL on the database directly; `?` placeholders. */
  exec(sql: string, ...params: (string | number)[]): Promise<void>;
}

async function withSqlite(body: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-audit-test-" });
  const store = await openStore(`sqlite:${dir}/oneoff.db`);
  const db = new DatabaseSync(`${dir}/oneoff.db`);
  try {
    await body({
      store,
      dir,
      keyFile: `${dir}/keys/audit.json`,
      exec(sql, ...params) {
        db.prepare(sql).run(...params);
        return Promise.resolve();
      },
    });
  } finally {
    db.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function withPostgres(body: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-audit-test-" });
  const schema = `oneoff_audit_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
  await admin`create schema ${admin(schema)}`;
  const url = new URL(PG_URL!);
  url.searchParams.set("search_path", schema);
  const store = await openStore(url.href);
  try {
    await body({
      store,
      dir,
      keyFile: `${dir}/keys/audit.json`,
      async exec(sql, ...params) {
        let n = 0;
        await admin.unsafe(`set search_path to ${schema}`);
        await admin.unsafe(sql.replace(/\?/g, () => `$${++n}`), params);
      },
    });
  } finally {
    await store.close();
    await admin`drop schema ${admin(schema)} cascade`;
    await admin.end();
    await Deno.remove(dir, { recursive: true });
  }
}

function both(name: string, body: (f: Fixture) => Promise<void>): void {
  Deno.test(`[sqlite] ${name}`, () => withSqlite(body));
  Deno.test(needs(["postgres"], { name: `[postgres] ${name}`, fn: () => withPostgres(body) }));
}

const T0 = Date.UTC(2030, 0, 2, 3, 4, 5);
const b64 = (s: string) => new TextEncoder().encode(s).toBase64();

/** The chunks of a short shell session, as the agent's recorder writes them. */
const SESSION = [
  { v: 1, t0: T0, size: { cols: 100, rows: 30 }, events: [[0, "o", b64("$ ")]] },
  { v: 1, t0: T0, events: [[100, "i", b64("ls\r")], [110, "o", b64("ls\r\n")]] },
  { v: 1, t0: T0, events: [[200, "o", b64("MARKER-7f3a9c\r\n$ ")], [250, "r", "120x40"]] },
  { v: 1, t0: T0, events: [[300, "i", b64("exit\r")]], final: true },
].map((chunk) => JSON.stringify(chunk));

async function attachedRun(store: Store, state: "running" | "exited" = "exited"): Promise<RunRow> {
  const app = (await store.appByName("demo")) ?? await store.createApp("demo");
  const release = await store.createRelease({
    app_id: app.id,
    sha256: "ab".repeat(32),
    size: 1,
    process_types: {},
    actor: "alice",
  });
  const run = await store.createRun({
    id: crypto.randomUUID(),
    app_id: app.id,
    command: "bash",
    attached: true,
    tty: true,
    size: "M",
    release_id: release.id,
    env_overrides: {},
    uploads: [],
    cols: 100,
    rows: 30,
    timeout_ms: 60_000,
    actor: "alice",
    secret_sha256: null,
    expires_at: null,
  });
  await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date(T0) });
  if (state === "exited") {
    await store.updateRun(run.id, ["running"], {
      state: "exited",
      exit_code: 0,
      ended_at: new Date(),
    });
  }
  return (await store.runById(run.id))!;
}

async function record(audit: AuditService, runId: string, chunks = SESSION): Promise<void> {
  for (const [seq, data] of chunks.entries()) await audit.receive(runId, seq, data);
}

function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

both("a recording round-trips with its timings, size and resizes", async ({ store, keyFile }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  await record(audit, run.id);
  const readout = await audit.read(run.id);
  deepEqual(readout.problems, []);
  equal(readout.t0, T0);
  equal(readout.final, true);
  deepEqual(readout.size, { cols: 100, rows: 30 });
  deepEqual(
    readout.events.map((e) =>
      e.kind === "r" ? [e.t, "r", `${e.cols}x${e.rows}`] : [e.t, e.kind, text(e.bytes)]
    ),
    [
      [0, "o", "$ "],
      [100, "i", "ls\r"],
      [110, "o", "ls\r\n"],
      [200, "o", "MARKER-7f3a9c\r\n$ "],
      [250, "r", "120x40"],
      [300, "i", "exit\r"],
    ],
  );
  const rows = await store.auditChunks(run.id);
  deepEqual(rows.map((r) => r.key_id), ["k1", "k1", "k1", "k1"]);
  equal(rows[0]!.prev_hash, "0".repeat(64));
  match(rows[1]!.prev_hash, /^[0-9a-f]{64}$/);
});

both("a chunk received again is stored once, even out of turn", async ({ store, keyFile }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  await audit.receive(run.id, 0, SESSION[0]!);
  await audit.receive(run.id, 1, SESSION[1]!);
  const before = await store.auditChunks(run.id);
  await audit.receive(run.id, 0, SESSION[0]!);
  await audit.receive(run.id, 1, SESSION[1]!);
  await audit.receive(run.id, 1, SESSION[1]!);
  deepEqual(await store.auditChunks(run.id), before);
  // A fresh service (another server, a restart) knows nothing in memory.
  const other = await AuditService.open(store, keyFile);
  await other.receive(run.id, 1, SESSION[1]!);
  await other.receive(run.id, 2, SESSION[2]!);
  await other.receive(run.id, 3, SESSION[3]!);
  deepEqual((await audit.read(run.id)).problems, []);
});

both("chunks received all at once are chained in order", async ({ store, keyFile }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  const chunks = Array.from(
    { length: 20 },
    (_, i) =>
      JSON.stringify({
        v: 1,
        t0: T0,
        events: [[i, "o", b64(`${i} `)]],
        ...(i === 19 ? { final: true } : {}),
      }),
  );
  await Promise.all(chunks.map((data, seq) => audit.receive(run.id, seq, data)));
  const readout = await audit.read(run.id);
  deepEqual(readout.problems, []);
  equal(
    readout.events.map((e) => e.kind === "o" ? text(e.bytes) : "").join(""),
    chunks.map((_, i) => `${i} `).join(""),
  );
});

both(
  "a flipped byte in a stored payload is reported for that chunk only",
  async ({ store, keyFile, exec }) => {
    const audit = await AuditService.open(store, keyFile);
    const run = await attachedRun(store);
    await record(audit, run.id);
    const payload = (await store.auditChunks(run.id))[1]!.payload;
    const flipped = payload.slice(0, 20) + (payload[20] === "A" ? "B" : "A") + payload.slice(21);
    await exec("UPDATE audit_chunks SET payload = ? WHERE run_id = ? AND seq = 1", flipped, run.id);
    const readout = await audit.read(run.id);
    deepEqual(readout.problems, ["Chunk 1 was altered: authentication failed"]);
    deepEqual(
      readout.events.filter((e) => e.kind === "i").map((e) => e.kind === "i" ? text(e.bytes) : ""),
      ["exit\r"],
    );
    equal(readout.final, true);
  },
);

both("a deleted chunk is reported missing", async ({ store, keyFile, exec }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  await record(audit, run.id);
  await exec("DELETE FROM audit_chunks WHERE run_id = ? AND seq = 2", run.id);
  deepEqual((await audit.read(run.id)).problems, ["Chunk 2 is missing"]);
});

both("a deleted final chunk leaves the recording incomplete", async ({ store, keyFile, exec }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  await record(audit, run.id);
  await exec("DELETE FROM audit_chunks WHERE run_id = ? AND seq = 3", run.id);
  deepEqual((await audit.read(run.id)).problems, [
    "Recording incomplete: the final chunk has not arrived (the last stored is chunk 2)",
  ]);
});

both("two swapped chunks are reported removed or reordered", async ({ store, keyFile, exec }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  await record(audit, run.id);
  await exec("UPDATE audit_chunks SET seq = 99 WHERE run_id = ? AND seq = 1", run.id);
  await exec("UPDATE audit_chunks SET seq = 1 WHERE run_id = ? AND seq = 2", run.id);
  await exec("UPDATE audit_chunks SET seq = 2 WHERE run_id = ? AND seq = 99", run.id);
  deepEqual((await audit.read(run.id)).problems, [
    "Chunk 1 was removed or reordered",
    "Chunk 2 was removed or reordered",
  ]);
});

both(
  "an edited chain link is reported, and the chunk still read",
  async ({ store, keyFile, exec }) => {
    const audit = await AuditService.open(store, keyFile);
    const run = await attachedRun(store);
    await record(audit, run.id);
    await exec(
      "UPDATE audit_chunks SET prev_hash = ? WHERE run_id = ? AND seq = 2",
      "f".repeat(64),
      run.id,
    );
    const readout = await audit.read(run.id);
    deepEqual(readout.problems, ["Chunk 2 was altered: its link to chunk 1 was changed"]);
    equal(readout.events.length, 6);
  },
);

both("a wrong key file is reported for every chunk", async ({ store, keyFile, dir }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  await record(audit, run.id);
  const stranger = await AuditService.open(store, `${dir}/other-keys.json`);
  const readout = await stranger.read(run.id);
  deepEqual(
    readout.problems,
    [0, 1, 2, 3].map((n) =>
      `Chunk ${n} cannot be decrypted with the key "k1": authentication failed (is this the key file it was written with?)`
    ),
  );
  deepEqual(readout.events, []);
  equal(readout.t0, null);
});

both(
  "after a key rotation old chunks stay readable until their key leaves the file",
  async ({ store, keyFile, exec }) => {
    const audit = await AuditService.open(store, keyFile);
    const run = await attachedRun(store);
    await audit.receive(run.id, 0, SESSION[0]!);
    await audit.receive(run.id, 1, SESSION[1]!);
    equal(await audit.rotateKey({ actor: "root" }), "k2");
    await audit.receive(run.id, 2, SESSION[2]!);
    await audit.receive(run.id, 3, SESSION[3]!);
    deepEqual((await store.auditChunks(run.id)).map((r) => r.key_id), [
      "k1",
      "k1",
      "k2",
      "k2",
    ]);
    deepEqual((await audit.read(run.id)).problems, []);
    const [event] = await store.listEvents({ limit: 1 });
    equal(event?.kind, "audit.key_rotated");
    equal(event?.actor, "root");
    deepEqual(event?.data, { key: "k2" });

    const file = JSON.parse(await Deno.readTextFile(keyFile));
    delete file.keys.k1;
    await Deno.writeTextFile(keyFile, JSON.stringify(file));
    const later = await AuditService.open(store, keyFile);
    const readout = await later.read(run.id);
    deepEqual(readout.problems, [
      'Chunk 0 cannot be decrypted: the key "k1" is not in the key file',
      'Chunk 1 cannot be decrypted: the key "k1" is not in the key file',
    ]);
    deepEqual(readout.events.map((e) => e.t), [200, 250, 300]);
    equal(readout.size, null);
    await exec("UPDATE audit_chunks SET key_id = 'k9' WHERE run_id = ? AND seq = 3", run.id);
    equal(
      (await later.read(run.id)).problems[2],
      'Chunk 3 cannot be decrypted: the key "k9" is not in the key file',
    );
  },
);

both(
  "a chunk arriving after its successor is stored, and the reader says so",
  async ({ store, keyFile }) => {
    const audit = await AuditService.open(store, keyFile);
    const run = await attachedRun(store);
    await audit.receive(run.id, 0, SESSION[0]!);
    await audit.receive(run.id, 2, SESSION[2]!);
    deepEqual((await audit.read(run.id)).problems, [
      "Chunk 1 is missing",
      "Recording incomplete: the final chunk has not arrived (the last stored is chunk 2)",
    ]);
    await audit.receive(run.id, 1, SESSION[1]!);
    await audit.receive(run.id, 3, SESSION[3]!);
    deepEqual((await audit.read(run.id)).problems, [
      "Chunk 2 was stored before chunk 1 arrived: their order cannot be verified",
    ]);
  },
);

both(
  "a running session without its final chunk is not a problem yet",
  async ({ store, keyFile }) => {
    const audit = await AuditService.open(store, keyFile);
    const run = await attachedRun(store, "running");
    await audit.receive(run.id, 0, SESSION[0]!);
    const readout = await audit.read(run.id);
    deepEqual(readout.problems, []);
    equal(readout.final, false);
  },
);

both("an ended attached run without any chunk is reported", async ({ store, keyFile }) => {
  const audit = await AuditService.open(store, keyFile);
  const run = await attachedRun(store);
  deepEqual((await audit.read(run.id)).problems, [
    "Recording incomplete: no chunk was stored",
  ]);
  // Nobody attached: nothing to record.
  const expired = await attachedRun(store, "running");
  await store.updateRun(expired.id, ["running"], { state: "expired", started_at: null });
  deepEqual(await audit.read(expired.id), {
    events: [],
    size: null,
    t0: null,
    final: false,
    problems: [],
  });
});

both("receive refuses a chunk number that is not a natural number", async ({ store, keyFile }) => {
  const audit = await AuditService.open(store, keyFile);
  await rejects(
    audit.receive("r", -1, "{}"),
    new Error('Invalid audit chunk number "-1" for run "r"'),
  );
});

Deno.test("[sqlite] no recorded byte reaches the database file in plaintext", async () => {
  await withSqlite(async ({ store, keyFile, dir }) => {
    const audit = await AuditService.open(store, keyFile);
    const run = await attachedRun(store);
    await record(audit, run.id);
    // Closing checkpoints the write-ahead log; both files are searched anyway.
    await store.close();
    const marker = new TextEncoder().encode("MARKER-7f3a9c");
    const needles = [
      marker,
      new TextEncoder().encode(b64("MARKER-7f3a9c").slice(0, 12)),
      new TextEncoder().encode('"events"'),
    ];
    // The search itself works: the run's id is stored in plaintext.
    let controls = 0;
    let scanned = 0;
    for (const entry of Deno.readDirSync(dir)) {
      if (!entry.name.startsWith("oneoff.db")) continue;
      const bytes = await Deno.readFile(`${dir}/${entry.name}`);
      scanned += bytes.length;
      if (indexOf(bytes, new TextEncoder().encode(run.id)) !== -1) controls++;
      for (const needle of needles) {
        equal(indexOf(bytes, needle), -1, `${entry.name} holds plaintext`);
      }
    }
    ok(scanned > 0 && controls > 0);
    // The reader still finds the marker: it was recorded, only encrypted.
    const reopened = await openStore(`sqlite:${dir}/oneoff.db`);
    try {
      const readout = await new AuditService(reopened, keyFile).read(run.id);
      ok(
        readout.events.some((e) => e.kind === "o" && text(e.bytes).includes("MARKER-7f3a9c")),
      );
    } finally {
      await reopened.close();
    }
  });
});

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
