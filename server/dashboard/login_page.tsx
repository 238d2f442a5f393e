/**
 * Signing in with an API token, and out. The token is checked once and
 * never kept: the session cookie names it by hash only.
 * @module
 */
import type { Context, Handler } from "hono";
import { clientAddress, failureKeys, type FailureLimiter, sha256Hex } from "../auth.ts";
import type { Store } from "../store/mod.ts";
import { checkedForm, type DashEnv, type Sessions } from "./_auth.ts";
import { render } from "./_layout.tsx";

// Printable ASCII but space: what a path needs, once percent-encoded.
const PLAIN_PATH = /^\/[\x21-\x7e]*$/;

/**
 * Where to go after signing in: a path on this site, never another origin.
 * Browsers drop tabs and newlines from URLs and read `\` as `/`, so
 * `/\t/evil` or `/\evil` would leave the site: anything but a plain path
 * (a single leading `/`, then printable ASCII with no `\`, also once
 * decoded) goes to `/`. Being ASCII, it is always a valid `Location`.
 */
export function safeNext(raw: unknown): string {
  if (typeof raw !== "string" || raw.length > 2000) return "/";
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return "/";
  }
  for (const value of [raw, decoded]) {
    if (!PLAIN_PATH.test(value) || value.startsWith("//") || value.includes("\\")) return "/";
  }
  if (raw.startsWith("/login")) return "/";
  return raw;
}

function LoginForm(props: { csrf: string; next: string; error?: string | undefined }) {
  return (
    <section class="login">
      <h1>Sign in to oneoff</h1>
      <p class="muted">
        Paste an API token. An admin makes one with <code>oneoff tokens create</code>; yours is in
        {" "}
        <code>~/.config/oneoff/config.json</code> after <code>oneoff login</code>.
      </p>
      {props.error && <p class="alert alert-error" role="alert">{props.error}</p>}
      <form method="post" action="/login" class="stack">
        <input type="hidden" name="_csrf" value={props.csrf} />
        <input type="hidden" name="next" value={props.next} />
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="current-password"
          spellcheck={false}
          placeholder="oo_…"
          required
          autofocus
        />
        <button type="submit" class="button primary">Sign in</button>
      </form>
    </section>
  );
}

async function showForm(
  c: Context,
  sessions: Sessions,
  next: string,
  error?: string,
  status?: 401 | 403 | 422 | 429,
) {
  const csrf = await sessions.loginCsrf(c);
  return render(
    c,
    { title: "Sign in" },
    <LoginForm csrf={csrf} next={next} error={error} />,
    status ?? 200,
  );
}

/** `GET /login`: the form, or straight on when already signed in. */
export function loginForm(sessions: Sessions): Handler {
  return async (c) => {
    const next = safeNext(c.req.query("next"));
    if (await sessions.read(c)) return c.redirect(next, 303);
    return showForm(c, sessions, next);
  };
}

/**
 * `POST /login`: checks the token first. A valid one always signs in; a
 * failure is counted per address and per token (see `failureKeys`), and
 * past the limit the answer is a 429 instead of a 401.
 */
export function signIn(sessions: Sessions, store: Store, limiter: FailureLimiter): Handler {
  return async (c) => {
    const form = await c.req.parseBody();
    const next = safeNext(form.next);
    await sessions.checkLoginCsrf(c, form._csrf);
    const presented = typeof form.token === "string" ? form.token.trim() : "";
    if (presented === "") {
      return showForm(c, sessions, next, "Paste your API token to sign in", 422);
    }
    const hash = sha256Hex(presented);
    const token = await store.tokenByHash(hash);
    if (token) {
      await sessions.start(c, token);
      return c.redirect(next, 303);
    }
    const keys = failureKeys(clientAddress(c), hash);
    const blocked = limiter.blocked(...keys);
    limiter.fail(...keys);
    if (blocked) {
      await limiter.penalty();
      return showForm(
        c,
        sessions,
        next,
        "Too many failed sign-ins from your address or with this token: try again in a minute",
        429,
      );
    }
    return showForm(c, sessions, next, "That token is not valid: check it and try again", 401);
  };
}

/** `POST /logout`: revokes the session, not only its cookie. */
export function signOut(sessions: Sessions): Handler<DashEnv> {
  return async (c) => {
    await checkedForm(c);
    await sessions.revoke(c);
    return c.redirect("/login", 303);
  };
}
