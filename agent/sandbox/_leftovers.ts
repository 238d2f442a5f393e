/**
 * What a killed agent leaves of its sandboxes: run cgroups (both backends,
 * runc's child cgroups in every hierarchy it joined) and scratch
 * directories under the work dir. Processes still in those cgroups (a
 * wrapper orphaned mid-setup, a container runc could not take down) are
 * killed on the way. Only runs known to belong to this work dir are
 * touched: other agents on the host share the cgroup parents.
 * @module
 */
import { detectCgroups, RunCgroup } from "./_cgroups.ts";

/** Names the backends give run scratch directories (see `_spawn.ts`): the run ids. */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * Removes the cgroups and scratch directories of `runIds` and of every run
 * with a scratch directory under `<workDir>/runs`, plus upload directories
 * and download directories of earlier runs; returns the run ids cleaned up and what could not be removed.
 */
export async function removeLeftovers(
  workDir: string,
  runIds: string[],
): Promise<{ cleaned: string[]; failures: unknown[] }> {
  const failures: unknown[] = [];
  const runsDir = `${workDir}/runs`;
  const ids = new Set(runIds.filter((id) => RUN_ID.test(id)));
  for (const entry of await list(runsDir)) if (RUN_ID.test(entry.name)) ids.add(entry.name);
  const host = Deno.uid() === 0 ? await detectCgroups() : { reason: "not root" };
  for (const id of ids) {
    // withRunc: which backend the earlier process used is not known; the extra paths are harmless.
    if (!("reason" in host)) {
      await RunCgroup.of(host, id).remove({ withRunc: true }).catch((err) => failures.push(err));
    }
    await Deno.remove(`${runsDir}/${id}`, { recursive: true }).catch(() => {});
  }
  for (const entry of await list(workDir)) {
    if (
      entry.isDirectory &&
      (entry.name.startsWith("uploads-") || entry.name.startsWith("downloads-"))
    ) {
      await Deno.remove(`${workDir}/${entry.name}`, { recursive: true }).catch(() => {});
    }
  }
  return { cleaned: [...ids], failures };
}

async function list(dir: string): Promise<Deno.DirEntry[]> {
  return await Array.fromAsync(Deno.readDir(dir)).catch(() => []);
}
