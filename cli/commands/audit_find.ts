/**
 * `audit list` and `audit search`: finding recorded sessions.
 * @module
 */
import {
  type AuditSearchBody,
  type AuditSearchReply,
  type AuditSessionInfo,
  type AuditSessionsReply,
  MAX_SESSIONS_PAGE,
} from "../../protocol/mod.ts";
import type { Parsed } from "../_args.ts";
import { age, appName, err, out, parseDuration, table, UsageError } from "../_io.ts";
import { Client } from "../client.ts";
import { bytes, durationFlag } from "../../util/format.ts";

function sinceMs(parsed: Parsed): number | undefined {
  const text = parsed.string("since");
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms <= 0) throw new UsageError(`Invalid --since "${text}": give e.g. 1h, 7d`);
  return ms;
}

function clip(text: string, max: number): string {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** `oneoff audit list -a APP [--user U] [--since D] [-n N] [--json]`: newest first. */
export async function auditList(parsed: Parsed): Promise<void> {
  if (parsed.positionals.length > 0) {
    throw new UsageError(`Unexpected argument "${parsed.positionals[0]}"`);
  }
  const app = appName(parsed.string("app"));
  const want = Number(parsed.string("limit") ?? 50);
  if (!Number.isInteger(want) || want <= 0) throw new UsageError("-n must be a positive integer");
  const query = new URLSearchParams();
  const since = sinceMs(parsed);
  if (since !== undefined) query.set("since_ms", String(since));
  const user = parsed.string("user");
  if (user) query.set("user", user);
  const client = await Client.load();
  const sessions: AuditSessionInfo[] = [];
  let more = false;
  // Pages of at most what the server gives at once, until -n are listed.
  for (let before: number | null = null; sessions.length < want;) {
    const page = new URLSearchParams(query);
    page.set("limit", String(Math.min(want - sessions.length, MAX_SESSIONS_PAGE)));
    if (before !== null) page.set("before", String(before));
    const reply = await client.request<AuditSessionsReply>(
      "GET",
      `/apps/${encodeURIComponent(app)}/audit/sessions?${page}`,
    );
    sessions.push(...reply.sessions);
    before = reply.next_before;
    more = before !== null;
    if (before === null) break;
  }
  if (parsed.flag("json")) return out(JSON.stringify(sessions, null, 2) + "\n");
  const range = `the last ${durationFlag(since ?? 7 * 86_400_000)}`;
  if (sessions.length === 0) {
    return out(`No recorded sessions of "${app}"${user ? ` by ${user}` : ""} in ${range}\n`);
  }
  out(table(
    ["NAME", "USER", "STARTED", "DURATION", "EXIT", "BYTES", "COMMAND", "REASON"],
    sessions.map((s) => [
      s.run,
      s.user,
      s.started_at.slice(0, 19).replace("T", " "),
      s.duration_ms === null ? `${s.state}` : age(s.duration_ms),
      s.exit_code === null ? "-" : String(s.exit_code),
      bytes(s.bytes),
      clip(s.command, 40),
      s.reason ? clip(s.reason, 50) : "-",
    ]),
  ));
  if (more) err(`oneoff: older sessions not listed: raise -n, or narrow --since\n`);
}

function offset(seconds: number): string {
  const m = Math.floor(seconds / 60);
  const s = (seconds - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

/** `oneoff audit search -a APP TEXT [--user U] [--since D] [--json]`. */
export async function auditSearch(parsed: Parsed): Promise<void> {
  const [text, ...extra] = parsed.positionals;
  if (text === undefined || extra.length > 0) {
    throw new UsageError("audit search needs exactly one TEXT (quote it when it has spaces)");
  }
  const app = appName(parsed.string("app"));
  const body: AuditSearchBody = { text };
  const since = sinceMs(parsed);
  if (since !== undefined) body.since_ms = since;
  const user = parsed.string("user");
  if (user) body.user = user;
  const client = await Client.load();
  // A POST body, not the URL: the text stays out of access logs.
  const reply = await client.request<AuditSearchReply>(
    "POST",
    `/apps/${encodeURIComponent(app)}/audit/search`,
    body,
  );
  if (parsed.flag("json")) {
    out(JSON.stringify(reply, null, 2) + "\n");
  } else {
    for (const { session: s, hits, more, problems } of reply.results) {
      const why = s.reason ? ` (reason: ${s.reason})` : "";
      out(`${s.run} by ${s.user} at ${s.started_at}: ${s.command}${why}\n`);
      for (const hit of hits) {
        out(`  +${offset(hit.t)} ${hit.stream === "input" ? "⟩" : " "} ${hit.line}\n`);
      }
      if (more) out(`  ...and more in this session (audit show -a ${app} ${s.run})\n`);
      for (const problem of problems) err(`oneoff: ${s.run}: ${problem}\n`);
    }
  }
  const hits = reply.results.reduce((n, r) => n + r.hits.length, 0);
  const range = `the last ${durationFlag(since ?? 7 * 86_400_000)}`;
  err(
    `${hits} hit${hits === 1 ? "" : "s"} in ${reply.results.length} of ${reply.searched} ` +
      `session${reply.searched === 1 ? "" : "s"} of ${range} (${reply.took_ms} ms)\n`,
  );
  if (reply.truncated) {
    err(
      "oneoff: more sessions than one search reads: the oldest were not searched (narrow --since)\n",
    );
  }
  if (reply.more_hits) {
    err("oneoff: the search stopped at its most hits: older sessions were not searched\n");
  }
}
