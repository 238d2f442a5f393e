/**
 * What both backends do around their own argv: check the spec, make the
 * run's scratch directory and cgroup, start the wrapper on pipes or on a
 * pseudo-terminal, and remove it all again once the sandbox has exited (or
 * when starting it failed). Each backend only says how its wrapper is called.
 * @module
 */
import { type CgroupHost, detectCgroups, RunCgroup } from "./_cgroups.ts";
import { spawnPiped, spawnPty } from "./_child.ts";
import { sandboxProcess } from "./_process.ts";
import { PASTA } from "./_network.ts";
import { checkSpec } from "./_rootfs.ts";
import type { SandboxProcess, SandboxSpec } from "./types.ts";

/** The run's scratch directory and cgroup, made before its argv. */
export interface RunScratch {
  /** `<runsDir>/<runId>`, mode 0700, removed after the exit. */
  dir: string;
  /** The run's cgroup, or null where limits are not enforced. */
  cgroup: RunCgroup | null;
}

/** What differs between the backends at spawn time. */
export interface Backend {
  /** Where the runs' scratch directories go. */
  runsDir: string;
  /** The host's cgroups, or null where limits are not enforced. */
  cgroups: CgroupHost | null;
  /** runc makes a child of the run's cgroup: delegate the controllers to it, and remove it too. */
  runcCgroup: boolean;
  /** The wrapper's argv, written files included, once the scratch exists. */
  argv(spec: SandboxSpec, scratch: RunScratch): Promise<string[]>;
}

/** Starts one run of a backend; see the module documentation. */
export async function spawnSandbox(spec: SandboxSpec, backend: Backend): Promise<SandboxProcess> {
  await checkSpec(spec);
  if (spec.network === "isolated") await checkPasta();
  const dir = `${backend.runsDir}/${spec.runId}`;
  await Deno.mkdir(dir, { mode: 0o700 });
  const removal = { withRunc: backend.runcCgroup };
  let cgroup: RunCgroup | null = null;
  try {
    if (backend.cgroups) {
      cgroup = await RunCgroup.create(backend.cgroups, spec.runId, spec.limits);
      if (backend.runcCgroup) await cgroup.delegate();
    }
    const argv = await backend.argv(spec, { dir, cgroup });
    const child = spec.tty ? await spawnPty(argv, spec.tty) : spawnPiped(argv);
    const own = cgroup;
    return sandboxProcess(child, async () => {
      const oomKilled = own ? await own.oomKilled() : false;
      await own?.remove(removal);
      await Deno.remove(dir, { recursive: true });
      return { oomKilled };
    });
  } catch (err) {
    await cgroup?.remove(removal).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}

let pastaFound: Promise<boolean> | undefined;

/** Throws unless pasta, which network "isolated" needs, is installed. */
async function checkPasta(): Promise<void> {
  pastaFound ??= Deno.stat(PASTA).then((info) => info.isFile, () => false);
  if (!(await pastaFound)) {
    throw new Error(
      `Cannot isolate the run's network: ${PASTA} is missing (apt-get install passt), ` +
        `or choose network "host" for the app`,
    );
  }
}

/** The host's cgroups for limits, or null; what cannot be enforced goes to `warnings`. */
export async function limitCgroups(warnings: string[]): Promise<CgroupHost | null> {
  const found = await detectCgroups();
  if ("reason" in found) {
    warnings.push(`Memory, process and CPU limits are not enforced: ${found.reason}`);
    return null;
  }
  if (found.warning !== undefined) warnings.push(found.warning);
  if (found.version === 1 && !found.swapAccounting) {
    warnings.push(
      "Swap is not accounted (no memory.memsw in cgroup v1): the memory limit does not cover swap",
    );
  }
  return found;
}
