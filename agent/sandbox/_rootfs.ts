/**
 * What the sandbox's root filesystem holds, shared by both backends: the
 * host's `/usr` (and the top-level links into it), a few `/etc` files, stub
 * passwd and group files naming the sandbox user, and the scratch layout of
 * the work dir.
 * @module
 */
import { writeSeccompProgram } from "./_seccomp.ts";
import type { SandboxSpec } from "./types.ts";

/** The uid and gid the sandboxed process runs as. */
export const SANDBOX_UID = 65534;

/** Host `/etc` entries a process needs: name resolution, TLS roots, time zone, the dynamic linker's cache. */
export const ETC_ENTRIES = [
  "resolv.conf",
  "hosts",
  "host.conf",
  "nsswitch.conf",
  "gai.conf",
  "services",
  "protocols",
  "localtime",
  "ld.so.cache",
  "ld.so.conf",
  "ld.so.conf.d",
  "ssl",
  "ca-certificates",
  "alternatives",
  "terminfo",
];

/** Top-level directories that merged-/usr hosts turn into links to `/usr`. */
const TOP_DIRS = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

const PASSWD =
  `root:x:0:0:root:/root:/usr/sbin/nologin\napp:x:${SANDBOX_UID}:${SANDBOX_UID}:app:/app:/bin/sh\n`;
const GROUP = `root:x:0:\napp:x:${SANDBOX_UID}:\n`;

/** One top-level entry of the sandbox's root besides `/usr`. */
export type TopEntry = { name: string; symlink: string } | { name: string; bind: true };

/** The host layout and the work dir's fixed files, found once per sandbox. */
export interface RootLayout {
  /** `/bin`, `/lib`, ...: links into `/usr` (merged /usr) or directories to bind. */
  top: TopEntry[];
  /** `/etc` entries present on this host (files or directories). */
  etc: { name: string; dir: boolean }[];
  /** Per-run scratch directories live here. */
  runsDir: string;
  passwdFile: string;
  groupFile: string;
  /** The classic BPF filter for `bwrap --seccomp`. */
  seccompFile: string;
}

/** Creates the work dir's fixed files and reads the host layout. */
export async function prepareLayout(workDir: string): Promise<RootLayout> {
  await Deno.mkdir(workDir, { recursive: true, mode: 0o700 });
  const runsDir = `${workDir}/runs`;
  await Deno.mkdir(runsDir, { recursive: true, mode: 0o700 });
  const etcDir = `${workDir}/etc`;
  await Deno.mkdir(etcDir, { recursive: true, mode: 0o755 });
  const passwdFile = `${etcDir}/passwd`;
  const groupFile = `${etcDir}/group`;
  const seccompFile = `${workDir}/seccomp.bpf`;
  await Deno.writeTextFile(passwdFile, PASSWD, { mode: 0o644 });
  await Deno.writeTextFile(groupFile, GROUP, { mode: 0o644 });
  writeSeccompProgram(seccompFile);

  const top: TopEntry[] = [];
  for (const name of TOP_DIRS) {
    const info = await Deno.lstat(`/${name}`).catch(() => null);
    if (info?.isSymlink) top.push({ name, symlink: await Deno.readLink(`/${name}`) });
    else if (info?.isDirectory) top.push({ name, bind: true });
  }
  const etc: RootLayout["etc"] = [];
  for (const name of ETC_ENTRIES) {
    // stat, not lstat: resolv.conf is often a link into /run, and the bind follows it.
    const info = await Deno.stat(`/etc/${name}`).catch(() => null);
    if (info) etc.push({ name, dir: info.isDirectory });
  }
  return { top, etc, runsDir, passwdFile, groupFile, seccompFile };
}

/** Checks a spec before anything is created for it: names, environment, directories. */
export async function checkSpec(spec: SandboxSpec): Promise<void> {
  // The run id names directories, cgroups and containers.
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(spec.runId)) {
    throw new Error(
      `Cannot start run "${spec.runId}": a run id is letters, digits, "_", "." and "-"`,
    );
  }
  for (const [name, value] of Object.entries(spec.env)) {
    if (name === "" || name.includes("=") || name.includes("\0") || value.includes("\0")) {
      throw new Error(
        `Cannot start run "${spec.runId}": environment variable "${name}" is invalid (a name holds no "=", nothing holds NUL)`,
      );
    }
  }
  const dirs = { slug: spec.slugDir, uploads: spec.uploadsDir, downloads: spec.downloadsDir };
  for (const [what, dir] of Object.entries(dirs)) {
    if (dir === undefined) continue;
    const info = await Deno.stat(dir).catch(() => null);
    if (!info?.isDirectory) {
      throw new Error(`Cannot start run "${spec.runId}": ${what} dir "${dir}" is not a directory`);
    }
  }
}
