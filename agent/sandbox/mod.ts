/**
 * The sandbox a one-off runs in: one interface, two backends (bubblewrap,
 * the default, and runc). Both give the same root filesystem (host `/usr`, a
 * few `/etc` files, the slug at `/app` with a throwaway writable layer, a
 * size-limited `/tmp`, uploads in `/tmp/uploads`), the same identity (uid
 * 65534, no capabilities, no new privileges, fresh namespaces), the same
 * cgroup limits, and die with the agent.
 * @module
 */
import { SANDBOX_KINDS, type SandboxKind } from "../../protocol/mod.ts";
import { closeInheritedOnExec } from "./_fds.ts";
import { createBwrapSandbox } from "./bwrap.ts";
import { createRuncSandbox } from "./runc.ts";
import type { Sandbox } from "./types.ts";

export { SANDBOX_UID } from "./_rootfs.ts";
/** Which cgroup limits this host can enforce (the tests ask before testing them). */
export { detectCgroups } from "./_cgroups.ts";
/** Cleans up after an agent process that died with runs in its sandboxes. */
export { removeLeftovers } from "./_leftovers.ts";
export type { ExitStatus, Sandbox, SandboxProcess, SandboxSpec } from "./types.ts";

/** Options of {@link createSandbox}. */
export interface SandboxOptions {
  /** Per-run scratch (overlay mounts, runc bundles); never visible inside a sandbox. */
  workDir: string;
}

/** Checks the host and prepares `workDir` for the chosen backend. */
export function createSandbox(kind: SandboxKind, options: SandboxOptions): Promise<Sandbox> {
  // Whatever this process inherited stays out of every sandbox (see _fds.ts).
  closeInheritedOnExec();
  if (kind === "bwrap") return createBwrapSandbox(options.workDir);
  if (kind === "runc") return createRuncSandbox(options.workDir);
  throw new Error(`Cannot create sandbox "${kind}": choose one of ${SANDBOX_KINDS.join(", ")}`);
}
