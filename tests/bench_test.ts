import { equal, match } from "node:assert/strict";
import { needs } from "./_tools.ts";

const MAIN = new URL("../bench/main.ts", import.meta.url).pathname;

// The suite must keep running (CI has no other way to notice it rotting); its
// figures on a busy CI machine mean nothing, so none is asserted.
Deno.test(needs(["nc", "script", "postgres"], {
  name: "deno task bench --quick runs every case and prints the table",
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "--quick"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    equal(out.code, 0, `bench --quick failed:\n${stderr}\n${stdout.slice(-3000)}`);
    match(stdout, /^\| benchmark \| ours \| spread \| baseline \| ratio \| target \|$/m);
    const names = [
      "whole CLI",
      "PTY stream",
      "lines (SQLite)",
      "logs -n 1000",
      "new 8 MiB",
      "cold download via another server",
      "watch:",
    ];
    for (const name of names) {
      match(stdout, new RegExp(`^\\| [^|]*${name.replace(/[()]/g, "\\$&")}`, "m"));
    }
  },
}));
