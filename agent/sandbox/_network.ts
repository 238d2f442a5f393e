/**
 * Network `isolated`: each run gets a network namespace of its own, and
 * pasta (Debian's `passt` package) gives it outbound connectivity as
 * user-mode NAT: every connection from inside becomes an ordinary socket of
 * the host's network namespace, made by pasta. Nothing reaches the host's
 * loopback (`--no-map-gw`, and no automatic port forwarding: `-t/-u/-T/-U
 * none`), nor the host's abstract unix sockets or another run's (they belong
 * to a network namespace), nor the host's `/proc/net/tcp`. Ports the app
 * allows (`hostPorts`) are forwarded from the run's 127.0.0.1 to the host's
 * (`-T`).
 *
 * The wrapper (root, in its private mount namespace, still in the host's
 * network) binds a new network namespace on its tmpfs, starts pasta on it in
 * the foreground under a keeper, waits until pasta has
 * configured it (the default route is its last step), and execs the sandbox
 * tool inside it through nsenter. pasta stays outside the run's cgroup and
 * dies with the wrapper: when the run ends, and when the agent dies.
 *
 * A parent-death signal cannot tie pasta to the wrapper: the wrapper ends as
 * uid 65534 (bwrap's setpriv), which may not signal a root pasta, and an
 * exec with real and effective uids apart clears the signal. So a keeper
 * subshell (root) runs pasta and `tail --pid` on the wrapper, and kills
 * pasta once the wrapper has gone, within a fifth of a second.
 *
 * pasta drops to nobody when started as root, and nobody cannot join a
 * namespace root made: `--runas 0` keeps it root, where it still isolates
 * itself (own mount, pid, ipc and uts namespaces, a seccomp filter, every
 * capability dropped but CAP_NET_BIND_SERVICE and CAP_SYS_ADMIN).
 * @module
 */
import { shellQuote } from "./_layer.ts";

/** Where Debian's passt package installs pasta. */
export const PASTA = "/usr/bin/pasta";

/** How often the keeper checks that the wrapper still runs: pasta outlives a run by at most this. */
const WATCH_SECONDS = 0.2;

/** Polls of the namespace's routes before the wrapper gives up on pasta (a few seconds). */
const READY_POLLS = 200_000;

/**
 * Waits, as long as pasta's keeper (pid `$1`) lives, for a default route in
 * the namespace the script runs in, and for pasta's listeners of the host
 * ports (hex, `$2`...), which it opens after the routes. Builtins only: no
 * process per poll.
 */
const READY_SCRIPT = `pid=$1; shift
route() { while read -r _ d _; do [ "$d" = 00000000 ] && return 0; done </proc/net/route; return 1; }
listens() { for f in /proc/net/tcp /proc/net/tcp6; do while read -r _ l _ st _; do
  [ "$st" = 0A ] && [ "\${l##*:}" = "$1" ] && return 0; done <"$f"; done; return 1; }
ready() { route || return 1; for p; do listens "$p" || return 1; done; }
i=0; until ready "$@"; do
read -r _ _ st _ </proc/$pid/stat 2>/dev/null || exit 1; [ "$st" = Z ] && exit 1
i=$((i+1)); [ $i -lt ${READY_POLLS} ] || exit 1; done`;

/** The pasta arguments for one run's namespace bound at `netns`. */
export function pastaArgs(netns: string, hostPorts: readonly number[]): string[] {
  for (const port of hostPorts) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`Cannot forward host port ${port}: choose a TCP port from 1 to 65535`);
    }
  }
  return [
    ...["-f", "-q", "--runas", "0", "--config-net", "--no-map-gw"],
    ...["-t", "none", "-u", "none", "-U", "none"],
    ...["-T", hostPorts.length ? hostPorts.join(",") : "none"],
    ...["--netns", netns],
  ];
}

/**
 * The wrapper's steps that make the run's namespace and its pasta, given the
 * descriptors the wrapper holds open (pasta gets none of them), and the
 * prefix of the final exec that enters the namespace.
 */
export function isolatedNetwork(
  base: string,
  plan: { runId: string; hostPorts: readonly number[] },
  openFds: readonly number[],
): { steps: string[]; enter: string[] } {
  const q = shellQuote;
  const { hostPorts } = plan;
  // Named after the run: its pasta is told apart in the host's process list.
  const netns = `${base}/netns-${plan.runId}`;
  const closes = openFds.map((fd) => ` ${fd}<&-`).join("");
  const pasta = [PASTA, ...pastaArgs(netns, hostPorts)].map(q).join(" ");
  const hexPorts = hostPorts.map((port) => ` ${port.toString(16).toUpperCase().padStart(4, "0")}`)
    .join("");
  // The keeper: runs pasta, ends with it, and kills it once the wrapper ($$) has gone.
  const keeper = `${pasta} & p=$!; ` +
    `{ /usr/bin/tail -s ${WATCH_SECONDS} --pid=$$ -f /dev/null; kill -9 $p; } & wait $p`;
  return {
    steps: [
      `/usr/bin/touch ${q(netns)}`,
      `/usr/bin/unshare --net=${q(netns)} /bin/true`,
      // Nothing of the run's: no stdio (its end would wait for pasta's), no descriptor.
      `{ { ${keeper}; } </dev/null >/dev/null 2>&1${closes} & }`,
      `{ /usr/bin/nsenter --net=${q(netns)} /bin/sh -c ${
        q(READY_SCRIPT)
      } oneoff-net "$!"${hexPorts} || { echo "oneoff: pasta could not set up the run's network" >&2; false; }; }`,
    ],
    enter: ["/usr/bin/nsenter", `--net=${netns}`, "--"],
  };
}
