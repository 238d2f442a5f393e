/**
 * Signing in with an API token, and out. The token is checked once and
 * never kept: the session cookie names it by hash only.
 * @module
 */
import type { Context, Handler } from "hono";
import { clientAddress, FailureLimiter, sha256Hex } from "../auth.ts";
import type { Store } from "../store/mod.ts";
import { checkedForm, type DashEnv, type Sessions } from "./_auth.ts";
import { render } from "./_layout.tsx";

/** Where to go after signing in: a path on this site, never another origin. */
export function safeNext(raw: unknown): string {
  if (
    typeof raw !== "string" || !raw.startsWith("/") || raw.startsWith("//") || raw.includes("\\")
  ) return "/";
  if (raw.startsWith("/login") || raw.length > 2000) return "/";
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

/** `POST /login`: checks the token; failures are counted per address. */
export function signIn(sessions: Sessions, store: Store, limiter: FailureLimiter): Handler {
  return async (c) => {
    const address = clientAddress(c);
    const form = await c.req.parseBody();
    const next = safeNext(form.next);
    if (limiter.blocked(address)) {
      return showForm(
        c,
        sessions,
        next,
        "Too many failed sign-ins from your address: try again in a minute",
        429,
      );
    }
    await sessions.checkLoginCsrf(c, form._csrf);
    const presented = typeof form.token === "string" ? form.token.trim() : "";
    if (presented === "") {
      return showForm(c, sessions, next, "Paste your API token to sign in", 422);
    }
    const token = await store.tokenByHash(sha256Hex(presented));
    if (!token) {
      limiter.fail(address);
      return showForm(c, sessions, next, "That token is not valid: check it and try again", 401);
    }
    await sessions.start(c, token);
    return c.redirect(next, 303);
  };
}

/** `POST /logout`. */
export function signOut(sessions: Sessions): Handler<DashEnv> {
  return async (c) => {
    await checkedForm(c);
    sessions.end(c);
    return c.redirect("/login", 303);
  };
}
