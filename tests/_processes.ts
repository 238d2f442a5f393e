/**
 * The roles and the CLI as separate OS processes started from main.ts, for
 * tests that kill, freeze and restart them: a server on a fixed port (so a
 * restart is found at the same address), agents, and CLI invocations whose
 * output can be watched while they run.
 * @module
 */
import { waitFor } from "./_wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A process of main.ts, its output collected as it comes. */
export class Proc implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly #done: Promise<void>;
  stdout = "";
  stderr = "";
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;

  constructor(args: string[], options: { env?: Record<string, string>; stdin?: boolean } = {}) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, ...args],
      env: { NO_COLOR: "1", ...options.env },
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (options.stdin) this.#stdin = this.child.stdin.getWriter();
    const collect = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this[into] += text;
    };
    this.#done = Promise.all([
      collect(this.child.stdout, "stdout"),
      collect(this.child.stderr, "stderr"),
    ]).then(() => {});
  }

  /** The process id, for signals. */
  get pid(): number {
    return this.child.pid;
  }

  /** Writes to the process's stdin (started with `stdin: true`). */
  async write(data: string | Uint8Array): Promise<void> {
    await this.#stdin!.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
  }

  /** Closes the process's stdin. */
  async closeStdin(): Promise<void> {
    await this.#stdin?.close().catch(() => {});
  }

  /** Resolves with the exit status once the output is read. */
  async status(): Promise<Deno.CommandStatus> {
    const status = await this.child.status;
    await this.#done;
    return status;
  }

  /** Sends a signal; nothing when the process has ended. */
  kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch { /* already ended */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGCONT");
    this.kill("SIGKILL");
    await this.status();
  }
}

/** A port free on loopback now, so a server can be restarted on it. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** `oneoff server` on `port`, its state in `dir`; resolves once it prints how agents join. */
export async function startServer(
  dir: string,
  port: number,
  extra: string[] = [],
): Promise<Proc> {
  const server = new Proc([
    "server",
    "--http",
    `127.0.0.1:${port}`,
    "--data-dir",
    dir,
    "--join-token",
    "join-me-please",
    // The agents of these tests are trusted: enrolment is tested in tests/enrolment_test.ts.
    "--auto-approve",
    ...extra,
  ]);
  await waitFor(() => /Agents join with/.test(server.stdout), {
    message: "the server to start",
    seen: () => server.stderr,
  });
  return server;
}

/** `oneoff agent` named `name` dialling the server on `port`, its state in `dir`. */
export function startAgent(dir: string, port: number, name: string, extra: string[] = []): Proc {
  return new Proc([
    "agent",
    "--server",
    `http://127.0.0.1:${port}`,
    "--join-token",
    "join-me-please",
    "--name",
    name,
    "--attach",
    "127.0.0.1:0",
    "--data-dir",
    dir,
    ...extra,
  ]);
}

/** Runs the CLI (`main.ts`) to its end, with `stdin` as its input when given. */
export async function cli(
  env: Record<string, string>,
  args: string[],
  stdin?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    env: { ...env, NO_COLOR: "1" },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await output;
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Waits until the agents named are online. */
export async function waitOnline(env: Record<string, string>, names: string[]): Promise<void> {
  await waitFor(async () => {
    const res = await cli(env, ["agents", "--json"]);
    if (res.code !== 0) return false;
    const online = new Set(
      (JSON.parse(res.stdout) as { name: string; state: string }[])
        .filter((a) => a.state === "online").map((a) => a.name),
    );
    return names.every((name) => online.has(name));
  }, { message: `agents ${names.join(", ")} to be online` });
}
