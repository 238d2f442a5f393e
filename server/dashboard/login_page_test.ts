import { deepEqual, match } from "node:assert/strict";
import { SESSION_COOKIE } from "./_auth.ts";
import { CookieClient, dashboardTest } from "./_test_util.ts";
import { safeNext } from "./login_page.tsx";

// Each would leave the site in some browser: tabs and newlines are dropped
// from URLs, a backslash reads as a slash, and `//` starts another host.
const OFFSITE = [
  "//evil.example",
  "/%09/evil.example",
  "/\t/evil.example",
  "/\\evil.example",
  "/%5Cevil.example",
  "https://evil.example",
  "/%2F/evil.example",
  "/%0d%0aSet-Cookie:%20x=1",
  "/\r\nSet-Cookie: x=1",
  " /apps",
  "/a b",
  "/%E2%80%A8evil",
  "/%zz",
  "",
];

Deno.test("safeNext keeps plain paths on this site and sends everything else to /", () => {
  for (const next of OFFSITE) deepEqual(safeNext(next), "/", JSON.stringify(next));
  deepEqual(safeNext(undefined), "/");
  deepEqual(safeNext("/login?next=/x"), "/");
  deepEqual(safeNext("/apps/demo?before=10"), "/apps/demo?before=10");
  deepEqual(safeNext("/apps/demo/runs/one-off-3"), "/apps/demo/runs/one-off-3");
});

Deno.test("a signed-in user sent to /login with an off-site or CRLF next lands on /", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  for (const next of OFFSITE) {
    const res = await client.request(`/login?next=${encodeURIComponent(next)}`);
    deepEqual([res.status, res.headers.get("location")], [303, "/"], JSON.stringify(next));
  }
  // As a browser sends them, unencoded.
  for (const query of ["next=/%09/evil", "next=//evil", "next=/%0d%0aX:%20y", "next=/\\evil"]) {
    const res = await client.request(`/login?${query}`);
    deepEqual([res.status, res.headers.get("location")], [303, "/"], query);
  }
});

Deno.test("signing in with an off-site or CRLF next in the form lands on /", async () => {
  await using d = await dashboardTest();
  for (const next of ["//evil.example", "/\t/evil.example", "/\r\nX: y", "https://evil"]) {
    const client = d.client();
    const form = await client.page("/login");
    const res = await client.post("/login", {
      _csrf: CookieClient.csrfOf(form.html),
      token: d.t.admin,
      next,
    });
    deepEqual([res.status, res.headers.get("location")], [303, "/"], JSON.stringify(next));
  }
});

Deno.test("after sign-out the old session cookie no longer works", async () => {
  await using d = await dashboardTest();
  const client = await d.signedIn();
  const kept = client.cookies.get(SESSION_COOKIE)!;
  const page = await client.page("/");
  deepEqual(page.status, 200);
  const out = await client.post("/logout", { _csrf: CookieClient.csrfOf(page.html) });
  deepEqual(out.status, 303);

  const replay = new CookieClient(d.app);
  replay.cookies.set(SESSION_COOKIE, kept);
  const res = await replay.request("/");
  deepEqual(res.status, 303);
  match(res.headers.get("location") ?? "", /^\/login/);
  const form = await replay.page("/login");
  match(form.html, /Sign in to oneoff/);
  // Nor does the API take it.
  const api = await d.t.server.app.request("/api/apps", {
    headers: { cookie: `${SESSION_COOKIE}=${kept}` },
  });
  deepEqual(api.status, 401);
  await api.body?.cancel();
  // Another session of the same token is not affected.
  deepEqual((await (await d.signedIn()).page("/")).status, 200);
});
