/**
 * Per-run cgroups: memory (without swap), pids and CPU limits, through
 * cgroup v2 when the host offers its controllers, else through v1. Every run
 * gets `oneoff/<runId>` at the root of each hierarchy; the sandbox's wrapper
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
}

/** Finds the cgroup hierarchy to use; null with a reason when there is none. */
export async function detectCgroups(): Promise<CgroupHost | { reason: string }> {
  const v2 = await Deno.readTextFile(`${V2_ROOT}/cgroup.controllers`).catch(() => "");
  const offered = v2.trim().split(/\s+/);
  if (offered.includes("memory") && offered.includes("pids")) {
    await enableV2Controllers(offered).catch(() => {});
    const root = `${V2_ROOT}/oneoff`;
    const enabled = await Deno.readTextFile(`${root}/cgroup.subtree_control`).catch(() => "");
    if (!enabled.includes("memory") || !enabled.includes("pids")) {
      return {
        reason: `cgroup v2 controllers "memory" and "pids" cannot be enabled under ${root}`,
      };
    }
    return {
      version: 2,
      roots: { memory: V2_ROOT, pids: V2_ROOT, cpu: V2_ROOT },
      allRoots: [V2_ROOT],
      swapAccounting: true,
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

async function enableV2Controllers(offered: string[]): Promise<void> {
  const wanted = CONTROLLERS.filter((c) => offered.includes(c)).map((c) => `+${c}`).join(" ");
  // The root usually has them already (systemd); writing again is harmless.
  await Deno.writeTextFile(`${V2_ROOT}/cgroup.subtree_control`, wanted).catch(() => {});
  await Deno.mkdir(`${V2_ROOT}/oneoff`, { recursive: true });
  await Deno.writeTextFile(`${V2_ROOT}/oneoff/cgroup.subtree_control`, wanted);
}

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
    const rel = `oneoff/${this.#runId}`;
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
    return `/oneoff/${this.#runId}/ctr`;
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
    const rel = `oneoff/${this.#runId}`;
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
