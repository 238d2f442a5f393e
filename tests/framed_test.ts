import { deepEqual, equal, match, ok } from "node:assert/strict";
import { startSystem } from "./_system.ts";

Deno.test("framed no-TTY: stdout and stderr reach their own fds, the exit code is the process's", async () => {
  await using sys = await startSystem();
  const cmd = "echo out; echo err >&2; exit 3";
  const silent = await sys.cli(["run", "-a", "demo", "--no-tty", "--silent", "--", cmd]);
  deepEqual([silent.code, silent.stdout, silent.stderr], [3, "out\n", "err\n"]);
  const loud = await sys.cli(["run", "-a", "demo", "--no-tty", "--", cmd]);
  equal(loud.code, 3);
  equal(loud.stdout, "out\n");
  match(loud.stderr, /^Running one-off-2 of "demo" on 127\.0\.0\.1:\d+\.\.\.\nerr\n$/);
  ok(true);
});
