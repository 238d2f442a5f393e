import { deepEqual, match, ok } from "node:assert/strict";
import { checksPass, formatChecks, runChecks } from "./check.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function agentCheck(args: string[]): Promise<{ code: number; stdout: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "agent", "--check", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}

Deno.test("oneoff agent --check passes on this host, one ok line per piece", async () => {
  const { code, stdout } = await agentCheck([]);
  deepEqual(code, 0, stdout);
  for (const piece of ["bubblewrap", "user namespaces", "overlay mounts", "open-file limit"]) {
    match(stdout, new RegExp(`^(ok|warning) +${piece}: `, "m"));
  }
  match(stdout, /^ok +bubblewrap: /m);
  match(stdout, /This host can run the bwrap sandbox/);
});

Deno.test("a missing bubblewrap is reported with what to install, and fails the check", async () => {
  const checks = await runChecks({ sandbox: "bwrap", maxRuns: 20, bwrap: "/nonexistent/bwrap" });
  ok(!checksPass(checks));
  match(formatChecks(checks), /^missing +bubblewrap: .*apt-get install bubblewrap$/m);
});

Deno.test("a missing runc is reported with what to install", async () => {
  const checks = await runChecks({
    sandbox: "runc",
    maxRuns: 20,
    runcPaths: ["/nonexistent/runc"],
  });
  ok(!checksPass(checks));
  match(formatChecks(checks), /^missing +runc: .*apt-get install runc$/m);
});

Deno.test("a low open-file limit is a warning that says how to raise it", async () => {
  const { code, stdout } = await agentCheck(["--max-runs", "1000000"]);
  deepEqual(code, 0, stdout);
  match(stdout, /^warning +open-file limit: .*(ulimit -n|LimitNOFILE)/m);
});
