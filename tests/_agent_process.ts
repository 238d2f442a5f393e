/**
 * Fault tests' support: a real server in this process, agents as separate
 * OS processes (so they can be SIGKILLed and SIGTERMed for real), a TCP
 * proxy between them that can hold every byte (a partition: connections
 * stay open, nothing crosses), and what a killed agent may leave behind
 * (run cgroups, scratch directories, sandbox processes).
 * @module
 */
import type { RunInfo, SandboxKind } from "../protocol/mod.ts";
import { Client } from "../cli/client.ts";
import { packDirectory } from "../cli/pack.ts";
import { type RunningServer, startServer } from "../server/mod.ts";
import { createLogger } from "../util/log.ts";
import { waitFor } from "./_wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DEMO = new URL("../examples/demo", import.meta.url).pathname;

/** An in-process server with app "demo" deployed. */
export interface FaultServer extends AsyncDisposable {
  server: RunningServer;
  client: Client;
  dir: string;
  /** Starts a detached run of `command`; returns its id and label. */
  detached(command: string, env?: Record<string, string>): Promise<RunInfo>;
  run(id: string): Promise<RunInfo>;
  /** The run's stored log lines, in order. */
  lines(label: string): Promise<string[]>;
  /** Waits for the named agent to be online. */
  online(name: string): Promise<void>;
}

/** Starts a server in a temp dir and deploys the demo app. */
export async function faultServer(): Promise<FaultServer> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-faults-" });
  const server = await startServer({
    http: "127.0.0.1:0",
    dataDir: `${dir}/server`,
    log: createLogger("test", { level: "silent" }),
    // Long: a run is lost by the agent's report or its absence at rejoin, not by this timer.
    config: { agentGraceMs: 120_000, autoApprove: true },
  });
  const client = new Client(server.url, server.newAdminToken!);
  await client.request("POST", "/apps", { name: "demo" });
  await client.request("POST", "/apps/demo/deploy", undefined, { body: packDirectory(DEMO) });
  return {
    server,
    client,
    dir,
    async detached(command, env = {}) {
      const reply = await client.request<{ run: RunInfo }>("POST", "/apps/demo/runs", {
        command,
        attached: false,
        env,
      });
      return reply.run;
    },
    async run(id) {
      const reply = await client.request<{ runs: RunInfo[] }>("GET", "/apps/demo/runs?limit=1000");
      const found = reply.runs.find((r) => r.id === id);
      if (!found) throw new Error(`No run "${id}"`);
      return found;
    },
    async lines(label) {
      const reply = await client.request<{ lines: { line: string }[] }>(
        "GET",
        `/apps/demo/logs?n=10000&filter=${label}`,
      );
      return reply.lines.map((l) => l.line);
    },
    async online(name) {
      await waitFor(async () => {
        const { agents } = await client.request<{ agents: { name: string; state: string }[] }>(
          "GET",
          "/agents",
        );
        return agents.some((a) => a.name === name && a.state === "online");
      }, { message: `agent ${name} to be online` });
    },
    async [Symbol.asyncDispose]() {
      await server.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** `oneoff agent` as its own process; its stderr (JSON log lines) collected. */
export class AgentProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<void>;
  readonly dataDir: string;
  stderr = "";

  constructor(
    serverUrl: string,
    joinToken: string,
    options: {
      name: string;
      dataDir: string;
      sandbox: SandboxKind;
      flags?: string[];
      env?: Record<string, string>;
    },
  ) {
    this.dataDir = options.dataDir;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        MAIN,
        "agent",
        ...["--server", serverUrl, "--join-token", joinToken, "--name", options.name],
        ...["--attach", "127.0.0.1:0", "--data-dir", options.dataDir, "--sandbox", options.sandbox],
        ...(options.flags ?? []),
      ],
      ...(options.env ? { env: options.env } : {}),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#done = (async () => {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.stderr += text;
      }
    })();
  }

  /** The agent's pid. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Sends `signal`; resolves with how the process ended. */
  async stop(signal: Deno.Signal): Promise<Deno.CommandStatus> {
    this.#child.kill(signal);
    const status = await this.#child.status;
    await this.#done;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already ended */ }
    await this.#child.status;
    await this.#done;
  }
}

/** A TCP proxy that can hold all traffic (a partition) and drop what it held. */
export class HoldingProxy implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #target: Deno.ConnectOptions;
  #held = false;
  #resume = Promise.withResolvers<void>();
  #pairs = new Set<Deno.Conn>();

  constructor(targetUrl: string) {
    const url = new URL(targetUrl);
    this.#target = { hostname: url.hostname, port: Number(url.port) };
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accept();
  }

  /** The URL to give the agent. */
  get url(): string {
    return `http://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  /** Nothing crosses any more; connections stay open. */
  hold(): void {
    this.#held = true;
  }

  /** Ends the partition: held connections are cut, new ones go through. */
  release(): void {
    for (const conn of this.#pairs) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    this.#pairs.clear();
    this.#held = false;
    this.#resume.resolve();
    this.#resume = Promise.withResolvers<void>();
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      Deno.connect(this.#target).then((upstream) => {
        this.#pairs.add(conn);
        this.#pairs.add(upstream);
        this.#pipe(conn, upstream);
        this.#pipe(upstream, conn);
      }, () => conn.close());
    }
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        while (this.#held) await this.#resume.promise;
        const n = await from.read(buf);
        if (n === null) break;
        while (this.#held) await this.#resume.promise;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* cut */ }
    for (const conn of [from, to]) {
      try {
        conn.close();
      } catch { /* closed */ }
      this.#pairs.delete(conn);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.release();
    this.#listener.close();
    return Promise.resolve();
  }
}

/** Cgroup directories of a run, in every cgroup hierarchy of the host, that exist. */
export async function runCgroups(runId: string): Promise<string[]> {
  const found: string[] = [];
  const mounts = await Deno.readTextFile("/proc/self/mountinfo");
  for (const line of mounts.split("\n")) {
    const [left, right] = line.split(" - ");
    const fstype = right?.split(" ")[0];
    if (fstype !== "cgroup" && fstype !== "cgroup2") continue;
    const dir = `${left!.split(" ")[4]}/oneoff/${runId}`;
    if (await Deno.stat(dir).then(() => true, () => false)) found.push(dir);
  }
  return found;
}

/** Host pids whose command line contains `marker`. */
export async function pidsWith(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.includes(marker)) pids.push(Number(entry.name));
  }
  return pids;
}

/** Every file under `dir` whose bytes contain `needle`. */
export async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  const wanted = new TextEncoder().encode(needle);
  const walk = async (path: string): Promise<void> => {
    for (const entry of await Array.fromAsync(Deno.readDir(path)).catch(() => [])) {
      const full = `${path}/${entry.name}`;
      if (entry.isDirectory) await walk(full);
      else if (entry.isFile) {
        const bytes = await Deno.readFile(full).catch(() => new Uint8Array());
        if (indexOf(bytes, wanted) !== -1) found.push(full);
      }
    }
  };
  await walk(dir);
  return found;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Log lines spooled on the agent's disk for a run, not yet acknowledged. */
export async function spooledLines(dataDir: string, runId: string): Promise<string[]> {
  const lines: string[] = [];
  const dir = `${dataDir}/logs/${runId}`;
  const names = await Array.fromAsync(Deno.readDir(dir)).catch(() => []);
  for (const { name } of names) {
    if (!name.endsWith(".json")) continue;
    const text = await Deno.readTextFile(`${dir}/${name}`).catch(() => "[]");
    for (const record of JSON.parse(text) as { line: string }[]) lines.push(record.line);
  }
  return lines;
}
