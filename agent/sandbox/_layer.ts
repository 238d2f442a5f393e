/**
 * The wrapper every sandbox starts through: one shell in a private mount
 * namespace that joins the run's cgroups, opens the files the sandbox reads,
 * mounts the run's tmpfs with the throwaway writable layer over the slug,
 * then execs the sandbox tool. bubblewrap 0.8 has no `--overlay`, so the
 * layer is mounted here; the namespace (and with it every mount) vanishes
 * when its last process exits, so nothing needs unmounting.
 *
 * Every path the sandbox tool reads is opened before the tmpfs is mounted:
 * the tmpfs may hide them (bwrap's layer sits on `/tmp`, and so may a test's
 * work dir).
 * @module
 */
import { isolatedNetwork } from "./_network.ts";
import { SANDBOX_UID } from "./_rootfs.ts";

/** Everything the wrapper does before it execs the sandbox tool. */
export interface LayerPlan {
  /** Directory the run's tmpfs is mounted on, inside the private namespace. */
  base: string;
  /** Size of that tmpfs: the writable layer of `/app` (and its bookkeeping). */
  sizeBytes: number;
  /** The slug: the overlay's read-only lower layer. */
  slugDir: string;
  /** Host directories bound at `<base>/<name>`, opened before the tmpfs hides them. */
  binds: { source: string; name: string; readOnly: boolean }[];
  /** Not root: create a user namespace first (mounts need it) and skip ownership changes. */
  userns: boolean;
  /** Copy the slug instead of an overlay (hosts that refuse overlayfs). */
  copy: boolean;
  /** `cgroup.procs` files the wrapper joins once the network is up (pasta stays outside). */
  procsFiles: string[];
  /** Network `isolated`: make the run's network namespace and its pasta (`_network.ts`). */
  isolated: { runId: string; hostPorts: readonly number[] } | null;
  /** RLIMIT_NOFILE, soft and hard, of the sandbox tool and everything it starts. */
  openFiles: number;
  /** Files opened on descriptors 3, 4, ... for the sandbox tool. */
  fds: string[];
  /**
   * Files removed from the host as soon as the wrapper has them open (they
   * hold the run's environment: nothing of it stays on disk while it runs).
   */
  unlink?: string[];
  /** Host files copied into the tmpfs (`<base>/<path>`, in one of `dirs`), read from a descriptor opened before it. */
  copies?: { source: string; path: string }[];
  /** More directories to make in the tmpfs besides the layer's and the binds'. */
  dirs?: string[];
  /** The sandbox tool's argv; `"$1"` in it is the run's command. */
  exec: string[];
  /** The run's command, handed over as `$1` so it is never quoted into the script. */
  command: string;
}

/**
 * The wrapper is bash, not sh: dash redirects single-digit descriptors
 * only, and bwrap with its own resolv.conf, uploads and downloads needs
 * descriptors 3 to 10. bash keeps its own far above (255).
 */
const MAX_FD = 19;

/** Quotes one word for `sh`. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The argv that runs the plan: `unshare ... sh -c SCRIPT oneoff COMMAND`. */
export function layerArgv(plan: LayerPlan): string[] {
  const q = shellQuote;
  const base = plan.base;
  const slugFd = 3 + plan.fds.length;
  const bindFd = (i: number) => slugFd + 1 + i;
  const copies = plan.copies ?? [];
  const copyFd = (i: number) => bindFd(plan.binds.length) + i;
  const lastFd = copyFd(copies.length - 1);
  if (lastFd > MAX_FD) throw new Error(`Cannot open ${lastFd} files in the wrapper`);
  const steps: string[] = [];
  const opens = plan.fds.map((file, i) => `${i + 3}<${q(file)}`);
  opens.push(`${slugFd}<${q(plan.slugDir)}`);
  plan.binds.forEach((bind, i) => opens.push(`${bindFd(i)}<${q(bind.source)}`));
  copies.forEach((copy, i) => opens.push(`${copyFd(i)}<${q(copy.source)}`));
  // `command`: a failed redirection must not end the shell before `exit 125`.
  steps.push(`command exec ${opens.join(" ")}`);
  const unlink = [...(plan.unlink ?? []), ...copies.map((copy) => copy.source)];
  if (unlink.length > 0) steps.push(`/usr/bin/rm -f -- ${unlink.map(q).join(" ")}`);
  steps.push(`/usr/bin/mount -n -i -t tmpfs -o size=${plan.sizeBytes},mode=0755 oneoff ${q(base)}`);
  const dirs = ["u", "w", "m", "e", ...plan.binds.map((bind) => bind.name), ...(plan.dirs ?? [])]
    .map((d) => q(`${base}/${d}`)).join(" ");
  steps.push(
    plan.userns
      ? `/usr/bin/mkdir ${dirs}`
      : `/usr/bin/install -d -o ${SANDBOX_UID} -g ${SANDBOX_UID} -m 0755 ${dirs}`,
  );
  const openFds = [
    ...plan.fds.map((_, i) => i + 3),
    slugFd,
    ...plan.binds.map((_, i) => bindFd(i)),
  ];
  const network = plan.isolated ? isolatedNetwork(base, plan.isolated, openFds) : null;
  if (network) steps.push(...network.steps);
  // The tmpfs's pages are charged to the cgroup of whoever writes them: join before the layer is made.
  for (const file of plan.procsFiles) steps.push(`echo $$ >${q(file)}`);
  const slug = `/proc/self/fd/${slugFd}`;
  steps.push(
    plan.copy
      ? `/usr/bin/cp -dR --preserve=mode,timestamps ${slug}/. ${q(`${base}/m`)}`
      : `/usr/bin/mount -n -i -t overlay overlay -o lowerdir=${slug},upperdir=${
        q(`${base}/u`)
      },workdir=${q(`${base}/w`)} ${q(`${base}/m`)}`,
  );
  plan.binds.forEach((bind, i) => {
    const source = `/proc/self/fd/${bindFd(i)}`;
    const target = q(`${base}/${bind.name}`);
    if (bind.readOnly && !plan.copy) {
      // A read-only overlay, not a bind: a bind mount shows its source's host path in the
      // sandbox's /proc/self/mountinfo, an overlay shows "/" and the descriptor's name.
      steps.push(
        `/usr/bin/mount -n -i -t overlay overlay -o ro,lowerdir=${source}:${
          q(`${base}/e`)
        } ${target}`,
      );
      return;
    }
    // -c: the source is a descriptor's magic link, which must not be resolved to a (hidden) path.
    const ro = bind.readOnly ? " -o ro" : "";
    steps.push(`/usr/bin/mount -n -i -c --bind${ro} ${source} ${target}`);
  });
  copies.forEach((copy, i) => {
    steps.push(`/usr/bin/cat <&${copyFd(i)} >${q(`${base}/${copy.path}`)}`);
  });
  const closes = [
    slugFd,
    ...plan.binds.map((_, i) => bindFd(i)),
    ...copies.map((_, i) => copyFd(i)),
  ]
    .map((fd) => `${fd}<&-`).join(" ");
  // 125, as container tools do, says "the sandbox could not be set up".
  if (!Number.isInteger(plan.openFiles) || plan.openFiles < 16) {
    throw new Error(`Cannot limit open files to ${plan.openFiles}: allow at least 16`);
  }
  steps.push(`ulimit -n ${plan.openFiles}`);
  const exec = [...network?.enter ?? [], ...plan.exec];
  const script = `{ ${steps.join(" && ")}; } || exit 125\nexec ${closes}\nexec ${
    exec.map((w) => w === '"$1"' ? w : q(w)).join(" ")
  }`;
  const unshare = plan.userns
    ? ["/usr/bin/unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    : ["/usr/bin/unshare", "--mount", "--propagation", "private"];
  return [...unshare, "/bin/bash", "-c", script, "oneoff", plan.command];
}

/** The only environment the wrapper (which runs as root) sees: the run's own goes to the sandbox tool by other means. */
export const WRAPPER_ENV: Record<string, string> = {
  PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  LC_ALL: "C",
};
