/**
 * `oneoff agent --check`, also run at every agent start: real probes of
 * what the sandbox needs (the tool present and running a process, user
 * namespaces, overlay mounts, writable cgroup controllers, the open-file
 * limit), each missing piece said with what to install or enable.
 * @module
 */
import type { SandboxKind } from "../protocol/mod.ts";
import { raiseFileLimit } from "./_fd_limit.ts";
import { detectCgroups } from "./sandbox/mod.ts";
import { BWRAP } from "./sandbox/bwrap.ts";
import { RUNC_PATHS } from "./sandbox/runc.ts";

/** One probe's result. */
export interface Check {
  name: string;
  ok: boolean;
  /** A missing required piece stops the agent; a missing optional one is a warning. */
  required: boolean;
  /** What was found, or exactly what to install or enable. */
  detail: string;
}

/** What {@link runChecks} probes for; the paths are for tests. */
export interface CheckOptions {
  sandbox: SandboxKind;
  /** Runs at once the open-file limit must allow (about five descriptors each). */
  maxRuns: number;
  bwrap?: string;
  runcPaths?: readonly string[];
}

const ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

async function succeeds(program: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(program, {
      args,
      env: { PATH: ROOT_PATH },
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return null;
    return new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) || `exit ${out.code}`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

// As root, the sandbox drops to the sandbox's uid before it makes namespaces.
function asSandboxUser(argv: string[]): [string, string[]] {
  if (Deno.uid() !== 0) return [argv[0]!, argv.slice(1)];
  return ["/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", ...argv]];
}

function userNamespaceHint(): string {
  const read = (path: string) => {
    try {
      return Deno.readTextFileSync(path).trim();
    } catch {
      return undefined;
    }
  };
  if (read("/proc/sys/kernel/unprivileged_userns_clone") === "0") {
    return "enable them: sysctl -w kernel.unprivileged_userns_clone=1 " +
      "(and in /etc/sysctl.d/ to keep it)";
  }
  if (read("/proc/sys/user/max_user_namespaces") === "0") {
    return "enable them: sysctl -w user.max_user_namespaces=15000";
  }
  if (read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") === "1") {
    return "AppArmor restricts them: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, " +
      "or give bwrap an AppArmor profile that allows userns";
  }
  return "enable unprivileged user namespaces in the kernel (CONFIG_USER_NS) and its sysctls";
}

async function userNamespaces(): Promise<Check> {
  const [program, args] = asSandboxUser(["/usr/bin/unshare", "--user", "--map-root-user", "true"]);
  const error = await succeeds(program, args);
  return {
    name: "user namespaces",
    ok: error === null,
    required: true,
    detail: error === null ? "an unprivileged user made one" : `${error}: ${userNamespaceHint()}`,
  };
}

/** bwrap's arguments for the barest sandbox that runs `true`: the host's /usr, nothing shared. */
export const BARE_BWRAP_TRUE: readonly string[] = [
  "--unshare-all",
  "--die-with-parent",
  "--ro-bind",
  "/usr",
  "/usr",
  "--symlink",
  "usr/bin",
  "/bin",
  "--symlink",
  "usr/lib",
  "/lib",
  "--symlink",
  "usr/lib64",
  "/lib64",
  "--proc",
  "/proc",
  "--dev",
  "/dev",
  "/usr/bin/true",
];

async function bwrapWorks(bwrap: string): Promise<Check[]> {
  if (!exists(bwrap)) {
    return [{
      name: "bubblewrap",
      ok: false,
      required: true,
      detail: `${bwrap} is missing: apt-get install bubblewrap`,
    }];
  }
  const [program, args] = asSandboxUser([bwrap, ...BARE_BWRAP_TRUE]);
  const error = await succeeds(program, args);
  return [{
    name: "bubblewrap",
    ok: error === null,
    required: true,
    detail: error === null
      ? `${bwrap} ran a process in new namespaces`
      : `${bwrap} cannot run a sandbox (${error}): check user namespaces below, ` +
        "and that bwrap is not setuid-restricted (apt-get install --reinstall bubblewrap)",
  }];
}

async function runcWorks(paths: readonly string[]): Promise<Check[]> {
  const runc = paths.find(exists);
  if (!runc) {
    return [{
      name: "runc",
      ok: false,
      required: true,
      detail: `runc is missing (looked in ${paths.join(", ")}): apt-get install runc`,
    }];
  }
  const checks: Check[] = [];
  const root = Deno.uid() === 0;
  checks.push({
    name: "root (runc)",
    ok: root,
    required: true,
    detail: root ? "running as root" : "the runc sandbox needs root: run the agent as root, " +
      "or use --sandbox bwrap",
  });
  const error = root ? await succeeds(runc, ["list"]) : "not root";
  checks.push({
    name: "runc",
    ok: error === null,
    required: true,
    detail: error === null ? `${runc} answers` : `${runc} does not work (${error})`,
  });
  return checks;
}

async function overlay(): Promise<Check> {
  // The throwaway layer over the slug: a tmpfs and an overlay in a private mount namespace.
  const script = 'd=$(mktemp -d) && mount -t tmpfs check "$d" && ' +
    'mkdir "$d/l" "$d/u" "$d/w" "$d/m" && ' +
    'mount -t overlay overlay -o lowerdir=$d/l,upperdir=$d/u,workdir=$d/w "$d/m"; ' +
    's=$?; umount -R "$d" 2>/dev/null; rmdir "$d"; exit $s';
  const root = Deno.uid() === 0;
  const args = root
    ? ["--mount", "--propagation", "private", "/bin/sh", "-c", script]
    : ["--user", "--map-root-user", "--mount", "--propagation", "private", "/bin/sh", "-c", script];
  const error = await succeeds("/usr/bin/unshare", args);
  return {
    name: "overlay mounts",
    ok: error === null,
    // Without root the sandbox copies the slug instead (slower, still correct).
    required: root,
    detail: error === null
      ? "a tmpfs and an overlay mounted in a private mount namespace"
      : `${error}: load the overlay module (modprobe overlay)` +
        (root ? "" : "; without it each run copies its slug"),
  };
}

async function cgroups(): Promise<Check> {
  const name = "cgroup controllers";
  if (Deno.uid() !== 0) {
    return {
      name,
      ok: false,
      required: false,
      detail: "not root: memory, pids and CPU limits are not enforced (run the agent as root)",
    };
  }
  const host = await detectCgroups();
  const how = "mount cgroup2 with the memory, pids and cpu controllers delegated " +
    "(systemd: Delegate=yes in the agent's unit), or cgroup v1 memory, pids and cpu hierarchies";
  if ("reason" in host) {
    return { name, ok: false, required: false, detail: `${host.reason}: ${how}` };
  }
  // Writable for real: make and remove a cgroup where runs get theirs.
  const made: string[] = [];
  try {
    for (const dir of new Set(Object.values(host.roots))) {
      const probe = `${dir}/oneoff/check-${Deno.pid}`;
      await Deno.mkdir(probe, { recursive: true });
      made.push(probe);
    }
    return {
      name,
      ok: true,
      required: false,
      detail: `cgroup v${host.version}: memory, pids and cpu writable`,
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { name, ok: false, required: false, detail: `${message}: ${how}` };
  } finally {
    for (const dir of made) await Deno.remove(dir).catch(() => {});
  }
}

async function fileLimit(maxRuns: number): Promise<Check> {
  const limit = await raiseFileLimit();
  const wanted = 5 * maxRuns + 64;
  const ok = limit !== null && limit >= wanted;
  return {
    name: "open-file limit",
    ok,
    required: false,
    detail: limit === null
      ? "unknown (prlimit is missing: apt-get install util-linux)"
      : ok
      ? `${limit} (${wanted} wanted for ${maxRuns} runs)`
      : `${limit}, ${wanted} wanted for ${maxRuns} runs: raise it (ulimit -n 65536, or ` +
        "LimitNOFILE=65536 in the agent's systemd unit)",
  };
}

/** Probes this host for the chosen sandbox; one result per piece. */
export async function runChecks(options: CheckOptions): Promise<Check[]> {
  const tools: Check = {
    name: "util-linux",
    ok: ["/usr/bin/unshare", "/usr/bin/setpriv"].every(exists),
    required: true,
    detail: "unshare and setpriv are needed to build each sandbox: apt-get install util-linux",
  };
  if (tools.ok) tools.detail = "unshare and setpriv found";
  // Independent probes, run side by side: this runs at every agent start.
  const [sandbox, ...rest] = await Promise.all([
    options.sandbox === "runc"
      ? runcWorks(options.runcPaths ?? RUNC_PATHS)
      : Promise.all([bwrapWorks(options.bwrap ?? BWRAP), userNamespaces()]).then(([b, u]) => [
        ...b,
        u,
      ]),
    overlay(),
    cgroups(),
    fileLimit(options.maxRuns),
  ]);
  return [tools, ...sandbox, ...rest];
}

/** One line per check: `ok`, `missing` (required) or `warning` (optional). */
export function formatChecks(checks: Check[]): string {
  return checks.map((c) => {
    const status = c.ok ? "ok     " : c.required ? "missing" : "warning";
    return `${status}  ${c.name}: ${c.detail}`;
  }).join("\n");
}

/** True when nothing required is missing. */
export function checksPass(checks: Check[]): boolean {
  return checks.every((c) => c.ok || !c.required);
}
