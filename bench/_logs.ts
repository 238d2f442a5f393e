/**
 * `logs`: `oneoff logs -a APP -n 1000` (the whole CLI, and the server's
 * reply alone) on an app holding 10,000,000 stored lines, against the same
 * on an app holding 1,000: reading the tail must cost what it shows, not
 * what the app holds. The lines are put in the store directly (one SQL
 * statement), not by running anything; on SQLite, and on PostgreSQL when a
 * URL is given.
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import type { BenchContext } from "./_case.ts";
import { type ServerProcess, spawnServer } from "./_procs.ts";
import { MAIN, rounds, row, spread, time } from "./_util.ts";

/** Inserts `count` lines of app `app` as one run in SQLite at `path`. */
function fillSqlite(path: string, app: string, count: number): void {
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA busy_timeout = 10000");
    db.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO logs (app_id, run_id, seq, ts, source, stream, line)
       SELECT (SELECT id FROM apps WHERE name = ?), ?, i, ?, 'one-off-1', 'stdout',
              'line ' || i || ' of a long-lived app' FROM n`,
    ).run(count, app, crypto.randomUUID(), Date.now());
  } finally {
    db.close();
  }
}

/** The same on PostgreSQL, in the schema of `url`'s search_path. */
async function fillPostgres(url: string, app: string, count: number): Promise<void> {
  const postgres = (await import("postgres")).default;
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`insert into logs (app_id, run_id, seq, ts, source, stream, line)
      select (select id from apps where name = ${app}), ${crypto.randomUUID()}, i, now(), 'one-off-1', 'stdout',
             'line ' || i || ' of a long-lived app'
      from generate_series(1, ${count}::bigint) as i`;
    await sql`analyze logs`;
  } finally {
    await sql.end();
  }
}

async function measure(
  ctx: BenchContext,
  label: string,
  many: number,
  start: () => Promise<ServerProcess>,
  fill: (server: ServerProcess, app: string, count: number) => Promise<void>,
): Promise<void> {
  await using server = await start();
  await server.api("POST", "/apps", { name: "big" });
  await server.api("POST", "/apps", { name: "small" });
  const filled = performance.now();
  await fill(server, "big", many);
  await fill(server, "small", 1000);
  const fillS = (performance.now() - filled) / 1000;
  const env = server.cliEnv();
  const cli = (app: string) => () =>
    time(Deno.execPath(), ["run", "-A", "--quiet", MAIN, "logs", "-a", app, "-n", "1000"], env);
  const api = (app: string) => async () => {
    const begin = performance.now();
    const res = await server.api<{ lines: unknown[] }>("GET", `/apps/${app}/logs?n=1000`);
    if (res.lines.length !== 1000) throw new Error(`${app}: ${res.lines.length} lines, not 1000`);
    return performance.now() - begin;
  };
  const n = ctx.pick(11, 2);
  const oursCli = await rounds(n, cli("big"));
  const baseCli = await rounds(n, cli("small"));
  const oursApi = await rounds(n, api("big"));
  const baseApi = await rounds(n, api("small"));
  const lines = many.toLocaleString("en");
  row(
    `logs -n 1000, ${lines} lines (${label}), whole CLI`,
    `${oursCli.median.toFixed(1)} ms`,
    `${baseCli.median.toFixed(1)} ms`,
    `${(oursCli.median / baseCli.median).toFixed(2)}x`,
    `≤ 100 ms  (baseline: an app of 1,000 lines; filled in ${fillS.toFixed(0)} s)`,
    spread(oursCli),
  );
  row(
    `  same, the server's reply alone`,
    `${oursApi.median.toFixed(1)} ms`,
    `${baseApi.median.toFixed(1)} ms`,
    `${(oursApi.median / baseApi.median).toFixed(2)}x`,
    "-  (GET /apps/APP/logs?n=1000)",
    spread(oursApi),
  );
}

/** Prints the `logs -n 1000` rows, SQLite then PostgreSQL. */
export async function benchLogsTail(ctx: BenchContext): Promise<void> {
  const many = ctx.pick(10_000_000, 100_000);
  // Retention would trim the app to its default 1,000,000 lines at the first sweep.
  const keep = ["--log-max-lines-per-app", String(many * 2)];
  await measure(ctx, "SQLite", many, () => spawnServer(keep), (server, app, count) => {
    fillSqlite(`${server.dir}/oneoff.db`, app, count);
    return Promise.resolve();
  });
  const pg = ctx.postgres;
  if (!pg) return;
  const schema = `bench_logs_${Date.now()}`;
  const url = `${pg}${pg.includes("?") ? "&" : "?"}search_path=${schema}`;
  const postgres = (await import("postgres")).default;
  const admin = postgres(pg, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema}`);
  try {
    await measure(
      ctx,
      "PostgreSQL",
      many,
      () => spawnServer([...keep, "--database", url]),
      (_server, app, count) => fillPostgres(url, app, count),
    );
  } finally {
    await admin.unsafe(`drop schema ${schema} cascade`);
    await admin.end();
  }
}
