/**
 * The CLI's side of port 5000: connect, send the handshake line, then the
 * session: framed (our own, `_framed.ts`) or raw bytes both ways until the
 * agent closes the stream.
 * @module
 */
import { type AttachInfo, FRAMED_PREFIX } from "../protocol/mod.ts";
import { FramedClient, type FramedOutcome } from "./_framed.ts";
import type { ByteConn } from "./_tls.ts";
import { connectDirect } from "./_transport.ts";

/** How to attach: PTY (raw terminal, resizes) or a plain byte pipe. */
export interface AttachOptions {
  tty: boolean;
  onResize?: (cols: number, rows: number) => void;
  /** How to reach the stream (cli/_transport.ts's openAttachConn); default straight to the port. */
  open?: (info: Omit<AttachInfo, "secret">) => Promise<ByteConn>;
}

async function copyStdinTo(conn: ByteConn, halfClose: boolean): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
    // The client's half-close is EOF on the process's stdin.
    if (halfClose) await conn.closeWrite();
  } catch {
    // The stream closed under us: the run is over.
  }
}

/** Copies the agent's bytes out; true when the stream broke rather than closed. */
async function copyConnToStdout(conn: ByteConn): Promise<boolean> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return false;
      let off = 0;
      while (off < n) off += Deno.stdout.writeSync(buf.subarray(off, n));
    }
  } catch {
    // A reset ends the session too, but the agent did not close it after an exit.
    return true;
  }
}

/**
 * Whether a TTY session puts this terminal in raw mode (only when stdin is
 * one), and how to put it back (safe to call more than once).
 */
function rawTerminal(tty: boolean): { raw: boolean; restore(): void } {
  const raw = tty && Deno.stdin.isTerminal();
  return {
    raw,
    restore() {
      if (!raw) return;
      try {
        Deno.stdin.setRaw(false);
      } catch { /* not a terminal any more */ }
    },
  };
}

/**
 * Attaches this terminal to a run; resolves when the agent ends the stream,
 * `broken` when it was reset rather than closed.
 */
export async function attachStream(
  info: Omit<AttachInfo, "secret">,
  secret: string,
  options: AttachOptions,
): Promise<{ broken: boolean }> {
  const conn = await (options.open ?? connectDirect)(info);
  await conn.write(new TextEncoder().encode(secret + "\n"));
  const { raw, restore } = rawTerminal(options.tty);
  const onWinch = () => {
    const { columns, rows } = Deno.consoleSize();
    options.onResize?.(columns, rows);
  };
  const onTerm = () => {
    restore();
    Deno.exit(143);
  };
  if (raw) {
    Deno.stdin.setRaw(true);
    Deno.addSignalListener("SIGWINCH", onWinch);
  }
  Deno.addSignalListener("SIGTERM", onTerm);
  try {
    // stdin is copied in the background: it may never end (a terminal), and
    // the session ends when the agent closes the stream.
    copyStdinTo(conn, !options.tty);
    return { broken: await copyConnToStdout(conn) };
  } finally {
    restore();
    if (raw) Deno.removeSignalListener("SIGWINCH", onWinch);
    Deno.removeSignalListener("SIGTERM", onTerm);
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

/** How to run a framed session. */
export interface FramedAttachOptions {
  tty: boolean;
  silent: boolean;
  /** A one-use resume secret from `POST .../attach` (another terminal) instead of the run's secret. */
  resume?: boolean;
  /** How to reach the stream, called again for each reconnect (cli/_transport.ts's attachOpener). */
  open?: (info: Omit<AttachInfo, "secret">) => Promise<ByteConn>;
  /** Resolves when the server has declared the run lost: a reconnect stops then. */
  lost?: Promise<unknown>;
}

/**
 * Attaches this terminal to a run in framed mode: the first attach with the
 * run's secret, or (`resume`) a takeover with a resume secret. Resolves with
 * the run's end when it came in band.
 */
export async function attachFramed(
  info: Omit<AttachInfo, "secret">,
  secret: string,
  options: FramedAttachOptions,
): Promise<FramedOutcome> {
  const { raw, restore } = rawTerminal(options.tty);
  const client = new FramedClient(() => (options.open ?? connectDirect)(info), {
    tty: options.tty,
    silent: options.silent,
    takeover: options.resume === true,
    ...(options.lost ? { lost: options.lost } : {}),
  });
  const onWinch = () => {
    const { columns, rows } = Deno.consoleSize();
    client.resize(columns, rows);
  };
  // The user's own end (a closed terminal, kill, ^C of a pipe): a clean
  // CLOSE, so that the process is hung up now rather than kept for the grace.
  const ending = (code: number) => async () => {
    await client.hangUp();
    restore();
    Deno.exit(code);
  };
  const signals: [Deno.Signal, () => void][] = [["SIGTERM", ending(143)], ["SIGHUP", ending(129)]];
  // A raw terminal sends ^C to the process as a byte; a pipe's ^C is the user's own end.
  signals.push(raw ? ["SIGWINCH", onWinch] : ["SIGINT", ending(130)]);
  if (raw) Deno.stdin.setRaw(true);
  for (const [name, listener] of signals) Deno.addSignalListener(name, listener);
  try {
    const line = options.resume ? `oneoff-resume/1 ${secret} -` : `${FRAMED_PREFIX}${secret}`;
    return await client.run(line);
  } finally {
    restore();
    for (const [name, listener] of signals) Deno.removeSignalListener(name, listener);
  }
}
