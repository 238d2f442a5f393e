import { equal, ok } from "node:assert/strict";
/**
 * Reading a recording back holds one page of chunks, never the whole: a
 * real server whose JavaScript heap is capped below the recording's size
 * (a server that held it would die out of memory) shows it whole, and its
 * peak resident set (VmHWM) stays within a bound. Without the cap V8 lets
 * garbage pile up to a few hundred MiB before it collects, whatever the
 * recording's size: the cap makes the bound one a test can assert on.
 * `ONEOFF_AUDIT_MEMORY_MB=256` makes a larger recording (for a measurement),
 * `ONEOFF_AUDIT_HEAP_MB=0` lifts the cap.
 */
import { openStore } from "../server/store/open.ts";
import { AuditService } from "../server/audit/mod.ts";
import { cli, freePort, startServer } from "./_processes.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const MIB = 1024 * 1024;
const RECORDING_MB = Number(Deno.env.get("ONEOFF_AUDIT_MEMORY_MB") ?? "96");
const HEAP_MB = Number(Deno.env.get("ONEOFF_AUDIT_HEAP_MB") ?? "64");
// The old reader held about 7 times the recording; a streamed one needs a page.
const BOUND_MB = HEAP_MB === 0 ? 1024 : HEAP_MB * 2 + 64;

// Writes a no-TTY session of `mb` MiB of output lines, as the agent would have sent it.
// With a marker, its last line is the marker's.
async function writeRecording(dir: string, mb: number, marker?: string): Promise<number> {
  const store = await openStore(`sqlite:${dir}/oneoff.db`);
  try {
    const app = await store.createApp("demo");
    const release = await store.createRelease({
      app_id: app.id,
      sha256: "ab".repeat(32),
      size: 1,
      process_types: {},
      actor: "admin",
    });
    const run = await store.createRun({
      id: crypto.randomUUID(),
      app_id: app.id,
      command: "pg_dump",
      attached: true,
      tty: false,
      size: "M",
      release_id: release.id,
      env_overrides: {},
      uploads: [],
      cols: 80,
      rows: 24,
      timeout_ms: 60_000,
      actor: "admin",
      secret_sha256: null,
      expires_at: null,
    });
    const t0 = Date.now();
    await store.updateRun(run.id, ["pending"], { state: "running", started_at: new Date(t0) });
    const audit = await AuditService.open(store, `${dir}/audit.key`, { quotaBytes: 4096 * MIB });
    const line = "x".repeat(63) + "\n";
    const bytes = new TextEncoder().encode(line.repeat(MIB / line.length));
    const last = marker === undefined ? bytes : new Uint8Array(bytes);
    if (marker !== undefined) last.set(new TextEncoder().encode(marker), bytes.length - 64);
    for (let seq = 0; seq < mb; seq++) {
      const events = [[seq, "o", (seq === mb - 1 ? last : bytes).toBase64()]];
      const chunk = { v: 1, t0, events, ...(seq === mb - 1 ? { final: true } : {}) };
      await audit.receive(run.id, seq, JSON.stringify(chunk));
    }
    await store.updateRun(run.id, ["running"], {
      state: "exited",
      exit_code: 0,
      ended_at: new Date(),
    });
    return mb * MIB;
  } finally {
    await store.close();
  }
}

function status(pid: number, field: "VmRSS" | "VmHWM"): number {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    throw new Error("The server died while showing the recording: did it hold it whole?");
  }
  const kb = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1]);
  return kb * 1024;
}

Deno.test(`audit show of a ${RECORDING_MB} MiB recording streams from a server with a ${HEAP_MB} MiB heap`, async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-audit-memory-" });
  try {
    const expected = await writeRecording(dir, RECORDING_MB);
    const port = freePort();
    const flags = Deno.env.get("DENO_V8_FLAGS");
    if (HEAP_MB > 0) Deno.env.set("DENO_V8_FLAGS", `--max-old-space-size=${HEAP_MB}`);
    // The server process is spawned at once; the variable is only for it.
    const starting = startServer(dir, port);
    if (flags === undefined) Deno.env.delete("DENO_V8_FLAGS");
    else Deno.env.set("DENO_V8_FLAGS", flags);
    await using server = await starting;
    const env = {
      ONEOFF_SERVER: `http://127.0.0.1:${port}`,
      ONEOFF_TOKEN: (await Deno.readTextFile(`${dir}/admin.token`)).trim(),
    };
    // Warm: the routes and the store are loaded before the baseline.
    const warm = await cli(env, ["audit", "show", "-a", "demo", "one-off-2"]);
    ok(warm.code !== 0 && /No run/.test(warm.stderr), warm.stderr);
    const before = status(server.pid, "VmRSS");
    const started = performance.now();
    const out = await Deno.open(`${dir}/transcript.txt`, { write: true, create: true });
    const show = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "audit", "show", "-a", "demo", "one-off-1"],
      env: { ...env, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const [, stderr, { code }] = await Promise.all([
      show.stdout.pipeTo(out.writable),
      new Response(show.stderr).text(),
      show.status,
    ]);
    const seconds = (performance.now() - started) / 1000;
    let peak: number;
    try {
      peak = status(server.pid, "VmHWM");
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${server.stderr.slice(-3000)}`);
    }
    equal(code, 0, `${stderr}\n${server.stderr.slice(-2000)}`);
    equal((await Deno.stat(`${dir}/transcript.txt`)).size, expected, "the whole transcript came");
    const grew = (peak - before) / MIB;
    console.error(
      `audit show of ${RECORDING_MB} MiB (heap cap ${HEAP_MB} MiB): ${
        seconds.toFixed(1)
      } s; server RSS ${(before / MIB).toFixed(0)} MiB before, peak ${
        (peak / MIB).toFixed(0)
      } MiB (+${grew.toFixed(0)} MiB)`,
    );
    ok(grew < BOUND_MB, `the server grew by ${grew.toFixed(0)} MiB reading the recording`);
  } finally {
    if (Deno.env.get("KEEP") === undefined) await Deno.remove(dir, { recursive: true });
    else console.error(dir);
  }
});

Deno.test(`audit search of a ${RECORDING_MB} MiB recording streams from a server with a ${HEAP_MB} MiB heap`, async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-audit-memory-" });
  try {
    const marker = `needle-${crypto.randomUUID()}`;
    await writeRecording(dir, RECORDING_MB, marker);
    const port = freePort();
    const flags = Deno.env.get("DENO_V8_FLAGS");
    if (HEAP_MB > 0) Deno.env.set("DENO_V8_FLAGS", `--max-old-space-size=${HEAP_MB}`);
    const starting = startServer(dir, port);
    if (flags === undefined) Deno.env.delete("DENO_V8_FLAGS");
    else Deno.env.set("DENO_V8_FLAGS", flags);
    await using server = await starting;
    const env = {
      ONEOFF_SERVER: `http://127.0.0.1:${port}`,
      ONEOFF_TOKEN: (await Deno.readTextFile(`${dir}/admin.token`)).trim(),
    };
    const warm = await cli(env, ["audit", "list", "-a", "demo"]);
    equal(warm.code, 0, warm.stderr);
    const before = status(server.pid, "VmRSS");
    const started = performance.now();
    const search = await cli(env, ["audit", "search", "-a", "demo", marker]);
    const seconds = (performance.now() - started) / 1000;
    const peak = status(server.pid, "VmHWM");
    equal(search.code, 0, `${search.stderr}\n${server.stderr.slice(-2000)}`);
    ok(search.stdout.includes(`${marker}`), search.stdout);
    ok(search.stderr.startsWith("1 hit in 1 of 1 session"), search.stderr);
    const grew = (peak - before) / MIB;
    console.error(
      `audit search of ${RECORDING_MB} MiB (heap cap ${HEAP_MB} MiB): ${
        seconds.toFixed(1)
      } s; server RSS ${(before / MIB).toFixed(0)} MiB before, peak ${
        (peak / MIB).toFixed(0)
      } MiB (+${grew.toFixed(0)} MiB)`,
    );
    ok(grew < BOUND_MB, `the server grew by ${grew.toFixed(0)} MiB searching the recording`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
