/**
 * Test support: the README's shell examples, run as written, so that they
 * stay runnable.
 * @module
 */

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/**
 * The lines of the README's first `sh` block containing `last`, up to and
 * including that line, comments and blank lines left out.
 */
export async function readmeLines(last: string): Promise<string[]> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const block = blocks.find((text) => text.includes(last));
  if (block === undefined) throw new Error(`The README has no sh block with "${last}"`);
  const lines = block.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("#"));
  return lines.slice(0, lines.findIndex((line) => line.includes(last)) + 1);
}

/** What a script of README lines printed. */
export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `lines` in bash (`-euo pipefail`) with `oneoff` standing for this checkout's CLI. */
export async function runLines(
  lines: string[],
  env: Record<string, string>,
): Promise<ScriptResult> {
  const oneoff = `oneoff() { "${Deno.execPath()}" run -A --quiet "${MAIN}" "$@"; }`;
  const out = await new Deno.Command("bash", {
    args: ["-euo", "pipefail", "-c", [oneoff, ...lines].join("\n")],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}
