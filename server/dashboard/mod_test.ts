import { deepEqual, equal, match, ok } from "node:assert/strict";
import { SESSION_COOKIE } from "./_auth.ts";
import { CookieClient, dashboardTest, seedApp } from "./_test_util.ts";
import { sessionAuth } from "./mod.ts";
import { loadSessionKey, SessionSigner } from "./session.ts";
import { Hono } from "hono";

Deno.test("a page without a session redirects to the sign-in form, remembering where to go", async () => {
  await using d = await dashboardTest();
  const res = await d.client().request("/apps/demo?before=10");
  deepEqual(res.status, 303);
  deepEqual(res.headers.get("location"), "/login?next=%2Fapps%2Fdemo%3Fbefore%3D10");
});

Deno.test("signing in with a bad token stays on the form with a message", async () => {
  await using d = await dashboardTest();
  const client = d.client();
  const res = await client.signIn("oo_not-a-real-token");
  deepEqual(res.status, 401);
  const html = await res.text();
  match(html, /That token is not valid/);
  match(html, /<form method="post" action="\/login"/);
  ok(!client.cookies.has(SESSION_COOKIE));
});

Deno.test("signing in sets an HttpOnly Lax session cookie that does not contain the token", async () => {
  await using d = await dashboardTest();
  const client = d.client();
  const form = await client.page("/login?next=/apps/demo");
  const res = await client.post("/login", {
    _csrf: CookieClient.csrfOf(form.html),
    token: d.t.admin,
    next: "/apps/demo",
  });
  deepEqual(res.status, 303);
  deepEqual(res.headers.get("location"), "/apps/demo");
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`)) ?? "";
  match(cookie, /HttpOnly/);
  match(cookie, /SameSite=Lax/);
  match(cookie, /Path=\//);
  ok(!/Secure/.test(cookie), "no Secure flag over plain http");
  const value = client.cookies.get(SESSION_COOKIE) ?? "";
  ok(
    !value.includes(d.t.admin) &&
      !atob(value.split(".")[0]!.replace(/-/g, "+").replace(/_/g, "/")).includes(d.t.admin),
  );
  deepEqual((await client.page("/")).status, 200);
});

Deno.test("the session cookie is Secure when the request came over https", async () => {
  await using d = await dashboardTest();
  const client = d.client();
  const form = await client.page("/login");
  const res = await client.request("/login", {
    method: "POST",
    body: new URLSearchParams({ _csrf: CookieClient.csrfOf(form.html), token: d.t.admin }),
    headers: { "x-forwarded-proto": "https" },
  });
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`)) ?? "";
  match(cookie, /Secure/);
});

Deno.test("sign-in goes only to paths on this site", async () => {
  await using d = await dashboardTest();
  for (const next of ["//evil.example/x", "https://evil.example/", "/\\evil.example"]) {
    const client = d.client();
    const form = await client.page("/login");
    const res = await client.post("/login", {
      _csrf: CookieClient.csrfOf(form.html),
      token: d.t.admin,
      next,
    });
    deepEqual(res.headers.get("location"), "/", next);
  }
});

Deno.test("a forged or tampered session cookie sends the user to sign in and is cleared", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  const [payload, signature] = client.cookies.get(SESSION_COOKIE)!.split(".");
  const forged = btoa(JSON.stringify({ h: "a".repeat(64), exp: Date.now() + 3600_000 }))
    .replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  for (
    const value of [`${forged}.${signature}`, `${payload}.${signature}x`, "garbage", `${payload}`]
  ) {
    client.cookies.set(SESSION_COOKIE, value);
    const res = await client.request("/");
    deepEqual(res.status, 303, value);
    match(res.headers.get("location") ?? "", /^\/login/);
    match(res.headers.getSetCookie().join("\n"), new RegExp(`${SESSION_COOKIE}=;`));
  }
});

Deno.test("an expired session cookie, even correctly signed, sends the user to sign in", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  const signer = new SessionSigner(await loadSessionKey(`${d.t.dir}/session.key`));
  const { id, tokenHash } = signer.verify(client.cookies.get(SESSION_COOKIE)!)!;
  client.cookies.set(
    SESSION_COOKIE,
    signer.sign({ id, tokenHash, expiresAt: Date.now() - 1000 }),
  );
  const res = await client.request("/");
  deepEqual(res.status, 303);
  match(res.headers.get("location") ?? "", /^\/login/);
});

Deno.test("the session key is created with mode 0600 in the data dir", async () => {
  await using d = await dashboardTest();
  await d.signedIn();
  const info = await Deno.stat(`${d.t.dir}/session.key`);
  deepEqual(info.mode! & 0o777, 0o600);
});

Deno.test("a form POST without the session's CSRF token gets a 403 page", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  for (const form of [{}, { _csrf: "wrong" }, { _csrf: "" }]) {
    const res = await client.post("/logout", form);
    deepEqual(res.status, 403);
    match(res.headers.get("content-type") ?? "", /text\/html/);
    match(await res.text(), /missing its security token/);
  }
  deepEqual((await client.page("/")).status, 200, "still signed in");
});

Deno.test("the sign-in form is CSRF-protected too", async () => {
  await using d = await dashboardTest();
  const res = await d.client().post("/login", { token: d.t.admin });
  deepEqual(res.status, 403);
  match(await res.text(), /sign-in form has expired/);
});

Deno.test("signing out with the CSRF token clears the session", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  const page = await client.page("/");
  const res = await client.post("/logout", { _csrf: CookieClient.csrfOf(page.html) });
  deepEqual([res.status, res.headers.get("location")], [303, "/login"]);
  ok(!client.cookies.has(SESSION_COOKIE));
  deepEqual((await client.request("/")).status, 303);
});

Deno.test("failed sign-ins are rate-limited per address, but a good token still signs in", async () => {
  await using d = await dashboardTest({ signInLimit: 3 });
  const client = d.client();
  for (let i = 0; i < 3; i++) deepEqual((await client.signIn(`oo_bad-${i}`)).status, 401);
  const limited = await client.signIn("oo_bad-3");
  deepEqual(limited.status, 429);
  match(await limited.text(), /Too many failed sign-ins/);
  const res = await client.signIn(d.t.admin);
  deepEqual([res.status, res.headers.get("location")], [303, "/"]);
  ok(client.cookies.has(SESSION_COOKIE));
});

Deno.test("a member sees only their apps and gets a 403 page for another app and for agents", async () => {
  await using d = await dashboardTest();
  const { store } = d.t.ctx;
  await seedApp(store, "demo");
  await seedApp(store, "other");
  const member = await d.signedIn(await d.token("member", ["other"]));
  const home = await member.page("/");
  match(home.html, /href="\/apps\/other"/);
  ok(!home.html.includes('href="/apps/demo"'));
  ok(!home.html.includes('href="/agents"'), "no agents link for members");
  for (
    const path of ["/apps/demo", "/apps/demo/timeline", "/apps/demo/runs/one-off-1", "/agents"]
  ) {
    const page = await member.page(path);
    deepEqual(page.status, 403, path);
    match(page.res.headers.get("content-type") ?? "", /text\/html/);
    match(page.html, /Not allowed/);
  }
  deepEqual((await member.page("/apps/other")).status, 200);
});

Deno.test("pages carry a strict content security policy and are not cached", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  const { res } = await client.page("/");
  match(res.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  deepEqual(res.headers.get("x-frame-options"), "DENY");
  deepEqual(res.headers.get("cache-control"), "no-store");
});

Deno.test("sessionAuth gives the API the token row of a valid cookie, and null otherwise", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  const auth = sessionAuth(d.t.ctx);
  const probe = new Hono();
  probe.get("/", async (c) => c.json({ name: (await auth(c))?.name ?? null }));
  const ask = async (cookie?: string) =>
    (await (await probe.request("/", { headers: cookie ? { cookie } : {} })).json()).name;
  deepEqual(await ask(`${SESSION_COOKIE}=${client.cookies.get(SESSION_COOKIE)}`), "admin");
  deepEqual(await ask(`${SESSION_COOKIE}=forged.value`), null);
  deepEqual(await ask(), null);
});

Deno.test("a session made from a token ends the moment the token is revoked", async () => {
  await using d = await dashboardTest();
  const member = await d.token("member", ["demo"]);
  const client = await d.signedIn(member);
  equal((await client.request("/")).status, 200);
  const store = d.t.ctx.store;
  const row = (await store.listTokens()).find((t) => t.role === "member")!;
  ok(await store.deleteToken(row.id));
  const res = await client.request("/");
  equal(res.status, 303);
  match(res.headers.get("location") ?? "", /^\/login/);
});
