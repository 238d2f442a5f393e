/**
 * The {@link SandboxProcess} both backends hand out: a started wrapper plus
 * the backend's cleanup, run once after the wrapper has exited.
 * @module
 */
import type { Child } from "./_child.ts";
import { signalOfCode, signalSandbox } from "./_signal.ts";
import type { ExitStatus, SandboxProcess } from "./types.ts";

/** What a backend does once the sandbox has exited: remove its traces, say whether the kernel OOM-killed it. */
export type Cleanup = (code: number) => Promise<{ oomKilled: boolean }>;

/** Wraps a started wrapper as a SandboxProcess. */
export function sandboxProcess(child: Child, cleanup: Cleanup): SandboxProcess {
  let running = true;
  const status = child.exited.then(async (code): Promise<ExitStatus> => {
    running = false;
    const { oomKilled } = await cleanup(code);
    return { code, signal: signalOfCode(code), oomKilled };
  });
  return {
    pid: child.pid,
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    status,
    resize(cols: number, rows: number) {
      child.resize(cols, rows);
    },
    kill(signal: Deno.Signal) {
      // After the exit the pid may name someone else.
      if (!running) return;
      signalSandbox(child.pid, signal).catch(() => {});
    },
  };
}
