/**
 * `network`: what network "isolated" (a namespace per run with pasta) costs
 * next to "host", on the bwrap sandbox directly: the start (spawn to the
 * first output byte) and a 256 MiB download from a listener in a network
 * namespace the benchmark makes (agent/sandbox/_testing_net.ts), and the
 * memory pasta holds per run. Needs root, pasta, ip and python3.
 * @module
 */
import { createSandbox } from "../agent/sandbox/mod.ts";
import { OutsideHost } from "../agent/sandbox/_testing_net.ts";
import { Fixture, PATH, TEST_LIMITS } from "../agent/sandbox/_testing.ts";
import type { NetworkMode } from "../protocol/mod.ts";
import type { BenchContext } from "./_case.ts";
import { median, MIB, row } from "./_util.ts";

const DOWNLOAD_BYTES = 256 * MIB;

/** Sends DOWNLOAD_BYTES to every connection. */
const SENDER = `import socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((sys.argv[3], int(sys.argv[2]))); t.listen(); print("ready", flush=True)
chunk = bytes(1 << 20)
while True:
    c, _ = t.accept()
    for _ in range(${DOWNLOAD_BYTES / MIB}): c.sendall(chunk)
    c.close()
`;

/** Reads everything from HOST PORT; prints MiB/s. */
const RECEIVER = `import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
start = time.monotonic(); n = 0
buf = bytearray(1 << 20)
while True:
    k = c.recv_into(buf)
    if not k: break
    n += k
print(n / 1048576 / (time.monotonic() - start))
`;

/** Runs the network benchmark rows. */
export async function benchNetwork(ctx: BenchContext): Promise<void> {
  if (Deno.uid() !== 0) {
    console.log("(network benchmark skipped: it needs root)");
    return;
  }
  await using fx = await Fixture.create("bwrap");
  await using outside = await OutsideHost.create(SENDER);
  const sandbox = await createSandbox("bwrap", { workDir: `${fx.workDir}-bench` });
  const run = async (network: NetworkMode, command: string, onFirst?: () => Promise<void>) => {
    const start = performance.now();
    const process = await sandbox.spawn({
      runId: crypto.randomUUID(),
      slugDir: fx.slugDir,
      command,
      env: { PATH },
      limits: { ...TEST_LIMITS, memoryBytes: 512 * MIB },
      network,
    });
    await process.stdin.close();
    const reader = process.stdout.getReader();
    let text = "";
    let first = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!first) {
        first = performance.now() - start;
        await onFirst?.();
      }
      text += new TextDecoder().decode(value);
    }
    const [status, stderr] = await Promise.all([
      process.status,
      new Response(process.stderr).text(),
    ]);
    if (status.code !== 0) throw new Error(`The benchmark's run failed: ${stderr}`);
    return { first, text };
  };
  for (const network of ["host", "isolated"] as const) {
    const starts: number[] = [];
    for (let i = 0; i < ctx.pick(11, 2); i++) starts.push((await run(network, "echo up")).first);
    const rates: number[] = [];
    for (let i = 0; i < ctx.pick(3, 1); i++) {
      const { text } = await run(
        network,
        `python3 -c '${RECEIVER}' ${outside.address} ${outside.port}`,
      );
      rates.push(Number(text.trim()));
    }
    row(`sandbox start, network ${network}`, `${median(starts).toFixed(1)} ms`, "-", "-", "-");
    row(`256 MiB download, network ${network}`, `${median(rates).toFixed(0)} MiB/s`, "-", "-", "-");
  }
  let rss = "n/a";
  await run("isolated", "echo up; sleep 1", async () => {
    rss = await pastaRss();
  });
  row("pasta resident memory per isolated run", rss, "-", "-", "-");
}

/** The resident memory of the (one) pasta running now. */
async function pastaRss(): Promise<string> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (!cmdline.startsWith("/usr/bin/pasta\0")) continue;
    const status = await Deno.readTextFile(`/proc/${entry.name}/status`).catch(() => "");
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    if (kb) return `${(kb / 1024).toFixed(1)} MiB`;
  }
  return "n/a";
}
