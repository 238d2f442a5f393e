/**
 * `deno task bench`: our figures next to their baselines, measured in the
 * same run on the same machine, printed as ratios.
 *
 *   deno task bench [--only NAME,...] [--postgres URL] [--sessions N]
 *
 * NAME: run, exec, stream, lines (SQLite, and PostgreSQL with --postgres or
 * ONEOFF_TEST_POSTGRES), idle, sessions, deploy, pages, network, relay, recording.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startSystem } from "../tests/_system.ts";
import { benchDeploy } from "./_deploy.ts";
import { benchIdle } from "./_idle.ts";
import { benchNetwork } from "./_network.ts";
import {
  benchDetachedLines,
  benchRequestToExec,
  benchRunTrue,
  benchThroughput,
} from "./_inprocess.ts";
import { benchPages } from "./_pages.ts";
import { benchRelay } from "./_relay.ts";
import { benchRecording } from "./_recording.ts";
import { benchSessions } from "./_sessions.ts";
import { header } from "./_util.ts";

const NAMES = [
  "run",
  "exec",
  "stream",
  "lines",
  "idle",
  "sessions",
  "deploy",
  "pages",
  "network",
  "relay",
  "recording",
];

async function postgresLines(pg: string): Promise<void> {
  const schema = `bench_${Date.now()}`;
  const url = `${pg}${pg.includes("?") ? "&" : "?"}search_path=${schema}`;
  const postgres = (await import("postgres")).default;
  const admin = postgres(pg, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create schema ${schema}`);
  try {
    await using sys = await startSystem({ database: url });
    await benchDetachedLines(sys, "PostgreSQL");
  } finally {
    await admin.unsafe(`drop schema ${schema} cascade`);
    await admin.end();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string" },
      postgres: { type: "string" },
      sessions: { type: "string" },
    },
  });
  const only = values.only?.split(",");
  const unknown = only?.filter((name) => !NAMES.includes(name)) ?? [];
  if (unknown.length > 0) {
    console.error(`Unknown benchmark "${unknown[0]}": use ${NAMES.join(", ")}`);
    Deno.exit(2);
  }
  const sessions = Number(values.sessions ?? 500);
  if (!Number.isInteger(sessions) || sessions < 1) {
    console.error(`Invalid --sessions "${values.sessions}": give a positive integer`);
    Deno.exit(2);
  }
  const want = (name: string) => !only || only.includes(name);
  header();
  if (["run", "exec", "stream", "lines"].some(want)) {
    await using sys = await startSystem();
    if (want("run")) await benchRunTrue(sys);
    if (want("exec")) await benchRequestToExec(sys);
    if (want("stream")) {
      await using plain = await startSystem({ record: false });
      await benchThroughput(sys, plain);
    }
    if (want("lines")) await benchDetachedLines(sys, "SQLite");
  }
  const pg = values.postgres ?? Deno.env.get("ONEOFF_TEST_POSTGRES");
  if (want("lines") && pg) {
    await postgresLines(pg);
  } else if (want("lines")) {
    console.log(
      "(PostgreSQL lines benchmark skipped: pass --postgres URL or set ONEOFF_TEST_POSTGRES)",
    );
  }
  // These start the server and the agent as their own processes, so each one's memory is its own.
  if (want("idle")) await benchIdle();
  if (want("sessions")) await benchSessions(sessions);
  if (want("deploy")) await benchDeploy();
  // In this process, on SQLite: the dashboard's own cost, no network in between.
  if (want("pages")) await benchPages();
  if (want("network")) await benchNetwork();
  if (want("relay")) await benchRelay();
  if (want("recording")) {
    await using recorded = await startSystem();
    await using plain = await startSystem({ record: false });
    await benchRecording(recorded, plain);
  }
}
