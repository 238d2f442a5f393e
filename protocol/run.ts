/**
 * Runs: their states, sizes, labels and the sandbox kinds that run them.
 * @module
 */

/** Every state a run can be in, in lifecycle order. */
export const RUN_STATES = [
  "pending",
  "starting",
  "running",
  "exited",
  "failed",
  "timed_out",
  "stopped",
  "expired",
  "lost",
] as const;

/** One state of a run. */
export type RunState = typeof RUN_STATES[number];

/** States a run never leaves. */
export const TERMINAL_STATES: ReadonlySet<RunState> = new Set([
  "exited",
  "failed",
  "timed_out",
  "stopped",
  "expired",
  "lost",
]);

/** States of a run that has not ended: it counts against the app's limit. */
export const LIVE_STATES: RunState[] = ["pending", "starting", "running"];

/** True when a run in this state has ended for good. */
export function isTerminal(state: RunState): boolean {
  return TERMINAL_STATES.has(state);
}

/** App names, also used for process types' owners and agents' names. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{1,62}$/;

/** Names of the run sizes (`--size`). */
export const SIZE_NAMES = ["S", "M", "L", "XL"] as const;

/** One run size name. */
export type SizeName = typeof SIZE_NAMES[number];

/** The limits a size stands for inside the sandbox. */
export interface Limits {
  /** Memory limit in bytes (cgroup memory). */
  memoryBytes: number;
  /** Maximum number of tasks (cgroup pids). */
  pids: number;
  /** CPU share in thousandths of a core (1000 = one core). */
  cpuMillis: number;
  /** Size of the `/tmp` tmpfs in bytes. */
  tmpBytes: number;
  /**
   * Open files per process (RLIMIT_NOFILE, soft and hard): with `pids`, it
   * bounds the host's file handles one run can hold (`openFiles × pids`).
   */
  openFiles: number;
}

const MiB = 1024 * 1024;

/** Default sizes; the server may be configured with others. */
export const DEFAULT_SIZES: Readonly<Record<SizeName, Limits>> = {
  S: { memoryBytes: 256 * MiB, pids: 128, cpuMillis: 500, tmpBytes: 64 * MiB, openFiles: 256 },
  M: { memoryBytes: 512 * MiB, pids: 256, cpuMillis: 1000, tmpBytes: 128 * MiB, openFiles: 512 },
  L: { memoryBytes: 1024 * MiB, pids: 512, cpuMillis: 2000, tmpBytes: 256 * MiB, openFiles: 1024 },
  XL: {
    memoryBytes: 2048 * MiB,
    pids: 1024,
    cpuMillis: 2000,
    tmpBytes: 512 * MiB,
    openFiles: 1024,
  },
};

/** Roles of API tokens. */
export type Role = "admin" | "member";

/** Default maximum duration of a detached run. */
export const MAX_DURATION_MS = 24 * 3600_000;

/**
 * The longest delay a JavaScript timer keeps (2^31 - 1 ms, about 24.8
 * days): a longer one fires at once. No run's timeout may exceed it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Why `ms` cannot be a run's timer (undefined when it can): a timer must be
 * whole milliseconds from 1 to MAX_TIMER_MS, or it fires at once.
 */
export function timerProblem(name: string, ms: number): string | undefined {
  if (Number.isInteger(ms) && ms >= 1 && ms <= MAX_TIMER_MS) return undefined;
  return `Invalid ${name} "${ms}": give whole milliseconds from 1 to ${MAX_TIMER_MS}`;
}

/** Default bytes of a detached run's output stored before the rest is counted, not stored. */
export const DEFAULT_LOG_QUOTA_BYTES = 256 * 1024 * 1024;

/** The line a run's logs end with when its output went past its quota. */
export function logQuotaMarker(quotaBytes: number, lines: number, bytes: number): string {
  return `oneoff: log quota of ${quotaBytes} bytes reached; ${lines} lines (${bytes} bytes) not stored`;
}

/** Default bytes of an attached session recorded before the recording stops. */
export const DEFAULT_AUDIT_QUOTA_BYTES = 1024 * 1024 * 1024;

/** The output the recording of a session ends with when it went past its quota. */
export function auditQuotaMarker(quotaBytes: number): string {
  return `\r\n[oneoff: recording stopped at ${quotaBytes} bytes; the session goes on unrecorded]\r\n`;
}

/** The per-app label of run number `n`: `one-off-N`. */
export function runLabel(n: number): string {
  return `one-off-${n}`;
}

const LABEL = /^one-off-(\d{1,9})$/;

/** The run number of a `one-off-N` label, or null when it is not one. */
export function parseRunLabel(label: string): number | null {
  const match = LABEL.exec(label);
  if (match === null) return null;
  const n = Number(match[1]);
  return n > 0 ? n : null;
}

/** The sandbox backends an agent can use; the first is the default. */
export const SANDBOX_KINDS = ["bwrap", "runc"] as const;

/** One sandbox backend. */
export type SandboxKind = typeof SANDBOX_KINDS[number];

/** True when `value` names a sandbox backend. */
export function isSandboxKind(value: string): value is SandboxKind {
  return (SANDBOX_KINDS as readonly string[]).includes(value);
}

/**
 * The network a run's sandbox gets; the first is the default. `isolated`: a
 * network namespace of its own with outbound NAT (pasta), no way to the
 * host's loopback, its abstract unix sockets or other runs. `host`: the
 * host's network namespace, shared (weaker: see SECURITY.md). `none`: only a
 * loopback device.
 */
export const NETWORK_MODES = ["isolated", "host", "none"] as const;

/** One network mode. */
export type NetworkMode = typeof NETWORK_MODES[number];
