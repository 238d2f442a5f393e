/**
 * `oneoff run`: start a one-off, attached to this terminal through the
 * agent's port 5000, or detached with its output in the app's logs.
 * @module
 */
import {
  ATTACH_REFUSALS,
  type AttachReply,
  type AttachTarget,
  isTerminal,
  MAX_LONG_POLL_S,
  reasonProblem,
  type ResizeBody,
  type RunCreatedReply,
  type RunInfo,
  type RunReply,
  type RunRequestBody,
  type RunState,
  type RunUploadBody,
  type SizeName,
  type UploadReply,
} from "../../protocol/mod.ts";
import { commandSpec, type FlagSpec } from "../_commands.ts";
import { CliError, err, out, parseDuration, UsageError } from "../_io.ts";
import { Client } from "../client.ts";
import { attachFramed, attachStream } from "../attach.ts";
import type { FramedOutcome } from "../_framed.ts";
import { attachOpener, chooseVia, type Via, VIAS } from "../_transport.ts";
import { OUTCOME_RETRY_MS } from "../_retry.ts";

/** Parsed `oneoff run` options. */
export interface RunOptions {
  app?: string;
  detached: boolean;
  env: Record<string, string>;
  files: string[];
  size?: string;
  type?: string;
  tty?: boolean;
  silent: boolean;
  attachInfo: boolean;
  timeoutMs?: number;
  /** `--reason`: why the run is made. */
  reason?: string;
  /** `--via`: how to reach the attach stream (checked when attaching). */
  via?: string;
  /** With -d: print the run as JSON. */
  json: boolean;
  /** `--help` came among the options. */
  help?: true;
  command: string[];
}

// The flags the command table declares for `run`, by `-x` and `--long`:
// run parses its own arguments (they end at the command), from the same table.
const FLAGS = new Map<string, FlagSpec>();
for (const flag of commandSpec("run")!.flags) {
  FLAGS.set(`--${flag.name}`, flag);
  if (flag.short) FLAGS.set(`-${flag.short}`, flag);
}

/** Options end at `--` or at the first word of the command, as in `heroku run`. */
export function parseRunArgs(args: string[]): RunOptions {
  const opts: RunOptions = {
    detached: false,
    env: {},
    files: [],
    silent: false,
    attachInfo: false,
    json: false,
    command: [],
  };
  let i = 0;
  let dashes = false;
  for (; i < args.length; i++) {
    let arg = args[i]!;
    if (arg === "--") {
      i++;
      dashes = true;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    let inline: string | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === "-h" || arg === "--help") {
      opts.help = true;
      continue;
    }
    const flag = FLAGS.get(arg);
    if (!flag) throw new UsageError(`Unknown option "${arg}"`);
    if (flag.value) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new UsageError(`Option ${arg} needs a value`);
      setValue(opts, flag.name, value);
    } else {
      setFlag(opts, flag.name);
    }
  }
  opts.command = args.slice(i);
  if (opts.help) return opts;
  if (!dashes) refuseLateApp(opts.command);
  if (opts.command.length === 0 && !opts.type) {
    throw new UsageError("run needs a COMMAND (or -t TYPE)");
  }
  if (opts.detached && opts.attachInfo) {
    throw new UsageError("--attach-info is for attached runs: drop -d");
  }
  if (opts.json && !opts.detached) {
    throw new UsageError(
      "--json prints a detached run: add -d (--attach-info is JSON for attached ones)",
    );
  }
  return opts;
}

function setValue(opts: RunOptions, name: string, value: string): void {
  if (name === "app") opts.app = value;
  else if (name === "size") opts.size = value;
  else if (name === "type") opts.type = value;
  else if (name === "timeout") opts.timeoutMs = parseDuration(value);
  else if (name === "file") opts.files.push(value);
  else if (name === "reason") {
    const problem = reasonProblem(value);
    if (problem !== null) throw new UsageError(`Invalid --reason: ${problem}`);
    opts.reason = value;
  } else if (name === "via") {
    if (!(VIAS as readonly string[]).includes(value)) {
      throw new UsageError(`Invalid --via "${value}": use direct, server or auto`);
    }
    opts.via = value;
  } else if (name === "env") {
    const at = value.indexOf("=");
    if (at <= 0) throw new UsageError(`Invalid -e "${value}": use KEY=VALUE`);
    opts.env[value.slice(0, at)] = value.slice(at + 1);
  } else throw new Error(`run declares --${name} but does not read it`);
}

function setFlag(opts: RunOptions, name: string): void {
  if (name === "detached") opts.detached = true;
  else if (name === "no-tty") opts.tty = false;
  else if (name === "tty") opts.tty = true;
  else if (name === "silent") opts.silent = true;
  else if (name === "attach-info") opts.attachInfo = true;
  else if (name === "json") opts.json = true;
  // heroku's --exit-code: here the exit code is always passed on.
  else if (name !== "exit-code") throw new Error(`run declares --${name} but does not read it`);
}

/**
 * `oneoff run bash -a other` is a heroku habit that would run on
 * $ONEOFF_APP and hand `-a other` to bash: refused, saying what to type.
 */
function refuseLateApp(command: string[]): void {
  const at = command.findIndex((w, i) =>
    i > 0 && (w === "-a" || w === "--app" || w.startsWith("--app="))
  );
  if (at < 0) return;
  const word = command[at]!;
  const value = word.startsWith("--app=") ? word.slice(6) : command[at + 1];
  const given = word.startsWith("--app=") || value === undefined ? word : `${word} ${value}`;
  const rest = command.filter((_, i) => i !== at && (word.startsWith("--app=") || i !== at + 1));
  throw new UsageError(
    `"${given}" comes after the command; put options before it: oneoff run -a ${value ?? "APP"} ${
      rest.join(" ")
    } (or use -- to pass ${word.replace(/=.*/, "")} to the command)`,
  );
}

// Words a POSIX shell reads as themselves: anything else is quoted.
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * The command line to run with `/bin/sh -c`. One word is a shell command
 * line as it is (`'for i in 1 2; do echo $i; done'`); several words are one
 * command's arguments, each quoted when the shell would split or expand it,
 * so `grep "a b" f` runs as `grep 'a b' f`, not `grep a b f`.
 */
export function commandLine(words: string[]): string {
  if (words.length === 1) return words[0]!;
  return words.map((w) => PLAIN_WORD.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`).join(" ");
}

async function upload(client: Client, app: string, path: string): Promise<RunUploadBody> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new CliError(`Cannot upload "${path}": no such file or directory`);
  }
  const base = path.replace(/\/+$/, "").split("/").pop() || "upload";
  const name = info.isDirectory ? `${base}.tar.gz` : base;
  const body = info.isDirectory
    ? (await import("../pack.ts")).packDirectory(path)
    : (await Deno.open(path)).readable;
  const res = await client.request<UploadReply>(
    "POST",
    `/apps/${encodeURIComponent(app)}/uploads`,
    undefined,
    { body, headers: { "content-type": "application/octet-stream" } },
  );
  return { name, sha256: res.sha256 };
}

function terminalSize(): { cols: number; rows: number } {
  try {
    const { columns, rows } = Deno.consoleSize();
    return { cols: columns, rows };
  } catch {
    return { cols: 80, rows: 24 };
  }
}

// Each long poll is at most MAX_LONG_POLL_S (25 s), under the idle timeout of
// most proxies; a try that gets no answer 15 s after that counts as a dropped
// connection.
const POLL_TIMEOUT_MS = (MAX_LONG_POLL_S + 15) * 1000;
// How long the run's end may take to reach the server after the agent has
// closed the stream, before the CLI says the connection was lost.
const END_GRACE_MS = 1000;

/** Waits until the run's agent expects the client; the attach details. */
async function waitReady(
  client: Client,
  base: string,
  label: string,
): Promise<AttachTarget> {
  while (true) {
    const res = await client.request<AttachReply>(
      "GET",
      `${base}/runs/${label}/attach?wait=${MAX_LONG_POLL_S}`,
      undefined,
      { retryFor: OUTCOME_RETRY_MS, timeoutMs: POLL_TIMEOUT_MS },
    );
    if (res.ready) return res.attach;
  }
}

/** Resolves with the run once the server has declared it lost; never for another end. */
export function lostOf(ended: Promise<RunInfo>): Promise<RunInfo> {
  return ended.then((run) => run.state === "lost" ? run : new Promise<never>(() => {}));
}

/** Long-polls the run until it has ended, through server restarts (bounded, see `_retry.ts`). */
export async function waitEnded(client: Client, path: string): Promise<RunInfo> {
  while (true) {
    const { run } = await client.request<RunReply>(
      "GET",
      `${path}?wait=${MAX_LONG_POLL_S}`,
      undefined,
      { retryFor: OUTCOME_RETRY_MS, timeoutMs: POLL_TIMEOUT_MS },
    );
    if (isTerminal(run.state)) return run;
  }
}

/**
 * The stream has ended: the run's end normally follows at once. When it
 * does not (the agent died, or the connection to it broke), say so now
 * rather than leave the user in silence until the server decides.
 */
async function afterStream(
  client: Client,
  path: string,
  ended: Promise<RunInfo>,
  broken: boolean,
  silent: boolean,
): Promise<RunInfo> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), broken ? 0 : END_GRACE_MS);
  });
  const early = await Promise.race([ended.catch(() => undefined), grace]);
  clearTimeout(timer);
  if (early) return early;
  let state: RunInfo | undefined;
  try {
    // One try: when the server is away, the wait has said so already.
    state = (await client.request<RunReply>("GET", path, undefined, { retryFor: 0 })).run;
  } catch { /* the wait goes on */ }
  if (state && isTerminal(state.state)) return state;
  if (!silent && (broken || state)) {
    err("oneoff: the connection to the agent was lost; waiting for the run's outcome…\n");
  }
  return await ended;
}

/** Maps a finished run to the CLI's exit code, saying why when it is not the process's. */
function exitCodeOf(
  run: Pick<RunInfo, "label" | "state" | "exit_code" | "reason">,
  silent: boolean,
): number {
  const say = (text: string) => silent || err(`oneoff: ${text}\n`);
  switch (run.state) {
    case "exited":
      return run.exit_code ?? 0;
    case "timed_out":
      say(`${run.label} timed out${run.reason ? `: ${run.reason}` : ""}`);
      return 124;
    case "stopped":
      say(`${run.label} was stopped${run.reason ? `: ${run.reason}` : ""}`);
      return run.exit_code ?? 143;
    default:
      say(`${run.label} ${run.state}${run.reason ? `: ${run.reason}` : ""}`);
      return 1;
  }
}

/** `oneoff run ...`; resolves to the exit code. */
export async function run(args: string[]): Promise<number> {
  const opts = parseRunArgs(args);
  if (opts.help) {
    const { commandHelp } = await import("../_help.ts");
    out(commandHelp(commandSpec("run")!));
    return 0;
  }
  const app = opts.app ?? Deno.env.get("ONEOFF_APP");
  if (!app) throw new UsageError("Which app? Give -a APP (or set ONEOFF_APP)");
  const via: Via = chooseVia(opts.via);
  const client = await Client.load();
  client.quiet = opts.silent;
  const base = `/apps/${encodeURIComponent(app)}`;
  const uploads: RunUploadBody[] = [];
  for (const path of opts.files) uploads.push(await upload(client, app, path));
  const tty = !opts.detached && !opts.attachInfo && (opts.tty ?? Deno.stdin.isTerminal());
  const size = terminalSize();
  const body: RunRequestBody = {
    command: commandLine(opts.command),
    attached: !opts.detached,
    tty,
    cols: size.cols,
    rows: size.rows,
    env: opts.env,
    uploads,
    term: Deno.env.get("TERM") ?? "xterm-256color",
  };
  if (opts.type) body.type = opts.type;
  if (opts.reason !== undefined) body.reason = opts.reason;
  // The server says which sizes exist, and words the refusal of others.
  if (opts.size) body.size = opts.size as SizeName;
  if (opts.timeoutMs !== undefined) body.timeout = Math.max(1, Math.round(opts.timeoutMs / 1000));
  // One key for every try of this invocation: a retry after a dropped
  // answer gets the run the first try created, not a second run.
  const { run, secret, attach: early } = await client.request<RunCreatedReply>(
    "POST",
    `${base}/runs${opts.detached ? "" : "?wait=20"}`,
    body,
    { idempotencyKey: crypto.randomUUID(), timeoutMs: opts.detached ? 30_000 : 35_000 },
  );

  if (opts.detached && opts.json) {
    out(JSON.stringify(run) + "\n");
    return 0;
  }
  if (opts.detached) {
    out(`Started ${run.label} of "${app}": ${run.command}\n`);
    out(`Follow its output with: oneoff logs -a ${app} -f --filter ${run.label}\n`);
    return 0;
  }
  if (!secret) throw new CliError("The server did not return an attach secret");
  if (!early && !opts.silent && !opts.attachInfo) {
    err(`Waiting for an agent to start ${run.label} of "${app}"...\n`);
  }
  const attach = early ?? await waitReady(client, base, run.label);
  if (opts.attachInfo) {
    out(JSON.stringify({ ...attach, secret }) + "\n");
    return 0;
  }
  if (!opts.silent) {
    const where = via === "server" ? "through the server" : `on ${attach.host}:${attach.port}`;
    err(`Running ${run.label} of "${app}" ${where}...\n`);
  }
  const open = attachOpener({
    via,
    server: client.server,
    token: client.bearer(),
    silent: opts.silent,
  });
  // Asked before attaching: the fallback when the end does not come in band.
  const ended = waitEnded(client, `${base}/runs/${run.label}`);
  ended.catch(() => {});
  const outcome = await attachFramed(attach, secret, {
    tty,
    silent: opts.silent,
    open,
    lost: lostOf(ended),
  });
  if (outcome.refused === ATTACH_REFUSALS.unknown) {
    // An agent older than framed mode reads the framed line as an unknown
    // secret and leaves the real one unused: attach raw, as before.
    const { broken } = await attachStream(attach, secret, {
      tty,
      open,
      onResize: (cols, rows) => {
        const resize: ResizeBody = { cols, rows };
        client.request("POST", `${base}/runs/${run.label}/resize`, resize).catch(() => {});
      },
    });
    const final = await afterStream(
      client,
      `${base}/runs/${run.label}`,
      ended,
      broken,
      opts.silent,
    );
    return exitCodeOf(final, opts.silent);
  }
  return await finalCode(client, `${base}/runs/${run.label}`, run.label, outcome, {
    ended,
    silent: opts.silent,
  });
}

/**
 * The CLI's exit code after a framed session: the end in band when it came
 * (the server may be unreachable then), else the run's outcome from the server.
 */
export async function finalCode(
  client: Client,
  path: string,
  label: string,
  outcome: FramedOutcome,
  options: { ended?: Promise<RunInfo>; silent: boolean },
): Promise<number> {
  const { exit, refused } = outcome;
  if (exit) {
    const state = exit.state as RunState;
    return exitCodeOf(
      { label, state, exit_code: exit.exit_code, reason: exit.reason },
      options.silent,
    );
  }
  if (refused && !options.silent) err(`oneoff: cannot attach to ${label}: ${refused}\n`);
  const ended = options.ended ?? waitEnded(client, path);
  // Taken over (the NOTICE said so): nothing was lost; the run's end is its exit code here too.
  if (outcome.takenOver) return exitCodeOf(await ended, options.silent);
  const final = await afterStream(client, path, ended, true, options.silent);
  return exitCodeOf(final, options.silent);
}
