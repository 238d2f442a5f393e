/**
 * A panel of app log lines that keeps following new ones (through app.js,
 * which long-polls the logs API with the session cookie).
 * @module
 */
// Pages are rendered once on the server: there is no list to reconcile, and
// hono/jsx would print a `key` prop as an HTML attribute.
// deno-lint-ignore-file jsx-key
import type { LogRow } from "../store/mod.ts";

function LogLine(props: { line: LogRow }) {
  const { line } = props;
  return (
    <div class={`log-line stream-${line.stream === "stderr" ? "stderr" : "stdout"}`}>
      <time datetime={line.ts.toISOString()}>{line.ts.toISOString().slice(11, 19)}</time>
      <span class="log-source">{line.source}</span>
      <span class="log-text">{line.line}</span>
    </div>
  );
}

/** Recent lines, followed live when `follow` (the script reads the data attributes). */
export function LogPanel(
  props: { app: string; lines: LogRow[]; follow: boolean; filter?: string; empty: string },
) {
  const { app, lines, follow } = props;
  return (
    <div
      class="logs"
      data-follow={follow ? `/api/apps/${app}/logs` : undefined}
      data-after={String(lines.at(-1)?.id ?? 0)}
      data-filter={props.filter}
    >
      <div class="logs-bar">
        <span class="muted">
          {lines.length === 0 ? "" : `Last ${lines.length} line${lines.length === 1 ? "" : "s"}`}
        </span>
        <span class="follow-status" data-follow-status>
          {follow ? "connecting…" : "not following"}
        </span>
      </div>
      <div class="logs-body" data-lines tabindex={0}>
        {lines.map((line) => <LogLine line={line} />)}
        {lines.length === 0 && <p class="logs-empty" data-empty>{props.empty}</p>}
      </div>
    </div>
  );
}
