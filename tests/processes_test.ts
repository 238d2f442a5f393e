import { deepEqual, equal, match, ok } from "node:assert/strict";
/**
 * `oneoff server` and `oneoff agent` as separate OS processes started from
 * main.ts with their flags, as a unit file would run them, and stopped with
 * SIGTERM.
 * @module
 */
import { waitFor } from "./_wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DEMO = new URL("../examples/demo", import.meta.url).pathname;

/** A role running as its own process, its output collected as it comes. */
class Role implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<void>;
  stdout = "";
  stderr = "";

  constructor(args: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this[into] += text;
    };
    this.#done = Promise.all([
      collect(this.#child.stdout, "stdout"),
      collect(this.#child.stderr, "stderr"),
    ]).then(() => {});
  }

  /** Sends `signal` and resolves with how the process ended, once its output is read. */
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

async function cli(env: Record<string, string>, args: string[], stdin?: string) {
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

/** Exited by itself with code 0 after the signal; stderr holds only its log lines, none an error. */
function assertCleanExit(status: Deno.CommandStatus, role: Role, name: string): void {
  const output = `${name} stderr:\n${role.stderr}`;
  deepEqual([status.code, status.signal], [0, null], output);
  const lines = role.stderr.split("\n").filter((line) => line !== "");
  ok(lines.length > 0, output);
  for (const line of lines) {
    // A stack trace or an uncaught error is not a JSON log line.
    const entry = (() => {
      try {
        return JSON.parse(line) as { level?: string };
      } catch {
        return undefined;
      }
    })();
    ok(entry && entry.level !== "error", `${name} logged ${line}\n${output}`);
  }
}

Deno.test("oneoff server and oneoff agent as separate processes run a one-off and exit cleanly on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-processes-" });
  try {
    await using server = new Role([
      "server",
      "--http",
      "127.0.0.1:0",
      "--data-dir",
      `${dir}/server`,
      "--database",
      `sqlite:${dir}/server/state.db`,
      "--join-token",
      "join-me-please",
      "--auto-approve",
    ]);
    const joinLine = await waitFor(
      () => /oneoff agent --server (\S+) --join-token (\S+)/.exec(server.stdout),
      { message: "the server to print how agents join", seen: () => server.stderr },
    );
    const [, url, joinToken] = joinLine;
    equal(joinToken, "join-me-please");
    match(server.stdout, /Admin token \(shown once/);
    const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
    ok((await Deno.stat(`${dir}/server/state.db`)).isFile, "--database is used");

    await using agent = new Role([
      "agent",
      "--server",
      url!,
      "--join-token",
      joinToken!,
      "--name",
      "vm-1",
      "--attach",
      "127.0.0.1:0",
      "--data-dir",
      `${dir}/agent`,
      "--max-runs",
      "3",
    ]);
    const env = { ONEOFF_SERVER: url!, ONEOFF_TOKEN: token, HOME: dir };
    await waitFor(async () => {
      const res = await cli(env, ["agents", "--json"]);
      return res.code === 0 &&
        JSON.parse(res.stdout).some((a: { name: string; state: string }) =>
          a.name === "vm-1" && a.state === "online"
        );
    }, { message: "agent vm-1 to be online", seen: () => agent.stderr });
    ok((await Deno.stat(`${dir}/agent`)).isDirectory, "--data-dir is used");

    equal((await cli(env, ["apps", "create", "demo"])).code, 0);
    const deployed = await cli(env, ["deploy", "-a", "demo", DEMO]);
    equal(deployed.code, 0, deployed.stderr);
    const res = await cli(
      env,
      ["run", "-a", "demo", "--no-tty", "--silent", "--", "read x; echo got-$x; exit 6"],
      "through two processes\n",
    );
    deepEqual([res.code, res.stdout], [6, "got-through two processes\n"], res.stderr);

    assertCleanExit(await agent.stop("SIGTERM"), agent, "agent");
    await waitFor(async () => {
      const list = JSON.parse((await cli(env, ["agents", "--json"])).stdout);
      return list.every((a: { state: string }) => a.state === "offline");
    }, { message: "the server to see vm-1 offline" });
    assertCleanExit(await server.stop("SIGTERM"), server, "server");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
