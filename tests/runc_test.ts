import { deepEqual, equal, match } from "node:assert/strict";
import type { RunInfo } from "../protocol/mod.ts";
import { startSystem } from "./_system.ts";
import { needs } from "./_tools.ts";

Deno.test(needs(["root", "runc"], {
  name: "with --sandbox runc a detached and an attached run work end to end, exit codes included",
  async fn() {
    await using sys = await startSystem({ sandbox: "runc" });
    const agents = await sys.api<{ agents: { sandbox: string }[] }>("GET", "/agents");
    deepEqual(agents.agents.map((a) => a.sandbox), ["runc"]);

    const started = await sys.cli([
      "run",
      "-d",
      "-a",
      "demo",
      "--",
      "echo in-runc $CONTAINER; exit 3",
    ]);
    equal(started.code, 0, started.stderr);
    const { run } = await sys.api<{ run: RunInfo }>("GET", "/apps/demo/runs/one-off-1?wait=30");
    deepEqual([run.state, run.exit_code], ["exited", 3]);
    const logs = await sys.cli(["logs", "-a", "demo", "--filter", "one-off-1"]);
    match(logs.stdout, /in-runc one-off-1/);

    const attached = await sys.cli(
      ["run", "-a", "demo", "--no-tty", "--silent", "--", "tr a-z A-Z; id -u; exit 5"],
      { stdin: "through runc\n" },
    );
    equal(attached.code, 5, attached.stderr);
    equal(attached.stdout, "THROUGH RUNC\n65534\n");
  },
}));
