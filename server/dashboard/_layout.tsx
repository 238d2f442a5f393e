/**
 * The frame of every dashboard page (header, navigation, sign-out) and the
 * small pieces pages share: state badges, times, pagers.
 * @module
 */
import type { Context } from "hono";
import { html } from "hono/html";
import type { Child } from "hono/jsx";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { type RunState, VERSION } from "../../protocol/mod.ts";
import type { Auth } from "../auth.ts";
import { ago, utc } from "./_format.ts";
import { assets } from "./assets.ts";

/** What a page tells the frame about itself. */
export interface PageOptions {
  title: string;
  /** The signed-in user; absent on the sign-in page. */
  auth?: Auth | undefined;
  /** The session's CSRF token, for the sign-out form. */
  csrf?: string | undefined;
  /** Which navigation entry is current. */
  nav?: "apps" | "agents";
  /** Loads the asciinema player on this page. */
  player?: boolean;
}

// Scripts only from our own origin (no inline code), WebAssembly for the
// player's terminal emulator; the player sets style attributes, hence
// 'unsafe-inline' for styles only.
const CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

function Frame(props: PageOptions & { children: Child }) {
  const { auth, nav } = props;
  const files = assets();
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <title>{props.title} · oneoff</title>
        {/* No favicon file: an empty one spares every page a 404. */}
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href={files.url("app.css")} />
        {props.player && <link rel="stylesheet" href={files.url("player.css")} />}
      </head>
      <body>
        <header class="topbar">
          <a class="brand" href="/">
            <span class="brand-mark" aria-hidden="true">❯_</span> oneoff
          </a>
          {auth && (
            <nav class="nav" aria-label="Main">
              <a href="/" aria-current={nav === "apps" ? "page" : undefined}>Apps</a>
              {auth.token.role === "admin" && (
                <a href="/agents" aria-current={nav === "agents" ? "page" : undefined}>Agents</a>
              )}
            </nav>
          )}
          {auth && (
            <div class="who">
              <span class="who-name">{auth.token.name}</span>
              <span class="role">{auth.token.role}</span>
              <form method="post" action="/logout" class="inline">
                <input type="hidden" name="_csrf" value={props.csrf ?? ""} />
                <button type="submit" class="button subtle">Sign out</button>
              </form>
            </div>
          )}
        </header>
        <main class="page">{props.children}</main>
        <footer class="footer">oneoff {VERSION}</footer>
        {props.player && <script src={files.url("player.js")}></script>}
        <script src={files.url("app.js")} defer></script>
      </body>
    </html>
  );
}

/** Renders a page inside the frame, with the dashboard's security headers. */
export function render(
  c: Context,
  page: PageOptions,
  body: Child,
  status: ContentfulStatusCode = 200,
): Response | Promise<Response> {
  c.header("content-security-policy", CSP);
  c.header("x-content-type-options", "nosniff");
  c.header("referrer-policy", "same-origin");
  c.header("x-frame-options", "DENY");
  // Pages show live state and are per-user: never from a cache.
  c.header("cache-control", "no-store");
  return c.html(html`<!DOCTYPE html>${<Frame {...page}>{body}</Frame>}`, status);
}

/** A run state as a colored badge. */
export function StateBadge(props: { state: RunState | "online" | "offline" }) {
  return <span class={`badge state-${props.state}`}>{props.state.replace("_", " ")}</span>;
}

/** A moment shown as "5 min ago", with the exact time on hover. */
export function Time(props: { at: Date | null | undefined }) {
  if (!props.at) return <span class="muted">–</span>;
  return <time datetime={props.at.toISOString()} title={utc(props.at)}>{ago(props.at)}</time>;
}

/** Links to newer and older pages of a list. */
export function Pager(
  props: { newer?: string | undefined; older?: string | undefined; newerLabel?: string },
) {
  if (!props.newer && !props.older) return null;
  return (
    <nav class="pager" aria-label="Pages">
      {props.newer
        ? <a class="button" href={props.newer}>← {props.newerLabel ?? "Newer"}</a>
        : <span />}
      {props.older ? <a class="button" href={props.older}>Older →</a> : <span />}
    </nav>
  );
}

/** The page title row, with an optional line under it. */
export function Heading(props: { title: Child; sub?: Child; children?: Child }) {
  return (
    <div class="heading">
      <div>
        <h1>{props.title}</h1>
        {props.sub && <p class="sub">{props.sub}</p>}
      </div>
      {props.children && <div class="heading-actions">{props.children}</div>}
    </div>
  );
}

/** The tabs of an app's pages. */
export function AppTabs(props: { app: string; current: "runs" | "timeline" | "sessions" }) {
  const base = `/apps/${props.app}`;
  return (
    <nav class="tabs" aria-label="App">
      <a href={base} aria-current={props.current === "runs" ? "page" : undefined}>
        Runs &amp; logs
      </a>
      <a href={`${base}/timeline`} aria-current={props.current === "timeline" ? "page" : undefined}>
        Timeline
      </a>
      <a href={`${base}/audit`} aria-current={props.current === "sessions" ? "page" : undefined}>
        Sessions
      </a>
    </nav>
  );
}
