import { deepEqual, match, ok } from "node:assert/strict";
import postgres from "postgres";
import { startSystem, type TestSystem } from "./_system.ts";
import { waitFor } from "./_wait.ts";
import { needs, PG_URL as PG } from "./_tools.ts";

/** Runs an attached no-TTY session that echoes a typed marker; waits until its recording is complete. */
async function recordSession(sys: TestSystem, marker: string): Promise<void> {
  const res = await sys.cli([
    "run",
    "-a",
    "demo",
    "--no-tty",
    "--silent",
    "--",
    "cat; printf '\\377binary\\n'",
  ], {
    stdin: `${marker}\n`,
  });
  deepEqual(res.code, 0, res.stderr);
  match(res.stdout, new RegExp(marker));
  let seen: { problems: string[]; final: boolean } | undefined;
  await waitFor(async () => {
    const { problems, final } = await sys.api<{ problems: string[]; final: boolean }>(
      "GET",
      "/apps/demo/runs/one-off-1/audit",
    );
    seen = { problems, final };
    return final && problems.length === 0;
  }, { message: "one-off-1's recording to be final and sound", seen: () => seen });
}

Deno.test("an attached session is recorded: audit show prints it, export is asciicast v2, views are in the timeline", async () => {
  await using sys = await startSystem();
  const marker = `typed-marker-${crypto.randomUUID()}`;
  await recordSession(sys, marker);
  const views = async () =>
    (await sys.api<{ events: { kind: string }[] }>("GET", "/apps/demo/timeline?limit=1000")).events
      .filter((e) => e.kind === "audit.viewed").length;
  const viewsBefore = await views();
  const show = await sys.cli(["audit", "show", "-a", "demo", "one-off-1"]);
  deepEqual(show.code, 0, show.stderr);
  match(show.stdout, new RegExp(`⟩ ${marker}`), "input lines are marked");
  match(show.stdout, /\\xffbinary/, "bytes that are not UTF-8 are escaped");
  const cast = await sys.cli(["audit", "export", "-a", "demo", "one-off-1"]);
  deepEqual(cast.code, 0, cast.stderr);
  const [header, ...events] = cast.stdout.trim().split("\n");
  deepEqual(JSON.parse(header!).version, 2);
  const parsed = events.map((line) => JSON.parse(line) as [number, string, string]);
  ok(parsed.every(([t, kind]) => typeof t === "number" && ["o", "i", "r"].includes(kind)));
  ok(parsed.some(([, kind, text]) => kind === "i" && text.includes(marker)));
  deepEqual(await views(), viewsBefore + 2, "each display is a timeline event");

  // The database never holds the session in clear.
  const db = `${sys.dir}/server/oneoff.db`;
  for (const file of [db, `${db}-wal`]) {
    const bytes = await Deno.readFile(file).catch(() => new Uint8Array());
    ok(!new TextDecoder("latin1").decode(bytes).includes(marker), `no plaintext in ${file}`);
  }
});

Deno.test("a session past its recording quota goes on whole; the recording stops with a marker and the run says so", async () => {
  await using sys = await startSystem({ config: { auditQuotaBytes: 1000 } });
  const res = await sys.cli(["run", "-a", "demo", "--no-tty", "--silent", "--", "seq 1 5000"]);
  deepEqual(res.code, 0, res.stderr);
  deepEqual(res.stdout.trim().split("\n").length, 5000, "the client got all of it");
  await waitFor(async () => {
    const audit = await sys.api<{ final: boolean }>("GET", "/apps/demo/runs/one-off-1/audit");
    return audit.final;
  }, { message: "one-off-1's recording to be final" });
  const show = await sys.cli(["audit", "show", "-a", "demo", "one-off-1"]);
  deepEqual(show.code, 0, show.stderr);
  match(show.stdout, /recording stopped at 1000 bytes; the session goes on unrecorded/);
  ok(!show.stdout.includes("4999"), "nothing past the quota is recorded");
  const { run } = await sys.api<{ run: { reason: string | null } }>(
    "GET",
    "/apps/demo/runs/one-off-1",
  );
  match(run.reason ?? "", /recording stopped at its quota of 1000 bytes/);
});

Deno.test("a member cannot read another app's session", async () => {
  await using sys = await startSystem();
  await recordSession(sys, "member-check");
  await sys.cli(["apps", "create", "other"]);
  const token = (await sys.cli(["tokens", "create", "--role", "member", "--app", "other"])).stdout
    .trim();
  const denied = await sys.cli(["audit", "show", "-a", "demo", "one-off-1"], {
    env: { ONEOFF_TOKEN: token },
  });
  deepEqual(denied.code, 1);
  match(denied.stderr, /may not use app "demo"/);
});

Deno.test(needs(["postgres"], {
  name: "PostgreSQL rows hold no plaintext of a recorded session",
  async fn() {
    const schema = `audit_e2e_${crypto.randomUUID().replaceAll("-", "")}`;
    const admin = postgres(PG!, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create schema ${schema}`);
    try {
      await using sys = await startSystem({
        database: `${PG}${PG!.includes("?") ? "&" : "?"}search_path=${schema}`,
      });
      const marker = `pg-marker-${crypto.randomUUID()}`;
      await recordSession(sys, marker);
      const tables = await admin<{ table_name: string }[]>`
        select table_name from information_schema.tables where table_schema = ${schema}`;
      ok(tables.length > 5);
      for (const { table_name } of tables) {
        const rows = await admin.unsafe(`select t::text as row from ${schema}.${table_name} t`);
        for (const { row } of rows) {
          ok(!String(row).includes(marker), `plaintext found in ${table_name}`);
        }
      }
      const chunks = await admin.unsafe(`select count(*)::int as n from ${schema}.audit_chunks`);
      ok(chunks[0]!.n > 0, "the session was stored (encrypted)");
    } finally {
      await admin.unsafe(`drop schema ${schema} cascade`);
      await admin.end();
    }
  },
}));

Deno.test(needs(["asciinema", "script"], {
  name: "an exported session plays in the real asciinema CLI",
  async fn() {
    await using sys = await startSystem();
    const marker = `played-marker-${crypto.randomUUID()}`;
    await recordSession(sys, marker);
    const cast = await sys.cli(["audit", "export", "-a", "demo", "one-off-1"]);
    deepEqual(cast.code, 0, cast.stderr);
    const file = `${sys.dir}/session.cast`;
    await Deno.writeTextFile(file, cast.stdout);
    // Debian's asciinema wants a terminal to play to: script gives it one.
    const played = await new Deno.Command("script", {
      args: ["-qec", `asciinema cat ${file}`, "/dev/null"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(played.stdout);
    deepEqual(played.code, 0, new TextDecoder().decode(played.stderr) + stdout);
    match(stdout, new RegExp(marker), "the session's output is played");
    match(stdout, /binary/);
  },
}));
