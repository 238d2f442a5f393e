/**
 * One run: its details, a stop button while it lives, and either its
 * attached session (asciinema player: live on the watch API while it runs,
 * then the replay of the audit API's cast) or its detached output.
 * @module
 */
import type { Handler } from "hono";
import { isTerminal, type RunInfo, runLabel } from "../../protocol/mod.ts";
import type { ServerContext } from "../context.ts";
import { loadApp, loadRun } from "../_lookup.ts";
import { runInfo } from "../views.ts";
import type { RunEngine } from "../run_engine.ts";
import type { ArtifactRow, RunRow } from "../store/mod.ts";
import { checkedForm, type DashEnv } from "./_auth.ts";
import { bytes, duration } from "../../util/format.ts";
import { runDuration, utc } from "./_format.ts";
import { Heading, render, StateBadge, Time } from "./_layout.tsx";
import { LogPanel } from "./_logs.tsx";

function Field(props: { name: string; children: unknown }) {
  return (
    <>
      <dt>{props.name}</dt>
      <dd>{props.children ?? <span class="muted">–</span>}</dd>
    </>
  );
}

function Details(props: { info: RunInfo; run: RunRow; release: number | null }) {
  const { info, run } = props;
  const took = runDuration(run);
  const overrides = Object.keys(run.env_overrides);
  return (
    <dl class="details">
      <Field name="Command">
        <code class="cmd">{info.command}</code>
      </Field>
      {info.purpose && <Field name="Reason given">{info.purpose}</Field>}
      {info.reason && <Field name="Reason">{info.reason}</Field>}
      <Field name="Exit code">
        {info.exit_code === null
          ? null
          : <span class={info.exit_code === 0 ? "exit-ok" : "exit-bad"}>{info.exit_code}</span>}
      </Field>
      <Field name="Mode">
        {info.attached ? `attached${info.tty ? ", with a terminal" : ", no terminal"}` : "detached"}
      </Field>
      <Field name="Size">{info.size}</Field>
      {info.attached && (
        <Field name="Idle timeout">
          {info.idle_timeout_ms ? duration(info.idle_timeout_ms) : null}
        </Field>
      )}
      <Field name="Agent">{info.agent}</Field>
      <Field name="Release">{props.release === null ? null : `v${props.release}`}</Field>
      <Field name="Started by">{info.actor}</Field>
      <Field name="Created">{utc(run.created_at)}</Field>
      <Field name="Started">{run.started_at && utc(run.started_at)}</Field>
      <Field name="Ended">{run.ended_at && utc(run.ended_at)}</Field>
      <Field name="Duration">
        {took === null ? null : `${duration(took)}${run.ended_at ? "" : " so far"}`}
      </Field>
      {overrides.length > 0 && <Field name="Env overrides">{overrides.sort().join(", ")}</Field>}
      {run.uploads.length > 0 && (
        <Field name="Uploads">
          {run.uploads.map((u) => `${u.name} (${bytes(u.size)})`).join(", ")}
        </Field>
      )}
    </dl>
  );
}

/** The files the run left in /tmp/downloads: each kept one a download (the session cookie authenticates the API), each refused one with why. */
function Artifacts(props: { app: string; label: string; rows: ArtifactRow[] }) {
  const api = `/api/apps/${props.app}/runs/${props.label}/artifacts`;
  return (
    <table class="table">
      <thead>
        <tr>
          <th>File</th>
          <th>Size</th>
          <th>sha256 / refused</th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map((a) =>
          a.sha256 === null
            ? (
              <tr>
                <td class="mono">{a.name}</td>
                <td>–</td>
                <td class="exit-bad">refused: {a.refused}</td>
              </tr>
            )
            : (
              <tr>
                <td class="mono">
                  <a href={`${api}/${encodeURIComponent(a.name)}`} download={a.name}>{a.name}</a>
                </td>
                <td>{bytes(a.size)}</td>
                <td class="mono muted">{a.sha256}</td>
              </tr>
            )
        )}
      </tbody>
    </table>
  );
}

function Replay(props: { app: string; run: RunRow; label: string; start?: number }) {
  const { app, run, label } = props;
  const api = `/api/apps/${app}/runs/${label}`;
  if (!isTerminal(run.state)) return <Live api={api} started={run.started_at !== null} />;
  if (!run.started_at) {
    return <p class="empty">This session never started: nothing was recorded.</p>;
  }
  return (
    <div
      class="replay"
      data-replay
      data-cast={`${api}/audit.cast`}
      data-start={props.start === undefined ? undefined : String(props.start)}
    >
      <div class="alert alert-error" data-problems hidden role="alert">
        <strong data-problem-title>This recording has problems</strong>
        <ul data-problem-list></ul>
      </div>
      <div class="player" data-player></div>
      <div class="replay-bar">
        <span class="speed" data-speed>
          Speed
          {["0.5", "1", "2", "4"].map((rate) => (
            <button
              type="button"
              class="button subtle"
              data-rate={rate}
              aria-pressed={rate === "1" ? "true" : "false"}
            >
              {rate}×
            </button>
          ))}
        </span>
        <a class="button" href={`${api}/audit.cast`} download={`${app}-${label}.cast`}>
          Download .cast
        </a>
      </div>
      <noscript>
        <p class="muted">The replay needs JavaScript; the download works without it.</p>
      </noscript>
    </div>
  );
}

// A running session, watched live: the same player, fed by the watch API as
// the recording is stored. Opening it is a watch: on the timeline, told to its user.
function Live(props: { api: string; started: boolean }) {
  return (
    <div class="replay" data-live={`${props.api}/watch?format=sse`}>
      <div class="player" data-player></div>
      <div class="replay-bar">
        <span class="follow-status live" data-live-status>
          {props.started ? "live" : "waiting for its user to attach"}
        </span>
        <span class="muted">Read-only; its user is told that you are watching.</span>
      </div>
      <noscript>
        <p class="muted">The live view needs JavaScript; oneoff watch shows it too.</p>
      </noscript>
    </div>
  );
}

/** `GET /apps/:app/runs/:run`. */
export function runPage(ctx: ServerContext): Handler<DashEnv> {
  const { store } = ctx;
  return async (c) => {
    const app = await loadApp(c, store);
    const run = await loadRun(c, store, app);
    const label = runLabel(run.number);
    const [agents, release, lines, artifacts] = await Promise.all([
      store.listAgents(),
      store.releaseById(run.release_id),
      run.attached ? Promise.resolve([]) : store.readLogs(app.id, { source: label, limit: 200 }),
      store.listArtifacts(run.id),
    ]);
    const info = runInfo(run, app.name, new Map(agents.map((a) => [a.id, a])));
    const live = !isTerminal(run.state);
    return render(
      c,
      {
        title: `${label} · ${app.name}`,
        auth: c.get("auth"),
        csrf: c.get("csrf"),
        nav: "apps",
        player: run.attached,
      },
      <>
        <p class="crumbs">
          <a href={`/apps/${app.name}`}>{app.name}</a> / <span class="mono">{label}</span>
        </p>
        <Heading
          title={<span class="mono">{label}</span>}
          sub={
            <>
              <StateBadge state={run.state} />
              <span class="muted">{` started by ${run.actor} · `}</span>
              <Time at={run.created_at} />
            </>
          }
        >
          {live && (
            <form method="post" action={`/apps/${app.name}/runs/${label}/stop`} class="inline">
              <input type="hidden" name="_csrf" value={c.get("csrf") ?? ""} />
              <button type="submit" class="button danger">Stop</button>
            </form>
          )}
        </Heading>
        <section class="section">
          <Details info={info} run={run} release={release?.version ?? null} />
        </section>
        {artifacts.length > 0 && (
          <section class="section">
            <h2>Files left in /tmp/downloads</h2>
            <Artifacts app={app.name} label={label} rows={artifacts} />
          </section>
        )}
        <section class="section">
          <h2>{run.attached ? live ? "Session, live" : "Session replay" : "Output"}</h2>
          {run.attached
            ? <Replay app={app.name} run={run} label={label} {...startAt(c.req.query("t"))} />
            : (
              <LogPanel
                app={app.name}
                lines={lines}
                follow={live}
                filter={label}
                empty={live ? "No output yet." : "This run printed nothing."}
              />
            )}
        </section>
      </>,
    );
  };
}

// `?t=12.5` (a search hit): the replay starts at that second.
function startAt(raw: string | undefined): { start?: number } {
  const t = Number(raw);
  return raw !== undefined && Number.isFinite(t) && t >= 0 ? { start: t } : {};
}

/** `POST /apps/:app/runs/:run/stop`: stops the run and comes back to its page. */
export function stopRun(ctx: ServerContext, engine: RunEngine): Handler<DashEnv> {
  return async (c) => {
    await checkedForm(c);
    const app = await loadApp(c, ctx.store);
    const run = await loadRun(c, ctx.store, app);
    const label = runLabel(run.number);
    if (!isTerminal(run.state)) await engine.stop(run, c.get("auth").actor, label, app.name);
    return c.redirect(`/apps/${app.name}/runs/${label}`, 303);
  };
}
