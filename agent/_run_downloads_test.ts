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
    match(
      reason,
      /^Stopped: \/tmp\/downloads held more than 10000 files and directories, or a tree/,
    );
    equal(reason.includes("bytes"), false, reason);
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});

Deno.test("a run that hides bytes in a tree too deep to measure is stopped all the same", async () => {
  const workDir = await Deno.makeTempDir({ prefix: "oneoff-downloads-" });
  try {
    const downloads = await RunDownloads.make(workDir, "run-1", 1024 * 1024);
    // Past PATH_MAX (4096 bytes), where lstat fails: its bytes were never counted.
    const made = await new Deno.Command("bash", {
      args: [
        "-c",
        'p=$(printf "a/%.0s" $(seq 100)); for i in $(seq 21); do mkdir -p $p && cd -P $p || exit 1; done; head -c 3000000 /dev/zero > big',
      ],
      cwd: downloads.dir,
    }).output();
    equal(made.success, true, new TextDecoder().decode(made.stderr));
    const clock = new FakeClock();
    let reason = "";
    downloads.watch(clock, (why) => reason = why);
    await clock.advance(DOWNLOADS_CHECK_MS);
    await waitFor(() => reason !== "", { message: "the run to be stopped" });
    downloads.unwatch(clock);
    match(reason, /or a tree it cannot measure/);
  } finally {
    await new Deno.Command("rm", { args: ["-rf", workDir] }).output();
  }
});
