/**
 * `deno task chaos [--quick] [--seconds N] [--seed S] [--database postgres|sqlite]
 * [--sandbox bwrap|runc]`: a mixed load on real separate processes (one
 * server, two agents, the CLI) while the server is SIGKILLed and
 * restarted, an agent SIGKILLed and restarted, the other frozen past its
 * heartbeat deadline, and PostgreSQL restarted (a private cluster this
 * script starts, never the shared one). Then it waits for quiescence and
 * counts what must be 0: lines missing or duplicated, runs in a wrong end
 * state, orphan processes, leftover cgroups, mounts and directories.
 * Exits 0 only when every count is 0. Not part of `deno task test`.
 *
 * By default 110 s of load within 3 minutes in all; `--quick` 30 s of load
 * within about a minute; `--seconds N` N s of load. `--seed S` replays the
 * same load and fault times. Runs whose process died with a killed agent
 * count as right when they end `failed`; `lost` is always wrong here,
 * since every agent comes back.
 * @module
 */
import { parseArgs } from "node:util";
import { cli, freePort, Proc, startAgent, startServer, waitOnline } from "../tests/_processes.ts";
import { waitFor } from "../tests/_wait.ts";

const t0 = performance.now();
const DEMO = new URL("../examples/demo", import.meta.url).pathname;
/** Longer than the server's heartbeat deadline (3 × 5 s). */
const FREEZE_MS = 17_000;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    seconds: { type: "string" },
    seed: { type: "string" },
    database: { type: "string" },
    sandbox: { type: "string", default: "bwrap" },
  },
});
const loadMs = Number(values.seconds ?? (values.quick ? 30 : 110)) * 1000;
// The whole script's budget; the waits after the load share what is left of it.
const budgetMs = values.seconds ? loadMs + 70_000 : values.quick ? 55_000 : 180_000;
const left = (cap: number) => Math.max(5_000, Math.min(cap, t0 + budgetMs - performance.now()));
const seed = Number(values.seed ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: the same seed gives the same load and fault times. */
function prng(a: number): () => number {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(seed);
const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));

function say(text: string): void {
  console.error(`chaos ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${text}`);
}

function pgBin(): string | undefined {
  try {
    for (const entry of Deno.readDirSync("/usr/lib/postgresql")) {
      const bin = `/usr/lib/postgresql/${entry.name}/bin`;
      try {
        Deno.statSync(`${bin}/initdb`);
        return bin;
      } catch { /* not this one */ }
    }
  } catch { /* no PostgreSQL */ }
  return undefined;
}

async function sh(args: string[], asPostgres = false): Promise<void> {
  const full = asPostgres && Deno.uid() === 0 ? ["runuser", "-u", "postgres", "--", ...args] : args;
  const out = await new Deno.Command(full[0]!, {
    args: full.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(`${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A PostgreSQL cluster of this script's own under `dir`, on a free port. */
async function privateCluster(bin: string, dir: string) {
  await Deno.mkdir(dir, { mode: 0o755 });
  if (Deno.uid() === 0) await sh(["chown", "postgres:postgres", dir]);
  const data = `${dir}/data`;
  const port = freePort();
  await sh([`${bin}/initdb`, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], true);
  const ctl = (...args: string[]) => sh([`${bin}/pg_ctl`, "-D", data, "-w", ...args], true);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  await ctl("-l", `${dir}/log`, "-o", opts, "start");
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    restart: () => ctl("-l", `${dir}/log`, "-o", opts, "-m", "fast", "restart"),
    stop: () => ctl("-m", "immediate", "stop").catch(() => {}),
  };
}

// --- the system -------------------------------------------------------------

const root = await Deno.makeTempDir({ prefix: "oneoff-chaos-" });
await Deno.chmod(root, 0o755);
const bin = pgBin();
const usePg = (values.database ?? (bin ? "postgres" : "sqlite")) === "postgres";
if (usePg && !bin) {
  throw new Error("Cannot use --database postgres: no initdb under /usr/lib/postgresql");
}
const pg = usePg ? await privateCluster(bin!, `${root}/pg`) : undefined;
const port = freePort();
// The load keeps more one-offs live than the default limit of an app.
const serverArgs = [...(pg ? ["--database", pg.url] : []), "--max-runs-per-app", "100"];
let server = await startServer(`${root}/server`, port, serverArgs);
const agentArgs = ["--sandbox", values.sandbox!, "--max-runs", "8"];
const agents: Record<string, Proc> = {
  "vm-a": startAgent(`${root}/vm-a`, port, "vm-a", agentArgs),
  "vm-b": startAgent(`${root}/vm-b`, port, "vm-b", agentArgs),
};
const token = (await Deno.readTextFile(`${root}/server/admin.token`)).trim();
const url = `http://127.0.0.1:${port}`;
const env = { ONEOFF_SERVER: url, ONEOFF_TOKEN: token, HOME: root };
const app = `chaos-${seed.toString(36)}`;
await waitOnline(env, ["vm-a", "vm-b"]);
for (const args of [["apps", "create", app], ["deploy", "-a", app, DEMO]]) {
  const res = await cli(env, args);
  if (res.code !== 0) throw new Error(`${args.join(" ")}: ${res.stderr}`);
}
say(
  `seed ${seed}, ${pg ? "PostgreSQL (private cluster)" : "SQLite"}, ${values.sandbox}, load ${
    loadMs / 1000
  }s`,
);

// --- the load ---------------------------------------------------------------

interface Detached {
  label?: string;
  lines: number;
  code: number;
  submitted: number;
  cliCode?: number;
  cliErr?: string;
  proc?: Proc;
}
interface Attached {
  label?: string;
  bytes: number;
  code: number;
  sha256: string;
  cliCode?: number;
  got?: string;
  stderr?: string;
  started: number;
  proc?: Proc;
}
const detached: Detached[] = [];
const attached: Attached[] = [];
const inFlight = new Set<Promise<void>>();
const track = (p: Promise<void>) => {
  inFlight.add(p);
  p.finally(() => inFlight.delete(p));
};

function submitDetached(): void {
  const lines = between(200, 8000);
  const first = between(1, lines);
  const run: Detached = { lines, code: between(0, 5), submitted: Date.now() };
  detached.push(run);
  const command = `seq 1 ${first}; sleep ${between(0, 4)}; seq ${
    first + 1
  } ${lines}; exit ${run.code}`;
  track((async () => {
    const proc = run.proc = new Proc(["run", "-a", app, "-d", "--json", "--", command], { env });
    const { code } = await proc.status();
    run.cliCode = code;
    if (code === 0) run.label = JSON.parse(proc.stdout).label;
    else run.cliErr = proc.stderr.trim();
  })());
}

function submitAttached(): void {
  const bytes = new Uint8Array(between(10_000, 2_000_000));
  for (let i = 0; i < bytes.length; i++) bytes[i] = (random() * 256) | 0;
  const run: Attached = {
    bytes: bytes.length,
    code: between(0, 5),
    sha256: "",
    started: Date.now(),
  };
  attached.push(run);
  track((async () => {
    run.sha256 = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const proc = run.proc = new Proc(
      ["run", "-a", app, "--no-tty", "--", `sleep ${between(0, 4)}; sha256sum; exit ${run.code}`],
      { env, stdin: true },
    );
    await proc.write(bytes).catch(() => {});
    await proc.closeStdin();
    const status = await proc.status();
    run.cliCode = status.code;
    run.got = proc.stdout.split(/\s/)[0] ?? "";
    run.stderr = proc.stderr.trim();
    const label = /Running (one-off-\d+)/.exec(proc.stderr)?.[1];
    if (label) run.label = label;
  })());
}

// --- the faults -------------------------------------------------------------

interface Fault {
  at: number;
  what: string;
  /** Wall-clock span during which runs on `agent` may be interrupted. */
  agent?: string;
  from?: number;
  to?: number;
}
const faults: Fault[] = [];

async function restartServer(): Promise<void> {
  server.kill("SIGKILL");
  await server.status();
  await new Promise((r) => setTimeout(r, between(500, 2000)));
  server = await startServer(`${root}/server`, port, serverArgs);
}

async function killAgent(name: string): Promise<Fault> {
  const fault: Fault = {
    at: Date.now(),
    what: `kill -9 agent ${name}`,
    agent: name,
    from: Date.now(),
  };
  agents[name]!.kill("SIGKILL");
  await agents[name]!.status();
  await new Promise((r) => setTimeout(r, between(500, 2000)));
  agents[name] = startAgent(`${root}/${name}`, port, name, agentArgs);
  fault.to = Date.now();
  return fault;
}

async function freezeAgent(name: string): Promise<void> {
  agents[name]!.kill("SIGSTOP");
  await new Promise((r) => setTimeout(r, FREEZE_MS));
  agents[name]!.kill("SIGCONT");
}

// When each fault starts, as a share of the load's duration; they overlap
// only where they hit different pieces.
const schedule: [number, string, () => Promise<unknown>][] = [
  [0.1, "kill -9 server, restart", restartServer],
  [0.25, "kill -9 agent vm-a, restart", async () => faults.push(await killAgent("vm-a"))],
  [0.4, `SIGSTOP agent vm-b for ${FREEZE_MS / 1000}s`, () => freezeAgent("vm-b")],
  ...(pg
    ? [[0.9, "restart PostgreSQL", () => pg.restart()] as [number, string, () => Promise<unknown>]]
    : []),
];

const loadStart = performance.now();
const loadStartWall = Date.now();
const faulting = Promise.all(schedule.map(async ([at, what, action]) => {
  const wait = loadStart + at * loadMs - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  say(what);
  const started = Date.now();
  try {
    await action();
  } catch (e) {
    say(`fault "${what}" failed: ${e instanceof Error ? e.message : e}`);
  }
  if (!what.includes("agent vm-a")) faults.push({ at: started, what });
  say(`${what}: done`);
}));

while (performance.now() - loadStart < loadMs) {
  if (inFlight.size < 6) random() < 0.7 ? submitDetached() : submitAttached();
  await new Promise((r) => setTimeout(r, between(200, 700)));
}
say(`load over: ${detached.length} detached, ${attached.length} attached submitted`);
await faulting;
// The CLIs' own bounds are long (an attached CLI waits 10 min for an outcome): cap it here.
await Promise.race([Promise.all([...inFlight]), new Promise((r) => setTimeout(r, left(120_000)))]);
const hungClis = inFlight.size;
const hung = [...detached, ...attached].filter((a) => a.cliCode === undefined && a.proc);
for (const a of hung) a.proc!.kill("SIGKILL");

// --- quiescence -------------------------------------------------------------

async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${url}/api${path}`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
  return await res.json() as T;
}
interface Run {
  id: string;
  label: string;
  state: string;
  exit_code: number | null;
  reason: string | null;
  agent: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}
const TERMINAL = new Set(["exited", "failed", "timed_out", "stopped", "expired", "lost"]);
let runs: Run[] = [];
try {
  await waitFor(async () => {
    runs = (await api<{ runs: Run[] }>(`/apps/${app}/runs?limit=10000`)).runs;
    return runs.every((r) => TERMINAL.has(r.state));
  }, { message: "every run to end", timeoutMs: left(90_000), intervalMs: 1000 });
} catch (e) {
  say(e instanceof Error ? e.message : String(e));
}

async function storedLines(label: string): Promise<string[]> {
  const { lines } = await api<{ lines: { line: string; stream: string }[] }>(
    `/apps/${app}/logs?filter=${label}&n=10000`,
  );
  return lines.filter((l) => l.stream === "stdout").map((l) => l.line);
}
// Lines may still be on their way after a run's end: wait until the count holds still.
let total = -1;
await waitFor(async () => {
  const counts = await Promise.all(
    detached.filter((d) => d.label).map(async (d) => (await storedLines(d.label!)).length),
  );
  const now = counts.reduce((a, b) => a + b, 0);
  const still = now === total;
  total = now;
  return still;
}, { message: "stored lines to settle", timeoutMs: left(30_000), intervalMs: 2000 }).catch(
  () => {},
);

// --- the counts -------------------------------------------------------------

// Once more: a CLI that returned late may have created a run since.
runs = (await api<{ runs: Run[] }>(`/apps/${app}/runs?limit=10000`)).runs;
const byLabel = new Map(runs.map((r) => [r.label, r]));
/** Runs on an agent while it was killed: their process died with it. */
function interrupted(run: Run | undefined): boolean {
  if (!run?.agent) return false;
  // A run whose start the server never heard of (it was down) began after its creation.
  const start = Date.parse(run.started_at ?? run.created_at);
  const end = run.ended_at ? Date.parse(run.ended_at) : Infinity;
  return faults.some((f) => f.agent === run.agent && start < f.from! && end > f.from!);
}

/** Seconds since the load started, for the details. */
function since(at: string | number | null | undefined): string {
  if (at === null || at === undefined) return "-";
  return `${
    ((Number(typeof at === "string" ? Date.parse(at) : at) - loadStartWall) / 1000).toFixed(1)
  }s`;
}

function describe(run: Run | undefined): string {
  if (!run) return "no such run";
  const code = run.exit_code === null ? "" : ` ${run.exit_code}`;
  return `${run.state}${code} (${run.reason ?? ""}) on ${run.agent ?? "-"}, started ${
    since(run.started_at)
  }, ended ${since(run.ended_at)}`;
}

const counts = {
  "submissions that failed": 0,
  "lines missing": 0,
  "lines duplicated": 0,
  "runs in a wrong end state": 0,
  "runs wrongly lost": 0,
  "attached: wrong exit code": 0,
  "attached: checksum mismatch": 0,
  "CLIs still waiting at the end": hungClis,
  "orphan processes": 0,
  "leftover cgroups": 0,
  "leftover mounts": 0,
  "leftover dirs": 0,
};
const details: string[] = hung.map((a) =>
  `a CLI still waiting: ${a.proc!.stderr.trim().replaceAll("\n", " | ")}`
);
const states: Record<string, { seen: number; expected: number }> = {};
const tally = (state: string, expected: boolean) => {
  const entry = states[state] ??= { seen: 0, expected: 0 };
  entry.seen++;
  if (expected) entry.expected++;
};
let produced = 0;
let stored = 0;
let interruptedRuns = 0;

for (const d of detached) {
  if (!d.label) {
    counts["submissions that failed"]++;
    details.push(`detached submission failed (exit ${d.cliCode}): ${d.cliErr}`);
    continue;
  }
  const run = byLabel.get(d.label);
  const cut = interrupted(run);
  if (cut) interruptedRuns++;
  const rightEnd = run?.state === "exited" && run.exit_code === d.code;
  const ok = rightEnd || (cut && run?.state === "failed");
  tally(`${run?.state ?? "missing"}`, ok);
  if (!ok) {
    counts["runs in a wrong end state"]++;
    details.push(
      `${d.label}: ${describe(run)}, expected exited ${d.code}`,
    );
  }
  if (run?.state === "lost") counts["runs wrongly lost"]++;
  const seen = new Map<number, number>();
  for (const line of await storedLines(d.label)) {
    const n = Number(line);
    if (Number.isInteger(n) && n > 0) seen.set(n, (seen.get(n) ?? 0) + 1);
  }
  // An interrupted run printed an unknown number of lines: count the gaps below its last one.
  const expected = rightEnd ? d.lines : Math.max(0, ...seen.keys());
  produced += expected;
  let missing = 0;
  let dups = 0;
  for (let i = 1; i <= expected; i++) if (!seen.has(i)) missing++;
  for (const c of seen.values()) dups += c - 1;
  stored += [...seen.values()].reduce((a, b) => a + b, 0);
  counts["lines missing"] += missing;
  counts["lines duplicated"] += dups;
  if (missing || dups) {
    details.push(`${d.label}: ${missing} lines missing, ${dups} duplicated of ${expected}`);
  }
}

for (const a of attached) {
  if (!a.label) {
    counts["submissions that failed"]++;
    details.push(`attached submission failed (exit ${a.cliCode}): ${a.stderr}`);
    continue;
  }
  const run = byLabel.get(a.label);
  const cut = interrupted(run);
  if (cut) interruptedRuns++;
  const rightEnd = run?.state === "exited" && run.exit_code === a.code;
  const ok = rightEnd || (cut && run?.state === "failed");
  tally(run?.state ?? "missing", ok);
  if (!ok) {
    counts["runs in a wrong end state"]++;
    details.push(`${a.label}: ${describe(run)}, expected exited ${a.code}; CLI: ${a.stderr}`);
  }
  if (run?.state === "lost") counts["runs wrongly lost"]++;
  // Its process died with its agent: neither its code nor its output can be right.
  if (cut) continue;
  if (a.cliCode !== a.code) {
    counts["attached: wrong exit code"]++;
    details.push(
      `${a.label}: CLI exit ${a.cliCode}, expected ${a.code}: ${a.stderr}`,
    );
  }
  if (a.got !== a.sha256) {
    counts["attached: checksum mismatch"]++;
    details.push(
      `${a.label}: sha256 ${a.got?.slice(0, 12)}…, sent ${a.sha256.slice(0, 12)}…`,
    );
  }
}

// Processes of this script's runs: their environment names the app, or their command line this directory.
const ours = new Set([server.pid, ...Object.values(agents).map((a) => a.pid)]);
for (const entry of Deno.readDirSync("/proc")) {
  const pid = Number(entry.name);
  if (!Number.isInteger(pid) || ours.has(pid) || pid === Deno.pid) continue;
  try {
    const environ = Deno.readTextFileSync(`/proc/${pid}/environ`).split("\0");
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
    if (cmdline.startsWith("postgres") || cmdline.includes(`${root}/pg`)) continue;
    if (environ.includes(`APP=${app}`) || cmdline.includes(root)) {
      counts["orphan processes"]++;
      details.push(`orphan process ${pid}: ${cmdline.slice(0, 80)}`);
    }
  } catch { /* gone, or a kernel thread */ }
}

const runIds = new Set(runs.map((r) => r.id));
function cgroupsUnder(dir: string, depth: number): string[] {
  const found: string[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (!entry.isDirectory) continue;
      const path = `${dir}/${entry.name}`;
      if (runIds.has(entry.name)) found.push(path);
      else if (depth > 0) found.push(...cgroupsUnder(path, depth - 1));
    }
  } catch { /* no such hierarchy */ }
  return found;
}
for (const path of cgroupsUnder("/sys/fs/cgroup", 3)) {
  counts["leftover cgroups"]++;
  details.push(`leftover cgroup ${path}`);
}
for (const line of Deno.readTextFileSync("/proc/self/mounts").split("\n")) {
  if (line.includes(root)) {
    counts["leftover mounts"]++;
    details.push(`leftover mount ${line.split(" ")[1]}`);
  }
}
for (const name of Object.keys(agents)) {
  const work = `${root}/${name}/work`;
  const leftovers: string[] = [];
  try {
    for (const e of Deno.readDirSync(`${work}/runs`)) leftovers.push(`${work}/runs/${e.name}`);
    for (const e of Deno.readDirSync(work)) {
      if (e.name.startsWith("uploads-")) leftovers.push(`${work}/${e.name}`);
    }
  } catch { /* no work dir */ }
  counts["leftover dirs"] += leftovers.length;
  details.push(...leftovers.map((d) => `leftover dir ${d}`));
}

// --- the table, then tidy up ------------------------------------------------

const out: string[] = [];
out.push(
  `chaos: seed ${seed}, ${detached.length} detached + ${attached.length} attached runs, ${interruptedRuns} interrupted by an agent kill`,
);
out.push(
  `faults: ${
    faults.sort((a, b) => a.at - b.at).map((f) => `${f.what} at ${since(f.at)}`).join("; ")
  }`,
);
out.push(`lines: ${produced} produced, ${stored} stored`);
out.push("end states (seen / as expected):");
for (const [state, n] of Object.entries(states)) {
  out.push(`  ${state.padEnd(16)} ${String(n.seen).padStart(5)} / ${n.expected}`);
}
out.push("counts that must be 0:");
for (const [what, n] of Object.entries(counts)) {
  out.push(`  ${what.padEnd(32)} ${String(n).padStart(6)}${n ? "   <-" : ""}`);
}
console.log(out.join("\n"));
if (details.length) {
  console.log("details:\n" + details.slice(0, 60).map((d) => `  ${d}`).join("\n"));
}

for (const agent of Object.values(agents)) {
  agent.kill("SIGCONT");
  agent.kill("SIGTERM");
}
await Promise.all(Object.values(agents).map((a) => a.status()));
server.kill("SIGTERM");
await server.status();
await pg?.stop();
await Deno.remove(root, { recursive: true }).catch(() => {});
Deno.exit(Object.values(counts).every((n) => n === 0) ? 0 : 1);
