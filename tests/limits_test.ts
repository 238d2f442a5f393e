/**
 * The security limits over real sockets: the failed-token limiter cannot
 * lock a valid token out, oversized bodies are refused within a fixed
 * memory bound in a separate `oneoff server` process, and a very long
 * timeout does not end a run at once.
 */
import { deepEqual, match, ok } from "node:assert/strict";
import type { RunInfo } from "../protocol/mod.ts";
import { startServer } from "../server/mod.ts";
import { MAX_TIMER_MS } from "../protocol/mod.ts";
import { createLogger } from "../util/log.ts";
import { startSystem } from "./_system.ts";
import { waitFor } from "./_wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;

Deno.test("11 bad tokens from 127.0.0.1 do not lock the valid admin token out (real socket)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-limits-" });
  const server = await startServer({
    http: "127.0.0.1:0",
    dataDir: dir,
    log: createLogger("test", { level: "silent" }),
  });
  try {
    const get = (token: string) =>
      fetch(`${server.url}/api/apps`, { headers: { authorization: `Bearer ${token}` } });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) {
      const res = await get(`oo_guess-${i}`);
      statuses.push(res.status);
      await res.body?.cancel();
    }
    deepEqual(statuses, [...Array(10).fill(401), 429]);
    const res = await get(server.newAdminToken!);
    deepEqual(res.status, 200);
    await res.body?.cancel();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Resident and peak memory of a process, in bytes, from /proc. */
async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { rss: kib("VmRSS") * 1024, peak: kib("VmHWM") * 1024 };
}

/**
 * Streams a `total`-byte body over a raw socket, chunked or with its
 * Content-Length, stopping when the server answers; resolves with the
 * status line's code, or null when the server closed without one.
 */
async function sendLarge(
  url: string,
  path: string,
  options: { total: number; chunked: boolean; headers?: Record<string, string> },
): Promise<number | null> {
  const { hostname, port, host } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const extra = Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const framing = options.chunked
    ? "transfer-encoding: chunked\r\n"
    : `content-length: ${options.total}\r\n`;
  const head = `POST ${path} HTTP/1.1\r\nhost: ${host}\r\n${extra}${framing}\r\n`;
  let answered: number | null | undefined;
  const reading = (async () => {
    let text = "";
    const buf = new Uint8Array(4096);
    try {
      while (!text.includes("\r\n")) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
    } catch {
      // A reset after the answer is fine: what was read is the answer.
    }
    const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
    answered = match ? Number(match[1]) : null;
  })();
  const chunk = new Uint8Array(MiB).fill(0x61);
  const chunkHead = new TextEncoder().encode(`${chunk.length.toString(16)}\r\n`);
  const crlf = new TextEncoder().encode("\r\n");
  try {
    await conn.write(new TextEncoder().encode(head));
    for (let sent = 0; sent < options.total && answered === undefined; sent += chunk.length) {
      if (options.chunked) await conn.write(chunkHead);
      for (let at = 0; at < chunk.length;) at += await conn.write(chunk.subarray(at));
      if (options.chunked) await conn.write(crlf);
    }
  } catch {
    // The server stopped reading and closed: the answer, if any, is read below.
  }
  await Promise.race([reading, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  conn.close();
  await reading.catch(() => {});
  return answered ?? null;
}

Deno.test("100 MB bodies to oneoff server are refused before they are read: RSS grows < 64 MiB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-limits-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "server", "--http", "127.0.0.1:0", "--data-dir", dir],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    let out = "";
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const url = await waitFor(async () => {
      const { value } = await reader.read();
      out += value ?? "";
      return /--server (http:\/\/\S+)/.exec(out)?.[1];
    }, { message: "the server's URL on stdout", timeoutMs: 30_000 });
    reader.releaseLock();
    child.stdout.cancel().catch(() => {});
    const admin = (await Deno.readTextFile(`${dir}/admin.token`)).trim();
    const auth = { authorization: `Bearer ${admin}`, "content-type": "application/json" };
    const created = await fetch(`${url}/api/apps`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ name: "demo" }),
    });
    deepEqual(created.status, 201);
    await created.body?.cancel();
    const before = await memoryOf(child.pid);

    const form = { "content-type": "application/x-www-form-urlencoded" };
    const total = 100 * MiB;
    const answers = await Promise.all([
      // As in the issue: concurrent unauthenticated sign-ins...
      ...Array.from(
        { length: 4 },
        () => sendLarge(url, "/login", { total, chunked: true, headers: form }),
      ),
      sendLarge(url, "/login", { total, chunked: false, headers: form }),
      // ...and an authenticated JSON body to the runs route.
      sendLarge(url, "/api/apps/demo/runs", { total, chunked: true, headers: auth }),
      sendLarge(url, "/api/apps/demo/runs", { total, chunked: false, headers: auth }),
    ]);
    const after = await memoryOf(child.pid);
    const grown = after.peak - before.rss;
    ok(grown < 64 * MiB, `RSS grew by ${Math.round(grown / MiB)} MiB (peak)`);
    for (const status of answers) ok(status === 413, `answered ${status}`);
    const health = await fetch(`${url}/healthz`);
    deepEqual(health.status, 200);
    await health.body?.cancel();
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a run with the longest timeout a timer allows does not time out at once", async () => {
  await using sys = await startSystem({ config: { maxTimeoutMs: MAX_TIMER_MS } });
  const timeout = Math.floor(MAX_TIMER_MS / 1000);
  const created = await sys.api<{ run: RunInfo }>("POST", "/apps/demo/runs", {
    command: "sleep 1; echo still-here",
    timeout,
  });
  const label = created.run.label;
  const run = await waitFor(async () => {
    const { run } = await sys.api<{ run: RunInfo }>("GET", `/apps/demo/runs/${label}?wait=10`);
    return run.state === "exited" || run.state === "timed_out" || run.state === "failed"
      ? run
      : undefined;
  }, { message: `${label} to end`, timeoutMs: 30_000 });
  deepEqual([run.state, run.exit_code], ["exited", 0], run.reason ?? "");
  const past = await fetch(`${sys.url}/api/apps/demo/runs`, {
    method: "POST",
    headers: { authorization: `Bearer ${sys.token}`, "content-type": "application/json" },
    body: JSON.stringify({ command: "true", timeout: timeout + 1 }),
  });
  deepEqual(past.status, 422);
  match((await past.json()).error.message, /maximum/);
});
