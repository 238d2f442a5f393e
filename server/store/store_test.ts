import { deepEqual, equal, fail, notEqual, ok, rejects } from "node:assert/strict";
/**
 * One contract, run against both stores: SQLite on a temp file, and
 * PostgreSQL in a fresh schema per test when ONEOFF_TEST_POSTGRES is set.
 */
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import type { UncheckedEventBody } from "../../protocol/mod.ts";
import {
  ConflictError,
  type EventFields,
  type NewEvent,
  type NewLog,
  type NewRun,
  type Store,
} from "./mod.ts";
import { openStore } from "./open.ts";
import { needs, PG_URL } from "../../tests/_tools.ts";
import { MIGRATIONS, POSTGRES_MIGRATIONS_TABLE, SQLITE_MIGRATIONS_TABLE } from "./_migrations.ts";

/** An event as older code could have written it: any kind, any JSON data. */
function oldEvent(event: EventFields & { at?: Date } & UncheckedEventBody): NewEvent {
  return event as NewEvent;
}

/** An empty database the store under test may use; disposing drops it. */
interface FreshDatabase extends AsyncDisposable {
  url: string;
}

async function freshSqlite(): Promise<FreshDatabase> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-store-" });
  return {
    url: `sqlite:${dir}/oneoff.db`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function freshPostgres(): Promise<FreshDatabase> {
  const schema = `oneoff_test_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = postgres(PG_URL!, { max: 1, onnotice: () => {} });
  await admin`create schema ${admin(schema)}`;
  const url = new URL(PG_URL!);
  url.searchParams.set("search_path", schema);
  return {
    url: url.href,
    [Symbol.asyncDispose]: async () => {
      await admin`drop schema ${admin(schema)} cascade`;
      await admin.end();
    },
  };
}

contract("sqlite", freshSqlite);
contract("postgres", freshPostgres);

Deno.test("openStore refuses an unknown database URL and hides its password", async () => {
  await rejects(
    openStore("mysql://root:hunter2@db/x"),
    new Error('Unknown database "mysql://root:***@db/x": use sqlite:PATH or postgres://...'),
  );
  await rejects(openStore("sqlite:"), /Unknown database "sqlite:"/);
  await rejects(openStore("data/oneoff.txt"), /Unknown database "data\/oneoff.txt"/);
});

Deno.test("openStore takes a bare path ending in .db as SQLite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-store-" });
  try {
    const store = await openStore(`${dir}/bare.db`);
    await store.createApp("bare");
    await store.close();
    ok((await Deno.stat(`${dir}/bare.db`)).isFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------

function contract(kind: "sqlite" | "postgres", fresh: () => Promise<FreshDatabase>) {
  // Every test of the contract goes through here, so each needs what its kind needs.
  const define = (definition: Deno.TestDefinition) =>
    Deno.test(needs(kind === "postgres" ? ["postgres"] : [], definition));
  function test(name: string, body: (store: Store, url: string) => Promise<void>) {
    define({
      name: `[${kind}] ${name}`,
      async fn() {
        await using db = await fresh();
        const store = await openStore(db.url);
        try {
          await body(store, db.url);
        } finally {
          await store.close();
        }
      },
    });
  }

  test("migrate is safe to repeat and keeps the data", async (store, url) => {
    await store.createApp("kept");
    await store.migrate();
    const again = await openStore(url);
    try {
      equal((await again.appByName("kept"))?.name, "kept");
    } finally {
      await again.close();
    }
  });

  define({
    name: `[${kind}] two servers migrating a fresh database at once both succeed`,
    async fn() {
      await using db = await fresh();
      const stores = await Promise.all([openStore(db.url), openStore(db.url)]);
      try {
        await stores[0].createApp("one");
        equal((await stores[1].listApps()).length, 1);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    },
  });

  define({
    name: `[${kind}] apps made before the network column get "isolated", the default`,
    async fn() {
      await using db = await fresh();
      await migrateTo1(db.url);
      const store = await openStore(db.url);
      try {
        const old = await store.appByName("old");
        equal(old?.network, "isolated");
      } finally {
        await store.close();
      }
    },
  });

  test("tokens round-trip with their app list", async (store) => {
    equal(await store.countTokens(), 0);
    const made = await store.createToken({
      hash: "ab".repeat(32),
      role: "member",
      apps: ["demo", "other"],
      name: "ci",
    });
    ok(made.created_at instanceof Date);
    deepEqual(await store.tokenByHash("ab".repeat(32)), made);
    deepEqual(made.apps, ["demo", "other"]);
    equal(await store.tokenByHash("cd".repeat(32)), null);
    equal(await store.countTokens(), 1);
  });

  test("tokens are listed oldest first and a deleted one is gone", async (store) => {
    const a = await store.createToken({
      hash: "a1".repeat(32),
      role: "admin",
      apps: [],
      name: "a",
    });
    const b = await store.createToken({
      hash: "b2".repeat(32),
      role: "member",
      apps: ["demo"],
      name: "b",
    });
    deepEqual(await store.listTokens(), [a, b]);
    equal(await store.deleteToken(b.id), true);
    equal(await store.deleteToken(b.id), false, "already gone");
    equal(await store.tokenByHash(b.hash), null);
    deepEqual(await store.listTokens(), [a]);
  });

  test("createApp rejects a taken name with ConflictError", async (store) => {
    const app = await store.createApp("demo");
    equal(typeof app.id, "number");
    await rejects(store.createApp("demo"), ConflictError);
    await store.createApp("alpha");
    deepEqual((await store.listApps()).map((a) => a.name), ["alpha", "demo"]);
    deepEqual(await store.appByName("demo"), app);
    equal(await store.appByName("nope"), null);
    deepEqual(await store.appById(app.id), app);
    equal(await store.appById(app.id + 1000), null);
  });

  test("an app's network is isolated unless set, and round-trips", async (store) => {
    const app = await store.createApp("demo");
    const other = await store.createApp("other");
    equal(app.network, "isolated");
    await store.setAppNetwork(app.id, "none");
    deepEqual(await store.appById(app.id), { ...app, network: "none" });
    equal((await store.appByName("demo"))?.network, "none");
    deepEqual((await store.listApps()).map((a) => [a.name, a.network]), [
      ["demo", "none"],
      ["other", "isolated"],
    ]);
    await store.setAppNetwork(app.id, "isolated");
    deepEqual(await store.appById(app.id), app);
    deepEqual(await store.appById(other.id), other);
  });

  test("updateAppSettings changes only the settings given, null back to the default", async (store) => {
    const app = await store.createApp("demo");
    const other = await store.createApp("other");
    deepEqual(
      [app.host_ports, app.idle_timeout_ms, app.reattach_grace_ms, app.labels],
      [[], null, null, {}],
      "a new app has no settings of its own",
    );
    const set = await store.updateAppSettings(app.id, {
      idle_timeout_ms: 3600_000,
      host_ports: [5432, 6379],
    });
    deepEqual(set, { ...app, idle_timeout_ms: 3600_000, host_ports: [5432, 6379] });
    deepEqual(await store.appById(app.id), set);
    const more = await store.updateAppSettings(app.id, {
      network: "host",
      reattach_grace_ms: 60_000,
      labels: { region: "eu" },
    });
    deepEqual(more, {
      ...set!,
      network: "host",
      reattach_grace_ms: 60_000,
      labels: { region: "eu" },
    });
    const back = await store.updateAppSettings(app.id, { idle_timeout_ms: null, host_ports: [] });
    deepEqual(back, { ...more!, idle_timeout_ms: null, host_ports: [] });
    deepEqual(await store.updateAppSettings(app.id, {}), back, "nothing given: unchanged");
    deepEqual(await store.appById(other.id), other, "other apps untouched");
    equal(await store.updateAppSettings(other.id + 1000, { idle_timeout_ms: 1000 }), null);
  });

  test("a run keeps the idle timeout it was created with", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const attached = await store.createRun(
      newRun(app.id, rel.id, { attached: true, idle_timeout_ms: 90_000 }),
    );
    const detached = await store.createRun(newRun(app.id, rel.id));
    equal(attached.idle_timeout_ms, 90_000);
    equal(detached.idle_timeout_ms, null);
    equal((await store.runById(attached.id))?.idle_timeout_ms, 90_000);
  });

  test("runLogUsage adds up a run's stored bytes and what it counted past its quota", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    deepEqual(await store.runLogUsage(run.id), { bytes: 0, seq: -1, overLines: 0, overBytes: 0 });
    const lines = logs(run.id, 1, 10);
    lines[0]!.line = "héllo"; // 6 UTF-8 bytes
    await store.appendLogs(app.id, lines);
    await store.appendLogs(app.id, lines.slice(0, 3)); // sent again: counted once
    const bytes = lines.reduce((n, l) => n + new TextEncoder().encode(l.line).length + 1, 0);
    deepEqual(await store.runLogUsage(run.id), { bytes, seq: 10, overLines: 0, overBytes: 0 });
    equal(await store.appLogBytes(app.id), bytes);
    await store.saveLogOverage(run.id, { seq: 25, lines: 15, bytes: 900 });
    await store.saveLogOverage(run.id, { seq: 30, lines: 20, bytes: 1200 });
    deepEqual(await store.runLogUsage(run.id), { bytes, seq: 30, overLines: 20, overBytes: 1200 });
    await store.saveLogOverage("no-such-run", { seq: 1, lines: 1, bytes: 1 });
    deepEqual(await store.runLogUsage("no-such-run"), {
      bytes: 0,
      seq: -1,
      overLines: 0,
      overBytes: 0,
    });
  });

  test("trimLogBytes removes an app's oldest lines until enough bytes are gone", async (store) => {
    const app = await store.createApp("noisy");
    const other = await store.createApp("quiet");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    const otherRun = await store.createRun(newRun(other.id, rel.id));
    const lines = logs(run.id, 1, 20);
    await store.appendLogs(app.id, lines);
    await store.appendLogs(other.id, logs(otherRun.id, 1, 5));
    const size = (l: NewLog) => l.line.length + 1;
    const total = lines.reduce((n, l) => n + size(l), 0);
    equal(await store.appLogBytes(app.id), total);
    equal(await store.appLogBytes(app.id + 1000), 0);
    // Just over three lines' worth: four go, the oldest.
    const want = size(lines[0]!) + size(lines[1]!) + size(lines[2]!) + 1;
    const first = await store.trimLogBytes(app.id, want, 1000);
    deepEqual(first, { lines: 4, bytes: lines.slice(0, 4).reduce((n, l) => n + size(l), 0) });
    const left = await store.readLogs(app.id, { limit: 1000 });
    deepEqual(left.map((l) => l.line), lines.slice(4).map((l) => l.line));
    // At most `limit` lines in one call.
    deepEqual(await store.trimLogBytes(app.id, total, 3), {
      lines: 3,
      bytes: lines.slice(4, 7).reduce((n, l) => n + size(l), 0),
    });
    deepEqual(await store.trimLogBytes(app.id, 0, 100), { lines: 0, bytes: 0 });
    equal(await store.appLogBytes(app.id), lines.slice(7).reduce((n, l) => n + size(l), 0));
    equal((await store.readLogs(other.id, {})).length, 5, "other apps untouched");
  });

  test("updateEnv sets and removes keys", async (store) => {
    const app = await store.createApp("demo");
    await store.updateEnv(app.id, { A: "1", B: "two words", C: "" }, []);
    await store.updateEnv(app.id, { A: "changed" }, ["B", "MISSING"]);
    deepEqual(await store.getEnv(app.id), { A: "changed", C: "" });
    deepEqual(await store.getEnv(app.id + 1000), {});
  });

  test("releases number per app, even when created at once", async (store) => {
    const a = await store.createApp("aaa");
    const b = await store.createApp("bbb");
    const made = await Promise.all(
      Array.from({ length: 12 }, (_, i) => store.createRelease(release(i % 2 ? a.id : b.id, i))),
    );
    const versions = (id: number) =>
      made.filter((r) => r.app_id === id).map((r) => r.version).sort((x, y) => x - y);
    deepEqual(versions(a.id), [1, 2, 3, 4, 5, 6]);
    deepEqual(versions(b.id), [1, 2, 3, 4, 5, 6]);
    const latest = await store.latestRelease(a.id);
    equal(latest?.version, 6);
    deepEqual(await store.releaseById(latest!.id), latest);
    deepEqual(latest!.process_types, { web: "node server.js", worker: "node w.js" });
    equal(latest!.size, 3_000_000_000);
    equal(await store.latestRelease(a.id + 1000), null);
    equal((await store.releaseShas()).length, 12);
  });

  test("runs number per app, even when created at once", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const runs = await Promise.all(
      Array.from({ length: 15 }, () => store.createRun(newRun(app.id, rel.id))),
    );
    deepEqual(runs.map((r) => r.number).sort((x, y) => x - y), range(1, 15));
    const run = runs[0]!;
    equal(run.state, "pending");
    ok(run.created_at instanceof Date);
    ok(Math.abs(run.created_at.getTime() - Date.now()) < 60_000);
    deepEqual(await store.runByNumber(app.id, run.number), run);
    equal(await store.runById("missing"), null);
  });

  test("a run round-trips every field", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const spec = newRun(app.id, rel.id, {
      attached: true,
      tty: true,
      secret_sha256: "ff".repeat(32),
      expires_at: new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678)),
      idle_timeout_ms: 3600_000,
      purpose: "ticket 42: <b>why</b>",
    });
    const run = await store.createRun(spec);
    deepEqual(await store.runById(spec.id), run);
    deepEqual(run, {
      ...spec,
      number: 1,
      state: "pending",
      agent_id: null,
      exit_code: null,
      reason: null,
      created_at: run.created_at,
      started_at: null,
      ended_at: null,
      log_lines: null,
    });
    const ended = await store.updateRun(run.id, ["pending"], {
      state: "exited",
      log_lines: 70_000,
    });
    equal(ended?.log_lines, 70_000);
  });

  test("updateRun changes only a run in an expected state and only given fields", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    equal(await store.updateRun(run.id, ["running"], { state: "exited" }), null);
    equal((await store.runById(run.id))?.state, "pending");
    const started = new Date(Date.UTC(2031, 5, 6, 7, 8, 9, 10));
    const running = await store.updateRun(run.id, ["pending", "starting"], {
      state: "running",
      agent_id: "agent-1",
      started_at: started,
    });
    equal(running?.state, "running");
    equal(running?.agent_id, "agent-1");
    deepEqual(running?.started_at, started);
    const ended = await store.updateRun(run.id, ["running"], {
      state: "exited",
      exit_code: 3,
      reason: null,
      ended_at: new Date(started.getTime() + 1500),
    });
    equal(ended?.agent_id, "agent-1");
    deepEqual(ended?.started_at, started);
    equal(ended?.exit_code, 3);
    equal(ended?.ended_at?.getTime(), started.getTime() + 1500);
    deepEqual(await store.runById(run.id), ended);
    const cleared = await store.updateRun(run.id, ["exited"], { state: "exited", agent_id: null });
    equal(cleared?.agent_id, null);
    equal(await store.updateRun("missing", ["pending"], { state: "running" }), null);
  });

  test("racing updateRun calls from the same state let exactly one win", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    const results = await Promise.all(
      Array.from(
        { length: 6 },
        (_, i) =>
          store.updateRun(run.id, ["pending"], { state: "starting", agent_id: `agent-${i}` }),
      ),
    );
    const winners = results.filter((r) => r !== null);
    equal(winners.length, 1);
    deepEqual(await store.runById(run.id), winners[0]);
  });

  test("listRuns gives most recent first and applies its filters", async (store) => {
    const a = await store.createApp("aaa");
    const b = await store.createApp("bbb");
    const relA = await store.createRelease(release(a.id, 1));
    const relB = await store.createRelease(release(b.id, 1));
    for (let i = 0; i < 105; i++) await store.createRun(newRun(a.id, relA.id));
    for (let i = 0; i < 3; i++) await store.createRun(newRun(b.id, relB.id));
    const onA = await store.runByNumber(a.id, 7);
    await store.updateRun(onA!.id, ["pending"], { state: "running", agent_id: "ag" });
    const all = await store.listRuns({});
    equal(all.length, 100);
    deepEqual(
      (await store.listRuns({ app_id: b.id })).map((r) => r.number),
      [3, 2, 1],
    );
    const ofA = await store.listRuns({ app_id: a.id, limit: 1000 });
    deepEqual(ofA.map((r) => r.number), range(1, 105).reverse());
    deepEqual((await store.listRuns({ app_id: a.id, limit: 2 })).map((r) => r.number), [
      105,
      104,
    ]);
    deepEqual((await store.listRuns({ states: ["running", "exited"] })).map((r) => r.id), [
      onA!.id,
    ]);
    equal((await store.listRuns({ agent_id: "ag" }))[0]?.id, onA!.id);
    // countRuns counts what listRuns would list, without a limit.
    equal(await store.countRuns({}), 108);
    equal(await store.countRuns({ app_id: a.id, states: ["pending"] }), 104);
    equal(await store.countRuns({ states: ["running", "exited"] }), 1);
    equal(await store.countRuns({ agent_id: "ag", app_id: b.id }), 0);
    equal(await store.countRuns({ app_id: a.id, states: ["pending"], max_number: 10 }), 9);
    equal((await store.listRuns({ app_id: b.id, states: ["running"] })).length, 0);
    equal((await store.listRuns({ states: [] })).length, 0);
  });

  test("upsertAgent inserts, then updates by name keeping the id", async (store) => {
    const first = await store.upsertAgent(agent("host-1", { capacity: 4 }));
    equal(typeof first.id, "string");
    ok(first.id.length > 0);
    const again = await store.upsertAgent(
      agent("host-1", { capacity: 8, online: false, warnings: [], tls_fingerprint: null }),
    );
    equal(again.id, first.id);
    equal(again.capacity, 8);
    equal(again.online, false);
    deepEqual(again.warnings, []);
    const given = await store.upsertAgent({ ...agent("host-2"), id: "fixed-id" });
    equal(given.id, "fixed-id");
    const since = new Date(Date.UTC(2032, 1, 2, 3, 4, 5, 6));
    await store.setAgentOnline(first.id, true, since);
    const back = await store.agentById(first.id);
    equal(back?.online, true);
    deepEqual(back?.since, since);
    deepEqual((await store.listAgents()).map((a) => a.name), ["host-1", "host-2"]);
    deepEqual(await store.agentById("fixed-id"), given);
    equal(await store.agentById("nope"), null);
  });

  test("agents round-trip every field", async (store) => {
    const spec = { ...agent("host-9"), labels: { region: "eu", "db.local": "yes" } };
    const made = await store.upsertAgent(spec);
    deepEqual(made, { ...spec, id: made.id, trust: "pending" });
    deepEqual((await store.upsertAgent(agent("host-9"))).labels, {}, "none given: none");
  });

  test("enrolAgent refuses an enrolled name until it is revoked, then re-enrols it", async (store) => {
    const first = await store.enrolAgent({
      ...agent("host-1"),
      trust: "pending",
      credential_sha256: "a".repeat(64),
    });
    equal(first?.trust, "pending");
    equal((await store.agentByCredential("a".repeat(64)))?.id, first?.id);
    const taken = await store.enrolAgent({
      ...agent("host-1"),
      trust: "approved",
      credential_sha256: "b".repeat(64),
    });
    equal(taken, null);
    equal(await store.agentByCredential("b".repeat(64)), null);
    equal(await store.setAgentTrust(first!.id, "approved"), true);
    equal((await store.agentById(first!.id))?.trust, "approved");
    // A reconnect by credential updates the fields, never the trust.
    equal((await store.upsertAgent({ ...agent("host-1"), capacity: 9 })).trust, "approved");
    equal(await store.setAgentTrust("nope", "approved"), false);
    await store.setAgentTrust(first!.id, "revoked");
    const again = await store.enrolAgent({
      ...agent("host-1"),
      trust: "pending",
      credential_sha256: "c".repeat(64),
    });
    deepEqual([again?.id, again?.trust], [first!.id, "pending"]);
    equal(await store.agentByCredential("a".repeat(64)), null);
    const listed = await store.listAgents();
    equal("credential_sha256" in listed[0]!, false, "the hash stays in the store");
  });

  test("join tokens: spent per use, expire, and a rotation revokes the old ones", async (store) => {
    const now = new Date("2030-01-01T00:00:00Z");
    const later = new Date("2030-01-02T00:00:00Z");
    await store.ensureJoinToken({ sha256: "j1", uses_left: 2, expires_at: null });
    await store.ensureJoinToken({ sha256: "j1", uses_left: null, expires_at: null });
    equal(await store.useJoinToken("j1", now), true);
    equal(await store.useJoinToken("j1", now), true);
    equal(await store.useJoinToken("j1", now), false, "two uses, given first, stay");
    await store.ensureJoinToken({ sha256: "j2", uses_left: null, expires_at: later });
    equal(await store.useJoinToken("j2", now), true);
    equal(await store.useJoinToken("j2", later), false, "expired");
    await store.ensureJoinToken({ sha256: "j3", uses_left: null, expires_at: null });
    await store.rotateJoinTokens({ sha256: "j4", uses_left: null, expires_at: null });
    equal(await store.useJoinToken("j3", now), false);
    await store.ensureJoinToken({ sha256: "j3", uses_left: null, expires_at: null });
    equal(await store.useJoinToken("j3", now), false, "given again, a revoked token stays revoked");
    equal(await store.useJoinToken("j4", now), true);
    equal(await store.useJoinToken("unknown", now), false);
  });

  test("appendLogs stores each (run, seq) once and counts only new lines", async (store) => {
    const app = await store.createApp("demo");
    const batch = logs("run-1", 1, 5);
    equal(await store.appendLogs(app.id, batch), 5);
    equal(await store.appendLogs(app.id, batch), 0);
    equal(
      await store.appendLogs(app.id, [...logs("run-1", 4, 3), ...logs("run-2", 1, 2)]),
      3,
    );
    equal(await store.appendLogs(app.id, []), 0);
    const twice = [...logs("run-3", 1, 2), ...logs("run-3", 2, 2)];
    equal(await store.appendLogs(app.id, twice), 3, "a line twice in one batch");
    const stored = await store.readLogs(app.id, { limit: 100 });
    deepEqual(stored.map((l) => l.line), [
      ...range(1, 5).map((i) => `run-1 line ${i}`),
      "run-1 line 6",
      "run-2 line 1",
      "run-2 line 2",
      "run-3 line 1",
      "run-3 line 2",
      "run-3 line 3",
    ]);
    deepEqual(stored[0], {
      id: stored[0]!.id,
      app_id: app.id,
      ts: batch[0]!.ts,
      source: "one-off-1",
      stream: "stderr",
      line: "run-1 line 1",
    });
  });

  test("readLogs gives the last lines, lines after an id, and one source", async (store) => {
    const app = await store.createApp("demo");
    const other = await store.createApp("other");
    await store.appendLogs(app.id, logs("r1", 1, 150));
    await store.appendLogs(app.id, logs("r2", 1, 10, "one-off-2"));
    await store.appendLogs(other.id, logs("r3", 1, 5));
    const last = await store.readLogs(app.id, {});
    equal(last.length, 100);
    equal(last.at(-1)?.line, "r2 line 10");
    equal(last[0]?.line, "r1 line 61");
    assertAscending(last.map((l) => l.id));
    const tail = await store.readLogs(app.id, { source: "one-off-1", limit: 3 });
    deepEqual(tail.map((l) => l.line), ["r1 line 148", "r1 line 149", "r1 line 150"]);
    const after = await store.readLogs(app.id, { after_id: tail[0]!.id, limit: 4 });
    deepEqual(after.map((l) => l.line), [
      "r1 line 149",
      "r1 line 150",
      "r2 line 1",
      "r2 line 2",
    ]);
    const afterSource = await store.readLogs(app.id, {
      after_id: tail[0]!.id,
      source: "one-off-2",
    });
    equal(afterSource.length, 10);
    deepEqual(await store.readLogs(app.id, { after_id: last.at(-1)!.id }), []);
    equal((await store.readLogs(other.id, {})).length, 5);
  });

  test("readLogs before an id gives the last lines before it; countRunLogs counts a run's", async (store) => {
    const app = await store.createApp("demo");
    await store.appendLogs(app.id, logs("r1", 1, 30));
    await store.appendLogs(app.id, logs("r2", 1, 4, "one-off-2"));
    const all = await store.readLogs(app.id, { limit: 1000 });
    const page = await store.readLogs(app.id, { before_id: all[20]!.id, limit: 5 });
    deepEqual(page.map((l) => l.line), range(16, 20).map((i) => `r1 line ${i}`));
    const first = await store.readLogs(app.id, { before_id: all[2]!.id, limit: 5 });
    deepEqual(first.map((l) => l.line), ["r1 line 1", "r1 line 2"]);
    equal(await store.countRunLogs("r1"), 30);
    equal(await store.countRunLogs("r2"), 4);
    equal(await store.countRunLogs("none"), 0);
  });

  test("an idempotency key is claimed once, until it expires or is given up", async (store) => {
    const app = await store.createApp("demo");
    const long = new Date(Date.now() - 86_400_000);
    const row = { app_id: app.id, key: "k1", fingerprint: "f1", run_id: "run-1" };
    equal(await store.claimIdempotencyKey(row, long), null, "claimed");
    const held = await store.claimIdempotencyKey(
      { ...row, fingerprint: "f2", run_id: "run-2" },
      long,
    );
    deepEqual(
      [held?.app_id, held?.key, held?.fingerprint, held?.run_id],
      [app.id, "k1", "f1", "run-1"],
    );
    ok(held?.created_at instanceof Date);
    const other = await store.createApp("other");
    equal(await store.claimIdempotencyKey({ ...row, app_id: other.id }, long), null);
    await store.releaseIdempotencyKey(app.id, "k1", "run-other");
    ok(await store.claimIdempotencyKey(row, long), "only its own run gives it up");
    await store.releaseIdempotencyKey(app.id, "k1", "run-1");
    equal(await store.claimIdempotencyKey({ ...row, run_id: "run-3" }, long), null);
    const expired = await store.claimIdempotencyKey(
      { ...row, run_id: "run-4" },
      new Date(Date.now() + 1000),
    );
    equal(expired, null, "older than the cut-off: replaced");
  });

  test("updateRun sets and clears an attached run's expires_at", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id, { attached: true }));
    const at = new Date(Date.UTC(2030, 0, 1, 0, 1));
    const ready = await store.updateRun(run.id, ["pending"], { state: "starting", expires_at: at });
    deepEqual(ready?.expires_at, at);
    const kept = await store.updateRun(run.id, ["starting"], { state: "running" });
    deepEqual(kept?.expires_at, at);
    const cleared = await store.updateRun(run.id, ["running"], {
      state: "running",
      expires_at: null,
    });
    equal(cleared?.expires_at, null);
  });

  test("a log line holding NUL comes back with U+FFFD in its place", async (store) => {
    const app = await store.createApp("demo");
    await store.appendLogs(app.id, [{ ...logs("r", 1, 1)[0]!, line: "a\0b\u00e9\u{1F600}" }]);
    equal((await store.readLogs(app.id, {}))[0]?.line, "a\uFFFDb\u00e9\u{1F600}");
  });

  test("appendLogs stores 100,000 lines once, in order, when half is replayed", async (store) => {
    const app = await store.createApp("demo");
    const batches = Array.from({ length: 100 }, (_, b) => logs("big", b * 1000 + 1, 1000));
    let added = 0;
    const start = performance.now();
    for (const batch of batches) added += await store.appendLogs(app.id, batch);
    const seconds = (performance.now() - start) / 1000;
    console.error(`${kind}: appendLogs stored ${Math.round(100_000 / seconds)} lines/s`);
    for (const batch of batches.filter((_, i) => i % 2 === 0)) {
      added += await store.appendLogs(app.id, batch);
    }
    equal(added, 100_000);
    const stored = await store.readLogs(app.id, { after_id: 0, limit: 200_000 });
    equal(stored.length, 100_000);
    assertAscending(stored.map((l) => l.id));
    stored.forEach((l, i) => {
      if (l.line !== `big line ${i + 1}`) fail(`Line ${i} is "${l.line}"`);
    });
  });

  test("events list most recent first, by app, page by id", async (store) => {
    const app = await store.createApp("demo");
    const at = new Date(Date.UTC(2033, 3, 4, 5, 6, 7, 8));
    const first = await store.addEvent(oldEvent({
      app_id: app.id,
      app_name: "demo",
      actor: "alice",
      kind: "app.created",
      data: { nested: { list: [1, "two", null, true] }, n: 1.5 },
      at,
    }));
    deepEqual(first.at, at);
    deepEqual(first.data, { nested: { list: [1, "two", null, true] }, n: 1.5 });
    const global = await store.addEvent({
      app_id: null,
      app_name: null,
      actor: "admin",
      kind: "token.created",
      data: { role: "admin", name: "ci" },
    });
    ok(Math.abs(global.at.getTime() - Date.now()) < 60_000);
    for (let i = 0; i < 110; i++) {
      await store.addEvent(oldEvent({
        app_id: app.id,
        app_name: "demo",
        actor: "bob",
        kind: "x",
        data: { i },
      }));
    }
    const page = await store.listEvents({});
    equal(page.length, 100);
    deepEqual(page[0]?.data, { i: 109 });
    assertAscending(page.map((e) => e.id).reverse());
    const ofApp = await store.listEvents({ app_id: app.id, limit: 1000 });
    equal(ofApp.length, 111);
    deepEqual(ofApp.at(-1), first);
    const next = await store.listEvents({ before_id: page.at(-1)!.id, limit: 5 });
    deepEqual(next.map((e) => e.data), [{ i: 9 }, { i: 8 }, { i: 7 }, { i: 6 }, { i: 5 }]);
    const older = await store.listEvents({ app_id: app.id, before_id: ofApp[1]!.id, limit: 2 });
    deepEqual(older.map((e) => e.data), [{ i: 107 }, { i: 106 }]);
  });

  test("putAuditChunk keeps the first chunk of a (run, seq)", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    const chunk = (seq: number, payload: string) => ({
      run_id: run.id,
      seq,
      key_id: "k1",
      payload,
      prev_hash: "00".repeat(32),
      at: new Date(Date.UTC(2034, 0, 1, 0, 0, seq)),
    });
    equal(await store.putAuditChunk(chunk(2, "second")), true);
    equal(await store.putAuditChunk(chunk(1, "first")), true);
    equal(await store.putAuditChunk(chunk(1, "replaced?")), false);
    deepEqual(await store.auditChunks(run.id), [chunk(1, "first"), chunk(2, "second")]);
    deepEqual(await store.auditChunks("other"), []);
  });

  test("audit chunks are read in pages, one by seq, their quota bytes summed and the last seq known", async (store) => {
    const app = await store.createApp("demo");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    const chunk = (seq: number) => ({
      run_id: run.id,
      seq,
      key_id: "k1",
      payload: `p${seq}`,
      prev_hash: "00".repeat(32),
      at: new Date(Date.UTC(2034, 0, 1, 0, 0, seq)),
    });
    for (const seq of [0, 1, 2, 4, 5]) {
      equal(await store.putAuditChunk(chunk(seq), { bytes: 10 + seq }), true);
    }
    equal(await store.putAuditChunk(chunk(1), { bytes: 1000 }), false);
    deepEqual(await store.auditChunkPage(run.id, { after: -1, limit: 2 }), [chunk(0), chunk(1)]);
    deepEqual(await store.auditChunkPage(run.id, { after: 1, limit: 2 }), [chunk(2), chunk(4)]);
    deepEqual(await store.auditChunkPage(run.id, { after: 4, limit: 2 }), [chunk(5)]);
    deepEqual(await store.auditChunkPage(run.id, { after: 5, limit: 2 }), []);
    deepEqual(await store.auditChunk(run.id, 4), chunk(4));
    equal(await store.auditChunk(run.id, 3), null);
    equal(await store.auditRecordedBytes(run.id), 10 + 11 + 12 + 14 + 15);
    equal(await store.auditRecordedBytes("other"), 0);
    equal(await store.lastAuditSeq(run.id), 5);
    equal(await store.lastAuditSeq("other"), -1);
    // Base64 payloads may be kept as bytes: each reads back as the very text stored.
    const texts = [
      "AAECAw==",
      "AAECAw",
      "AAEC Aw==",
      "AAECAx==",
      crypto.getRandomValues(new Uint8Array(999)).toBase64(),
    ];
    for (const [i, payload] of texts.entries()) {
      await store.putAuditChunk({ ...chunk(10 + i), payload });
      equal((await store.auditChunk(run.id, 10 + i))?.payload, payload);
    }
  });

  test("listRecordedSessions gives an app's started attached runs with their bytes, newest first", async (store) => {
    const app = await store.createApp("demo");
    const other = await store.createApp("other");
    const rel = await store.createRelease(release(app.id, 1));
    const otherRel = await store.createRelease(release(other.id, 1));
    const started = async (appId: number, relId: number, extra: Partial<NewRun> = {}) => {
      const run = await store.createRun(newRun(appId, relId, { attached: true, ...extra }));
      await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date() });
      return run;
    };
    const a = await started(app.id, rel.id, { purpose: "INC-1" });
    await store.createRun(newRun(app.id, rel.id, { attached: true })); // never started
    await store.createRun(newRun(app.id, rel.id)); // detached
    const b = await started(app.id, rel.id, { actor: "bob" });
    const c = await started(app.id, rel.id);
    await started(other.id, otherRel.id);
    const put = (runId: string, seq: number, bytes: number) =>
      store.putAuditChunk({
        run_id: runId,
        seq,
        key_id: "k1",
        payload: "p",
        prev_hash: "00".repeat(32),
        at: new Date(),
      }, { bytes });
    await put(a.id, 0, 100);
    await put(a.id, 1, 23);
    await put(b.id, 0, 7);
    const since = new Date(Date.now() - 60_000);
    const all = await store.listRecordedSessions({ app_id: app.id, since, limit: 10 });
    deepEqual(all.map((s) => [s.run.id, s.bytes]), [[c.id, 0], [b.id, 7], [a.id, 123]]);
    equal(all[2]!.run.purpose, "INC-1");
    const bobs = await store.listRecordedSessions({
      app_id: app.id,
      since,
      actor: "bob",
      limit: 10,
    });
    deepEqual(bobs.map((s) => s.run.id), [b.id]);
    const page = await store.listRecordedSessions({
      app_id: app.id,
      since,
      before_number: c.number,
      limit: 1,
    });
    deepEqual(page.map((s) => s.run.id), [b.id]);
    const later = new Date(Date.now() + 60_000);
    deepEqual(await store.listRecordedSessions({ app_id: app.id, since: later, limit: 10 }), []);
  });

  test("pruneLogs removes lines past the retention and beyond the per-app maximum", async (store) => {
    const app = await store.createApp("noisy");
    const other = await store.createApp("quiet");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    const otherRun = await store.createRun(newRun(other.id, rel.id));
    await store.appendLogs(app.id, logs(run.id, 1, 50));
    await store.appendLogs(other.id, logs(otherRun.id, 1, 5));
    // Lines 1..20 are older than the cutoff (ts = base + seq ms).
    const before = new Date(Date.UTC(2030, 0, 1) + 21);
    const prune = { before, keepLines: 1_000_000, limit: 7 };
    const removed: number[] = [];
    for (let n = -1; n !== 0;) removed.push(n = await store.pruneLogs(app.id, prune));
    deepEqual(removed, [7, 7, 6, 0], "batches of at most the limit");
    const left = await store.readLogs(app.id, { limit: 1000 });
    deepEqual(left.map((l) => l.line), range(21, 50).map((i) => `${run.id} line ${i}`));
    while (await store.pruneLogs(app.id, { before, keepLines: 10, limit: 1000 }) > 0);
    const newest = await store.readLogs(app.id, { limit: 1000 });
    deepEqual(newest.map((l) => l.line), range(41, 50).map((i) => `${run.id} line ${i}`));
    equal((await store.readLogs(other.id, {})).length, 5, "other apps untouched");
    const size = (lines: NewLog[]) => lines.reduce((n, l) => n + l.line.length + 1, 0);
    equal(await store.appLogBytes(app.id), size(logs(run.id, 41, 10)), "the pruned bytes are off");
    equal((await store.runLogUsage(run.id)).bytes, size(logs(run.id, 41, 10)));
    equal(await store.pruneLogs(app.id, { before, keepLines: 0, limit: 100 }), 10);
    equal(await store.appLogBytes(app.id), 0);
    equal(await store.appLogBytes(other.id), size(logs(otherRun.id, 1, 5)));
  });

  test("pruneRuns removes ended runs past the retention into the audit trail", async (store) => {
    const app = await store.createApp("busy");
    const rel = await store.createRelease(release(app.id, 1));
    const ended = await store.createRun(newRun(app.id, rel.id));
    const live = await store.createRun(newRun(app.id, rel.id));
    const fresh = await store.createRun(newRun(app.id, rel.id));
    const endedAt = new Date(Date.now() - 60_000);
    const done = await store.updateRun(ended.id, ["pending"], {
      state: "exited",
      exit_code: 0,
      ended_at: endedAt,
    });
    await store.updateRun(live.id, ["pending"], { state: "running", started_at: endedAt });
    await store.updateRun(fresh.id, ["pending"], { state: "exited", ended_at: new Date() });
    const before = new Date(Date.now() - 30_000);
    equal(await store.pruneRuns(new Date(Date.now() + 1000), 0), 0);
    // All were created just now: ended long ago is not enough to go.
    equal(await store.pruneRuns(before, 100), 0);
    const cutoff = new Date(Date.now() + 1);
    await store.updateRun(fresh.id, ["exited"], {
      state: "exited",
      ended_at: new Date(cutoff.getTime() + 60_000),
    });
    equal(await store.pruneRuns(cutoff, 100), 1);
    equal(await store.runById(ended.id), null);
    deepEqual(await store.archivedRun(ended.id), {
      app_name: "busy",
      run: { ...done!, env_overrides: {}, secret_sha256: null },
    });
    equal((await store.runById(live.id))?.state, "running", "live runs are never pruned");
    ok(await store.runById(fresh.id));
    equal(await store.pruneRuns(cutoff, 100), 0);
  });

  test("pruneAudit removes recordings whose last record is past the retention", async (store) => {
    const app = await store.createApp("audited");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    const young = await store.createRun(newRun(app.id, rel.id));
    const t0 = Date.now() - 10 * 86_400_000;
    const chunk = (runId: string, seq: number, at: number) => ({
      run_id: runId,
      seq,
      key_id: "k",
      payload: `p${seq}`,
      prev_hash: "",
      at: new Date(at),
    });
    await store.putAuditChunk(chunk(run.id, 1, t0));
    await store.putAuditChunk(chunk(run.id, 2, t0 + 1000));
    await store.putAuditChunk(chunk(young.id, 1, t0));
    await store.putAuditChunk(chunk(young.id, 2, t0 + 5000));
    await store.destroyApp(app.id);
    const before = new Date(t0 + 2000);
    equal(await store.pruneAudit(before, 100), 1, "a recording goes whole, once all of it is old");
    deepEqual(await store.auditChunks(run.id), []);
    equal((await store.auditChunks(young.id)).length, 2);
    ok(await store.archivedRun(run.id), "metadata follows its own time");
    // The archived runs were created now: a cutoff past now removes them.
    equal(await store.pruneAudit(new Date(Date.now() + 1000), 100), 3);
    equal(await store.archivedRun(run.id), null);
    deepEqual(await store.auditChunks(young.id), []);
  });

  test("pruneReleases and blobReferences keep the newest releases and what live runs use", async (store) => {
    const app = await store.createApp("deploys");
    const other = await store.createApp("other");
    const rels = [];
    for (let n = 1; n <= 5; n++) rels.push(await store.createRelease(release(app.id, n)));
    const otherRel = await store.createRelease(release(other.id, 99));
    const upload = { name: "f", sha256: "ab".repeat(32), size: 1 };
    await store.createRun(newRun(app.id, rels[0]!.id, { uploads: [upload] })); // pending: live
    const ended = await store.createRun(
      newRun(app.id, rels[1]!.id, { uploads: [{ ...upload, sha256: "cd".repeat(32) }] }),
    );
    await store.updateRun(ended.id, ["pending"], { state: "exited", ended_at: new Date() });
    deepEqual(
      [...await store.blobReferences(2)].sort(),
      [rels[0]!.sha256, rels[3]!.sha256, rels[4]!.sha256, otherRel.sha256, upload.sha256].sort(),
    );
    // Release 3 has no run: it goes; 1 and 2 have run rows, 4 and 5 are newest.
    equal(await store.pruneReleases(2, 100), 1);
    equal(await store.releaseById(rels[2]!.id), null);
    ok(await store.releaseById(rels[1]!.id));
    ok(await store.releaseById(otherRel.id));
    equal((await store.runById(ended.id))?.release_id, rels[1]!.id);
    equal(await store.pruneReleases(2, 100), 0);
  });

  test("run artifacts are kept, replaced by name, summed, referenced, and go with their run", async (store) => {
    const app = await store.createApp("files");
    const rel = await store.createRelease(release(app.id, 1));
    const run = await store.createRun(newRun(app.id, rel.id));
    const other = await store.createRun(newRun(app.id, rel.id));
    const at = new Date(1_700_000_000_000);
    const kept = {
      run_id: run.id,
      sha256: "ab".repeat(32),
      size: 5,
      refused: null,
      created_at: at,
    };
    ok(await store.putArtifact({ ...kept, name: "b.csv" }));
    // Sent again (a retried upload): the row is replaced, not doubled.
    ok(await store.putArtifact({ ...kept, name: "b.csv", sha256: "cd".repeat(32), size: 7 }));
    ok(await store.putArtifact({ ...kept, name: "a.txt", size: 3 }));
    ok(await store.putArtifact({ ...kept, name: '"x\\n"', sha256: null, size: 0, refused: "odd" }));
    equal(
      await store.putArtifact({
        ...kept,
        run_id: "00000000-0000-0000-0000-000000000000",
        name: "z",
      }),
      false,
    );
    const rows = await store.listArtifacts(run.id);
    deepEqual(rows.map((r) => [r.name, r.sha256, r.size, r.refused]), [
      ['"x\\n"', null, 0, "odd"],
      ["a.txt", "ab".repeat(32), 3, null],
      ["b.csv", "cd".repeat(32), 7, null],
    ]);
    equal(rows[1]!.created_at.getTime(), at.getTime());
    deepEqual(await store.listArtifacts(other.id), []);
    deepEqual(
      [...await store.artifactSummaries([run.id, other.id])],
      [[run.id, { files: 2, bytes: 10, refused: 1 }]],
    );
    deepEqual(await store.artifactSummaries([]), new Map());
    const refs = await store.blobReferences(0);
    ok(refs.has("ab".repeat(32)) && refs.has("cd".repeat(32)));
    // The run retention takes its artifacts, and with them the blobs' references.
    await store.updateRun(run.id, ["pending"], { state: "exited", ended_at: new Date(0) });
    equal(await store.pruneRuns(new Date(Date.now() + 60_000), 10), 1);
    deepEqual(await store.listArtifacts(run.id), []);
    const after = await store.blobReferences(0);
    ok(!after.has("ab".repeat(32)) && !after.has("cd".repeat(32)));
  });

  test("destroyApp removes what the app owns and keeps its timeline", async (store) => {
    const app = await store.createApp("doomed");
    const kept = await store.createApp("kept");
    await store.updateEnv(app.id, { A: "1" }, []);
    await store.updateEnv(kept.id, { B: "2" }, []);
    const rel = await store.createRelease(release(app.id, 1));
    const keptRel = await store.createRelease(release(kept.id, 2));
    const run = await store.createRun(newRun(app.id, rel.id));
    const keptRun = await store.createRun(newRun(kept.id, keptRel.id));
    await store.appendLogs(app.id, logs(run.id, 1, 10));
    await store.appendLogs(kept.id, logs(keptRun.id, 1, 3));
    await store.putAuditChunk({
      run_id: run.id,
      seq: 1,
      key_id: "k",
      payload: "p",
      prev_hash: "",
      at: new Date(),
    });
    const event = await store.addEvent({
      app_id: app.id,
      app_name: "doomed",
      actor: "alice",
      kind: "app.created",
      data: {},
    });
    await store.destroyApp(app.id);
    equal(await store.appByName("doomed"), null);
    deepEqual(await store.getEnv(app.id), {});
    equal(await store.releaseById(rel.id), null);
    equal(await store.runById(run.id), null);
    deepEqual(await store.readLogs(app.id, {}), []);
    equal((await store.auditChunks(run.id)).length, 1, "the audit trail outlives the app");
    deepEqual(await store.archivedRun(run.id), {
      app_name: "doomed",
      run: { ...run, env_overrides: {}, secret_sha256: null },
    });
    equal(await store.archivedRun(keptRun.id), null);
    deepEqual(await store.listArchivedRuns("doomed", 10), [(await store.archivedRun(run.id))!]);
    deepEqual(await store.listArchivedRuns("kept", 10), []);
    deepEqual(await store.listEvents({}), [{ ...event, app_id: null }]);
    deepEqual(await store.getEnv(kept.id), { B: "2" });
    equal((await store.readLogs(kept.id, {})).length, 3);
    deepEqual(await store.runById(keptRun.id), keptRun);
    deepEqual(await store.releaseShas(), [keptRel.sha256]);
    const reborn = await store.createApp("doomed");
    notEqual(reborn.id, app.id);
  });
}

// ---------------------------------------------------------------------------
// Builders and checks

/** Applies schema version 1 alone, as an older server left it, with one app "old". */
async function migrateTo1(url: string): Promise<void> {
  const first = MIGRATIONS[0]!;
  if (url.startsWith("sqlite:")) {
    const db = new DatabaseSync(url.slice("sqlite:".length));
    db.exec(SQLITE_MIGRATIONS_TABLE);
    db.exec(first.sqlite);
    db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (1, ?)").run(Date.now());
    db.prepare("INSERT INTO apps (name, created_at) VALUES ('old', ?)").run(Date.now());
    db.close();
    return;
  }
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(POSTGRES_MIGRATIONS_TABLE);
    await sql.unsafe(first.postgres);
    await sql`insert into schema_migrations (version) values (1)`;
    await sql`insert into apps (name) values ('old')`;
  } finally {
    await sql.end();
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function assertAscending(ids: number[]) {
  for (let i = 1; i < ids.length; i++) {
    if (!(ids[i]! > ids[i - 1]!)) {
      fail(`Ids are not ascending at ${i}: ${ids[i - 1]}, ${ids[i]}`);
    }
  }
}

function release(appId: number, n: number) {
  return {
    app_id: appId,
    sha256: n.toString(16).padStart(64, "0"),
    size: 3_000_000_000,
    process_types: { web: "node server.js", worker: "node w.js" },
    actor: "alice",
  };
}

function newRun(appId: number, releaseId: number, extra: Partial<NewRun> = {}): NewRun {
  return {
    id: crypto.randomUUID(),
    app_id: appId,
    command: "echo 'hi' && exit 3",
    attached: false,
    tty: false,
    size: "M",
    release_id: releaseId,
    env_overrides: { DEBUG: "1", EMPTY: "" },
    uploads: [{ name: "dump.sql", sha256: "ee".repeat(32), size: 12 }],
    cols: 80,
    rows: 24,
    timeout_ms: 86_400_000,
    actor: "alice",
    secret_sha256: null,
    expires_at: null,
    ...extra,
  };
}

function agent(name: string, extra: Partial<Parameters<Store["upsertAgent"]>[0]> = {}) {
  return {
    name,
    online: true,
    since: new Date(Date.UTC(2030, 0, 1, 12, 0, 0, 123)),
    version: "0.1.0",
    capacity: 2,
    sandbox: "bwrap",
    attach_host: "10.0.0.5",
    attach_port: 5000,
    attach_tls: true,
    tls_fingerprint: "aa".repeat(32),
    warnings: ["cgroup v1: no cpu limit"],
    ...extra,
  };
}

function logs(runId: string, firstSeq: number, count: number, source = "one-off-1"): NewLog[] {
  const base = Date.UTC(2030, 0, 1);
  return Array.from({ length: count }, (_, i) => ({
    run_id: runId,
    seq: firstSeq + i,
    ts: new Date(base + firstSeq + i),
    source,
    stream: i % 3 === 0 ? "stderr" : "stdout",
    line: `${runId} line ${firstSeq + i}`,
  }));
}
