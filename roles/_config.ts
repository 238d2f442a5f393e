/**
 * A role's settings from four places, for every flag the command table
 * declares: the command line, then `ONEOFF_<FLAG>` variables, then the
 * JSON config file (`--config` or `ONEOFF_CONFIG`), then the default.
 * Secrets may come from files (`--join-token-file`), and `--print-config`
 * shows where each setting came from with secrets masked.
 * @module
 */
import { commandSpec, type FlagSpec } from "../cli/_commands.ts";
import { resolve } from "node:path";
import { flags } from "./_flags.ts";

/** A bad config file, variable or secret file: exit 2, nothing started. */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** Where a setting came from. */
export type Source =
  | { kind: "flag" }
  | { kind: "env"; name: string }
  | { kind: "file"; path: string }
  | { kind: "default" };

/** One resolved setting; `secretFile` when a secret was read from a file. */
export interface Setting {
  value: string | boolean | undefined;
  source: Source;
  secretFile?: string;
}

/** A role's resolved settings. */
export interface RoleConfig {
  /** Values by flag name, as `flags()` returns them (secrets read from their files). */
  values: Record<string, string | undefined>;
  settings: Map<string, Setting>;
  /** Things to tell the operator, e.g. a secret given on the command line. */
  warnings: string[];
  /** The config file read, if any. */
  configFile?: { path: string; source: Source };
}

/** `--join-token` → `ONEOFF_JOIN_TOKEN`. */
export function envName(flag: string): string {
  return `ONEOFF_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/** Reads the role's settings from `args`, `env` and the config file. */
export async function roleConfig(
  role: "server" | "agent",
  args: string[],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<RoleConfig> {
  const specs = (commandSpec(role)?.flags ?? []).filter((f) => !f.commandLineOnly);
  const given = flags(role, args);
  const configPath = given.config ?? env.ONEOFF_CONFIG;
  const file = configPath ? await readConfigFile(configPath, specs) : {};
  const settings = new Map<string, Setting>();
  for (const spec of specs) {
    settings.set(spec.name, pick(spec, given[spec.name], env, file, configPath ?? ""));
  }
  const warnings: string[] = [];
  for (const spec of specs.filter((f) => f.secret)) {
    await resolveSecret(spec.name, settings, env, warnings);
  }
  const values: Record<string, string | undefined> = {};
  for (const [name, v] of Object.entries(given)) values[name] = v;
  for (const [name, s] of settings) {
    if (s.value !== undefined) values[name] = s.value as string;
  }
  const configFile = configPath
    ? {
      path: configPath,
      source: given.config
        ? { kind: "flag" as const }
        : { kind: "env" as const, name: "ONEOFF_CONFIG" },
    }
    : undefined;
  return { values, settings, warnings, ...(configFile ? { configFile } : {}) };
}

function pick(
  spec: FlagSpec,
  flag: string | undefined,
  env: Record<string, string | undefined>,
  file: Record<string, string | boolean>,
  configPath: string,
): Setting {
  if (flag !== undefined) return { value: flag, source: { kind: "flag" } };
  const name = envName(spec.name);
  const fromEnv = env[name];
  if (fromEnv !== undefined && fromEnv !== "") {
    return {
      value: spec.value ? fromEnv : envBoolean(name, fromEnv),
      source: { kind: "env", name },
    };
  }
  if (spec.name in file) {
    return { value: file[spec.name], source: { kind: "file", path: configPath } };
  }
  return { value: undefined, source: { kind: "default" } };
}

function envBoolean(name: string, value: string): boolean | undefined {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return undefined;
  throw new ConfigError(`${name}="${value}": give true or false`);
}

/** Parses the JSON config file: keys are flag names, values strings, numbers or booleans. */
async function readConfigFile(
  path: string,
  specs: FlagSpec[],
): Promise<Record<string, string | boolean>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`config ${path}: cannot read it (${(e as Error).message})`, { cause: e });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config ${path}: not JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigError(
      `config ${path}: give a JSON object of settings, keys named as the flags`,
    );
  }
  const out: Record<string, string | boolean> = {};
  for (const [key, value] of Object.entries(data)) {
    const spec = specs.find((f) => f.name === key);
    if (!spec) throw new ConfigError(`config ${path}: unknown key "${key}"`);
    if (spec.value && (typeof value === "string" || typeof value === "number")) {
      out[key] = String(value);
    } else if (!spec.value && typeof value === "boolean") {
      if (value) out[key] = true;
    } else {
      const want = spec.value ? "a string" : "true or false";
      throw new ConfigError(
        `config ${path}: key "${key}" must be ${want}, not ${JSON.stringify(value)}`,
      );
    }
  }
  return out;
}

const RANK = { flag: 3, env: 2, file: 1, default: 0 } as const;

/**
 * `NAME` and its `NAME-file` twin: the one from the stronger source wins;
 * both from the same source is a mistake. A secret file must be private.
 */
async function resolveSecret(
  name: string,
  settings: Map<string, Setting>,
  env: Record<string, string | undefined>,
  warnings: string[],
): Promise<void> {
  const direct = settings.get(name)!;
  const twin = settings.get(`${name}-file`);
  const path = typeof twin?.value === "string" ? twin.value : undefined;
  const [a, b] = [RANK[direct.source.kind], RANK[twin?.source.kind ?? "default"]];
  if (path !== undefined && direct.value !== undefined && a === b) {
    throw new ConfigError(
      `Give --${name} or --${name}-file, not both (${describe(direct.source)})`,
    );
  }
  if (path === undefined || (direct.value !== undefined && a > b)) {
    if (direct.source.kind === "flag") {
      warnings.push(
        `--${name} on the command line is visible to every local user (ps, /proc): use --${name}-file or ${
          envName(name)
        }`,
      );
    }
    return;
  }
  const value = await readSecretFile(path, env.CREDENTIALS_DIRECTORY, `--${name}-file`);
  settings.set(name, { value, source: twin!.source, secretFile: path });
}

/**
 * Reads a secret from a file: one trailing newline trimmed; refused when
 * group or others may read it, unless it is a systemd credential (the
 * service manager owns those and makes them 0400 for the service alone).
 */
export async function readSecretFile(
  path: string,
  credentialsDirectory: string | undefined,
  flag: string,
): Promise<string> {
  let info: Deno.FileInfo;
  let text: string;
  try {
    info = await Deno.stat(path);
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`${flag} ${path}: cannot read it (${(e as Error).message})`, {
      cause: e,
    });
  }
  const credential = credentialsDirectory !== undefined &&
    resolve(path).startsWith(resolve(credentialsDirectory) + "/");
  const mode = info.mode ?? 0;
  if (!credential && (mode & 0o077) !== 0) {
    throw new ConfigError(
      `${flag} ${path}: must not be readable by others (mode ${
        (mode & 0o777).toString(8).padStart(3, "0")
      }; chmod 600 it)`,
    );
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new ConfigError(`${flag} ${path}: the file is empty`);
  return value;
}

function describe(source: Source): string {
  switch (source.kind) {
    case "flag":
      return "command line";
    case "env":
      return `environment ${source.name}`;
    case "file":
      return `config ${source.path}`;
    case "default":
      return "default";
  }
}

/**
 * `--print-config`: each setting with its value and where it came from;
 * secrets masked. Defaults are shown as the help shows them.
 */
export function printableConfig(
  role: "server" | "agent",
  config: RoleConfig,
): Record<string, { value: string | boolean | null; source: string }> {
  const out: Record<string, { value: string | boolean | null; source: string }> = {};
  if (config.configFile) {
    out.config = { value: config.configFile.path, source: describe(config.configFile.source) };
  }
  for (const spec of commandSpec(role)?.flags ?? []) {
    const s = config.settings.get(spec.name);
    if (!s) continue;
    let value: string | boolean | null = s.value ?? spec.default ?? null;
    let source = describe(s.source);
    if (spec.secret && s.value !== undefined) {
      value = "***";
      if (s.secretFile) source = `file ${s.secretFile} (${source})`;
    }
    out[spec.name] = { value, source };
  }
  return out;
}
