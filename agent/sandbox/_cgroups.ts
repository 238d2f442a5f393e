/**
 * Per-run cgroups: memory (without swap), pids and CPU limits, through
 * cgroup v2 when the host offers its controllers, else through v1. On v2,
 * when the agent's own cgroup is delegated to it (systemd `Delegate=yes`),
 * the agent moves into `<own>/agent` and runs get `<own>/runs/<runId>`
 * (see {@link planV2}); otherwise, and on v1, every run gets
 * `oneoff/<runId>` at the root of each hierarchy. The sandbox's wrapper
 * shell writes its own pid into {@link RunCgroup.procsFiles} before it execs,
 * so nothing of the run ever runs outside the limits.
 * @module
 */
import type { Limits } from "../../protocol/mod.ts";

const V2_ROOT = "/sys/fs/cgroup";
const CPU_PERIOD_US = 100_000;
const CONTROLLERS = ["memory", "pids", "cpu"] as const;

/** Which cgroup hierarchy a host offers, and where its controllers live. */
export interface CgroupHost {
  version: 1 | 2;
  /** Directory of each controller's hierarchy (v2: the one unified root). */
  roots: Record<(typeof CONTROLLERS)[number], string>;
  /** Every v1 hierarchy, named or not: runc creates the run's cgroup in all of them. */
  allRoots: string[];
  /** v1 only: the memory controller also limits memory plus swap. */
  swapAccounting: boolean;
  /** The directory, relative to each root, that holds the run cgroups ("oneoff" unless delegated). */
  base?: string;
  /** Said when limits work but not as they should (v2 without delegation). */
  warning?: string;
}

/** Where run cgroups go on a cgroup v2 host. */
export interface V2Layout {
  /** The directory, relative to the mount root, holding the run cgroups. */
  base: string;
  /** Delegated: the leaf (relative to the root) the agent's processes move into first. */
  agentLeaf: string | null;
  /** Set when run cgroups go outside any subtree delegated to the agent. */
  warning: string | null;
}

/** The agent's own cgroup v2 path (e.g. `/system.slice/oneoff-agent.service`) from `/proc/self/cgroup`. */
export function ownCgroup(procSelfCgroup: string): string | null {
  const line = procSelfCgroup.split("\n").find((l) => l.startsWith("0::"));
  return line === undefined ? null : line.slice(3).trim() || "/";
}

/**
 * Decides where run cgroups go under the v2 mount `root`, given the text of
 * `/proc/self/cgroup`. At the root of the hierarchy (no systemd, a
 * container): `oneoff/` as always. In a cgroup with the memory and pids
 * controllers and a writable `cgroup.subtree_control` (delegated): `agent`
 * and `runs` children of it, as v2's no-internal-processes rule requires.
 * Otherwise `oneoff/` at the root, with a warning.
 */
export async function planV2(root: string, procSelfCgroup: string): Promise<V2Layout> {
  let own = ownCgroup(procSelfCgroup) ?? "/";
  if (own === "/") return { base: "oneoff", agentLeaf: null, warning: null };
  // Already in our leaf (a second detection, or a restart that kept it).
  const parent = own.slice(0, own.lastIndexOf("/")) || "/";
  if (own.endsWith("/agent") && parent !== "/" && await isDir(`${root}${parent}/runs`)) {
    own = parent;
  }
  const dir = `${root}${own}`;
  const controllers = (await Deno.readTextFile(`${dir}/cgroup.controllers`).catch(() => ""))
    .trim().split(/\s+/);
  const writable = await Deno.open(`${dir}/cgroup.subtree_control`, { write: true }).then(
    (file) => (file.close(), true),
    () => false,
  );
  if (!controllers.includes("memory") || !controllers.includes("pids") || !writable) {
    return {
      base: "oneoff",
      agentLeaf: null,
      warning: `The agent's cgroup ${own} is not delegated to it (no writable subtree with ` +
        `memory and pids): run cgroups go to /oneoff at the root, outside it; ` +
        `set Delegate=yes in the agent's systemd unit`,
    };
  }
  const rel = own.slice(1);
  return { base: `${rel}/runs`, agentLeaf: `${rel}/agent`, warning: null };
}

/**
 * Makes a layout real under `root`: delegated, moves every process of the
 * agent's cgroup into its leaf, then enables the controllers for `runs` and
 * below; otherwise enables them on the root and `oneoff/`.
 */
export async function applyV2(root: string, layout: V2Layout): Promise<void> {
  const offered = (await Deno.readTextFile(`${root}/cgroup.controllers`).catch(() => ""))
    .trim().split(/\s+/);
  const wanted = CONTROLLERS.filter((c) => offered.includes(c)).map((c) => `+${c}`).join(" ");
  if (layout.agentLeaf === null) {
    // The root usually has them already (systemd); writing again is harmless.
    await Deno.writeTextFile(`${root}/cgroup.subtree_control`, wanted).catch(() => {});
  } else {
    const own = layout.agentLeaf.slice(0, layout.agentLeaf.lastIndexOf("/"));
    await Deno.mkdir(`${root}/${layout.agentLeaf}`, { recursive: true });
    const procs = await Deno.readTextFile(`${root}/${own}/cgroup.procs`).catch(() => "");
    for (const pid of procs.split("\n").filter(Boolean)) {
      // A process that exited meanwhile cannot move: that is fine.
      await Deno.writeTextFile(`${root}/${layout.agentLeaf}/cgroup.procs`, pid).catch(() => {});
    }
    await Deno.writeTextFile(`${root}/${own}/cgroup.subtree_control`, wanted);
  }
  await Deno.mkdir(`${root}/${layout.base}`, { recursive: true });
  await Deno.writeTextFile(`${root}/${layout.base}/cgroup.subtree_control`, wanted);
}

async function isDir(path: string): Promise<boolean> {
  return await Deno.stat(path).then((info) => info.isDirectory, () => false);
}

/** Finds the cgroup hierarchy to use; null with a reason when there is none. */
export async function detectCgroups(): Promise<CgroupHost | { reason: string }> {
  const v2 = await Deno.readTextFile(`${V2_ROOT}/cgroup.controllers`).catch(() => "");
  const offered = v2.trim().split(/\s+/);
  if (offered.includes("memory") && offered.includes("pids")) {
    // Once per process: the first call moves the agent into its leaf.
    v2Layout ??= (async () => {
      const self = await Deno.readTextFile("/proc/self/cgroup").catch(() => "");
      const layout = await planV2(V2_ROOT, self);
      await applyV2(V2_ROOT, layout).catch(() => {});
      return layout;
    })();
    const layout = await v2Layout;
    const enabled = await Deno.readTextFile(`${V2_ROOT}/${layout.base}/cgroup.subtree_control`)
      .catch(() => "");
    if (!enabled.includes("memory") || !enabled.includes("pids")) {
      v2Layout = null;
      return {
        reason: `cgroup v2 controllers "memory" and "pids" cannot be enabled under ` +
          `${V2_ROOT}/${layout.base}`,
      };
    }
    return {
      version: 2,
      roots: { memory: V2_ROOT, pids: V2_ROOT, cpu: V2_ROOT },
      allRoots: [V2_ROOT],
      swapAccounting: true,
      base: layout.base,
      ...(layout.warning === null ? {} : { warning: layout.warning }),
    };
  }
  const { mounts, all } = await v1Mounts();
  const memory = mounts.get("memory");
  const pids = mounts.get("pids");
  const cpu = mounts.get("cpu");
  if (!memory || !pids || !cpu) {
    return {
      reason: "neither cgroup v2 nor cgroup v1 offers the memory, pids and cpu controllers",
    };
  }
  const swapAccounting = await Deno.stat(`${memory}/memory.memsw.limit_in_bytes`).then(
    () => true,
    () => false,
  );
  return { version: 1, roots: { memory, pids, cpu }, allRoots: all, swapAccounting };
}

let v2Layout: Promise<V2Layout> | null = null;

/** Maps each v1 controller to its mount point, and lists every cgroup mount (v2 of a hybrid host too). */
async function v1Mounts(): Promise<{ mounts: Map<string, string>; all: string[] }> {
  const found = new Map<string, string>();
  const all: string[] = [];
  const text = await Deno.readTextFile("/proc/self/mountinfo").catch(() => "");
  for (const line of text.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const [fstype, , superOptions] = right.split(" ");
    const mountPoint = left.split(" ")[4];
    if (!mountPoint || !superOptions || (fstype !== "cgroup" && fstype !== "cgroup2")) continue;
    all.push(mountPoint);
    if (fstype === "cgroup2") continue;
    for (const option of superOptions.split(",")) {
      if (option !== "rw" && option !== "ro" && !found.has(option)) found.set(option, mountPoint);
    }
  }
  return { mounts: found, all };
}

/** One run's cgroup in every hierarchy that limits it. */
export class RunCgroup {
  readonly #host: CgroupHost;
  readonly #runId: string;

  private constructor(host: CgroupHost, runId: string) {
    this.#host = host;
    this.#runId = runId;
  }

  /** The handle of a run's cgroups, created or not (to clean up after a killed agent). */
  static of(host: CgroupHost, runId: string): RunCgroup {
    return new RunCgroup(host, runId);
  }

  /** Creates `oneoff/<runId>` and writes the limits into it. */
  static async create(host: CgroupHost, runId: string, limits: Limits): Promise<RunCgroup> {
    const cgroup = new RunCgroup(host, runId);
    for (const dir of cgroup.dirs) await Deno.mkdir(dir, { recursive: true });
    const quota = Math.max(1000, Math.round(limits.cpuMillis * CPU_PERIOD_US / 1000));
    const { memory, pids, cpu } = cgroup.#paths;
    if (host.version === 2) {
      await Deno.writeTextFile(`${memory}/memory.max`, String(limits.memoryBytes));
      await Deno.writeTextFile(`${memory}/memory.swap.max`, "0").catch(() => {});
      await Deno.writeTextFile(`${pids}/pids.max`, String(limits.pids));
      await Deno.writeTextFile(`${cpu}/cpu.max`, `${quota} ${CPU_PERIOD_US}`).catch(() => {});
    } else {
      await Deno.writeTextFile(`${memory}/memory.limit_in_bytes`, String(limits.memoryBytes));
      // memsw must not be below the memory limit: write it second.
      if (host.swapAccounting) {
        await Deno.writeTextFile(
          `${memory}/memory.memsw.limit_in_bytes`,
          String(limits.memoryBytes),
        );
      }
      await Deno.writeTextFile(`${pids}/pids.max`, String(limits.pids));
      await Deno.writeTextFile(`${cpu}/cpu.cfs_period_us`, String(CPU_PERIOD_US));
      await Deno.writeTextFile(`${cpu}/cpu.cfs_quota_us`, String(quota));
    }
    return cgroup;
  }

  /** The run's cgroup directory per controller. */
  get #paths(): Record<(typeof CONTROLLERS)[number], string> {
    const { roots } = this.#host;
    const rel = `${this.#host.base ?? "oneoff"}/${this.#runId}`;
    return {
      memory: `${roots.memory}/${rel}`,
      pids: `${roots.pids}/${rel}`,
      cpu: `${roots.cpu}/${rel}`,
    };
  }

  /** Distinct directories (v2 has one for all controllers). */
  get dirs(): string[] {
    return [...new Set(Object.values(this.#paths))];
  }

  /** The `cgroup.procs` files a process writes its pid into to join the run. */
  get procsFiles(): string[] {
    return this.dirs.map((dir) => `${dir}/cgroup.procs`);
  }

  /** Path for runc's `linux.cgroupsPath`: a child of this cgroup, so runc's own cleanup leaves ours. */
  get runcPath(): string {
    return `/${this.#host.base ?? "oneoff"}/${this.#runId}/ctr`;
  }

  /** Allows a child cgroup (runc's) to use the controllers; v2 needs it said. */
  async delegate(): Promise<void> {
    if (this.#host.version !== 2) return;
    const { memory } = this.#paths;
    const offered = await Deno.readTextFile(`${memory}/cgroup.controllers`);
    const wanted = CONTROLLERS.filter((c) => offered.includes(c)).map((c) => `+${c}`).join(" ");
    await Deno.writeTextFile(`${memory}/cgroup.subtree_control`, wanted);
  }

  /**
   * True when the kernel OOM-killed a process of the run. v1 counts a kill
   * only in the victim's own cgroup, so runc's child cgroup is read too
   * (runc runs with --keep to leave it for this).
   */
  async oomKilled(): Promise<boolean> {
    const { memory } = this.#paths;
    const file = this.#host.version === 2 ? "memory.events" : "memory.oom_control";
    for (const dir of [memory, `${memory}/ctr`]) {
      const text = await Deno.readTextFile(`${dir}/${file}`).catch(() => "");
      const match = /^oom_kill (\d+)$/m.exec(text);
      if (match && Number(match[1]) > 0) return true;
    }
    return false;
  }

  /**
   * Removes the run's cgroups. Processes may still be exiting after the
   * sandbox's root process is reaped, so this retries a while, then kills
   * stragglers. `withRunc` also removes what runc made: its child cgroup,
   * in every hierarchy it joined.
   */
  async remove(options: { withRunc?: boolean } = {}): Promise<void> {
    const rel = `${this.#host.base ?? "oneoff"}/${this.#runId}`;
    const dirs = options.withRunc
      ? this.#host.allRoots.flatMap((root) => [`${root}/${rel}/ctr`, `${root}/${rel}`])
      : this.dirs;
    for (const dir of dirs) await removeCgroupDir(dir);
  }
}

async function removeCgroupDir(dir: string): Promise<void> {
  for (let attempt = 0;; attempt++) {
    try {
      await Deno.remove(dir);
      return;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      if (attempt >= 200) throw new Error(`Cannot remove cgroup "${dir}"`, { cause: err });
      if (attempt % 20 === 19) await killAll(dir);
      await new Promise((resolve) => setTimeout(resolve, Math.min(5 + attempt, 50)));
    }
  }
}

async function killAll(dir: string): Promise<void> {
  const procs = await Deno.readTextFile(`${dir}/cgroup.procs`).catch(() => "");
  for (const pid of procs.split("\n").filter(Boolean)) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch { /* already gone */ }
  }
}
