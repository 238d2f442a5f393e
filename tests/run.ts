/**
 * `deno task test`: runs `deno test -A --parallel` with the given arguments,
 * then says loudly which tests were skipped for want of what (see
 * `_tools.ts`) and the one command that installs it all. Exits with deno
 * test's status; in CI (`CI=true`, or `ONEOFF_REQUIRE_ALL_TOOLS=1`) a skipped
 * test fails the run, and the lock file is frozen.
 * @module
 */
import { type Need, REQUIREMENTS, SKIP_LOG_ENV, type SkipRecord } from "./_tools.ts";

const SHOWN_PER_NEED = 6;

function flag(name: string): boolean {
  return ["1", "true"].includes((Deno.env.get(name) ?? "").toLowerCase());
}

function summary(skips: SkipRecord[]): string[] {
  // In the order REQUIREMENTS lists them, whatever order the test workers wrote in.
  const byNeed = new Map<Need, string[]>();
  for (const need of Object.keys(REQUIREMENTS) as Need[]) {
    const tests = skips.filter((skip) => skip.missing.includes(need)).map((skip) => skip.test);
    if (tests.length > 0) byNeed.set(need, tests.sort());
  }
  const lines = [
    "",
    `!!! ${skips.length} test${skips.length === 1 ? "" : "s"} SKIPPED: this machine lacks ${
      [...byNeed.keys()].join(", ")
    } !!!`,
  ];
  for (const [need, tests] of byNeed) {
    const { package: pkg, hint } = REQUIREMENTS[need];
    lines.push(
      `  ${need}${pkg ? ` (${pkg})` : ""}: ${tests.length} skipped${hint ? `; ${hint}` : ""}`,
    );
    for (const test of tests.slice(0, SHOWN_PER_NEED)) lines.push(`      ${test}`);
    if (tests.length > SHOWN_PER_NEED) {
      lines.push(`      ... and ${tests.length - SHOWN_PER_NEED} more`);
    }
  }
  const packages = [...byNeed.keys()].flatMap((need) => REQUIREMENTS[need].package ?? []);
  if (packages.length > 0) {
    const sudo = Deno.uid() === 0 ? "" : "sudo ";
    lines.push(`Install them all: ${sudo}apt-get install -y ${packages.join(" ")}`);
  }
  return lines;
}

/** Deno's `--filter`: a substring of the name, or a `/regexp/`. */
function filtered(args: string[]): (name: string) => boolean {
  const at = args.findIndex((arg) => arg === "--filter" || arg.startsWith("--filter="));
  if (at === -1) return () => true;
  const value = args[at]!.startsWith("--filter=") ? args[at]!.slice(9) : args[at + 1] ?? "";
  const regexp = /^\/(.*)\/$/.exec(value);
  return regexp ? (name) => new RegExp(regexp[1]!).test(name) : (name) => name.includes(value);
}

const strict = flag("CI") || flag("ONEOFF_REQUIRE_ALL_TOOLS");
const log = await Deno.makeTempFile({ prefix: "oneoff-test-skips-" });
const selected = filtered(Deno.args);
let code: number;
try {
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--parallel", ...(strict ? ["--frozen"] : []), ...Deno.args],
    env: { [SKIP_LOG_ENV]: log },
    stdin: "inherit",
  }).spawn().status;
  code = status.code;
  const skips = (await Deno.readTextFile(log)).split("\n").filter((line) => line !== "")
    .map((line) => JSON.parse(line) as SkipRecord).filter((skip) => selected(skip.test));
  if (skips.length > 0) {
    for (const line of summary(skips)) console.log(line);
    if (strict) {
      console.log("In CI nothing may be skipped for a missing tool: failing the run.");
      if (code === 0) code = 1;
    } else {
      console.log("In CI (CI=true) these skips fail the run; .ci/run installs everything.");
    }
  }
} finally {
  await Deno.remove(log).catch(() => {});
}
Deno.exit(code);
