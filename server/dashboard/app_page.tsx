/**
 * One app: its one-offs as `oneoff ps` shows them (paginated), its recent
 * logs followed live, and its environment's keys (never the values).
 * @module
 */
// Pages are rendered once on the server: there is no list to reconcile, and
// hono/jsx would print a `key` prop as an HTML attribute.
// deno-lint-ignore-file jsx-key
import type { Handler } from "hono";
import type { RunInfo } from "../../protocol/mod.ts";
import type { ServerContext } from "../context.ts";
import { loadApp } from "../_lookup.ts";
import { runInfo } from "../views.ts";
import type { AppRow, ReleaseRow, RunRow, Store } from "../store/mod.ts";
import type { DashEnv } from "./_auth.ts";
import { duration } from "../../util/format.ts";
import { cursor, runDuration } from "./_format.ts";
import { AppTabs, Heading, Pager, render, StateBadge, Time } from "./_layout.tsx";
import { LogPanel } from "./_logs.tsx";

/** Runs per page. */
export const RUNS_PER_PAGE = 50;

/**
 * One page of an app's runs, newest first, before run number `before`.
 * Numbers are dense per app, so a page past the first is read by number on
 * the (app, number) unique index: no scan, however deep the page.
 */
async function runsPage(store: Store, app: AppRow, before: number | undefined) {
  const newest = await store.listRuns({
    app_id: app.id,
    limit: before === undefined ? RUNS_PER_PAGE : 1,
  });
  const top = newest[0]?.number ?? 0;
  if (before === undefined || before > top) return { runs: newest, top, first: true };
  const numbers: number[] = [];
  for (let n = before - 1; n >= 1 && numbers.length < RUNS_PER_PAGE; n--) numbers.push(n);
  const runs = await Promise.all(numbers.map((n) => store.runByNumber(app.id, n)));
  return { runs: runs.filter((r): r is RunRow => r !== null), top, first: false };
}

function Exit(props: { run: RunInfo }) {
  const { run } = props;
  if (run.exit_code !== null) {
    return <span class={run.exit_code === 0 ? "exit-ok" : "exit-bad"}>{run.exit_code}</span>;
  }
  if (run.reason) return <span class="muted" title={run.reason}>{run.reason.slice(0, 40)}</span>;
  return <span class="muted">–</span>;
}

function RunsTable(
  props: { app: string; runs: { info: RunInfo; took: number | null; started: Date }[] },
) {
  return (
    <div class="table-wrap">
      <table class="table runs">
        <thead>
          <tr>
            <th>Name</th>
            <th>State</th>
            <th>Command</th>
            <th>Size</th>
            <th>Agent</th>
            <th>Started</th>
            <th class="num">Duration</th>
            <th class="num">Exit</th>
          </tr>
        </thead>
        <tbody>
          {props.runs.map(({ info, took, started }) => (
            <tr>
              <td>
                <a class="strong mono" href={`/apps/${props.app}/runs/${info.label}`}>
                  {info.label}
                </a>
                {info.attached && (
                  <span class="tag" title="Attached session: replayable">attached</span>
                )}
              </td>
              <td>
                <StateBadge state={info.state} />
              </td>
              <td class="command" title={info.command}>
                <code>{info.command}</code>
              </td>
              <td>{info.size}</td>
              <td>{info.agent ?? <span class="muted">–</span>}</td>
              <td>
                <Time at={started} />
              </td>
              <td class="num">{took === null ? <span class="muted">–</span> : duration(took)}</td>
              <td class="num">
                <Exit run={info} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The line under an app's name: its release. */
export function releaseLine(release: ReleaseRow | null): string {
  if (!release) return "Never deployed";
  const types = Object.keys(release.process_types);
  return `Release v${release.version} by ${release.actor}` +
    (types.length > 0 ? ` · process types: ${types.join(", ")}` : "");
}

/** `GET /apps/:app`. */
export function appPage(ctx: ServerContext): Handler<DashEnv> {
  const { store } = ctx;
  return async (c) => {
    const app = await loadApp(c, store);
    const before = cursor(c.req.query("before"));
    const [{ runs, top, first }, agents, release, env, lines] = await Promise.all([
      runsPage(store, app, before),
      store.listAgents(),
      store.latestRelease(app.id),
      store.getEnv(app.id),
      store.readLogs(app.id, { limit: 100 }),
    ]);
    const agentMap = new Map(agents.map((a) => [a.id, a]));
    const rows = runs.map((run) => ({
      info: runInfo(run, app.name, agentMap),
      took: runDuration(run),
      started: run.started_at ?? run.created_at,
    }));
    const oldest = runs.at(-1)?.number ?? 0;
    const newerBefore = (before ?? top + 1) + RUNS_PER_PAGE;
    const base = `/apps/${app.name}`;
    // Only the keys leave the store for the page: values may be secrets.
    const keys = Object.keys(env).sort();
    return render(
      c,
      { title: app.name, auth: c.get("auth"), csrf: c.get("csrf"), nav: "apps" },
      <>
        <Heading title={app.name} sub={releaseLine(release)} />
        <AppTabs app={app.name} current="runs" />
        <section class="section">
          <h2>One-offs</h2>
          {rows.length > 0 ? <RunsTable app={app.name} runs={rows} /> : (
            <div class="empty">
              <p>No one-offs yet.</p>
              <p class="muted">
                Start one with <code>oneoff run -a {app.name} -- COMMAND</code>.
              </p>
            </div>
          )}
          <Pager
            newer={first ? undefined : newerBefore > top ? base : `${base}?before=${newerBefore}`}
            older={oldest > 1 ? `${base}?before=${oldest}` : undefined}
          />
        </section>
        <section class="section">
          <h2>Logs</h2>
          <LogPanel
            app={app.name}
            lines={lines}
            follow
            empty="No log lines yet: detached one-offs write here."
          />
        </section>
        <section class="section">
          <h2>Environment</h2>
          {keys.length > 0
            ? (
              <ul class="chips">
                {keys.map((key) => <li class="chip mono">{key}</li>)}
              </ul>
            )
            : (
              <p class="muted">
                No variables. Set some with <code>oneoff env set -a {app.name} KEY=value</code>.
              </p>
            )}
          <p class="muted small">Only the names are shown here; values stay on the server.</p>
        </section>
      </>,
    );
  };
}
