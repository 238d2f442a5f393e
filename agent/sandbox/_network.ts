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
 * DNS: a host whose resolver listens on its own loopback (systemd-resolved's
 * 127.0.0.53, a local dnsmasq) names it in /etc/resolv.conf, which the run
 * cannot reach from its namespace. pasta forwards UDP port 53 sent to
 * {@link DNS_FORWARD_ADDRESS} to the host's first resolver (from its own
 * socket in the host's namespace, where that loopback is), and such a run
 * gets a resolv.conf of its own naming that address instead
 * ({@link isolatedResolvConf}). Only UDP is forwarded: an answer too large
 * for UDP (TCP fallback) does not resolve.
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

/**
 * Where an isolated run sends DNS for pasta to forward to the host's
 * resolver: link-local, which no host route or real service uses (it is
 * not the metadata service's 169.254.169.254).
 */
export const DNS_FORWARD_ADDRESS = "169.254.53.53";

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
    ...["--dns-forward", DNS_FORWARD_ADDRESS],
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

/** Whether a nameserver address is on the host's loopback (unreachable from a run's namespace). */
function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === "::1" || /^::ffff:127\./i.test(address);
}

/**
 * The resolv.conf an isolated run gets, given the host's, or null when the
 * host's serves as it is (no nameserver on its loopback). pasta forwards
 * to the host's first IPv4 nameserver: when that one is on the loopback,
 * it is named as {@link DNS_FORWARD_ADDRESS}; other loopback nameservers
 * are left out (nothing reaches them); the rest (search, options, other
 * nameservers) stays as the host has it.
 */
export function isolatedResolvConf(host: string): string | null {
  const lines = host.split("\n");
  const nameserver = (line: string) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1];
  const loopback = lines.map(nameserver).filter((a) => a !== undefined && isLoopback(a));
  if (loopback.length === 0) return null;
  const firstV4 = lines.map(nameserver).find((a) => a !== undefined && !a.includes(":"));
  let forwarded = false;
  const kept = lines.flatMap((line) => {
    const address = nameserver(line);
    if (address === undefined || !isLoopback(address)) return [line];
    if (address === firstV4 && !forwarded) {
      forwarded = true;
      return [`nameserver ${DNS_FORWARD_ADDRESS}`];
    }
    return [];
  });
  const note =
    `# oneoff: the host's resolver ${
      loopback.join(", ")
    } is on its loopback, out of this run's network: ` +
    (forwarded ? `${DNS_FORWARD_ADDRESS} is pasta, forwarding to ${firstV4}` : "left out");
  return [note, ...kept].join("\n").replace(/\n*$/, "\n");
}

/** {@link isolatedResolvConf} of this host's /etc/resolv.conf, read now (it may change: DHCP, VPNs). */
export async function readIsolatedResolvConf(): Promise<string | null> {
  const host = await Deno.readTextFile("/etc/resolv.conf").catch(() => null);
  return host === null ? null : isolatedResolvConf(host);
}
