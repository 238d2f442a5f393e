/**
 * `oneoff watch`: a running attached one-off's output, read-only, as its
 * user sees it, streamed by the server from the session's recording. stdin
 * is never read: nothing typed here can reach the session, and the
 * terminal is left as it is (no raw mode), so Ctrl-C stops watching.
 * @module
 */
import { decodeWatchLine, type WatchLine } from "../../protocol/mod.ts";
import { parse } from "../_args.ts";
import { appName, CliError, err, UsageError } from "../_io.ts";
import { Client } from "../client.ts";

/** `oneoff watch -a APP [--from-now] one-off-N`; 0 once the session ended. */
export async function watch(args: string[]): Promise<number> {
  const parsed = parse("watch", args);
  const app = appName(parsed.string("app"));
  const silent = parsed.flag("silent");
  const [label, ...rest] = parsed.positionals;
  if (!label || rest.length > 0) {
    throw new UsageError("watch needs exactly one run, e.g. one-off-3");
  }
  const client = await Client.load();
  client.quiet = silent;
  const path = `/apps/${encodeURIComponent(app)}/runs/${encodeURIComponent(label)}/watch`;
  const res = await client.stream(parsed.flag("from-now") ? `${path}?from=now` : path);
  const tty = Deno.stdout.isTerminal();
  const interrupted = () => {
    // The watched program may have hidden the cursor or left colours on: not here.
    if (tty) writeAll(Deno.stdout, new TextEncoder().encode("\x1b[0m\x1b[?25h\r\n"));
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  try {
    for await (const line of lines(res.body!)) {
      const end = show(line, { label, silent });
      if (end !== null) {
        if (!silent) err(`oneoff: ${end}\n`);
        return 0;
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", interrupted);
  }
  throw new CliError(
    `Cannot watch ${label} to its end: the server closed the stream (is it restarting?); ` +
      `watch again with oneoff watch -a ${app} --from-now ${label}`,
  );
}

// Shows one line; returns the closing sentence at the end, else null.
function show(line: WatchLine, o: { label: string; silent: boolean }): string | null {
  switch (line.type) {
    case "start":
      if (!o.silent) {
        const from = line.from === "now" ? "from now on" : "from its start";
        err(`Watching ${line.run} ${from}, read-only (Ctrl-C stops watching)...\n`);
        const size = terminalSize();
        if (line.tty && size && (size.columns !== line.cols || size.rows !== line.rows)) {
          // Full-screen programs draw for their own terminal: said, so that a garbled screen is understood.
          err(
            `(its terminal is ${line.cols}x${line.rows}, this one ${size.columns}x${size.rows})\n`,
          );
        }
      }
      return null;
    case "o":
      writeAll(Deno.stdout, Uint8Array.fromBase64(line.data));
      return null;
    case "problem":
      err(`oneoff: ${line.message}\n`);
      return null;
    case "r":
    case "keepalive":
      return null;
    case "end":
      return line.exit_code !== null && line.state === "exited"
        ? `session ended (exit ${line.exit_code})`
        : `session ended (${line.state}${
          line.exit_code === null ? "" : `, exit ${line.exit_code}`
        }` +
          `${line.reason ? `: ${line.reason}` : ""})`;
  }
}

// The stream's lines, decoded; a line that is not one ends it with its reason.
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<WatchLine> {
  let buffered = "";
  try {
    for await (const text of body.pipeThrough(new TextDecoderStream())) {
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const raw = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const decoded = decodeWatchLine(raw);
        if (!decoded.ok) throw new CliError(`Cannot watch: the server sent ${decoded.error}`);
        yield decoded.value;
      }
    }
  } catch (e) {
    if (e instanceof CliError) throw e;
    // The connection dropped: said by the caller, as a stream that ended early.
  }
}

function terminalSize(): { columns: number; rows: number } | null {
  try {
    return Deno.stdout.isTerminal() ? Deno.consoleSize() : null;
  } catch {
    return null;
  }
}

function writeAll(target: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += target.writeSync(bytes.subarray(offset));
}
