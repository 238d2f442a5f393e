/**
 * The sandbox a one-off runs in: one interface, two backends (bubblewrap,
 * the default, and runc). Both give the same root filesystem (host `/usr`, a
 * few `/etc` files, the slug at `/app` with a throwaway writable layer, a
 * size-limited `/tmp`, uploads in `/tmp/uploads`), the same identity (uid
 * 65534, no capabilities, no new privileges, fresh namespaces), the same
 * cgroup limits, and die with the agent.
 * @module
 */
import {
  type Limits,
  type NetworkMode,
  SANDBOX_KINDS,
  type SandboxKind,
} from "../../protocol/mod.ts";
import { createBwrapSandbox } from "./bwrap.ts";
import { createRuncSandbox } from "./runc.ts";

export { SANDBOX_UID } from "./_rootfs.ts";

/** One run as the sandbox sees it. */
export interface SandboxSpec {
  /** Unique; names the run's cgroup, scratch directory and container. */
  runId: string;
  /** Extracted slug on the host: the read-only lower layer of `/app`. */
  slugDir: string;
  /** Host directory whose files appear in `/tmp/uploads`. */
  uploadsDir?: string;
  /** Run as `/bin/sh -c COMMAND` in `/app`. */
  command: string;
  /** The whole environment: nothing is inherited from the agent. */
  env: Record<string, string>;
  /** Memory, pids, CPU and `/tmp` size. */
  limits: Limits;
  /** Share the host's network, or have none. */
  network: NetworkMode;
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

/** Options of {@link createSandbox}. */
export interface SandboxOptions {
  /** Per-run scratch (overlay mounts, runc bundles); never visible inside a sandbox. */
  workDir: string;
}

/** Checks the host and prepares `workDir` for the chosen backend. */
export function createSandbox(kind: SandboxKind, options: SandboxOptions): Promise<Sandbox> {
  if (kind === "bwrap") return createBwrapSandbox(options.workDir);
  if (kind === "runc") return createRuncSandbox(options.workDir);
  throw new Error(`Cannot create sandbox "${kind}": choose one of ${SANDBOX_KINDS.join(", ")}`);
}
