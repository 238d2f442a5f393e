/**
 * The runc backend (root only). The wrapper (see `_layer.ts`) mounts the
 * run's tmpfs on `/tmp` of a private mount namespace: the `/app` layer, and
 * binds of the bundle, the shared rootfs and the uploads, all at paths the
 * container's root (an unprivileged host uid) can traverse. It then execs
 * `runc run`; runc adds the user namespace (container uid 65534 is host uid
 * 65534), the cgroup limits and the seccomp filter. TTY runs set
 * `process.terminal`: runc then relays between the container's own pty and
 * its stdio, which is the agent's pty, and passes resizes on.
 * @module
 */
import type { CgroupHost } from "./_cgroups.ts";
import { readIsolatedResolvConf } from "./_network.ts";
import { layerArgv } from "./_layer.ts";
import { ociConfig, prepareRootfs } from "./_oci.ts";
import { prepareLayout } from "./_rootfs.ts";
import type { RootLayout } from "./_rootfs.ts";
import { limitCgroups, type RunScratch, spawnSandbox } from "./_spawn.ts";
import type { Sandbox, SandboxProcess, SandboxSpec } from "./types.ts";

/** The run's tmpfs in the wrapper's mount namespace: a path container root (host uid 2e9) can traverse. */
const LAYER_BASE = "/tmp";
/** Where the runc sandbox looks for runc, in order. */
export const RUNC_PATHS = [
  "/usr/sbin/runc",
  "/usr/bin/runc",
  "/usr/local/sbin/runc",
  "/usr/local/bin/runc",
];

/** Checks the host for runc and root, and prepares `workDir`. */
export async function createRuncSandbox(workDir: string): Promise<Sandbox> {
  let runc: string | undefined;
  for (const path of RUNC_PATHS) {
    if (await Deno.stat(path).then(() => true, () => false)) {
      runc = path;
      break;
    }
  }
  if (!runc) throw new Error("Cannot use the runc sandbox: runc is missing (apt-get install runc)");
  if (Deno.uid() !== 0) {
    throw new Error(
      "Cannot use the runc sandbox without root: run the agent as root, or use the bwrap sandbox",
    );
  }
  const layout = await prepareLayout(workDir);
  const rootfs = `${workDir}/rootfs`;
  await prepareRootfs(rootfs, layout);
  const warnings: string[] = [];
  const cgroups = await limitCgroups(warnings);
  return new RuncSandbox(runc, layout, rootfs, cgroups, warnings);
}

class RuncSandbox implements Sandbox {
  readonly name = "runc";
  readonly warnings: string[];
  readonly #runc: string;
  readonly #layout: RootLayout;
  readonly #rootfs: string;
  readonly #cgroups: CgroupHost | null;

  constructor(
    runc: string,
    layout: RootLayout,
    rootfs: string,
    cgroups: CgroupHost | null,
    warnings: string[],
  ) {
    this.#runc = runc;
    this.#layout = layout;
    this.#rootfs = rootfs;
    this.#cgroups = cgroups;
    this.warnings = warnings;
  }

  spawn(spec: SandboxSpec): Promise<SandboxProcess> {
    return spawnSandbox(spec, {
      runsDir: this.#layout.runsDir,
      cgroups: this.#cgroups,
      runcCgroup: true,
      argv: (spec, scratch) => this.#argv(spec, scratch),
    });
  }

  /** The wrapper's argv; the bundle's config.json goes to the scratch directory. */
  async #argv(spec: SandboxSpec, { dir, cgroup }: RunScratch): Promise<string[]> {
    // Read per run: the host's resolv.conf changes (DHCP, a VPN).
    const resolv = spec.network === "isolated" ? await readIsolatedResolvConf() : null;
    if (resolv !== null) await Deno.writeTextFile(`${dir}/resolv.conf`, resolv, { mode: 0o600 });
    const config = ociConfig(spec, {
      rootfs: `${LAYER_BASE}/root`,
      layout: this.#layout,
      appDir: `${LAYER_BASE}/m`,
      uploadsDir: spec.uploadsDir ? `${LAYER_BASE}/up` : null,
      downloadsDir: spec.downloadsDir ? `${LAYER_BASE}/dl` : null,
      cgroupsPath: cgroup?.runcPath ?? null,
      swapAccounting: this.#cgroups?.swapAccounting ?? false,
      resolvConf: resolv !== null ? `${LAYER_BASE}/bundle/resolv.conf` : null,
    });
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config), { mode: 0o600 });
    const binds = [
      { source: this.#rootfs, name: "root", readOnly: true },
      ...(spec.uploadsDir ? [{ source: spec.uploadsDir, name: "up", readOnly: true }] : []),
      ...(spec.downloadsDir ? [{ source: spec.downloadsDir, name: "dl", readOnly: false }] : []),
    ];
    return layerArgv({
      base: LAYER_BASE,
      sizeBytes: spec.limits.tmpBytes,
      slugDir: spec.slugDir,
      binds,
      userns: false,
      copy: false,
      // runc stays outside the limits; it puts the container in a child of the run's cgroup.
      procsFiles: [],
      // isolated: runc, and the container with it, starts in the run's own network namespace.
      isolated: spec.network === "isolated"
        ? { runId: spec.runId, hostPorts: spec.hostPorts ?? [] }
        : null,
      openFiles: spec.limits.openFiles,
      fds: [],
      // The config holds the run's environment: copied into the run's tmpfs, gone from the disk.
      dirs: ["bundle"],
      copies: [
        { source: `${dir}/config.json`, path: "bundle/config.json" },
        ...(resolv !== null ? [{ source: `${dir}/resolv.conf`, path: "bundle/resolv.conf" }] : []),
      ],
      exec: [
        ...["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", this.#runc],
        // runc's state lives and dies with the run's tmpfs: a killed run leaves no container behind.
        ...["--root", `${LAYER_BASE}/state`, "run"],
        // --keep leaves runc's cgroup for the OOM check; the cleanup removes it.
        ...(cgroup ? ["--keep"] : []),
        ...["--bundle", `${LAYER_BASE}/bundle`, spec.runId],
      ],
      command: spec.command,
    });
  }
}
