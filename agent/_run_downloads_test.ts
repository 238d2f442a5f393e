import { equal, match } from "node:assert/strict";
import { waitFor } from "../tests/_wait.ts";
import { FakeClock } from "../util/clock.ts";
import { DOWNLOADS_CHECK_MS, RunDownloads } from "./_run_downloads.ts";

Deno.test("a run stopped for the entries it left in /tmp/downloads is told that, not a byte count it never reached", async () => {
  const workDir = await Deno.makeTempDir({ prefix: "oneoff-downloads-" });
  try {
    const downloads = await RunDownloads.make(workDir, "run-1", 1024 * 1024);
    await Deno.mkdir(`${downloads.dir}/many`);
    for (let i = 0; i <= 10_000; i++) await Deno.writeTextFile(`${downloads.dir}/many/${i}`, "");
    const clock = new FakeClock();
    let reason = "";
    downloads.watch(clock, (why) => reason = why);
    await clock.advance(DOWNLOADS_CHECK_MS);
    await waitFor(() => reason !== "", { message: "the run to be stopped" });
    downloads.unwatch(clock);
    match(reason, /^Stopped: \/tmp\/downloads held more than 10000 files and directories/);
    equal(reason.includes("bytes"), false, reason);
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});
