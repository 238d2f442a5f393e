/**
 * Option parsing for the CLI's commands, apart from `_io.ts` so that
 * `oneoff run`, which parses its own arguments, starts without node:util.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./_io.ts";

/** Options every app-scoped command shares. */
export const APP_OPTION = { app: { type: "string", short: "a" } } as const;

/** parseArgs with usage errors instead of exceptions. */
export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message.split("\n")[0]! : String(e));
  }
}
