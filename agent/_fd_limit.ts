/**
 * Each attached session holds about five descriptors on the agent, and the
 * common soft limit of 1024 would stop an agent near 200 sessions. Deno has
 * no setrlimit, so the agent raises its own soft limit to the hard one with
 * util-linux's prlimit, best effort.
 * @module
 */

/** Raises this process's open-file soft limit to its hard limit; the resulting soft limit, if known. */
export async function raiseFileLimit(): Promise<number | null> {
  try {
    const read = await new Deno.Command("prlimit", {
      args: [
        "--pid",
        String(Deno.pid),
        "--nofile",
        "--raw",
        "--noheadings",
        "--output",
        "SOFT,HARD",
      ],
      stdout: "piped",
      stderr: "null",
    }).output();
    const [soft, hard] = new TextDecoder().decode(read.stdout).trim().split(/\s+/);
    if (!read.success || !soft || !hard) return null;
    if (soft === hard) return Number(soft);
    const set = await new Deno.Command("prlimit", {
      args: ["--pid", String(Deno.pid), `--nofile=${hard}:${hard}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return Number(set.success ? hard : soft);
  } catch {
    return null;
  }
}
