/**
 * An attached session: the raw bytes between the client's connection and
 * the sandboxed process, with the idle timeout and hang-up detection.
 * @module
 */
import { type Clock, realClock } from "../util/clock.ts";
import type { AttachedClient } from "./attach_listener.ts";
import type { ExitStatus, SandboxProcess } from "./sandbox/mod.ts";

/** How the session behaves and what it reports. */
export interface SessionOptions {
  tty: boolean;
  idleTimeoutMs: number;
  /** No byte either way for idleTimeoutMs. */
  onIdle(): void;
  /** The client went away before the process ended. */
  onHangup(): void;
  /** Sees every byte that crosses, for the audit recording. */
  observe?: (direction: "in" | "out", bytes: Uint8Array) => void;
  /** Time for the idle check (default the real clock). */
  clock?: Clock;
  /**
   * Called once at the start with a function that tells the client one line
   * out of band (`oneoff: ` and the text), between two writes of output:
   * the client's stream is all a raw session has, never the process's stdin.
   */
  notices?: (say: (text: string) => void) => void;
}

const encoder = new TextEncoder();

/** Copies bytes both ways until the process has exited and its output is sent. */
export async function pipeSession(
  process: SandboxProcess,
  client: AttachedClient,
  options: SessionOptions,
): Promise<{ status: ExitStatus; close(): void }> {
  const { conn } = client;
  const clock = options.clock ?? realClock;
  let last = clock.now();
  let clientGone = false;
  let processDone = false;
  const hangup = () => {
    if (clientGone || processDone) return;
    clientGone = true;
    options.onHangup();
  };

  const idleCheck = clock.setInterval(() => {
    if (clock.now() - last >= options.idleTimeoutMs) {
      clock.clearInterval(idleCheck);
      options.onIdle();
    }
  }, Math.max(50, Math.min(options.idleTimeoutMs / 4, 5_000)));

  const input = (async () => {
    const writer = process.stdin.getWriter();
    try {
      if (client.initial.length > 0) {
        options.observe?.("in", client.initial);
        await writer.write(client.initial);
      }
      const buf = new Uint8Array(64 * 1024);
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        last = clock.now();
        const bytes = buf.slice(0, n);
        options.observe?.("in", bytes);
        await writer.write(bytes);
      }
      // No-TTY: the client's half-close is EOF on stdin. TTY: a hang-up.
      if (options.tty) hangup();
      else await writer.close();
    } catch {
      if (!processDone) hangup();
    } finally {
      writer.releaseLock();
    }
  })();

  // stdout and stderr share the socket: writes are serialised.
  let writing = Promise.resolve();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      last = clock.now();
      options.observe?.("out", chunk);
      if (clientGone) continue;
      // Awaiting each write gives the process backpressure from a slow client.
      await (writing = writing.then(async () => {
        if (clientGone) return;
        try {
          let off = 0;
          while (off < chunk.length) off += await conn.write(chunk.subarray(off));
        } catch {
          hangup();
        }
      }));
    }
  };
  options.notices?.((text) => {
    if (clientGone || processDone) return;
    // A terminal in raw mode has no output processing: its lines need "\r\n".
    const line = encoder.encode(options.tty ? `\r\noneoff: ${text}\r\n` : `oneoff: ${text}\n`);
    writing = writing.then(async () => {
      if (clientGone) return;
      try {
        let off = 0;
        while (off < line.length) off += await conn.write(line.subarray(off));
      } catch {
        hangup();
      }
    });
  });
  const outputs = [pump(process.stdout)];
  if (process.stderr) outputs.push(pump(process.stderr));
  const [status] = await Promise.all([process.status, ...outputs]);
  await writing;
  processDone = true;
  clock.clearInterval(idleCheck);
  input.catch(() => {});
  return {
    status,
    close() {
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}
