import { equal, match, ok } from "node:assert/strict";
import { COMMANDS } from "./_commands.ts";
import { commandHelp, overview, usageHint } from "./_help.ts";

Deno.test("every command in the table has a summary, a usage of its own and unique flags", () => {
  equal(new Set(COMMANDS.map((c) => c.name)).size, COMMANDS.length);
  for (const c of COMMANDS) {
    ok(c.summary, c.name);
    ok(c.usage.length > 0, c.name);
    for (const u of c.usage) ok(u.startsWith(`${c.name}`), `${c.name}: ${u}`);
    const longs = c.flags.map((f) => f.name);
    const shorts = c.flags.flatMap((f) => f.short ? [f.short] : []);
    equal(new Set([...longs, "help"]).size, longs.length + 1, `${c.name} flags`);
    equal(new Set([...shorts, "h"]).size, shorts.length + 1, `${c.name} short flags`);
    for (const f of c.flags) ok(f.description, `${c.name} --${f.name}`);
  }
});

Deno.test("a command's help explains each shown flag; the overview lists every command", () => {
  const run = COMMANDS.find((c) => c.name === "run")!;
  const help = commandHelp(run);
  for (const f of run.flags) {
    equal(help.includes(`--${f.name}`), !f.hidden, `--${f.name}`);
  }
  match(help, /^ {2}-h, --help +Show this help$/m);
  const all = overview();
  for (const c of COMMANDS) {
    match(all, new RegExp(`^ {2}${c.name} +${c.summary.slice(0, 10)}`, "m"));
  }
  equal(
    usageHint(COMMANDS.find((c) => c.name === "stop")!),
    'Usage: oneoff stop -a APP one-off-N\nRun "oneoff help stop" for more\n',
  );
});
