/**
 * The home page: the apps this token may use, each with its release, its
 * live one-offs and its last activity.
 * @module
 */
import type { Handler } from "hono";
import { LIVE_STATES } from "../../protocol/mod.ts";
import { canUseApp } from "../auth.ts";
import type { ServerContext } from "../context.ts";
import type { AppRow, ReleaseRow } from "../store/mod.ts";
import type { DashEnv } from "./_auth.ts";
import { Heading, render, Time } from "./_layout.tsx";

/** States of a run that still holds (or waits for) a place on an agent. */

interface AppSummary {
  app: AppRow;
  release: ReleaseRow | null;
  live: number;
  lastActivity: Date;
}

function AppsTable(props: { apps: AppSummary[] }) {
  return (
    <div class="table-wrap">
      <table class="table">
        <thead>
          <tr>
            <th>App</th>
            <th>Release</th>
            <th class="num">Running one-offs</th>
            <th>Last activity</th>
          </tr>
        </thead>
        <tbody>
          {props.apps.map(({ app, release, live, lastActivity }) => (
            <tr>
              <td>
                <a class="strong" href={`/apps/${app.name}`}>{app.name}</a>
              </td>
              <td>
                {release
                  ? (
                    <span>
                      v{release.version} <span class="muted">by {release.actor}</span>
                    </span>
                  )
                  : <span class="muted">never deployed</span>}
              </td>
              <td class="num">
                {live > 0
                  ? <span class="badge state-running">{live}</span>
                  : <span class="muted">0</span>}
              </td>
              <td>
                <Time at={lastActivity} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** `GET /`. */
export function appsPage(ctx: ServerContext): Handler<DashEnv> {
  const { store } = ctx;
  return async (c) => {
    const auth = c.get("auth");
    const apps = (await store.listApps()).filter((a) => canUseApp(auth, a.name));
    const summaries = await Promise.all(apps.map(async (app): Promise<AppSummary> => {
      const [release, live, events] = await Promise.all([
        store.latestRelease(app.id),
        store.listRuns({ app_id: app.id, states: LIVE_STATES, limit: 1000 }),
        store.listEvents({ app_id: app.id, limit: 1 }),
      ]);
      return { app, release, live: live.length, lastActivity: events[0]?.at ?? app.created_at };
    }));
    return render(
      c,
      { title: "Apps", auth, csrf: c.get("csrf"), nav: "apps" },
      <>
        <Heading
          title="Apps"
          sub={`${apps.length} app${apps.length === 1 ? "" : "s"} you can use`}
        />
        {summaries.length > 0 ? <AppsTable apps={summaries} /> : (
          <div class="empty">
            <p>No apps yet.</p>
            <p class="muted">
              Create one with <code>oneoff apps create NAME</code>, then{" "}
              <code>oneoff deploy -a NAME PATH</code>.
            </p>
          </div>
        )}
      </>,
    );
  };
}
