/**
 * The `oneoff` command line: dispatch, help, exit codes.
 * @module
 */
import { CliError, err, out, UsageError } from "./_io.ts";

export { CliError, UsageError } from "./_io.ts";

/** One line of usage per command, shown by `--help` and on usage errors. */
export const USAGE: Record<string, string> = {
  dev: "oneoff dev [--data-dir DIR] [--http ADDR] [--attach ADDR] [--sandbox bwrap|runc]",
  server:
    "oneoff server [--http ADDR] [--database sqlite:PATH|postgres://...] [--data-dir DIR] [--join-token T] [--audit-key-file PATH] [--max-slug-bytes N] [--max-runs-per-app N]",
  agent:
    "oneoff agent --server URL --join-token T [--name NAME] [--attach ADDR] [--advertise HOST] [--data-dir DIR] [--sandbox bwrap|runc] [--max-runs N] [--tls-cert PEM --tls-key PEM]",
  login: "oneoff login --server URL --token T",
  apps: "oneoff apps create NAME | apps list [--json] | apps destroy NAME",
  env: "oneoff env -a APP [--json] | env set -a APP K=V... | env unset -a APP K...",
  deploy: "oneoff deploy -a APP PATH          (a .tar.gz slug or a directory)",
  run:
    "oneoff run -a APP [-d] [-e K=V]... [-f PATH]... [-s SIZE] [-t TYPE] [--timeout DURATION] [--no-tty] [--silent] [--attach-info] [--] COMMAND...",
  ps: "oneoff ps -a APP [-n N] [--json]",
  stop: "oneoff stop -a APP one-off-N",
  logs: "oneoff logs -a APP [-n N] [-f] [--filter one-off-N] [--json]",
  timeline: "oneoff timeline -a APP [-n N] [--json]",
  agents: "oneoff agents [--json]",
  tokens: "oneoff tokens create --role member --app APP [--name NAME]",
  audit:
    "oneoff audit show -a APP one-off-N [--json] | audit export -a APP one-off-N > x.cast | audit rotate-key",
};

type Command = (args: string[]) => Promise<number | void>;

// Each command's module is loaded only when it runs: start-up time is part
// of every `oneoff run`.
const COMMANDS: Record<string, () => Promise<Command>> = {
  login: async () => (await import("./commands/admin.ts")).login,
  agents: async () => (await import("./commands/admin.ts")).agents,
  tokens: async () => (await import("./commands/admin.ts")).tokens,
  apps: async () => (await import("./commands/apps.ts")).apps,
  env: async () => (await import("./commands/apps.ts")).env,
  deploy: async () => (await import("./commands/apps.ts")).deploy,
  run: async () => (await import("./commands/run.ts")).run,
  ps: async () => (await import("./commands/runs.ts")).ps,
  stop: async () => (await import("./commands/runs.ts")).stop,
  logs: async () => (await import("./commands/runs.ts")).logs,
  timeline: async () => (await import("./commands/runs.ts")).timeline,
  audit: async () => (await import("./commands/audit.ts")).audit,
};

/** The whole help text. */
export function help(): string {
  return [
    "oneoff: one-off runs of your apps, attached or detached.",
    "",
    "Usage:",
    ...Object.values(USAGE).map((u) => `  ${u}`),
    "",
    "ONEOFF_SERVER, ONEOFF_TOKEN and ONEOFF_APP stand in for --server, --token and -a.",
    "",
  ].join("\n");
}

/** Runs one CLI command; resolves to the process exit code. */
export async function runCli(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    out(help());
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    err(`oneoff: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  // `run` passes everything after its options to the command, --help included.
  const wantsHelp = name === "run"
    ? rest[0] === "--help" || rest[0] === "-h"
    : rest.includes("--help") || rest.includes("-h");
  if (wantsHelp) {
    out(`Usage: ${USAGE[name]}\n`);
    return 0;
  }
  try {
    const command = await load();
    return (await command(rest)) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`oneoff ${name}: ${e.message}\nUsage: ${USAGE[name]}\n`);
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
