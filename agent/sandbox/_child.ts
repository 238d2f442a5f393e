/**
 * Starting the wrapper argv as a child of the agent, in one of two shapes:
 * pipes (Deno.Command) for no-TTY runs, a pseudo-terminal (node-pty) for TTY
 * runs. Both come out as the same {@link Child}.
 * @module
 */
import { WRAPPER_ENV } from "./_layer.ts";

/** A started wrapper: its streams, and its exit code once it has exited. */
export interface Child {
  pid: number;
  stdin: WritableStream<Uint8Array>;
  stdout: ReadableStream<Uint8Array>;
  stderr: ReadableStream<Uint8Array> | null;
  resize(cols: number, rows: number): void;
  /** The exit code; 128+N when killed by signal N. */
  exited: Promise<number>;
}

/** Starts `argv` with piped stdin, stdout and stderr. */
export function spawnPiped(argv: string[]): Child {
  const [file, ...args] = argv;
  const child = new Deno.Command(file!, {
    args,
    clearEnv: true,
    env: WRAPPER_ENV,
    cwd: "/",
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return {
    pid: child.pid,
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    resize() {},
    exited: child.status.then((status) => status.code),
  };
}

/**
 * Output the agent has not consumed yet before the pty is paused. node-pty
 * destroys the pty 200 ms after the process exits even when paused, so keep
 * this well above what a terminal produces while a reader catches up.
 */
const PTY_HIGH_WATER_BYTES = 1 << 20;

/** Starts `argv` on a new pseudo-terminal of the given size. */
export async function spawnPty(
  argv: string[],
  size: { cols: number; rows: number },
): Promise<Child> {
  // Loaded on first use: an agent without TTY runs never needs the native module.
  const { default: pty } = await import("node-pty");
  const [file, ...args] = argv;
  const term = pty.spawn(file!, args, {
    cols: size.cols,
    rows: size.rows,
    cwd: "/",
    env: WRAPPER_ENV,
    encoding: null,
  });
  let paused = false;
  let open = true;
  let running = true;
  const exited = new Promise<number>((resolve) => {
    term.onExit(({ exitCode, signal }: { exitCode: number; signal?: number }) => {
      running = false;
      resolve(signal ? 128 + signal : exitCode);
    });
  });
  const stdout = new ReadableStream<Uint8Array>({
    start(controller) {
      term.onData((data: string | Uint8Array) => {
        // A cancelled reader still lets the terminal drain: output is dropped.
        if (!open) return;
        // A plain view on node's Buffer: no copy, and readers see a Uint8Array.
        controller.enqueue(
          typeof data === "string"
            ? new TextEncoder().encode(data)
            : new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        );
        if ((controller.desiredSize ?? 1) <= 0 && !paused) {
          paused = true;
          term.pause();
        }
      });
      // node-pty reports the exit only once the pty has been drained and closed.
      exited.then(() => {
        if (open) controller.close();
        open = false;
      });
    },
    pull() {
      if (paused) {
        paused = false;
        term.resume();
      }
    },
    cancel() {
      open = false;
      if (paused) term.resume();
    },
  }, new ByteLengthQueuingStrategy({ highWaterMark: PTY_HIGH_WATER_BYTES }));
  const write = term.write.bind(term) as (data: string | Uint8Array) => void;
  const stdin = new WritableStream<Uint8Array>({
    write(chunk) {
      if (running) write(chunk);
    },
    // A terminal has no EOF of its own: the user types ^D.
  });
  return {
    pid: term.pid,
    stdin,
    stdout,
    stderr: null,
    resize(cols, rows) {
      if (!running) return;
      try {
        term.resize(cols, rows);
      } catch {
        // The terminal closed between the exit and its report: nothing to resize.
      }
    },
    exited,
  };
}
