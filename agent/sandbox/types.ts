/**
 * The sandbox's contract: what a run asks for ({@link SandboxSpec}), what a
 * started one offers ({@link SandboxProcess}), and how it ended
 * ({@link ExitStatus}). The backends and the agent import these; only
 * `mod.ts` knows the backends.
 * @module
 */
import type { Limits, NetworkMode, SandboxKind } from "../../protocol/mod.ts";

/** One run as the sandbox sees it. */
export interface SandboxSpec {
  /** Unique; names the run's cgroup, scratch directory and container. */
  runId: string;
  /** Extracted slug on the host: the read-only lower layer of `/app`. */
  slugDir: string;
  /** Host directory whose files appear in `/tmp/uploads`. */
  uploadsDir?: string;
  /**
   * Host directory bound writable at `/tmp/downloads`: what the run leaves
   * there is read from it after the exit (its artifacts).
   */
  downloadsDir?: string;
  /** Run as `/bin/sh -c COMMAND` in `/app`. */
  command: string;
  /** The whole environment: nothing is inherited from the agent. */
  env: Record<string, string>;
  /** Memory, pids, CPU, open files and `/tmp` size. */
  limits: Limits;
  /** A network namespace of its own with outbound NAT (`isolated`), the host's, or none. */
  network: NetworkMode;
  /** Network `isolated`: TCP ports of the host's loopback reachable at 127.0.0.1:PORT inside. */
  hostPorts?: number[];
  /** A real pseudo-terminal of this size when present. */
  tty?: { cols: number; rows: number };
}

/** How a sandboxed process ended. */
export interface ExitStatus {
  /** The shell's exit status; 128+N when killed by signal N. */
  code: number;
  /** The signal a code above 128 stands for, else null. */
  signal: string | null;
  /** The kernel killed a process of the run for exceeding its memory limit. */
  oomKilled: boolean;
}

/** A started sandbox. */
export interface SandboxProcess {
  /** Pid of the sandbox tool on the host (not of the sandboxed shell). */
  readonly pid: number;
  /** Bytes to the process: its stdin, or the PTY's input. close() = EOF (no-TTY). */
  readonly stdin: WritableStream<Uint8Array>;
  /** Output: stdout (no-TTY) or the PTY's output (TTY). Ends when the process has exited and output is flushed. */
  readonly stdout: ReadableStream<Uint8Array>;
  /** stderr for no-TTY runs; null for TTY runs. */
  readonly stderr: ReadableStream<Uint8Array> | null;
  /** Changes the PTY's size; a no-op without TTY. */
  resize(cols: number, rows: number): void;
  /** Signals the sandboxed process tree (e.g. SIGTERM, SIGKILL, SIGHUP). */
  kill(signal: Deno.Signal): void;
  /** Resolves once, after exit and cleanup (overlay, cgroups, temp dirs removed). */
  readonly status: Promise<ExitStatus>;
}

/** Starts sandboxes. */
export interface Sandbox {
  readonly name: SandboxKind;
  /** What this host cannot enforce (e.g. not root → no cgroup limits), as human sentences. */
  readonly warnings: string[];
  /** Starts one run; resolves once the sandbox tool has been started. */
  spawn(spec: SandboxSpec): Promise<SandboxProcess>;
}
