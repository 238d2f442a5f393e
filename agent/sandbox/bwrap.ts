/**
 * The bubblewrap backend. As root: the wrapper (see `_layer.ts`) joins the
 * run's cgroups and mounts the `/app` layer on `/tmp` of a private mount
 * namespace, then drops to uid 65534 with setpriv and execs bwrap, which
 * builds the root from that layer and host paths in unprivileged user, pid,
 * ipc, uts, mount, cgroup (and, for network "none", net) namespaces; for
 * network "isolated" the wrapper has made the run's own network namespace
 * first (`_network.ts`), which bwrap keeps. Not root: the same through an
 * unprivileged user namespace, without cgroups.
 *
 * bwrap reads its arguments (environment included, so secrets stay out of
 * the host's process list) from a file in the run's scratch directory,
 * which the wrapper removes as soon as it has it open: no environment value
 * stays on the disk while the run runs.
 * @module
 */
import type { CgroupHost } from "./_cgroups.ts";
import { layerArgv } from "./_layer.ts";
import { readIsolatedResolvConf } from "./_network.ts";
import { prepareLayout, SANDBOX_UID } from "./_rootfs.ts";
import type { RootLayout } from "./_rootfs.ts";
import { limitCgroups, type RunScratch, spawnSandbox } from "./_spawn.ts";
import type { Sandbox, SandboxProcess, SandboxSpec } from "./types.ts";

/** Where the bwrap sandbox runs bubblewrap from. */
export const BWRAP = "/usr/bin/bwrap";
/** Where the wrapper mounts the run's tmpfs: bwrap itself mounts over /tmp, so it hides nothing bwrap needs. */
const LAYER_BASE = "/tmp";
// Descriptors the wrapper opens for bwrap (see layerArgv's `fds`).
const ARGS_FD = 3;
const SECCOMP_FD = 4;
const PASSWD_FD = 5;
const GROUP_FD = 6;
/** An isolated run's own resolv.conf, when the host's resolver is on its loopback. */
const RESOLV_FD = 7;

/** Checks the host for bwrap and prepares `workDir`. */
export async function createBwrapSandbox(workDir: string): Promise<Sandbox> {
  await Deno.stat(BWRAP).catch((err) => {
    throw new Error(
      `Cannot use the bwrap sandbox: ${BWRAP} is missing (apt-get install bubblewrap)`,
      { cause: err },
    );
  });
  const root = Deno.uid() === 0;
  const layout = await prepareLayout(workDir);
  const warnings: string[] = [];
  let cgroups: CgroupHost | null = null;
  let copy = false;
  if (root) {
    cgroups = await limitCgroups(warnings);
  } else {
    warnings.push(
      "Not running as root: memory, process and CPU limits are not enforced (cgroups need root); " +
        "the sandbox still isolates the process and limits /tmp",
    );
    copy = !(await overlayInUserNamespace());
    if (copy) {
      warnings.push(
        "This kernel refuses overlayfs in a user namespace: each run copies the slug to build /app",
      );
    }
  }
  return new BwrapSandbox(layout, cgroups, root, copy, warnings);
}

/** True when an unprivileged user namespace may mount overlayfs (Linux 5.11+). */
async function overlayInUserNamespace(): Promise<boolean> {
  const script = "mount -t tmpfs probe /tmp && mkdir /tmp/l /tmp/u /tmp/w /tmp/m && " +
    "mount -t overlay overlay -o lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w /tmp/m";
  const probe = new Deno.Command("/usr/bin/unshare", {
    args: [
      "--user",
      "--map-root-user",
      "--mount",
      "--propagation",
      "private",
      "/bin/sh",
      "-c",
      script,
    ],
    stdout: "null",
    stderr: "null",
  });
  return (await probe.output().catch(() => ({ success: false }))).success;
}

class BwrapSandbox implements Sandbox {
  readonly name = "bwrap";
  readonly warnings: string[];
  readonly #layout: RootLayout;
  readonly #cgroups: CgroupHost | null;
  readonly #root: boolean;
  readonly #copy: boolean;

  constructor(
    layout: RootLayout,
    cgroups: CgroupHost | null,
    root: boolean,
    copy: boolean,
    warnings: string[],
  ) {
    this.#layout = layout;
    this.#cgroups = cgroups;
    this.#root = root;
    this.#copy = copy;
    this.warnings = warnings;
  }

  spawn(spec: SandboxSpec): Promise<SandboxProcess> {
    return spawnSandbox(spec, {
      runsDir: this.#layout.runsDir,
      cgroups: this.#cgroups,
      runcCgroup: false,
      argv: (spec, scratch) => this.#argv(spec, scratch),
    });
  }

  /** The wrapper's argv; bwrap's own arguments go to a file in the scratch directory. */
  async #argv(spec: SandboxSpec, { dir, cgroup }: RunScratch): Promise<string[]> {
    const argsFile = `${dir}/bwrap.args`;
    // Read per run: the host's resolv.conf changes (DHCP, a VPN).
    const resolv = spec.network === "isolated" ? await readIsolatedResolvConf() : null;
    const resolvFile = `${dir}/resolv.conf`;
    if (resolv !== null) await Deno.writeTextFile(resolvFile, resolv, { mode: 0o600 });
    const bwrapArgs = this.#bwrapArgs(spec, resolv !== null);
    await Deno.writeTextFile(argsFile, bwrapArgs.map((arg) => `${arg}\0`).join(""), {
      mode: 0o600,
    });
    const { seccompFile, passwdFile, groupFile } = this.#layout;
    const dropRoot = [
      "/usr/bin/setpriv",
      `--reuid=${SANDBOX_UID}`,
      `--regid=${SANDBOX_UID}`,
      "--clear-groups",
      "--",
    ];
    return layerArgv({
      base: LAYER_BASE,
      sizeBytes: spec.limits.tmpBytes,
      slugDir: spec.slugDir,
      binds: [
        ...(spec.uploadsDir ? [{ source: spec.uploadsDir, name: "up", readOnly: true }] : []),
        ...(spec.downloadsDir ? [{ source: spec.downloadsDir, name: "dl", readOnly: false }] : []),
      ],
      userns: !this.#root,
      copy: this.#copy,
      procsFiles: cgroup?.procsFiles ?? [],
      isolated: spec.network === "isolated"
        ? { runId: spec.runId, hostPorts: spec.hostPorts ?? [] }
        : null,
      openFiles: spec.limits.openFiles,
      fds: [argsFile, seccompFile, passwdFile, groupFile, ...(resolv !== null ? [resolvFile] : [])],
      unlink: [argsFile],
      exec: [
        ...(this.#root ? dropRoot : []),
        BWRAP,
        "--args",
        String(ARGS_FD),
        "--",
        "/bin/sh",
        "-c",
        '"$1"',
      ],
      command: spec.command,
    });
  }

  /** bwrap's arguments up to (not including) the command; `ownResolv`: /etc/resolv.conf from RESOLV_FD. */
  #bwrapArgs(spec: SandboxSpec, ownResolv: boolean): string[] {
    const args = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"];
    // isolated: the wrapper has already entered the run's own network namespace (see _network.ts).
    if (spec.network !== "none") args.push("--share-net");
    // Without a TTY nothing needs job control: a new session also cuts the agent's own terminal off.
    if (!spec.tty) args.push("--new-session");
    args.push("--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID), "--hostname", "oneoff");
    args.push("--ro-bind", "/usr", "/usr");
    for (const entry of this.#layout.top) {
      if ("symlink" in entry) args.push("--symlink", entry.symlink, `/${entry.name}`);
      else args.push("--ro-bind", `/${entry.name}`, `/${entry.name}`);
    }
    args.push("--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--dir", "/etc");
    for (const { name } of this.#layout.etc) {
      if (ownResolv && name === "resolv.conf") continue;
      args.push("--ro-bind-try", `/etc/${name}`, `/etc/${name}`);
    }
    if (ownResolv) {
      args.push("--perms", "0644", "--ro-bind-data", String(RESOLV_FD), "/etc/resolv.conf");
    }
    args.push("--perms", "0644", "--ro-bind-data", String(PASSWD_FD), "/etc/passwd");
    args.push("--perms", "0644", "--ro-bind-data", String(GROUP_FD), "/etc/group");
    args.push("--bind", `${LAYER_BASE}/m`, "/app");
    args.push("--perms", "1777", "--size", String(spec.limits.tmpBytes), "--tmpfs", "/tmp");
    if (spec.uploadsDir) args.push("--ro-bind", `${LAYER_BASE}/up`, "/tmp/uploads");
    if (spec.downloadsDir) args.push("--bind", `${LAYER_BASE}/dl`, "/tmp/downloads");
    args.push(
      "--remount-ro",
      "/",
      "--chdir",
      "/app",
      "--seccomp",
      String(SECCOMP_FD),
      "--clearenv",
    );
    for (const [name, value] of Object.entries(spec.env)) args.push("--setenv", name, value);
    return args;
  }
}
