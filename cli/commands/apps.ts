/**
 * `apps`, `env` and `deploy`.
 * @module
 */
import type {
  AppReply,
  AppSettingsBody,
  AppsReply,
  CreateAppBody,
  DeployReply,
  EnvChangeBody,
  EnvReply,
} from "../../protocol/mod.ts";
import { parse, type Parsed } from "../_args.ts";
import { appName, CliError, err, out, parseDuration, table, UsageError } from "../_io.ts";
import { durationFlag } from "../../util/format.ts";
import { labelsText, NETWORK_MODES, type NetworkMode, parseLabels } from "../../protocol/mod.ts";
import { Client } from "../client.ts";

/** Reads one line typed on the terminal, after a question on stderr. */
async function ask(question: string): Promise<string> {
  err(question);
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  while (true) {
    const n = await Deno.stdin.read(buf);
    if (n === null || buf[0] === 0x0a) break;
    bytes.push(buf[0]!);
  }
  return new TextDecoder().decode(new Uint8Array(bytes)).trim();
}

/** Destroying needs the name twice: `--confirm NAME`, or typed at a prompt. */
async function confirmDestroy(name: string, confirm: string | undefined): Promise<void> {
  if (confirm === undefined) {
    if (!Deno.stdin.isTerminal()) {
      throw new UsageError(
        `Destroying "${name}" deletes its env, releases, runs and logs: pass --confirm ${name}`,
      );
    }
    confirm = await ask(
      `Destroying "${name}" deletes its env, releases, runs and logs. Type its name to confirm: `,
    );
  }
  if (confirm !== name) {
    throw new CliError(`Not destroyed: "${confirm}" is not "${name}"`);
  }
}

/** The `apps set` flags as a request body; a usage error for a value that cannot be one. */
export function settingsBody(parsed: Parsed): AppSettingsBody {
  const body: AppSettingsBody = {};
  const duration = (flag: string): number | null | undefined => {
    const text = parsed.string(flag);
    if (text === undefined) return undefined;
    if (text === "default") return null;
    const ms = parseDuration(text);
    if (ms < 1000) throw new UsageError(`Invalid --${flag} "${text}": give at least 1s`);
    return ms;
  };
  const idle = duration("idle-timeout");
  if (idle !== undefined) body.idle_timeout_ms = idle;
  const grace = duration("reattach-grace");
  if (grace !== undefined) body.reattach_grace_ms = grace;
  const network = parsed.string("network");
  if (network !== undefined) {
    if (!(NETWORK_MODES as readonly string[]).includes(network)) {
      throw new UsageError(`Invalid --network "${network}": use ${NETWORK_MODES.join(", ")}`);
    }
    body.network = network as NetworkMode;
  }
  const ports = parsed.string("host-ports");
  if (ports !== undefined) {
    body.host_ports = ports === "none" || ports === "" ? [] : ports.split(",").map((p) => {
      const port = Number(p.trim());
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new UsageError(
          `Invalid --host-ports "${ports}": give TCP ports, e.g. 5432,6379, or none`,
        );
      }
      return port;
    });
  }
  const labels = parsed.string("labels");
  if (labels !== undefined) {
    try {
      body.labels = parseLabels(labels);
    } catch (e) {
      throw new UsageError(`Invalid --labels "${labels}": ${(e as Error).message}`);
    }
  }
  if (parsed.flag("require-reason") && parsed.flag("no-require-reason")) {
    throw new UsageError("Give --require-reason or --no-require-reason, not both");
  }
  if (parsed.flag("require-reason")) body.require_reason = true;
  if (parsed.flag("no-require-reason")) body.require_reason = false;
  if (Object.keys(body).length === 0) {
    throw new UsageError(
      "apps set needs a setting: --idle-timeout, --reattach-grace, --network, --host-ports, " +
        "--labels or --require-reason",
    );
  }
  return body;
}

/** An app's settings, one per line, as `apps show` and `apps set` print them. */
function settingsText(app: AppReply["app"]): string {
  const s = app.settings;
  const dflt = (set: boolean) => set ? "" : " (default)";
  return [
    `Name:            ${app.name}`,
    `Release:         ${app.release === null ? "-" : `v${app.release}`}`,
    `Process types:   ${Object.keys(app.process_types).join(", ") || "-"}`,
    `Network:         ${s.network}`,
    `Host ports:      ${s.host_ports.length ? s.host_ports.join(",") : "none"}`,
    `Agent labels:    ${
      Object.keys(s.labels).length ? labelsText(s.labels) : "none (any approved agent)"
    }`,
    `Idle timeout:    ${durationFlag(s.idle_timeout_ms)}${dflt(s.idle_timeout_set)}, at most ${
      durationFlag(s.max_idle_timeout_ms)
    }`,
    `Reattach grace:  ${durationFlag(s.reattach_grace_ms)}${dflt(s.reattach_grace_set)}, at most ${
      durationFlag(s.max_reattach_grace_ms)
    }`,
    `Require reason:  ${s.require_reason ? "yes (oneoff run --reason)" : "no"}`,
    `Created:         ${app.created_at}`,
  ].join("\n") + "\n";
}

/** `oneoff apps create NAME | apps list | apps show NAME | apps set NAME ... | apps destroy NAME`. */
export async function apps(args: string[]): Promise<void> {
  const parsed = parse("apps", args);
  const values = { json: parsed.flag("json") };
  const [sub, name, ...rest] = parsed.positionals;
  if (rest.length > 0) throw new UsageError(`Unexpected argument "${rest[0]}"`);
  if (sub === "destroy" && name) await confirmDestroy(name, parsed.string("confirm"));
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
  if (sub === "show") {
    const { app } = await client.request<AppReply>("GET", `/apps/${encodeURIComponent(name)}`);
    out(values.json ? JSON.stringify(app, null, 2) + "\n" : settingsText(app));
  } else if (sub === "set") {
    const body = settingsBody(parsed);
    const { app } = await client.request<AppReply>(
      "PATCH",
      `/apps/${encodeURIComponent(name)}`,
      body,
    );
    out(values.json ? JSON.stringify(app, null, 2) + "\n" : settingsText(app));
  } else if (sub === "create") {
    await client.request("POST", "/apps", { name } satisfies CreateAppBody);
    out(`Created app "${name}". Next: oneoff deploy -a ${name} PATH\n`);
  } else if (sub === "destroy") {
    await client.request("DELETE", `/apps/${encodeURIComponent(name)}`);
    out(`Destroyed app "${name}"\n`);
  } else {
    throw new UsageError(`Unknown apps command "${sub}": use create, list, show, set or destroy`);
  }
}

/** `oneoff env -a APP | env get -a APP KEY | env set -a APP K=V... | env unset -a APP K...`. */
export async function env(args: string[]): Promise<void> {
  const parsed = parse("env", args);
  const values = { json: parsed.flag("json") };
  const app = appName(parsed.string("app"));
  const [sub, ...items] = parsed.positionals;
  const client = await Client.load();
  const path = `/apps/${encodeURIComponent(app)}/env`;
  if (sub === undefined) {
    const { env } = await client.request<EnvReply>("GET", path);
    if (values.json) return out(JSON.stringify(env, null, 2) + "\n");
    out(Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(""));
    return;
  }
  if (sub === "get") {
    const [key, ...extra] = items;
    if (!key || extra.length > 0) throw new UsageError("env get needs exactly one KEY");
    const { env } = await client.request<EnvReply>("GET", path);
    if (!Object.hasOwn(env, key)) throw new CliError(`"${key}" is not set on "${app}"`);
    out(`${env[key]}\n`);
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
    throw new UsageError(`Unknown env command "${sub}": use get, set or unset`);
  }
}

/** `oneoff deploy -a APP PATH`: a .tar.gz slug or a directory to pack. */
export async function deploy(args: string[]): Promise<void> {
  const parsed = parse("deploy", args);
  const app = appName(parsed.string("app"));
  const [path, ...rest] = parsed.positionals;
  if (!path || rest.length > 0) {
    throw new UsageError("deploy needs exactly one PATH (a .tar.gz slug or a directory)");
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new CliError(`Cannot deploy "${app}": "${path}" does not exist`);
  }
  const packed = info.isDirectory
    ? (await import("../pack.ts")).packDirectory(path)
    : (await Deno.open(path)).readable;
  const client = await Client.load();
  const progress = Deno.stderr.isTerminal() ? new Progress(info.isFile ? info.size : null) : null;
  const body = progress ? packed.pipeThrough(progress.stream()) : packed;
  const { release } = await client.request<DeployReply>(
    "POST",
    `/apps/${encodeURIComponent(app)}/deploy`,
    undefined,
    { body, headers: { "content-type": "application/gzip" } },
  ).finally(() => progress?.done());
  const types = Object.keys(release.process_types);
  out(
    `Deployed "${app}" v${release.version} (${release.size} bytes, sha256 ${
      release.sha256.slice(0, 12)
    })` +
      (types.length ? `, process types: ${types.join(", ")}` : "") + "\n",
  );
}

/** A human size: "512 B", "3.4 MiB". */
function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** The bytes sent so far of a deploy, redrawn on one stderr line (a terminal). */
class Progress {
  #sent = 0;
  #total: number | null;
  #shown = 0;
  #started = Date.now();

  constructor(total: number | null) {
    this.#total = total;
  }

  /** A pass-through stream that counts what goes through. */
  stream(): TransformStream<Uint8Array, Uint8Array> {
    return new TransformStream({
      transform: (chunk, controller) => {
        this.#sent += chunk.length;
        // Redrawn at most 10 times a second: a terminal is slow too.
        if (Date.now() - this.#shown >= 100) this.#draw();
        controller.enqueue(chunk);
      },
    });
  }

  #draw(): void {
    this.#shown = Date.now();
    const secs = Math.max(0.001, (this.#shown - this.#started) / 1000);
    const of = this.#total === null ? "" : ` of ${bytes(this.#total)}`;
    err(`\rUploading: ${bytes(this.#sent)}${of} (${bytes(Math.round(this.#sent / secs))}/s)\x1b[K`);
  }

  /** Ends the line, once the server has answered. */
  done(): void {
    this.#draw();
    err("\n");
  }
}
