import { deepEqual } from "node:assert/strict";

Deno.test("an agent started with a low soft open-file limit raises it to the hard limit", async () => {
  const module = new URL("./_fd_limit.ts", import.meta.url).href;
  const code = `const { raiseFileLimit } = await import(${JSON.stringify(module)});
    const got = await raiseFileLimit();
    const soft = (await Deno.readTextFile("/proc/self/limits")).match(/Max open files\\s+(\\d+)/)[1];
    console.log(got, soft);`;
  const out = await new Deno.Command("prlimit", {
    args: ["--nofile=256:4096", Deno.execPath(), "eval", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  deepEqual(
    new TextDecoder().decode(out.stdout).trim(),
    "4096 4096",
    new TextDecoder().decode(out.stderr),
  );
});
