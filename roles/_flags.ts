/**
 * What the long-running roles share: flag parsing and waiting for a signal.
 * @module
 */
import { isSandboxKind, SANDBOX_KINDS, type SandboxKind } from "../protocol/mod.ts";
import { parseArgs } from "node:util";
import { USAGE } from "../cli/mod.ts";
import { errorMessage } from "../util/log.ts";

/** Parses a role's flags; errors carry the usage line. */
export function flags(
  role: string,
  args: string[],
  options: Record<string, { type: "string" | "boolean" }>,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<
      string,
      string | undefined
    >;
  } catch (e) {
    throw new Error(`${errorMessage(e).split("\n")[0]}\nUsage: ${USAGE[role]}`);
  }
}

/** `--sandbox`, bwrap by default. */
export function sandboxKind(value: string | undefined): SandboxKind {
  if (value === undefined) return SANDBOX_KINDS[0];
  if (isSandboxKind(value)) return value;
  throw new Error(`Unknown sandbox "${value}": use ${SANDBOX_KINDS.join(" or ")}`);
}

/** Reads `--tls-cert` and `--tls-key`, both or neither. */
export async function readTls(cert?: string, key?: string) {
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new Error("Give both --tls-cert and --tls-key");
  return { cert: await Deno.readTextFile(cert), key: await Deno.readTextFile(key) };
}

/** Resolves on SIGINT or SIGTERM. */
export function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
  });
}
