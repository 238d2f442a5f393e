import { deepEqual, doesNotThrow, equal, ok, throws } from "node:assert/strict";
import { commandSpec } from "../_commands.ts";
import { UsageError } from "../_io.ts";
import { commandLine, parseRunArgs, type RunOptions } from "./run.ts";

/** What `oneoff run` parses when given nothing but a command. */
const DEFAULTS: RunOptions = {
  detached: false,
  env: {},
  files: [],
  silent: false,
  attachInfo: false,
  json: false,
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
  [["-d", "--json", "true"], { detached: true, json: true, command: ["true"] }],
  // heroku's -x/--exit-code is accepted and changes nothing: the exit code is always passed on.
  [["-x", "-a", "demo", "false"], { app: "demo", command: ["false"] }],
  [["--exit-code", "false"], { command: ["false"] }],
  [["-h"], { help: true }],
  [["-a", "demo", "--help", "bash"], { app: "demo", help: true, command: ["bash"] }],
  [["bash", "--help"], { command: ["bash", "--help"] }],
  // -a after the command is refused (below), unless after `--` or as the command's first word.
  [["--", "bash", "-a", "other"], { command: ["bash", "-a", "other"] }],
  [["-a", "demo", "--", "ls", "-a"], { app: "demo", command: ["ls", "-a"] }],
  // Options end at `--` or at the command's first word: what follows is the command's.
  [["--", "-d", "x"], { command: ["-d", "x"] }],
  [["echo", "-d", "--silent"], { command: ["echo", "-d", "--silent"] }],
  [["-a", "demo", "echo", "--", "x"], { app: "demo", command: ["echo", "--", "x"] }],
  [["-", "x"], { command: ["-", "x"] }],
  // The words stay apart here; commandLine (below) makes them one command line.
  [["echo", "a  b", "'c d'", "$HOME"], { command: ["echo", "a  b", "'c d'", "$HOME"] }],
];

for (const [argv, expected] of parses) {
  Deno.test(`parseRunArgs ${JSON.stringify(argv)}`, () => {
    deepEqual(parseRunArgs(argv), { ...DEFAULTS, ...expected });
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
  [["-y", "true"], 'Unknown option "-y"'],
  [
    ["--json", "true"],
    "--json prints a detached run: add -d (--attach-info is JSON for attached ones)",
  ],
  [
    ["bash", "-a", "other"],
    '"-a other" comes after the command; put options before it: oneoff run -a other bash (or use -- to pass -a to the command)',
  ],
  [
    ["-d", "rake", "db:migrate", "--app=other"],
    '"--app=other" comes after the command; put options before it: oneoff run -a other rake db:migrate (or use -- to pass --app to the command)',
  ],
  [
    ["ls", "-a"],
    '"-a" comes after the command; put options before it: oneoff run -a APP ls (or use -- to pass -a to the command)',
  ],
  [["-d", "--attach-info", "true"], "--attach-info is for attached runs: drop -d"],
];

for (const [argv, message] of refuses) {
  Deno.test(`parseRunArgs ${JSON.stringify(argv)} is a usage error`, () => {
    throws(() => parseRunArgs(argv), (error) => {
      ok(error instanceof UsageError, `not a UsageError: ${error}`);
      equal(error.message, message);
      return true;
    });
  });
}

const lines: [words: string[], line: string][] = [
  // One word is a shell command line, as it is.
  [["for i in 1 2; do echo $i; done"], "for i in 1 2; do echo $i; done"],
  [["bash"], "bash"],
  // Several words are one command's arguments: quoted where the shell would split or expand them.
  [["grep", "a b", "f"], "grep 'a b' f"],
  [["rake", "db:migrate", "RAILS_ENV=production"], "rake db:migrate RAILS_ENV=production"],
  [["echo", "$HOME", "it's", ""], "echo '$HOME' 'it'\\''s' ''"],
  [["ls", "-la", "/tmp/x,y", "a@b%c+d"], "ls -la /tmp/x,y a@b%c+d"],
  [["sh", "-c", "echo *; exit 3"], "sh -c 'echo *; exit 3'"],
];

for (const [words, line] of lines) {
  Deno.test(`commandLine ${JSON.stringify(words)} is ${line}`, () => {
    equal(commandLine(words), line);
  });
}

Deno.test("parseRunArgs reads every flag the command table declares for run", () => {
  const samples: Record<string, string> = {
    app: "demo",
    env: "K=V",
    file: "f",
    size: "M",
    type: "web",
    timeout: "1s",
    via: "server",
    reason: "ticket 42",
  };
  for (const flag of commandSpec("run")!.flags) {
    const argv = [
      ...(flag.name === "json" ? ["-d"] : []),
      `--${flag.name}`,
      ...(flag.value ? [samples[flag.name]!] : []),
      "true",
    ];
    doesNotThrow(() => parseRunArgs(argv), `--${flag.name}`);
    if (flag.short) {
      argv[argv.indexOf(`--${flag.name}`)] = `-${flag.short}`;
      doesNotThrow(() => parseRunArgs(argv), `-${flag.short}`);
    }
  }
});

Deno.test("parseRunArgs refuses a reason that is empty, too long or has control characters", () => {
  equal(parseRunArgs(["--reason", "ticket 42", "true"]).reason, "ticket 42");
  throws(() => parseRunArgs(["--reason", " ", "true"]), /Invalid --reason: it is empty/);
  throws(() => parseRunArgs(["--reason", "x".repeat(501), "true"]), /longer than 500/);
  throws(() => parseRunArgs(["--reason", "a\x1b[2Jb", "true"]), /control character/);
  throws(() => parseRunArgs(["--reason", "a\nb", "true"]), /control character/);
  // Bidirectional overrides would make a reason read otherwise than it is.
  throws(() => parseRunArgs(["--reason", "a\u202eb", "true"]), /control character/);
});

Deno.test("parseRunArgs refuses a --via that is not direct, server or auto", () => {
  throws(() => parseRunArgs(["--via", "carrier-pigeon", "true"]), /direct, server or auto/);
  equal(parseRunArgs(["--via=server", "true"]).via, "server");
});
