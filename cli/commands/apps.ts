/**
 * `apps`, `env` and `deploy`.
 * @module
 */
import type {
  AppsReply,
  CreateAppBody,
  DeployReply,
  EnvChangeBody,
  EnvReply,
} from "../../protocol/mod.ts";
import { APP_OPTION, parse } from "../_args.ts";
import { appName, CliError, out, table, UsageError } from "../_io.ts";
import { Client } from "../client.ts";

/** `oneoff apps create NAME | apps list | apps destroy NAME`. */
export async function apps(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { json: { type: "boolean" } });
  const [sub, name, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`Unexpected argument "${rest[0]}"`);
  const client = await Client.load();
  if (sub === "list" || sub === undefined) {
    const { apps } = await client.request<AppsReply>("GET", "/apps");
    if (values.json) return out(JSON.stringify(apps, null, 2) + "\n");
    if (apps.length === 0) return out("No apps yet: create one with `oneoff apps create NAME`\n");
    out(table(
      ["NAME", "RELEASE", "PROCESS TYPES", "CREATED"],
      apps.map((
        a,
      ) => [
        a.name,
        a.release ? `v${a.release}` : "-",
        Object.keys(a.process_types).join(",") || "-",
        a.created_at,
      ]),
    ));
    return;
  }
  if (!name) throw new UsageError(`apps ${sub} needs an app name`);
  if (sub === "create") {
    await client.request("POST", "/apps", { name } satisfies CreateAppBody);
    out(`Created app "${name}". Next: oneoff deploy -a ${name} PATH\n`);
  } else if (sub === "destroy") {
    await client.request("DELETE", `/apps/${encodeURIComponent(name)}`);
    out(`Destroyed app "${name}"\n`);
  } else {
    throw new UsageError(`Unknown apps command "${sub}": use create, list or destroy`);
  }
}

/** `oneoff env -a APP | env set -a APP K=V... | env unset -a APP K...`. */
export async function env(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...APP_OPTION, json: { type: "boolean" } });
  const app = appName(values.app);
  const [sub, ...items] = positionals;
  const client = await Client.load();
  const path = `/apps/${encodeURIComponent(app)}/env`;
  if (sub === undefined) {
    const { env } = await client.request<EnvReply>("GET", path);
    if (values.json) return out(JSON.stringify(env, null, 2) + "\n");
    out(Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(""));
    return;
  }
  if (items.length === 0) {
    throw new UsageError(`env ${sub} needs at least one ${sub === "set" ? "KEY=VALUE" : "KEY"}`);
  }
  if (sub === "set") {
    const set: Record<string, string> = {};
    for (const item of items) {
      const eq = item.indexOf("=");
      if (eq <= 0) throw new UsageError(`Invalid "${item}": use KEY=VALUE`);
      set[item.slice(0, eq)] = item.slice(eq + 1);
    }
    await client.request("PATCH", path, { set } satisfies EnvChangeBody);
    out(`Set ${Object.keys(set).join(", ")} on "${app}"\n`);
  } else if (sub === "unset") {
    await client.request("PATCH", path, { unset: items } satisfies EnvChangeBody);
    out(`Unset ${items.join(", ")} on "${app}"\n`);
  } else {
    throw new UsageError(`Unknown env command "${sub}": use set or unset`);
  }
}

/** `oneoff deploy -a APP PATH`: a .tar.gz slug or a directory to pack. */
export async function deploy(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, APP_OPTION);
  const app = appName(values.app);
  const [path, ...rest] = positionals;
  if (!path || rest.length > 0) {
    throw new UsageError("deploy needs exactly one PATH (a .tar.gz slug or a directory)");
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new CliError(`Cannot deploy "${app}": "${path}" does not exist`);
  }
  const body = info.isDirectory
    ? (await import("../pack.ts")).packDirectory(path)
    : (await Deno.open(path)).readable;
  const client = await Client.load();
  const { release } = await client.request<DeployReply>(
    "POST",
    `/apps/${encodeURIComponent(app)}/deploy`,
    undefined,
    { body, headers: { "content-type": "application/gzip" } },
  );
  const types = Object.keys(release.process_types);
  out(
    `Deployed "${app}" v${release.version} (${release.size} bytes, sha256 ${
      release.sha256.slice(0, 12)
    })` +
      (types.length ? `, process types: ${types.join(", ")}` : "") + "\n",
  );
}
