/**
 * The `oneoff` command line: dispatch, help, exit codes.
 * @module
 */
import { commandSpec } from "./_commands.ts";
import { CliError, err, out, UsageError } from "./_io.ts";

export { CliError, UsageError } from "./_io.ts";

type Command = (args: string[]) => Promise<number | void>;

// Each command's module is loaded only when it runs: start-up time is part
// of every `oneoff run`.
const LOADERS: Record<string, () => Promise<Command>> = {
  login: async () => (await import("./commands/admin.ts")).login,
  logout: async () => (await import("./commands/admin.ts")).logout,
  whoami: async () => (await import("./commands/admin.ts")).whoami,
  agents: async () => (await import("./commands/admin.ts")).agents,
  tokens: async () => (await import("./commands/admin.ts")).tokens,
  apps: async () => (await import("./commands/apps.ts")).apps,
  env: async () => (await import("./commands/apps.ts")).env,
  deploy: async () => (await import("./commands/apps.ts")).deploy,
  run: async () => (await import("./commands/run.ts")).run,
  attach: async () => (await import("./commands/attach.ts")).attach,
  watch: async () => (await import("./commands/watch.ts")).watch,
  ps: async () => (await import("./commands/runs.ts")).ps,
  stop: async () => (await import("./commands/runs.ts")).stop,
  logs: async () => (await import("./commands/runs.ts")).logs,
  timeline: async () => (await import("./commands/runs.ts")).timeline,
  audit: async () => (await import("./commands/audit.ts")).audit,
  artifacts: async () => (await import("./commands/artifacts.ts")).artifacts,
  completion: async () => (await import("./_completion.ts")).completion,
};

/** The line printed for `--version`. */
export async function versionLine(): Promise<string> {
  const { VERSION } = await import("../protocol/channel.ts");
  return `oneoff ${VERSION} (deno ${Deno.version.deno}; ${Deno.build.os})\n`;
}

// Help text is made only when shown: `oneoff run` never loads it.
const helpText = () => import("./_help.ts");

/** `oneoff help [CMD]`. */
async function help(topic: string | undefined): Promise<number> {
  const { commandHelp, overview } = await helpText();
  if (topic === undefined) {
    out(overview());
    return 0;
  }
  const spec = commandSpec(topic);
  if (!spec) {
    err(`oneoff help: no command "${topic}"\nRun "oneoff help" for the list of commands\n`);
    return 2;
  }
  out(commandHelp(spec));
  return 0;
}

/** True when `args` ask for help before any `--`. */
function asksHelp(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === "--help" || a === "-h");
}

/** Runs one CLI command; resolves to the process exit code. */
export async function runCli(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) {
    err((await helpText()).overview());
    return 2;
  }
  if (name === "help") return help(rest[0]);
  if (name === "--help" || name === "-h") return help(undefined);
  if (name === "--version") {
    out(await versionLine());
    return 0;
  }
  const load = LOADERS[name];
  const spec = commandSpec(name);
  if (!load || !spec) {
    err(`oneoff: unknown command "${name}"\nRun "oneoff help" for the list of commands\n`);
    return 2;
  }
  // `run` passes the command's own words on, --help included: it looks for
  // --help among its options itself.
  if (name !== "run" && asksHelp(rest)) return help(name);
  try {
    const command = await load();
    return (await command(rest)) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`oneoff ${name}: ${e.message}\n${(await helpText()).usageHint(spec)}`);
      return 2;
    }
    if (e instanceof CliError) {
      err(`oneoff: ${e.message}\n`);
      return e.code;
    }
    err(`oneoff: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
