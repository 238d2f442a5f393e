/**
 * `oneoff artifacts list` and `oneoff artifacts get`: the files a run left
 * in `/tmp/downloads`. A download goes to a temp file beside its target,
 * hashed as it is written, and is renamed into place only when its sha256
 * is the one the server stored: a cut or corrupted download leaves nothing.
 * @module
 */
import { createHash } from "node:crypto";
import {
  ARTIFACT_SHA256_HEADER,
  type ArtifactInfo,
  artifactNameProblem,
  type ArtifactsReply,
  quoteName,
} from "../../protocol/mod.ts";
import { bytes } from "../../util/format.ts";
import { parse, type Parsed } from "../_args.ts";
import { appName, CliError, err, out, table, UsageError } from "../_io.ts";
import { Client } from "../client.ts";

/** `oneoff artifacts list -a APP one-off-N [--json]`, `oneoff artifacts get -a APP one-off-N [NAME...] [-o DIR] [--force]`. */
export async function artifacts(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === "list") return await list(parse("artifacts", rest));
  if (sub === "get") return await get(parse("artifacts", rest));
  throw new UsageError(
    sub === undefined ? "Which one? list or get" : `Unknown artifacts command "${sub}"`,
  );
}

function runPath(app: string, label: string): string {
  return `/apps/${encodeURIComponent(app)}/runs/${encodeURIComponent(label)}/artifacts`;
}

async function fetchList(parsed: Parsed): Promise<
  { client: Client; app: string; label: string; names: string[]; reply: ArtifactsReply }
> {
  const app = appName(parsed.string("app"));
  const [label, ...names] = parsed.positionals;
  if (!label) throw new UsageError("Which run? e.g. one-off-3");
  const client = await Client.load();
  const reply = await client.request<ArtifactsReply>("GET", runPath(app, label));
  return { client, app, label, names, reply };
}

async function list(parsed: Parsed): Promise<void> {
  const { reply, names } = await fetchList(parsed);
  if (names.length > 0) throw new UsageError(`Unexpected argument "${names[0]}"`);
  if (parsed.flag("json")) return out(JSON.stringify(reply.artifacts, null, 2) + "\n");
  if (reply.artifacts.length === 0) return out(`${reply.run} left no files in /tmp/downloads\n`);
  out(table(
    ["NAME", "SIZE", "SHA256 / REFUSED"],
    reply.artifacts.map((a) => [
      a.name,
      a.refused === null ? bytes(a.size) : "-",
      a.refused === null ? a.sha256 ?? "-" : `refused: ${a.refused}`,
    ]),
  ));
}

async function get(parsed: Parsed): Promise<void> {
  const { client, app, label, names, reply } = await fetchList(parsed);
  const dir = parsed.string("output") ?? ".";
  const force = parsed.flag("force");
  const kept = reply.artifacts.filter((a) => a.sha256 !== null);
  const wanted: ArtifactInfo[] = [];
  for (const name of names) {
    const found = kept.find((a) => a.name === name);
    if (!found) throw new CliError(`Cannot get ${quoteName(name)}: ${label} kept no such file`);
    wanted.push(found);
  }
  if (names.length === 0) wanted.push(...kept);
  if (wanted.length === 0) throw new CliError(`${label} kept no files`);
  await Deno.mkdir(dir, { recursive: true });
  for (const artifact of wanted) {
    // The server checked the name; a file is written nowhere but in `dir` all the same.
    const problem = artifactNameProblem(artifact.name);
    if (problem) throw new CliError(`Cannot write ${quoteName(artifact.name)}: ${problem}`);
    const target = `${dir}/${artifact.name}`;
    if (!force && await exists(target)) {
      throw new CliError(
        `Cannot write "${target}": it exists already, give --force to replace it`,
      );
    }
  }
  for (const artifact of wanted) {
    const target = `${dir}/${artifact.name}`;
    const res = await client.stream(
      `${runPath(app, label)}/${encodeURIComponent(artifact.name)}`,
    );
    await save(res, target, res.headers.get(ARTIFACT_SHA256_HEADER) ?? artifact.sha256!);
    err(`${target} (${bytes(artifact.size)}, sha256 ${artifact.sha256})\n`);
  }
}

/** Streams the body to a temp file beside `target`, checks its sha256, renames it into place. */
async function save(res: Response, target: string, sha256: string): Promise<void> {
  const slash = target.lastIndexOf("/");
  const temp = `${target.slice(0, slash)}/.${target.slice(slash + 1)}.${crypto.randomUUID()}.part`;
  const hash = createHash("sha256");
  const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
  try {
    const writer = file.writable.getWriter();
    for await (const chunk of res.body ?? []) {
      hash.update(chunk);
      await writer.write(chunk);
    }
    await writer.close();
    const got = hash.digest("hex");
    if (got !== sha256) {
      throw new CliError(`Cannot get "${target}": its bytes hash to ${got}, not ${sha256}`);
    }
    await Deno.rename(temp, target);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
