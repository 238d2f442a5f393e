/**
 * The OCI bundle runc runs: a shared read-only rootfs of mount points, and a
 * per-run config.json with the same root filesystem, identity, namespaces,
 * limits and seccomp filter as the bwrap backend.
 * @module
 */
import type { RootLayout } from "./_rootfs.ts";
import { SANDBOX_UID } from "./_rootfs.ts";
import { ociSeccomp } from "./_seccomp.ts";
import type { SandboxSpec } from "./types.ts";

/**
 * Host uid and gid of the container's root, which only runc's setup runs as:
 * runc insists on a mapping for container root, and host root must not be it.
 */
export const CONTAINER_ROOT_HOST_ID = 2_000_000_000;

const CPU_PERIOD_US = 100_000;
/** The container's pid 1: runs the command in a child shell, exits with its status. */
const INIT = '/bin/sh -c "$1"; exit $?';

/** Creates the mount points of the shared rootfs: runc mounts over them, read-only. */
export async function prepareRootfs(dir: string, layout: RootLayout): Promise<void> {
  for (const sub of ["usr", "etc", "app", "tmp", "proc", "dev"]) {
    await Deno.mkdir(`${dir}/${sub}`, { recursive: true, mode: 0o755 });
  }
  // runc gives a tmpfs the mode of the directory it covers.
  await Deno.chmod(`${dir}/tmp`, 0o1777);
  for (const entry of layout.top) {
    const path = `${dir}/${entry.name}`;
    if (await Deno.lstat(path).then(() => true, () => false)) continue;
    if ("symlink" in entry) await Deno.symlink(entry.symlink, path);
    else await Deno.mkdir(path, { mode: 0o755 });
  }
  for (const { name, dir: isDir } of layout.etc) {
    const path = `${dir}/etc/${name}`;
    if (isDir) await Deno.mkdir(path, { recursive: true, mode: 0o755 });
    else await Deno.writeFile(path, new Uint8Array(), { create: true, append: true, mode: 0o644 });
  }
  // The stubs are files of the rootfs itself: no bind source outside it for container root to reach.
  await Deno.copyFile(layout.passwdFile, `${dir}/etc/passwd`);
  await Deno.copyFile(layout.groupFile, `${dir}/etc/group`);
}

/** What a run's config needs besides the spec. */
export interface BundleParts {
  rootfs: string;
  layout: RootLayout;
  /** The overlay's merged directory, mounted at `/app`. */
  appDir: string;
  /** The uploads, mounted at `/tmp/uploads`, if any. */
  uploadsDir: string | null;
  /** The downloads, mounted writable at `/tmp/downloads`, if any. */
  downloadsDir?: string | null;
  /** runc's cgroup (inside the run's own), or null on a host without usable cgroups. */
  cgroupsPath: string | null;
  /** The memory limit can cover swap too. */
  swapAccounting: boolean;
  /** An isolated run's own resolv.conf (the host's resolver is on its loopback), or null. */
  resolvConf?: string | null;
}

type Mount = { destination: string; type: string; source: string; options: string[] };

function bind(source: string, destination: string, ...extra: string[]): Mount {
  return { destination, type: "bind", source, options: ["rbind", "nosuid", "nodev", ...extra] };
}

/** The config.json of one run. */
export function ociConfig(spec: SandboxSpec, parts: BundleParts): Record<string, unknown> {
  const { layout } = parts;
  const mounts: Mount[] = [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
      destination: "/dev/mqueue",
      type: "mqueue",
      source: "mqueue",
      options: ["nosuid", "noexec", "nodev"],
    },
    bind("/usr", "/usr", "ro"),
    ...layout.top.filter((entry) => !("symlink" in entry)).map((entry) =>
      bind(`/${entry.name}`, `/${entry.name}`, "ro")
    ),
    ...layout.etc.map(({ name }) =>
      bind(
        name === "resolv.conf" && parts.resolvConf ? parts.resolvConf : `/etc/${name}`,
        `/etc/${name}`,
        "ro",
        "noexec",
      )
    ),
    bind(parts.appDir, "/app"),
    {
      destination: "/tmp",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "nodev", "mode=1777", `size=${spec.limits.tmpBytes}`],
    },
  ];
  if (parts.uploadsDir) mounts.push(bind(parts.uploadsDir, "/tmp/uploads", "ro"));
  if (parts.downloadsDir) mounts.push(bind(parts.downloadsDir, "/tmp/downloads", "rw"));
  const namespaces = [
    "pid",
    "ipc",
    "uts",
    "mount",
    "user",
    "cgroup",
    ...(spec.network === "none" ? ["network"] : []),
  ];
  const ids = [
    { containerID: 0, hostID: CONTAINER_ROOT_HOST_ID, size: 1 },
    { containerID: SANDBOX_UID, hostID: SANDBOX_UID, size: 1 },
  ];
  const { limits } = spec;
  return {
    ociVersion: "1.0.2-dev",
    process: {
      terminal: spec.tty !== undefined,
      ...(spec.tty ? { consoleSize: { height: spec.tty.rows, width: spec.tty.cols } } : {}),
      user: { uid: SANDBOX_UID, gid: SANDBOX_UID },
      // setpriv --pdeathsig: the container dies with runc, and runc with the agent. The outer
      // shell is pid 1, which the kernel shields from signals it has no handler for; the
      // run's own shell is its child, pid 2, and gets signals as it would under bwrap.
      args: [
        "/usr/bin/setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        "/bin/sh",
        "-c",
        INIT,
        "oneoff-init",
        spec.command,
      ],
      env: Object.entries(spec.env).map(([name, value]) => `${name}=${value}`),
      cwd: "/app",
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
    },
    root: { path: parts.rootfs, readonly: true },
    hostname: "oneoff",
    mounts,
    linux: {
      uidMappings: ids,
      gidMappings: ids,
      namespaces: namespaces.map((type) => ({ type })),
      ...(parts.cgroupsPath === null ? {} : {
        cgroupsPath: parts.cgroupsPath,
        resources: {
          devices: [{ allow: false, access: "rwm" }],
          memory: {
            limit: limits.memoryBytes,
            ...(parts.swapAccounting ? { swap: limits.memoryBytes } : {}),
          },
          pids: { limit: limits.pids },
          cpu: {
            quota: Math.max(1000, Math.round(limits.cpuMillis * CPU_PERIOD_US / 1000)),
            period: CPU_PERIOD_US,
          },
        },
      }),
      seccomp: ociSeccomp(),
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
      ],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}
