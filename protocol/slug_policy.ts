/**
 * What a valid slug is: the rules every entry must pass. The server applies
 * them when a slug is deployed (so a bad one is refused at once, with its
 * reason), and each agent again before node-tar may write an entry (a slug
 * is only trusted as far as the agent checked it itself).
 * node-tar already refuses `..` and links that escape, but only warns and
 * skips; these rules name the offending entry so the whole slug is refused,
 * and they also cover what node-tar lets through (devices are merely
 * skipped, absolute paths are silently made relative, setuid bits and
 * foreign owners are kept when running as root).
 * @module
 */

/**
 * A tar entry as the policy reads it: the fields node-tar's `ReadEntry`
 * has, so it can be passed as it is, without this module depending on it.
 * `mode` is written back, made safe.
 */
export interface SlugEntry {
  path: string;
  type: string;
  size: number;
  mode?: number | undefined;
  linkpath?: string | undefined;
}

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const DIRECTORY_TYPES = new Set(["Directory", "GNUDumpDir"]);
const SPECIAL_TYPES: Readonly<Record<string, string>> = {
  CharacterDevice: "a character device",
  BlockDevice: "a block device",
  FIFO: "a FIFO",
};

/** What a path of the slug is, as far as later entries need to know. */
type Kind = "file" | "directory" | "symlink";

/** Counted per entry on top of its data, so a million empty files still costs. */
const ENTRY_OVERHEAD = 512;

/**
 * The mode an extracted file gets: only its exec bits survive. setuid and
 * setgid are stripped rather than refused: they mean nothing under
 * no_new_privs in the sandbox, so a slug carrying them still runs, while a
 * root-owned setuid file in the host's cache would be a way up for any
 * local user who can reach it.
 */
export function safeFileMode(mode: number): number {
  return (mode & 0o111) !== 0 ? 0o755 : 0o644;
}

/** The mode an extracted directory gets. */
export const DIRECTORY_MODE = 0o755;

/**
 * Splits a tar path into its components, or says why it is refused. The
 * empty list is the root itself (`./`).
 */
function split(path: string): string[] | string {
  if (path.startsWith("/")) return "has an absolute path";
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) return "escapes the root";
  return parts;
}

/**
 * Checks a symlink target lexically. `..` may only lead the target: after
 * a name, `..` climbs from wherever that name points (`s -> .` then
 * `t -> s/../x` leaves the root), which no lexical check can follow.
 */
function symlinkProblem(parts: string[], target: string): string | undefined {
  if (target.startsWith("/")) return `points to the absolute path "${target}"`;
  const steps = target.split("/").filter((part) => part !== "" && part !== ".");
  let up = 0;
  while (steps[up] === "..") up++;
  if (steps.slice(up).includes("..")) return `has ".." after a name in "${target}"`;
  if (up > parts.length - 1) return `points outside the root ("${target}")`;
  return undefined;
}

/** Judges the entries of one slug in archive order. */
export class EntryPolicy {
  #kinds = new Map<string, Kind>();
  #declared = 0;
  #maxBytes: number;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /**
   * Returns why `entry` must be refused, or undefined once its mode is made
   * safe. Entries must be given in archive order.
   */
  check(entry: SlugEntry): string | undefined {
    const parts = split(entry.path);
    if (typeof parts === "string") return `entry "${entry.path}" ${parts}`;
    const inside = this.#symlinkAncestor(parts);
    if (inside !== undefined) return `entry "${entry.path}" is inside symlink "${inside}"`;
    this.#declared += ENTRY_OVERHEAD + (FILE_TYPES.has(entry.type) ? entry.size : 0);
    if (this.#declared > this.#maxBytes) {
      return `content is larger than the limit of ${this.#maxBytes} bytes`;
    }
    if (parts.length === 0 && !DIRECTORY_TYPES.has(entry.type)) {
      return `entry "${entry.path}" would replace the root with a ${entry.type}`;
    }
    return this.#kindProblem(entry, parts);
  }

  #kindProblem(entry: SlugEntry, parts: string[]): string | undefined {
    const path = parts.join("/");
    if (FILE_TYPES.has(entry.type)) {
      entry.mode = safeFileMode(entry.mode ?? 0);
      this.#kinds.set(path, "file");
    } else if (DIRECTORY_TYPES.has(entry.type)) {
      entry.mode = DIRECTORY_MODE;
      this.#kinds.set(path, "directory");
    } else if (entry.type === "SymbolicLink") {
      const problem = symlinkProblem(parts, entry.linkpath ?? "");
      if (problem !== undefined) return `symlink "${entry.path}" ${problem}`;
      this.#kinds.set(path, "symlink");
    } else if (entry.type === "Link") {
      const problem = this.#hardlinkProblem(entry.linkpath ?? "");
      if (problem !== undefined) return `hard link "${entry.path}" ${problem}`;
      this.#kinds.set(path, "file");
    } else {
      const special = SPECIAL_TYPES[entry.type];
      if (special !== undefined) return `entry "${entry.path}" is ${special}`;
      return `entry "${entry.path}" has the unsupported type "${entry.type}"`;
    }
    return undefined;
  }

  /**
   * A hard link may only name a regular file written earlier: a link to a
   * symlink would move that symlink's relative target to another directory.
   */
  #hardlinkProblem(target: string): string | undefined {
    const parts = split(target);
    if (typeof parts === "string") return `points outside the root ("${target}")`;
    if (this.#symlinkAncestor(parts) !== undefined || this.#kinds.get(parts.join("/")) !== "file") {
      return `points to "${target}", which is not a regular file earlier in the slug`;
    }
    return undefined;
  }

  #symlinkAncestor(parts: string[]): string | undefined {
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (this.#kinds.get(prefix) === "symlink") return prefix;
    }
    return undefined;
  }
}
