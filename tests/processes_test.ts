import { cli } from "./_processes.ts";
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

  constructor(args: string[], env: Record<string, string> = {}) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, ...args],
      env,
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
    // The join token from a private file named in the config file; the
    // address from the environment: every place a setting may come from.
    const joinFile = `${dir}/join.token`;
    await Deno.writeTextFile(joinFile, "join-me-please\n", { mode: 0o600 });
    await Deno.chmod(joinFile, 0o600);
    await Deno.writeTextFile(
      `${dir}/server.json`,
      JSON.stringify({ "join-token-file": joinFile, "data-dir": `${dir}/server` }),
    );
    await using server = new Role([
      "server",
      "--config",
      `${dir}/server.json`,
      "--database",
      `sqlite:${dir}/server/state.db`,
      "--auto-approve",
    ], { ONEOFF_HTTP: "127.0.0.1:0" });
    const joinLine = await waitFor(
      () => /oneoff agent --server (\S+) --join-token-file (\S+)/.exec(server.stdout),
      { message: "the server to print how agents join", seen: () => server.stderr },
    );
    const [, url, shownFile] = joinLine;
    equal(shownFile, joinFile);
    const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
    match(server.stdout, new RegExp(`New admin token in ${dir}/server/admin.token`));
    // Where the tokens are, never what they are: journald keeps this output.
    for (const secret of ["join-me-please", token]) {
      ok(!(server.stdout + server.stderr).includes(secret), "a token was printed");
    }
    ok((await Deno.stat(`${dir}/server/state.db`)).isFile, "--database is used");

    await using agent = new Role([
      "agent",
      "--name",
      "vm-1",
      "--attach",
      "127.0.0.1:0",
      "--data-dir",
      `${dir}/agent`,
      "--max-runs",
      "3",
    ], { ONEOFF_SERVER: url!, ONEOFF_JOIN_TOKEN_FILE: joinFile });
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

Deno.test("a bad config file or secret file is one line naming it, exit 2, and nothing starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-config-" });
  try {
    const env = { HOME: dir, ONEOFF_DATA_DIR: `${dir}/state`, ONEOFF_HTTP: "127.0.0.1:0" };
    const file = `${dir}/server.json`;
    await Deno.writeTextFile(file, JSON.stringify({ "dta-dir": "/var/lib/oneoff" }));
    const unknown = await cli(env, ["server", "--config", file]);
    deepEqual(
      [unknown.code, unknown.stderr],
      [2, `oneoff server: config ${file}: unknown key "dta-dir"\n`],
    );
    await Deno.writeTextFile(file, JSON.stringify({ "max-runs": true }));
    const wrongType = await cli({ ...env, ONEOFF_CONFIG: file }, ["agent"]);
    deepEqual(
      [wrongType.code, wrongType.stderr],
      [2, `oneoff agent: config ${file}: key "max-runs" must be a string, not true\n`],
    );
    const secret = `${dir}/join.token`;
    await Deno.writeTextFile(secret, "join_readable\n");
    await Deno.chmod(secret, 0o644);
    const open = await cli(env, ["server", "--join-token-file", secret]);
    equal(open.code, 2);
    equal(
      open.stderr,
      `oneoff server: --join-token-file ${secret}: must not be readable by others (mode 644; chmod 600 it)\n`,
    );
    await Deno.stat(`${dir}/state`).then(
      () => ok(false, "the server started"),
      (e) => ok(e instanceof Deno.errors.NotFound),
    );

    await Deno.chmod(secret, 0o600);
    const shown = await cli({ ...env, ONEOFF_JOIN_TOKEN_FILE: secret }, [
      "server",
      "--print-config",
      "--trust-proxy",
      "loopback",
    ]);
    equal(shown.code, 0, shown.stderr);
    ok(!shown.stdout.includes("join_readable"), shown.stdout);
    const printed = JSON.parse(shown.stdout) as Record<string, { value: unknown; source: string }>;
    deepEqual(printed["join-token"], {
      value: "***",
      source: `file ${secret} (environment ONEOFF_JOIN_TOKEN_FILE)`,
    });
    deepEqual(printed["trust-proxy"], { value: "loopback", source: "command line" });
    deepEqual(printed["data-dir"], {
      value: `${dir}/state`,
      source: "environment ONEOFF_DATA_DIR",
    });
    deepEqual(printed["max-runs-per-app"], { value: null, source: "default" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oneoff dev prints where the admin token is and an export line that reads it, never the token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-dev-" });
  try {
    await using dev = new Role([
      "dev",
      ...["--data-dir", `${dir}/dev`, "--http", "127.0.0.1:0", "--attach", "127.0.0.1:0"],
    ]);
    await waitFor(() => dev.stdout.includes("In another terminal"), {
      message: "oneoff dev to say what to type",
      seen: () => dev.stderr,
    });
    const token = (await Deno.readTextFile(`${dir}/dev/admin.token`)).trim();
    ok(!dev.stdout.includes(token) && !dev.stderr.includes(token), dev.stdout);
    match(dev.stdout, new RegExp(`ONEOFF_TOKEN=\\$\\(cat ${dir}/dev/admin\\.token\\)`));
    await dev.stop("SIGTERM");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
