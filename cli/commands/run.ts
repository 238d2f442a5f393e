/**
 * `oneoff run`: start a one-off, attached to this terminal through the
 * agent's port 5000, or detached with its output in the app's logs.
 * @module
 */
import {
  type AttachReply,
  type AttachTarget,
  isTerminal,
  type ResizeBody,
  type RunCreatedReply,
  type RunInfo,
  type RunReply,
  type RunRequestBody,
  type RunUploadBody,
  type SizeName,
  type UploadReply,
} from "../../protocol/mod.ts";
import { CliError, err, out, parseDuration, UsageError } from "../_io.ts";
import { Client } from "../client.ts";
import { attachStream } from "../attach.ts";

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
  command: string[];
}

const VALUE_OPTIONS: Record<string, string> = {
  "-a": "app",
  "--app": "app",
  "-e": "env",
  "--env": "env",
  "-f": "file",
  "--file": "file",
  "-s": "size",
  "--size": "size",
  "-t": "type",
  "--type": "type",
  "--timeout": "timeout",
};

/** Options end at `--` or at the first word of the command, as in `heroku run`. */
export function parseRunArgs(args: string[]): RunOptions {
  const opts: RunOptions = {
    detached: false,
    env: {},
    files: [],
    silent: false,
    attachInfo: false,
    command: [],
  };
  let i = 0;
  for (; i < args.length; i++) {
    let arg = args[i]!;
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    let inline: string | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const valueName = VALUE_OPTIONS[arg];
    if (valueName) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new UsageError(`Option ${arg} needs a value`);
      if (valueName === "app") opts.app = value;
      else if (valueName === "size") opts.size = value;
      else if (valueName === "type") opts.type = value;
      else if (valueName === "timeout") opts.timeoutMs = parseDuration(value);
      else if (valueName === "file") opts.files.push(value);
      else {
        const at = value.indexOf("=");
        if (at <= 0) throw new UsageError(`Invalid -e "${value}": use KEY=VALUE`);
        opts.env[value.slice(0, at)] = value.slice(at + 1);
      }
      continue;
    }
    if (arg === "-d" || arg === "--detached") opts.detached = true;
    else if (arg === "--no-tty") opts.tty = false;
    else if (arg === "--tty") opts.tty = true;
    else if (arg === "--silent") opts.silent = true;
    else if (arg === "--attach-info") opts.attachInfo = true;
    else throw new UsageError(`Unknown option "${arg}"`);
  }
  opts.command = args.slice(i);
  if (opts.command.length === 0 && !opts.type) {
    throw new UsageError("run needs a COMMAND (or -t TYPE)");
  }
  if (opts.detached && opts.attachInfo) {
    throw new UsageError("--attach-info is for attached runs: drop -d");
  }
  return opts;
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

/** Waits until the run's agent expects the client; the attach details. */
async function waitReady(
  client: Client,
  base: string,
  label: string,
): Promise<AttachTarget> {
  while (true) {
    const res = await client.request<AttachReply>("GET", `${base}/runs/${label}/attach?wait=30`);
    if (res.ready) return res.attach;
  }
}

/** Long-polls the run until it has ended. */
async function waitEnded(client: Client, path: string): Promise<RunInfo> {
  while (true) {
    const { run } = await client.request<RunReply>("GET", `${path}?wait=60`);
    if (isTerminal(run.state)) return run;
  }
}

/** Maps a finished run to the CLI's exit code, saying why when it is not the process's. */
function exitCodeOf(run: RunInfo, silent: boolean): number {
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
  const app = opts.app ?? Deno.env.get("ONEOFF_APP");
  if (!app) throw new UsageError("Which app? Give -a APP (or set ONEOFF_APP)");
  const client = await Client.load();
  const base = `/apps/${encodeURIComponent(app)}`;
  const uploads: RunUploadBody[] = [];
  for (const path of opts.files) uploads.push(await upload(client, app, path));
  const tty = !opts.detached && !opts.attachInfo && (opts.tty ?? Deno.stdin.isTerminal());
  const size = terminalSize();
  const body: RunRequestBody = {
    command: opts.command.join(" "),
    attached: !opts.detached,
    tty,
    cols: size.cols,
    rows: size.rows,
    env: opts.env,
    uploads,
    term: Deno.env.get("TERM") ?? "xterm-256color",
  };
  if (opts.type) body.type = opts.type;
  // The server says which sizes exist, and words the refusal of others.
  if (opts.size) body.size = opts.size as SizeName;
  if (opts.timeoutMs !== undefined) body.timeout = Math.max(1, Math.round(opts.timeoutMs / 1000));
  const { run, secret, attach: early } = await client.request<RunCreatedReply>(
    "POST",
    `${base}/runs${opts.detached ? "" : "?wait=20"}`,
    body,
  );

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
  if (!opts.silent) err(`Running ${run.label} of "${app}" on ${attach.host}:${attach.port}...\n`);
  // Asked before attaching, so the exit code is known the moment the stream ends.
  const ended = waitEnded(client, `${base}/runs/${run.label}`);
  ended.catch(() => {});
  await attachStream(attach, secret, {
    tty,
    onResize: (cols, rows) => {
      const resize: ResizeBody = { cols, rows };
      client.request("POST", `${base}/runs/${run.label}/resize`, resize).catch(() => {});
    },
  });
  const final = await ended;
  return exitCodeOf(final, opts.silent);
}
