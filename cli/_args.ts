/**
 * Option parsing for the CLI's commands from the command table, apart from
 * `_io.ts` so that `oneoff run`, which parses its own arguments, starts
 * without node:util.
 * @module
 */
import { parseArgs } from "node:util";
import { commandSpec } from "./_commands.ts";
import { UsageError } from "./_io.ts";

type Value = string | boolean | (string | boolean)[] | undefined;

/** A command's parsed flags and positional arguments. */
export class Parsed {
  readonly positionals: string[];
  readonly #values: Record<string, Value>;

  constructor(values: Record<string, Value>, positionals: string[]) {
    this.#values = values;
    this.positionals = positionals;
  }

  /** A flag with a value, or undefined. */
  string(name: string): string | undefined {
    const v = this.#values[name];
    return typeof v === "string" ? v : undefined;
  }

  /** A flag given several times. */
  list(name: string): string[] {
    const v = this.#values[name];
    return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  }

  /** A flag without a value. */
  flag(name: string): boolean {
    return this.#values[name] === true;
  }
}

/** Parses `args` with the flags the table declares for `command`; usage errors, not exceptions. */
export function parse(command: string, args: string[]): Parsed {
  const spec = commandSpec(command);
  if (!spec) throw new Error(`No command "${command}" in the table`);
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = { help: { type: "boolean", short: "h" } };
  for (const flag of spec.flags) {
    options[flag.name] = {
      type: flag.value ? "string" : "boolean",
      ...(flag.short ? { short: flag.short } : {}),
      ...(flag.multiple ? { multiple: true } : {}),
    };
  }
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return new Parsed(values, positionals);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message.split("\n")[0]! : String(e));
  }
}
