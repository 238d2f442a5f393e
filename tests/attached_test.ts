import { deepEqual, match } from "node:assert/strict";
import { createHash } from "node:crypto";
import type { AttachInfo, RunInfo, RunState } from "../protocol/mod.ts";
import { readmeLines, runLines } from "./_readme.ts";
import { needs } from "./_tools.ts";
import { startSystem, type TestSystem } from "./_system.ts";
import { waitFor } from "./_wait.ts";

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function randomBytes(n: number): Uint8Array {
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  return data;
}

async function attachInfo(sys: TestSystem, command: string): Promise<AttachInfo> {
  const res = await sys.cli(["run", "-a", "demo", "--no-tty", "--attach-info", "--", command]);
  deepEqual(res.code, 0, res.stderr);
  return JSON.parse(res.stdout);
}

/** Reads until the agent closes (a reset counts as closing). */
async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  while (true) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

/** Sends raw bytes to the attach port and reads everything until the agent closes. */
async function rawAttach(port: number, payload: Uint8Array | string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(typeof payload === "string" ? new TextEncoder().encode(payload) : payload).catch(
    () => 0,
  );
  await conn.closeWrite().catch(() => {});
  const reply = await readAll(conn);
  conn.close();
  return reply;
}

/** Connects and stays silent until the agent gives up on it, then sends `secret`: too late. */
async function lateAttach(port: number, secret: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reply = await readAll(conn);
  await conn.write(new TextEncoder().encode(`${secret}\n`)).catch(() => 0);
  conn.close();
  return reply;
}

async function runState(sys: TestSystem, label: string): Promise<RunInfo> {
  return (await sys.api<{ run: RunInfo }>("GET", `/apps/demo/runs/${label}`)).run;
}

/** Polls the run until it is in `state`. */
async function waitState(sys: TestSystem, label: string, state: RunState): Promise<RunInfo> {
  let last: RunInfo | undefined;
  return await waitFor(async () => {
    last = await runState(sys, label);
    return last.state === state && last;
  }, { message: `${label} to be ${state}`, seen: () => last?.state });
}

Deno.test("no-TTY: 50 MiB of random bytes go through cat and come back identical", async () => {
  await using sys = await startSystem();
  const data = randomBytes(50 * 1024 * 1024);
  const res = await sys.cli(["run", "-a", "demo", "--no-tty", "--silent", "--", "cat"], {
    stdin: data,
  });
  deepEqual(res.code, 0, res.stderr);
  deepEqual(res.bytes.length, data.length);
  deepEqual(sha256(res.bytes), sha256(data));
  deepEqual(res.stderr, "", "--silent prints nothing extra");
});

Deno.test("no-TTY: stdout and stderr reach the CLI's own fds, half-close is EOF, the exit code is the CLI's", async () => {
  await using sys = await startSystem();
  const res = await sys.cli(
    ["run", "-a", "demo", "--no-tty", "--silent", "--", "wc -c; echo err >&2; exit 7"],
    { stdin: "hello world\n" },
  );
  deepEqual(res.code, 7);
  // Framed mode keeps them apart (raw nc gets both on its one stream).
  deepEqual([res.stdout, res.stderr], ["12\n", "err\n"]);
  const ps = JSON.parse((await sys.cli(["ps", "-a", "demo", "--json"])).stdout);
  deepEqual([ps[0].state, ps[0].exit_code], ["exited", 7]);
});

Deno.test(needs(["nc"], {
  name: "plain nc attaches with --attach-info and gets the process's output",
  async fn() {
    await using sys = await startSystem();
    const info = await attachInfo(sys, 'read line; echo "got:$line"; echo $CONTAINER');
    deepEqual([info.app, info.run, info.host, info.tls], [
      "demo",
      "one-off-1",
      "127.0.0.1",
      false,
    ]);
    match(info.secret, /^[A-Za-z0-9_-]{43}$/);
    const nc = new Deno.Command("nc", {
      args: ["-N", info.host, String(info.port)],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const writer = nc.stdin.getWriter();
    await writer.write(new TextEncoder().encode(`${info.secret}\nping\n`));
    await writer.close();
    const out = await nc.output();
    deepEqual(new TextDecoder().decode(out.stdout), "got:ping\none-off-1\n");
    const run = await waitState(sys, "one-off-1", "exited");
    deepEqual(run.exit_code, 0);
  },
}));

Deno.test("attach refuses reused, wrong, oversized and slow secrets with one line, and starts nothing", async () => {
  await using sys = await startSystem({ handshakeTimeoutMs: 300 });
  const info = await attachInfo(sys, "echo started");
  const port = info.port;
  deepEqual(await rawAttach(port, "not-the-secret\n"), "oneoff: unknown secret\r\n");
  deepEqual(await rawAttach(port, "x".repeat(10_000)), "oneoff: secret line too long\r\n");
  deepEqual(
    await lateAttach(port, info.secret),
    "oneoff: timed out waiting for the secret\r\n",
  );
  deepEqual((await runState(sys, "one-off-1")).state, "starting", "nothing started");
  deepEqual(await rawAttach(port, `${info.secret}\n`), "started\n");
  deepEqual(await rawAttach(port, `${info.secret}\n`), "oneoff: secret already used\r\n");
});

Deno.test("an attached run nobody connects to expires and never starts", async () => {
  await using sys = await startSystem({ config: { attachWindowMs: 500 } });
  const info = await attachInfo(sys, "echo never");
  const run = await waitState(sys, "one-off-1", "expired");
  deepEqual(run.started_at, null);
  deepEqual(await rawAttach(info.port, `${info.secret}\n`), "oneoff: attach window expired\r\n");
});

Deno.test("an idle attached session is killed, timed_out, and the CLI exits 124", async () => {
  await using sys = await startSystem({ config: { idleTimeoutMs: 700 } });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      new URL("../main.ts", import.meta.url).pathname,
      "run",
      "-a",
      "demo",
      "--no-tty",
      "--",
      "sleep 60",
    ],
    env: sys.cliEnv(),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await child.output();
  deepEqual(out.code, 124, new TextDecoder().decode(out.stderr));
  match(new TextDecoder().decode(out.stderr), /one-off-1 timed out/);
  deepEqual((await runState(sys, "one-off-1")).state, "timed_out");
});

Deno.test("uploaded files are in /tmp/uploads, byte for byte, before the process starts", async () => {
  await using sys = await startSystem();
  const file = `${sys.dir}/data.bin`;
  const data = randomBytes(200_000);
  await Deno.writeFile(file, data);
  const dir = `${sys.dir}/fixtures`;
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/a.txt`, "inside a dir\n");
  const res = await sys.cli([
    "run",
    "-a",
    "demo",
    "--no-tty",
    "--silent",
    "-f",
    file,
    "-f",
    dir,
    "--",
    "sha256sum /tmp/uploads/data.bin; tar -xzOf /tmp/uploads/fixtures.tar.gz ./a.txt",
  ]);
  deepEqual(res.code, 0, res.stderr);
  const [line1, line2] = res.stdout.split("\n");
  deepEqual(line1!.split(" ")[0], sha256(data));
  deepEqual(line2, "inside a dir");
  const detached = await sys.cli([
    "run",
    "-d",
    "-a",
    "demo",
    "-f",
    file,
    "--",
    "wc -c < /tmp/uploads/data.bin",
  ]);
  deepEqual(detached.code, 0, detached.stderr);
  await sys.api("GET", "/apps/demo/runs/one-off-2?wait=30");
  const logs = await sys.api<{ lines: { line: string }[] }>(
    "GET",
    "/apps/demo/logs?filter=one-off-2",
  );
  deepEqual(logs.lines.map((l) => l.line), ["200000"]);
});

Deno.test("a TTY client that disconnects hangs up the process: the run is stopped", async () => {
  await using sys = await startSystem();
  const { run, secret, attach } = await sys.api<
    { run: RunInfo; secret: string; attach: AttachInfo }
  >(
    "POST",
    "/apps/demo/runs?wait=20",
    {
      command: "trap 'echo hup > /tmp/hup; exit 129' HUP; echo ready; sleep 60 & wait",
      attached: true,
      tty: true,
    },
  );
  const conn = await Deno.connect({ hostname: attach.host, port: attach.port });
  await conn.write(new TextEncoder().encode(`${secret}\n`));
  const buf = new Uint8Array(1024);
  let seen = "";
  while (!seen.includes("ready")) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`The run closed before "ready"; read: ${JSON.stringify(seen)}`);
    seen += new TextDecoder().decode(buf.subarray(0, n));
  }
  conn.close();
  const ended = await waitState(sys, run.label, "stopped");
  deepEqual(ended.exit_code, 129, "the shell got SIGHUP");
  match(ended.reason ?? "", /client disconnected/);
});

Deno.test(needs(["nc", "jq"], {
  name: "the README's nc -N pipe sends the secret and the input, and gets the output",
  async fn() {
    await using sys = await startSystem();
    const out = await runLines(await readmeLines('| nc -N "$host" "$port"'), sys.cliEnv());
    deepEqual([out.code, out.stdout], [0, "6 /tmp/x\n"], out.stderr);
  },
}));
