/**
 * A server and an agent as separate `deno run main.ts server|agent`
 * processes, as an operator starts them, so that each one's resident memory
 * can be read from /proc.
 * @module
 */
import { MAIN, sleep } from "./_util.ts";
import { SHARED_KEY_FILES } from "../tests/_cluster.ts";

/** A role running as its own process. */
export interface RoleProcess extends AsyncDisposable {
  /** Pid of the deno process itself (no shell in between). */
  pid: number;
  dir: string;
  /** The last lines it wrote, for error messages. */
  tail(): string;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; removes its directory. */
  stop(graceMs?: number): Promise<void>;
}

/** The server process and how to talk to it. */
export interface ServerProcess extends RoleProcess {
  url: string;
  token: string;
  joinToken: string;
  /** A JSON API call with the admin token. */
  api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  /** Env for a CLI subprocess against this server. */
  cliEnv(): Record<string, string>;
}

/** Keeps the last lines of a child's output and finds lines as they come. */
class Output {
  #lines: string[] = [];
  #waiters: { pattern: RegExp; resolve(match: RegExpExecArray): void }[] = [];
  readonly done: Promise<void>;

  constructor(streams: ReadableStream<Uint8Array>[]) {
    // Drained to the end: the roles log with synchronous writes, and a full pipe would stall them.
    this.done = Promise.all(streams.map((s) => this.#drain(s))).then(() => {});
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    let partial = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (partial + text).split("\n");
      partial = parts.pop()!;
      for (const line of parts) this.#add(line);
    }
    if (partial) this.#add(partial);
  }

  #add(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > 40) this.#lines.shift();
    this.#waiters = this.#waiters.filter((w) => {
      const match = w.pattern.exec(line);
      if (match) w.resolve(match);
      return !match;
    });
  }

  wait(pattern: RegExp): Promise<RegExpExecArray> {
    return new Promise((resolve) => this.#waiters.push({ pattern, resolve }));
  }

  tail(): string {
    return this.#lines.join("\n");
  }
}

/**
 * Starts `deno run main.ts ARGS`. The soft limit on open files is raised to
 * the hard one first, as an operator's service unit would (500 sessions need
 * some 2,500 descriptors; many hosts default to 1,024); `exec` keeps the pid
 * the deno process's own.
 */
function spawnRole(args: string[]): { child: Deno.ChildProcess; output: Output } {
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"',
      "sh",
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      // To profile the roles: ONEOFF_BENCH_DENO_FLAGS="--cpu-prof --cpu-prof-dir=DIR".
      ...(Deno.env.get("ONEOFF_BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? []),
      MAIN,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { child, output: new Output([child.stdout, child.stderr]) };
}

function roleProcess(
  child: Deno.ChildProcess,
  output: Output,
  dir: string,
): RoleProcess {
  let stopped: Promise<void> | undefined;
  const stop = (graceMs = 15_000) =>
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already exited */ }
      }, graceMs);
      await child.status;
      clearTimeout(timer);
      await output.done;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  return {
    pid: child.pid,
    dir,
    tail: () => output.tail(),
    stop,
    [Symbol.asyncDispose]: () => stop(),
  };
}

/** Resolves with `promise`, or throws with the child's last output if it exits or times out first. */
async function startedOr<T>(
  what: string,
  promise: Promise<T>,
  child: Deno.ChildProcess,
  output: Output,
  timeoutMs = 30_000,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failed = Promise.race([
    child.status.then((s) => `exited with code ${s.code}`),
    new Promise<string>((r) =>
      timer = setTimeout(() => r(`not ready in ${timeoutMs} ms`), timeoutMs)
    ),
  ]).then(async (why) => {
    await Promise.race([output.done, sleep(200)]);
    throw new Error(`The ${what} ${why}:\n${output.tail()}`);
  });
  try {
    return await Promise.race([promise, failed]);
  } finally {
    clearTimeout(timer);
    failed.catch(() => {});
  }
}

/**
 * Starts `oneoff server` on a free port in a new temp dir. A server on a
 * database that already has an admin token writes none: give it `token`.
 */
export async function spawnServer(
  extraArgs: string[] = [],
  options: { token?: string; keysFrom?: string } = {},
): Promise<ServerProcess> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-bench-server-" });
  // Another server of the same database: the same keys (docs/install.md, "Several servers").
  if (options.keysFrom !== undefined) {
    for (const name of [...SHARED_KEY_FILES, "join.token"]) {
      await Deno.copyFile(`${options.keysFrom}/${name}`, `${dir}/${name}`);
      await Deno.chmod(`${dir}/${name}`, 0o600);
    }
  }
  const { child, output } = spawnRole([
    "server",
    "--http",
    "127.0.0.1:0",
    "--data-dir",
    dir,
    // Bench agents take runs at once, as an operator's approval would let them.
    "--auto-approve",
    ...extraArgs,
  ]);
  const base = roleProcess(child, output, dir);
  try {
    const match = await startedOr(
      "server",
      output.wait(/Agents join with: oneoff agent --server (\S+) --join-token-file (\S+)/),
      child,
      output,
    );
    const url = match[1]!;
    const joinToken = (await Deno.readTextFile(`${dir}/join.token`)).trim();
    const token = options.token ?? (await Deno.readTextFile(`${dir}/admin.token`)).trim();
    const home = `${dir}/home`;
    await Deno.mkdir(home);
    return {
      ...base,
      url,
      token,
      joinToken,
      async api(method, path, body) {
        const res = await fetch(`${url}/api${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
        const json = await res.json();
        if (!res.ok) {
          throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
        }
        return json;
      },
      cliEnv: () => ({ ONEOFF_SERVER: url, ONEOFF_TOKEN: token, HOME: home, NO_COLOR: "1" }),
    };
  } catch (err) {
    await base.stop(1000);
    throw err;
  }
}

/** Starts `oneoff agent` joined to `server`; resolves once the server lists it online. */
export async function spawnAgent(
  server: ServerProcess,
  options: { maxRuns?: number } = {},
): Promise<RoleProcess> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-bench-agent-" });
  const name = `bench-${crypto.randomUUID().slice(0, 8)}`;
  const { child, output } = spawnRole([
    "agent",
    "--server",
    server.url,
    "--join-token",
    server.joinToken,
    "--name",
    name,
    "--attach",
    "127.0.0.1:0",
    "--data-dir",
    dir,
    "--max-runs",
    String(options.maxRuns ?? 20),
  ]);
  const agent = roleProcess(child, output, dir);
  try {
    await startedOr("agent", waitOnline(server, name), child, output);
    return agent;
  } catch (err) {
    await agent.stop(1000);
    throw err;
  }
}

async function waitOnline(server: ServerProcess, name: string): Promise<void> {
  while (true) {
    const { agents } = await server.api<{ agents: { name: string; state: string }[] }>(
      "GET",
      "/agents",
    );
    if (agents.some((a) => a.name === name && a.state === "online")) return;
    await sleep(50);
  }
}

/** Starts a bare `deno run` of a script that only waits: the floor under any Deno process. */
export async function spawnBareDeno(): Promise<RoleProcess> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-bench-bare-" });
  const script = `${dir}/wait.ts`;
  await Deno.writeTextFile(script, "setInterval(() => {}, 1 << 30);\n");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return roleProcess(child, new Output([child.stdout, child.stderr]), dir);
}
