import { deepEqual, equal, ok } from "node:assert/strict";
import { SANDBOX_KINDS } from "../protocol/mod.ts";
import { startSystem, type TestSystem } from "./_system.ts";
import { needs } from "./_tools.ts";

/**
 * Interface names in a /proc/net/dev listing (its two header lines skipped),
 * but the veth pairs the sandbox tests make and remove meanwhile (`oo…`).
 */
function interfaces(procNetDev: string): string[] {
  return procNetDev.trim().split("\n").slice(2).map((line) => line.split(":")[0]!.trim())
    .filter((name) => !name.startsWith("oo")).sort();
}

/** The interfaces a one-off of `app` sees; the words are joined into one command line. */
async function interfacesOf(sys: TestSystem, app: string): Promise<string[]> {
  const res = await sys.cli(["run", "-a", app, "--no-tty", "--silent", "cat", "/proc/net/dev"]);
  equal(res.code, 0, res.stderr);
  return interfaces(res.stdout);
}

for (const kind of SANDBOX_KINDS) {
  Deno.test(needs(kind === "runc" ? ["root", "runc", "pasta"] : ["pasta"], {
    name:
      `[${kind}] apps get network "isolated" by default, "none" and "host" when their record says so`,
    async fn() {
      const host = interfaces(await Deno.readTextFile("/proc/net/dev"));
      ok(host.some((name) => name !== "lo"), `the host has only ${host}: nothing to hide`);
      await using sys = await startSystem({ sandbox: kind });
      const demo = new URL("../examples/demo", import.meta.url).pathname;
      equal((await sys.cli(["apps", "create", "sealed"])).code, 0);
      equal((await sys.cli(["deploy", "-a", "sealed", demo])).code, 0);
      const store = sys.server.ctx.store;
      const sealed = (await store.appByName("sealed"))!;
      equal(sealed.network, "isolated", "isolated by default");
      const set = await sys.cli(["apps", "set", "sealed", "--network", "none"]);
      equal(set.code, 0, set.stderr);
      deepEqual(await interfacesOf(sys, "sealed"), ["lo"]);

      // Isolated: loopback and pasta's one interface, in a namespace of the run's own.
      const isolated = await interfacesOf(sys, "demo");
      equal(isolated.length, 2, `${isolated}`);
      ok(isolated.includes("lo"));

      equal((await sys.cli(["apps", "set", "sealed", "--network", "host"])).code, 0);
      deepEqual(await interfacesOf(sys, "sealed"), host, "a host app shares the host's");
    },
  }));
}
