/**
 * The relay through the server with port 5000 out of reach: the agent
 * advertises an address nothing answers on (TEST-NET-1, RFC 5737), so the
 * CLI can only get to its run through the server's HTTP port.
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { RELAY_WINDOW } from "../protocol/mod.ts";
import { CutProxy } from "./_cut_proxy.ts";
import { Proc } from "./_processes.ts";
import { startSystem, type TestSystem } from "./_system.ts";
import { waitFor } from "./_wait.ts";

/** An address no test machine reaches: connecting to it fails or hangs. */
const UNREACHABLE = "192.0.2.1";
const MAIN = new URL("../main.ts", import.meta.url).pathname;

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** One sample of a server metric, from /metrics. */
async function metric(sys: TestSystem, name: string): Promise<number> {
  const text = await (await fetch(`${sys.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

Deno.test("port 5000 blocked: auto falls back to the server and says so once; stdin, EOF, output and exit code exact", async () => {
  await using sys = await startSystem({ advertise: UNREACHABLE });
  const res = await sys.cli(
    ["run", "-a", "demo", "--no-tty", "--", "wc -c; echo err >&2; exit 7"],
    { stdin: "hello world\n" },
  );
  equal(res.code, 7, res.stderr);
  // Framed through the relay too: the process's stderr on the CLI's stderr.
  deepEqual(res.stdout, "12\n");
  equal(res.stderr.split("\n").filter((l) => l === "err").length, 1, res.stderr);
  const said = res.stderr.match(/attaching through the server/g) ?? [];
  equal(said.length, 1, res.stderr);
  match(res.stderr, new RegExp(`cannot reach the agent at ${UNREACHABLE.replaceAll(".", "\\.")}`));
});

Deno.test("port 5000 blocked: --via server carries a PTY session and its exit code", async () => {
  await using sys = await startSystem({ advertise: UNREACHABLE });
  const res = await sys.cli(
    ["run", "-a", "demo", "--tty", "--via", "server", "--silent", "--", "tty; stty size; exit 3"],
  );
  equal(res.code, 3, res.stderr);
  match(res.stdout, /\/dev\/(pts\/\d+|console)/);
  equal(res.stderr, "", "--silent prints nothing extra");
});

Deno.test("through the relay, 64 MiB of random bytes go through cat and come back sha256-exact", async () => {
  await using sys = await startSystem({ advertise: UNREACHABLE });
  const data = randomBytes(64 * 1024 * 1024);
  const res = await sys.cli(
    ["run", "-a", "demo", "--no-tty", "--via", "server", "--silent", "--", "cat"],
    { stdin: data },
  );
  equal(res.code, 0, res.stderr);
  equal(res.bytes.length, data.length);
  equal(sha256(res.bytes), sha256(data));
  await waitFor(async () => await metric(sys, "oneoff_relays_active") === 0, {
    message: "the relay to be closed",
  });
  ok(await metric(sys, 'oneoff_relay_bytes_total{direction="in"}') >= data.length);
});

Deno.test("a CLI that stops reading pauses the process: what the relay holds stays bounded", async () => {
  await using sys = await startSystem({ advertise: UNREACHABLE });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      MAIN,
      "run",
      "-a",
      "demo",
      "--no-tty",
      "--via",
      "server",
      "--silent",
      "--",
      "cat /dev/zero",
    ],
    env: sys.cliEnv(),
    stdin: "null",
    // Never read: the pipe fills and the CLI blocks writing to it.
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    await waitFor(async () => await metric(sys, 'oneoff_relay_bytes_total{direction="out"}') > 0, {
      message: "output to flow through the relay",
    });
    // Once everything is full, the process is blocked: the count stops, and what is held stays under the cap.
    // Two receive windows (one per leg) and one window of credit in flight.
    const cap = 3 * RELAY_WINDOW;
    let last = -1;
    await waitFor(async () => {
      const now = await metric(sys, 'oneoff_relay_bytes_total{direction="out"}');
      const queued = await metric(sys, "oneoff_relay_queued_bytes");
      ok(queued <= cap, `the relay holds ${queued} bytes, over ${cap}`);
      const still = now === last;
      last = now;
      return still;
    }, { message: "the relayed output to stop growing", intervalMs: 500 });
    const total = await metric(sys, 'oneoff_relay_bytes_total{direction="out"}');
    ok(total < 64 * 1024 * 1024, `${total} bytes went through: the process was not paused`);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel();
  }
});

Deno.test("port 5000 blocked: a cut of the relay hop is reattached through the server, every line once", async () => {
  await using sys = await startSystem({ advertise: UNREACHABLE });
  // The CLI reaches the server only through a proxy the test cuts: a cut
  // drops the CLI's leg of the relay without a clean close.
  const port = Number(new URL(sys.url).port);
  await using proxy = new CutProxy({ hostname: "127.0.0.3", port }, {
    hostname: "127.0.0.1",
    port,
  });
  const cmd = "for i in $(seq 0 99); do seq $((i*1000+1)) $((i*1000+1000)); sleep 0.02; done; " +
    "exit 4";
  await using run = new Proc(["run", "-a", "demo", "--no-tty", "--via", "server", "--", cmd], {
    env: { ...sys.cliEnv(), ONEOFF_SERVER: `http://127.0.0.3:${port}` },
  });
  for (const at of [100_000, 400_000]) {
    await waitFor(() => run.stdout.length > at, {
      message: `${at} bytes of output`,
      seen: () => run.stderr,
    });
    proxy.cut();
  }
  const status = await run.status();
  const expected = Array.from({ length: 100_000 }, (_, i) => `${i + 1}\n`).join("");
  equal(run.stdout.length, expected.length, run.stderr);
  ok(run.stdout === expected, "every line exactly once, in order");
  equal(status.code, 4, run.stderr);
  match(run.stderr, /oneoff: reconnected\n/);
});
