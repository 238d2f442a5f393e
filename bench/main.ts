/**
 * `deno task bench`: our figures next to their baselines, measured in the
 * same run on the same machine, printed as ratios (medians of several
 * rounds after a warm-up, with their spread), then as a Markdown table.
 *
 *   deno task bench [--quick] [--only NAME,...] [--postgres URL] [--sessions N]
 *
 * `--quick` runs every case at a small size with few rounds (about a minute):
 * CI runs it so that the suite cannot rot; its figures mean little. A new
 * case is one entry in CASES below: a name, a line about it, and a function
 * of the BenchContext (bench/_case.ts).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startSystem } from "../tests/_system.ts";
import { type BenchCase, type BenchContext, benchContext } from "./_case.ts";
import { benchDeploy } from "./_deploy.ts";
import { benchIdle } from "./_idle.ts";
import { benchNetwork } from "./_network.ts";
import {
  benchDetachedLines,
  benchRequestToExec,
  benchRunTrue,
  benchThroughput,
} from "./_inprocess.ts";
import { benchLogsTail } from "./_logs.ts";
import { benchManyRuns } from "./_many_runs.ts";
import { benchPages } from "./_pages.ts";
import { benchRelay } from "./_relay.ts";
import { benchRecording } from "./_recording.ts";
import { benchPty } from "./_pty.ts";
import { benchSearch } from "./_search.ts";
import { benchSessions } from "./_sessions.ts";
import { benchWatch } from "./_watch.ts";
import { benchColdSlug } from "./_slug.ts";
import { benchBlobs } from "./_blobs.ts";
import { benchCluster } from "./_cluster.ts";
import { header, markdownTable } from "./_util.ts";

/** Every case, in the order they run. */
const CASES: BenchCase[] = [
  { name: "run", about: "the whole CLI running `true` vs bare deno + bwrap", run: benchRunTrue },
  { name: "exec", about: "API request → exec in the sandbox, warm slug", run: benchRequestToExec },
  {
    name: "stream",
    about: "no-TTY stream each way vs nc → nc, and recorded",
    run: benchThroughput,
  },
  { name: "pty", about: "bytes through a PTY vs script(1)", run: benchPty },
  { name: "lines", about: "detached run printing 1 M lines, SQLite and PostgreSQL", run: lines },
  { name: "logs", about: "`oneoff logs -n 1000` on 10 M stored lines", run: benchLogsTail },
  { name: "slug", about: "cold first run of a new 100 MiB slug vs tar xzf", run: benchColdSlug },
  { name: "runs", about: "1,000 detached `true` runs at once over 4 agents", run: benchManyRuns },
  { name: "idle", about: "idle server and agent RSS, own processes", run: benchIdle },
  { name: "sessions", about: "agent growth per idle attached session", run: benchSessions },
  { name: "deploy", about: "200 MiB deploy: time and server peak RSS", run: benchDeploy },
  {
    name: "blobs",
    about: "200 MiB deploy and cold download via another server, PostgreSQL vs files",
    run: benchBlobs,
  },
  { name: "pages", about: "dashboard pages with 10,000 runs", run: benchPages },
  { name: "network", about: "sandbox start and download per network mode", run: benchNetwork },
  { name: "relay", about: "attach through the server's relay vs direct", run: relay },
  {
    name: "recording",
    about: "recorded vs unrecorded stream, in process and own processes",
    run: recording,
  },
  { name: "search", about: "audit search over 200 recorded sessions", run: benchSearch },
  { name: "watch", about: "a session's output to its watcher vs to its user", run: watch },
  { name: "cluster", about: "runs/s accepted: 1 server vs 3 behind haproxy", run: benchCluster },
];

async function watch(ctx: BenchContext): Promise<void> {
  await benchWatch(await ctx.system(), ctx.pick(200, 20));
}

function relay(ctx: BenchContext): Promise<void> {
  return benchRelay(ctx.pick(256, 8));
}

async function recording(ctx: BenchContext): Promise<void> {
  await benchRecording(await ctx.system(), await ctx.plainSystem(), ctx.pick(256, 8));
}

async function lines(ctx: BenchContext): Promise<void> {
  await benchDetachedLines(await ctx.system(), "SQLite", ctx.quick);
  if (!ctx.postgres) {
    console.log("(PostgreSQL lines skipped: pass --postgres URL or set ONEOFF_TEST_POSTGRES)");
    return;
  }
  const pg = ctx.postgres;
  const schema = `bench_${Date.now()}`;
  const url = `${pg}${pg.includes("?") ? "&" : "?"}search_path=${schema}`;
  const postgres = (await import("postgres")).default;
  const admin = postgres(pg, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema}`);
  try {
    {
      await using sys = await startSystem({ database: url });
      await benchDetachedLines(sys, "PostgreSQL, NOTIFY on", ctx.quick);
    }
    // What waking the other servers costs: the same with signals kept in process.
    await admin.unsafe(`drop schema ${schema} cascade; create schema ${schema}`);
    await using sys = await startSystem({ database: url, notify: false });
    await benchDetachedLines(sys, "PostgreSQL, NOTIFY off", ctx.quick);
  } finally {
    await admin.unsafe(`drop schema ${schema} cascade`);
    await admin.end();
  }
}

function usage(): string {
  return [
    "deno task bench [--quick] [--only NAME,...] [--postgres URL] [--sessions N]",
    ...CASES.map((c) => `  ${c.name.padEnd(9)} ${c.about}`),
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string" },
      postgres: { type: "string" },
      sessions: { type: "string" },
      quick: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    Deno.exit(0);
  }
  const names = CASES.map((c) => c.name);
  const only = values.only?.split(",");
  const unknown = only?.filter((name) => !names.includes(name)) ?? [];
  if (unknown.length > 0) {
    console.error(`Unknown benchmark "${unknown[0]}": use ${names.join(", ")}`);
    Deno.exit(2);
  }
  const quick = values.quick;
  const sessions = Number(values.sessions ?? (quick ? 10 : 500));
  if (!Number.isInteger(sessions) || sessions < 1) {
    console.error(`Invalid --sessions "${values.sessions}": give a positive integer`);
    Deno.exit(2);
  }
  const started = performance.now();
  header();
  let failed = 0;
  // How long each case took, printed with the table: what to trim when the whole runs too long.
  const took: string[] = [];
  {
    await using ctx = benchContext({
      quick,
      sessions,
      postgres: values.postgres ?? Deno.env.get("ONEOFF_TEST_POSTGRES"),
    });
    for (const c of CASES) {
      if (only && !only.includes(c.name)) continue;
      const begun = performance.now();
      try {
        await c.run(ctx);
        took.push(`${c.name} ${((performance.now() - begun) / 1000).toFixed(0)} s`);
      } catch (err) {
        // One broken case must not hide the others' figures; the exit code still says so.
        failed++;
        console.error(`Benchmark "${c.name}" failed: ${err instanceof Error ? err.stack : err}`);
      }
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const command = ["deno task bench", ...Deno.args].join(" ");
  console.log(
    `\n${markdownTable()}\n\n${new Date().toISOString().slice(0, 10)}, \`${command}\`, ` +
      `${seconds.toFixed(0)} s, ${navigator.hardwareConcurrency} cores\n\n(${took.join(", ")})\n`,
  );
  if (failed > 0) Deno.exit(1);
}
