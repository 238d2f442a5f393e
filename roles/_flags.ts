/**
 * What the long-running roles share: flag parsing and waiting for a signal.
 * @module
 */
import { isSandboxKind, SANDBOX_KINDS, type SandboxKind } from "../protocol/mod.ts";
import { parseArgs } from "node:util";
import { commandSpec } from "../cli/_commands.ts";
import { UsageError } from "../cli/_io.ts";
import { errorMessage } from "../util/log.ts";

/** Parses a role's flags as the command table declares them; refusals are usage errors. */
export function flags(role: "server" | "agent" | "dev", args: string[]) {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const flag of commandSpec(role)?.flags ?? []) {
    options[flag.name] = { type: flag.value ? "string" : "boolean" };
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<
      string,
      string | undefined
    >;
  } catch (e) {
    throw new UsageError(errorMessage(e).split("\n")[0]!);
  }
}

/** `--sandbox`, bwrap by default. */
export function sandboxKind(value: string | undefined): SandboxKind {
  if (value === undefined) return SANDBOX_KINDS[0];
  if (isSandboxKind(value)) return value;
  throw new UsageError(`Unknown sandbox "${value}": use ${SANDBOX_KINDS.join(" or ")}`);
}

/** Reads `--tls-cert` and `--tls-key`, both or neither. */
export async function readTls(cert?: string, key?: string) {
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new UsageError("Give both --tls-cert and --tls-key");
  return { cert: await Deno.readTextFile(cert), key: await Deno.readTextFile(key) };
}

/** Resolves on SIGINT or SIGTERM. */
export function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
  });
}

const UNITS: Record<string, number> = {
  "": 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

/** A size flag (`--spool-max-bytes`, `--log-quota-per-run`): bytes, or with a unit (`512MiB`, `2G`, `256 MiB`). */
export function parseBytes(flag: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = UNITS[match?.[2]?.toLowerCase() ?? "x"];
  const bytes = match && unit ? Math.floor(Number(match[1]) * unit) : NaN;
  if (!Number.isFinite(bytes) || bytes < 1) {
    throw new UsageError(`Invalid ${flag} "${value}": give bytes, e.g. 1073741824 or 1GiB`);
  }
  return bytes;
}
