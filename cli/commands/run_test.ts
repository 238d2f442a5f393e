import assert from "node:assert/strict";
import { UsageError } from "../_io.ts";
import { parseRunArgs, type RunOptions } from "./run.ts";

/** What `oneoff run` parses when given nothing but a command. */
const DEFAULTS: RunOptions = {
  detached: false,
  env: {},
  files: [],
  silent: false,
  attachInfo: false,
  command: [],
};

const parses: [argv: string[], expected: Partial<RunOptions>][] = [
  [["-a", "demo", "--", "echo", "hi"], { app: "demo", command: ["echo", "hi"] }],
  [["--app", "demo", "true"], { app: "demo", command: ["true"] }],
  [["--app=demo", "true"], { app: "demo", command: ["true"] }],
  [["-d", "-a", "demo", "rake", "db:migrate"], {
    app: "demo",
    detached: true,
    command: ["rake", "db:migrate"],
  }],
  [["--detached", "true"], { detached: true, command: ["true"] }],
  [["-e", "A=1", "-e", "B=two words", "--env", "C=", "-e", "D=x=y", "-e", "A=2", "env"], {
    env: { A: "2", B: "two words", C: "", D: "x=y" },
    command: ["env"],
  }],
  [["--env=K=V", "env"], { env: { K: "V" }, command: ["env"] }],
  [["-f", "data.bin", "--file", "dir/", "--file=c.txt", "ls"], {
    files: ["data.bin", "dir/", "c.txt"],
    command: ["ls"],
  }],
  [["-s", "L", "true"], { size: "L", command: ["true"] }],
  [["--size=XL", "true"], { size: "XL", command: ["true"] }],
  // -t alone is a whole command: the Procfile type's.
  [["-a", "demo", "-t", "hello"], { app: "demo", type: "hello" }],
  [["--type", "web", "--", "--port", "5000"], { type: "web", command: ["--port", "5000"] }],
  [["--timeout", "10m", "true"], { timeoutMs: 600_000, command: ["true"] }],
  [["--timeout=90", "true"], { timeoutMs: 90_000, command: ["true"] }],
  [["--no-tty", "cat"], { tty: false, command: ["cat"] }],
  [["--tty", "bash"], { tty: true, command: ["bash"] }],
  [["--silent", "--no-tty", "cat"], { silent: true, tty: false, command: ["cat"] }],
  [["--attach-info", "--no-tty", "--", "pg_dump $DATABASE_URL"], {
    attachInfo: true,
    tty: false,
    command: ["pg_dump $DATABASE_URL"],
  }],
  // Options end at `--` or at the command's first word: what follows is the command's.
  [["--", "-d", "x"], { command: ["-d", "x"] }],
  [["echo", "-d", "--silent"], { command: ["echo", "-d", "--silent"] }],
  [["-a", "demo", "echo", "--", "x"], { app: "demo", command: ["echo", "--", "x"] }],
  [["-", "x"], { command: ["-", "x"] }],
  // The words stay apart here; `oneoff run` joins them with spaces into one command line
  // (tests/network_test.ts runs such a command).
  [["echo", "a  b", "'c d'", "$HOME"], { command: ["echo", "a  b", "'c d'", "$HOME"] }],
];

for (const [argv, expected] of parses) {
  Deno.test(`parseRunArgs ${JSON.stringify(argv)}`, () => {
    assert.deepEqual(parseRunArgs(argv), { ...DEFAULTS, ...expected });
  });
}

const refuses: [argv: string[], message: string][] = [
  [[], "run needs a COMMAND (or -t TYPE)"],
  [["-a", "demo"], "run needs a COMMAND (or -t TYPE)"],
  [["-a", "demo", "--"], "run needs a COMMAND (or -t TYPE)"],
  [["-a"], "Option -a needs a value"],
  [["-e"], "Option -e needs a value"],
  [["-f"], "Option -f needs a value"],
  [["-s"], "Option -s needs a value"],
  [["-t"], "Option -t needs a value"],
  [["--timeout"], "Option --timeout needs a value"],
  [["-e", "NOEQUALS", "env"], 'Invalid -e "NOEQUALS": use KEY=VALUE'],
  [["-e", "=value", "env"], 'Invalid -e "=value": use KEY=VALUE'],
  [["--timeout", "soon", "true"], 'Invalid duration "soon": use e.g. 90s, 10m, 2h or 1d'],
  [["--bogus", "true"], 'Unknown option "--bogus"'],
  [["-x", "true"], 'Unknown option "-x"'],
  [["-d", "--attach-info", "true"], "--attach-info is for attached runs: drop -d"],
];

for (const [argv, message] of refuses) {
  Deno.test(`parseRunArgs ${JSON.stringify(argv)} is a usage error`, () => {
    assert.throws(() => parseRunArgs(argv), (error) => {
      assert.ok(error instanceof UsageError, `not a UsageError: ${error}`);
      assert.equal(error.message, message);
      return true;
    });
  });
}
