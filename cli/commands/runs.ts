/**
 * `ps`, `stop`, `logs` and `timeline`.
 * @module
 */
import {
  eventText,
  type LogLine,
  type LogsReply,
  type QueuedReason,
  type RunInfo,
  type RunsReply,
  type TimelineReply,
} from "../../protocol/mod.ts";
import { parse } from "../_args.ts";
import { age, appName, err, out, table, UsageError } from "../_io.ts";
import { Client } from "../client.ts";
import { bytes, durationFlag } from "../../util/format.ts";

function appPath(app: string, rest: string): string {
  return `/apps/${encodeURIComponent(app)}${rest}`;
}

/** One line of a run's duration or age for `ps`. */
function runAge(run: RunInfo): string {
  const start = Date.parse(run.started_at ?? run.created_at);
  const end = run.ended_at ? Date.parse(run.ended_at) : Date.now();
  return age(end - start);
}

const QUEUED_BECAUSE: Record<QueuedReason, string> = {
  app_limit: "the app is at its limit of one-offs",
  no_capacity: "no agent has room",
};

/** The last column of `ps`: the exit code, or why the run is where it is. */
function outcome(run: RunInfo): string {
  if (run.exit_code !== null) return String(run.exit_code);
  if (run.state === "pending" && run.queue_position) {
    const why = run.queued_reason ? `: ${QUEUED_BECAUSE[run.queued_reason]}` : "";
    return `queued #${run.queue_position}${why}`;
  }
  return run.reason ? run.reason.slice(0, 40) : "-";
}

/** The FILES column: what the run left in /tmp/downloads, e.g. `2 (1.5 MiB), 1 refused`. */
function artifactsColumn(run: RunInfo): string {
  const a = run.artifacts;
  if (!a) return "-";
  const kept = `${a.files} (${bytes(a.bytes)})`;
  return a.refused > 0 ? `${kept}, ${a.refused} refused` : kept;
}

function clip(text: string, max: number): string {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** `oneoff ps -a APP [--json] [--all]`. */
export async function ps(args: string[]): Promise<void> {
  const parsed = parse("ps", args);
  const { positionals } = parsed;
  const values = { json: parsed.flag("json") };
  if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
  const app = appName(parsed.string("app"));
  const limit = Number(parsed.string("limit") ?? 20);
  if (!Number.isInteger(limit) || limit <= 0) throw new UsageError("-n must be a positive integer");
  const client = await Client.load();
  const { runs }: { runs: RunInfo[] } = await client.request<RunsReply>(
    "GET",
    appPath(app, `/runs?limit=${limit}`),
  );
  if (values.json) return out(JSON.stringify(runs, null, 2) + "\n");
  if (runs.length === 0) return out(`No one-offs for "${app}" yet\n`);
  // The REASON column only when a run gave one (`run --reason`), FILES when one left artifacts.
  const reasons = runs.some((r) => r.purpose);
  const files = runs.some((r) => r.artifacts);
  out(table(
    ["NAME", "STATE", "COMMAND", "SIZE", "AGENT", "IDLE", "AGE", "EXIT/WHY"]
      .concat(files ? ["FILES"] : [], reasons ? ["REASON"] : []),
    runs.map((r) =>
      [
        r.label,
        r.state,
        clip(r.command, 40),
        r.size,
        r.agent ?? "-",
        // The idle timeout an attached run got from its app; detached runs have none.
        r.idle_timeout_ms ? durationFlag(r.idle_timeout_ms) : "-",
        runAge(r),
        outcome(r),
      ].concat(
        files ? [artifactsColumn(r)] : [],
        reasons ? [r.purpose ? clip(r.purpose, 40) : "-"] : [],
      )
    ),
  ));
}

/** `oneoff stop -a APP one-off-N`. */
export async function stop(args: string[]): Promise<void> {
  const parsed = parse("stop", args);
  const app = appName(parsed.string("app"));
  const [label, ...rest] = parsed.positionals;
  if (!label || rest.length > 0) throw new UsageError("stop needs exactly one run, e.g. one-off-3");
  const client = await Client.load();
  await client.request("POST", appPath(app, `/runs/${encodeURIComponent(label)}/stop`));
  out(`Stopping ${label} of "${app}"\n`);
}

/** The most lines a server gives in one reply. */
const PAGE = 10_000;

/**
 * The last `n` lines, oldest first, paging backwards with `before` when `n`
 * is more than one reply holds. A server that cannot page says so, not in silence.
 */
async function lastLines(
  client: Client,
  path: string,
  n: number,
  filter: string,
): Promise<{ lines: LogLine[] }> {
  const pages: LogLine[][] = [];
  let have = 0;
  let cursor = "";
  while (true) {
    const want = Math.min(n - have, PAGE);
    const page = await client.request<LogsReply>("GET", `${path}?n=${want}${cursor}${filter}`);
    pages.unshift(page.lines);
    have += page.lines.length;
    if (have >= n || page.lines.length === 0) break;
    if (page.more === undefined) {
      // An older server: one reply, at most 10,000 lines, and no way further back.
      if (page.lines.length < n) {
        err(
          `oneoff: the server gave the last ${page.lines.length} lines only; it cannot page further back\n`,
        );
      }
      break;
    }
    if (!page.more || page.before == null) break;
    cursor = `&before=${page.before}`;
  }
  return { lines: pages.flat() };
}

function printLines(lines: LogLine[], json: boolean | undefined): void {
  out(
    lines.map((l) =>
      json ? JSON.stringify(l) + "\n" : `${l.ts} ${l.source}[${l.stream}]: ${l.line}\n`
    ).join(""),
  );
}

/** `oneoff logs -a APP [-n N] [-f] [--filter one-off-N] [--json]`. */
export async function logs(args: string[]): Promise<void> {
  const parsed = parse("logs", args);
  const { positionals } = parsed;
  const values = {
    json: parsed.flag("json"),
    follow: parsed.flag("follow"),
    filter: parsed.string("filter"),
  };
  if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
  const app = appName(parsed.string("app"));
  const n = Number(parsed.string("lines") ?? 100);
  if (!Number.isInteger(n) || n < 0) throw new UsageError("-n must be a non-negative integer");
  const client = await Client.load();
  const filter = values.filter ? `&filter=${encodeURIComponent(values.filter)}` : "";
  const first = await lastLines(client, appPath(app, "/logs"), n, filter);
  printLines(first.lines, values.json);
  if (!values.follow) return;
  let after = first.lines.at(-1)?.id ?? 0;
  if (first.lines.length === 0) {
    // Start after whatever exists now, so following shows only new lines.
    const last = await client.request<LogsReply>(
      "GET",
      appPath(app, `/logs?n=1${filter}`),
    );
    after = last.lines.at(-1)?.id ?? 0;
  }
  while (true) {
    const next = await client.request<LogsReply>(
      "GET",
      appPath(app, `/logs?after=${after}&wait=25&n=10000${filter}`),
    );
    printLines(next.lines, values.json);
    after = next.lines.at(-1)?.id ?? after;
  }
}

/** `oneoff timeline -a APP [--json] [-n N]`. */
export async function timeline(args: string[]): Promise<void> {
  const parsed = parse("timeline", args);
  const { positionals } = parsed;
  const values = { json: parsed.flag("json") };
  if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
  const app = appName(parsed.string("app"));
  const client = await Client.load();
  const limit = Number(parsed.string("limit") ?? 50);
  const { events } = await client.request<TimelineReply>(
    "GET",
    appPath(app, `/timeline?limit=${limit}`),
  );
  if (values.json) return out(JSON.stringify(events, null, 2) + "\n");
  out(table(["TIME", "ACTOR", "EVENT"], events.map((e) => [e.at, e.actor, eventText(e)])));
}
