/**
 * `audit show`, `audit export` and `audit rotate-key` (`audit list` and
 * `audit search` are in `audit_find.ts`).
 * @module
 */
import type { AuditReply, RotateKeyReply } from "../../protocol/mod.ts";
import { parse } from "../_args.ts";
import { appName, CliError, err, out, UsageError } from "../_io.ts";
import { Client } from "../client.ts";
import { auditList, auditSearch } from "./audit_find.ts";

/**
 * `oneoff audit list` and `audit search` (see `audit_find.ts`),
 * `oneoff audit show -a APP one-off-N [--format text|json|cast]` (a transcript by default),
 * `oneoff audit export -a APP one-off-N` (asciicast v2 on stdout) and
 * `oneoff audit rotate-key` (admins). Problems with a recording go to stderr,
 * one line each, after whatever could be read; the command then fails.
 */
export async function audit(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list":
      return await auditList(parse("audit", rest));
    case "search":
      return await auditSearch(parse("audit", rest));
    case "show":
    case "export":
      return await display(sub, rest);
    case "rotate-key": {
      const { positionals } = parse("audit", rest);
      if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
      const client = await Client.load();
      const { key } = await client.request<RotateKeyReply>("POST", "/audit/rotate-key");
      out(
        `New audit key "${key}" is current; older keys stay in the key file for older recordings\n`,
      );
      return;
    }
    default:
      throw new UsageError(
        sub === undefined
          ? "Which one? list, search, show, export or rotate-key"
          : `Unknown audit command "${sub}"`,
      );
  }
}

async function display(sub: "show" | "export", args: string[]): Promise<void> {
  const parsed = parse("audit", args);
  const { positionals } = parsed;
  const format = parsed.string("format") ?? (parsed.flag("json") ? "json" : undefined);
  if (format !== undefined && !["text", "json", "cast"].includes(format)) {
    throw new UsageError(`Invalid --format "${format}": use text, json or cast`);
  }
  if (sub === "export" && format !== undefined && format !== "cast") {
    throw new UsageError("audit export writes asciicast: --format and --json are for show");
  }
  const app = appName(parsed.string("app"));
  const [label, ...extra] = positionals;
  if (!label || extra.length > 0) {
    throw new UsageError(`audit ${sub} needs exactly one run, e.g. one-off-3`);
  }
  const client = await Client.load();
  const base = `/apps/${encodeURIComponent(app)}/runs/${encodeURIComponent(label)}`;
  let problems: string[];
  if (format === "json") {
    const readout = await client.request<AuditReply>("GET", `${base}/audit?format=json`);
    out(JSON.stringify(readout, null, 2) + "\n");
    problems = readout.problems;
  } else {
    // A recording may be larger than memory: written out as it comes.
    const cast = sub === "export" || format === "cast";
    const res = await client.stream(`${base}/${cast ? "audit.cast" : "audit.txt"}`);
    problems = parseProblems(res.headers.get("x-oneoff-audit-problems"));
    for await (const piece of res.body ?? []) writeAll(piece);
  }
  if (problems.length === 0) return;
  for (const problem of problems) err(`${problem}\n`);
  const count = problems.length === 1 ? "a problem" : `${problems.length} problems`;
  throw new CliError(`The recording of ${label} has ${count} (listed above)`);
}

function parseProblems(header: string | null): string[] {
  try {
    const list: unknown = JSON.parse(decodeURIComponent(header ?? "[]"));
    return Array.isArray(list) ? list.map(String) : [];
  } catch {
    return ["The server sent its list of problems in a form this command cannot read"];
  }
}

function writeAll(bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
}
