import { deepEqual, match, ok } from "node:assert/strict";
/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core)
 * against a real server, agent and CLI. A failing test leaves a screenshot
 * in test-artifacts/.
 */
import { type Browser, chromium, type Page } from "playwright-core";
import type { RunInfo } from "../protocol/mod.ts";
import { sha256Hex } from "../server/auth.ts";
import { loadSessionKey, SessionSigner } from "../server/dashboard/session.ts";
import { Proc } from "./_processes.ts";
import { startSystem, type TestSystem } from "./_system.ts";
import { waitFor } from "./_wait.ts";
import { needs, tool } from "./_tools.ts";

const ARTIFACTS = new URL("../test-artifacts/", import.meta.url).pathname;
const SESSION_COOKIE = "oneoff_session";

function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: tool("chromium"),
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** Runs `fn` with a fresh page on `sys`; on failure saves a screenshot named after the test. */
async function inBrowser(
  name: string,
  sys: TestSystem,
  fn: (page: Page) => Promise<void>,
): Promise<void> {
  const browser = await launch();
  try {
    const context = await browser.newContext({
      baseURL: sys.url,
      viewport: { width: 1280, height: 900 },
    });
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    try {
      await fn(page);
    } catch (err) {
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      const file = `${ARTIFACTS}dashboard-${name.replace(/[^a-z0-9]+/gi, "-").slice(0, 80)}.png`;
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      throw err;
    }
  } finally {
    await browser.close();
  }
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto("/login");
  await page.fill("#token", token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForLoadState();
}

async function text(page: Page): Promise<string> {
  return (await page.locator("main").innerText()).replace(/\s+/g, " ");
}

async function waitEnded(sys: TestSystem, label: string): Promise<RunInfo> {
  const { run } = await sys.api<{ run: RunInfo }>("GET", `/apps/demo/runs/${label}?wait=30`);
  return run;
}

Deno.test(needs(["chromium"], {
  name: "a bad token stays on the sign-in page with a message; a good one lands on the apps list",
  async fn() {
    await using sys = await startSystem();
    await inBrowser("sign-in", sys, async (page) => {
      await page.goto("/");
      deepEqual(new URL(page.url()).pathname, "/login");
      await signIn(page, "oo_definitely-not-a-token");
      deepEqual(new URL(page.url()).pathname, "/login");
      match(await text(page), /That token is not valid/);
      await signIn(page, sys.token);
      deepEqual(new URL(page.url()).pathname, "/");
      match(await text(page), /Apps/);
      ok(await page.locator('a[href="/apps/demo"]').isVisible(), "demo is listed");
      const cookie = (await page.context().cookies()).find((c) => c.name === SESSION_COOKIE);
      ok(cookie?.httpOnly, "the session cookie is HttpOnly");
      ok(!cookie.value.includes(sys.token));
    });
  },
}));

Deno.test(needs(["chromium"], {
  name: "the timeline shows a run just made by the CLI, and the app page its output",
  async fn() {
    await using sys = await startSystem();
    const started = await sys.cli(["run", "-d", "-a", "demo", "--", "echo hi"]);
    deepEqual(started.code, 0, started.stderr);
    deepEqual((await waitEnded(sys, "one-off-1")).exit_code, 0);
    await inBrowser("timeline", sys, async (page) => {
      await signIn(page, sys.token);
      await page.goto("/apps/demo/timeline");
      const shown = await text(page);
      match(shown, /admin started one-off-1 detached, size M: echo hi/);
      match(shown, /one-off-1 ended exited with exit code 0/);
      match(shown, /deployed release v1/);
      await page.goto("/apps/demo");
      const app = await text(page);
      match(app, /one-off-1 exited echo hi M test-agent/);
      match(app, /one-off-1\s*hi/);
    });
  },
}));

Deno.test(needs(["chromium"], {
  name: "the app page follows new log lines live through the session cookie",
  async fn() {
    await using sys = await startSystem();
    await inBrowser("live logs", sys, async (page) => {
      await signIn(page, sys.token);
      await page.goto("/apps/demo");
      await page.locator(".follow-status.live").waitFor();
      const started = await sys.cli(["run", "-d", "-a", "demo", "--", "echo live-line-$((6*7))"]);
      deepEqual(started.code, 0, started.stderr);
      await page.locator(".log-text", { hasText: "live-line-42" }).waitFor();
    });
  },
}));

Deno.test(needs(["chromium"], {
  name: "a forged or expired session cookie leads to the sign-in page",
  async fn() {
    await using sys = await startSystem();
    await inBrowser("forged cookie", sys, async (page) => {
      const url = sys.url;
      const forged = btoa(JSON.stringify({ h: sha256Hex(sys.token), exp: Date.now() + 3600_000 }))
        .replace(/=+$/, "");
      await page.context().addCookies([{ name: SESSION_COOKIE, value: `${forged}.AAAA`, url }]);
      await page.goto("/apps/demo");
      deepEqual(new URL(page.url()).pathname, "/login");
      ok(await page.locator("#token").isVisible());

      await signIn(page, sys.token);
      const signer = new SessionSigner(await loadSessionKey(`${sys.dir}/server/session.key`));
      const expired = signer.sign({
        id: "expired-session-0123",
        tokenHash: sha256Hex(sys.token),
        expiresAt: Date.now() - 1000,
      });
      await page.context().addCookies([{ name: SESSION_COOKIE, value: expired, url }]);
      await page.goto("/apps/demo");
      deepEqual(new URL(page.url()).pathname, "/login");
    });
  },
}));

Deno.test(needs(["chromium"], {
  name: "a member cannot open another app's pages: a 403 page",
  async fn() {
    await using sys = await startSystem();
    deepEqual((await sys.cli(["apps", "create", "other"])).code, 0);
    const made = await sys.cli(["tokens", "create", "--role", "member", "--app", "other"]);
    deepEqual(made.code, 0, made.stderr);
    await sys.cli(["run", "-d", "-a", "demo", "--", "true"]);
    await inBrowser("member 403", sys, async (page) => {
      await signIn(page, made.stdout.trim());
      ok(await page.locator('a[href="/apps/other"]').isVisible());
      deepEqual(await page.locator('a[href="/apps/demo"]').count(), 0);
      for (
        const path of ["/apps/demo", "/apps/demo/timeline", "/apps/demo/runs/one-off-1", "/agents"]
      ) {
        const res = await page.goto(path);
        deepEqual(res?.status(), 403, path);
        deepEqual(new URL(page.url()).pathname, path, "not a redirect");
        match(await text(page), /Not allowed/);
      }
    });
  },
}));

Deno.test(needs(["chromium"], {
  name: "a form POST without its CSRF token gets a 403 page",
  async fn() {
    await using sys = await startSystem();
    await inBrowser("csrf", sys, async (page) => {
      await signIn(page, sys.token);
      await page.evaluate(
        `document.querySelector('form[action="/logout"] input[name="_csrf"]').remove()`,
      );
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith("/logout")),
        page.getByRole("button", { name: "Sign out" }).click(),
      ]);
      deepEqual(res.status(), 403);
      await page.waitForLoadState();
      match(await text(page), /missing its security token/);
      await page.goto("/");
      deepEqual(new URL(page.url()).pathname, "/", "still signed in");
    });
  },
}));

// Needs the audit recording wired end to end (agent recorder → server audit
// store → /api/apps/:app/runs/:run/audit.cast).
Deno.test(needs(["chromium"], {
  name: "the run page of a running session shows its output live, and its user is told",
  async fn() {
    await using sys = await startSystem();
    await using user = new Proc(["run", "-a", "demo", "--no-tty", "--", "cat"], {
      env: sys.cliEnv(),
      stdin: true,
    });
    await user.write("live-before-$((6*7))\n");
    await waitFor(() => user.stdout.includes("live-before-"), {
      message: "the session to start",
      seen: () => user.stderr,
    });
    await inBrowser("live", sys, async (page) => {
      await signIn(page, sys.token);
      await page.goto("/apps/demo/runs/one-off-1");
      await page.locator(".ap-player", { hasText: "live-before-$((6*7))" }).waitFor();
      await waitFor(() => user.stderr.includes("oneoff: admin is watching this session"), {
        message: "the user to be told of the page's watch",
        seen: () => user.stderr,
      });
      // Output printed while the page is open shows in it without a reload.
      await user.write("live-after-page-opened\n");
      await page.locator(".ap-player", { hasText: "live-after-page-opened" }).waitFor();
      await user.closeStdin();
      await page.locator("[data-live-status]", { hasText: "the session ended" }).waitFor();
    });
    deepEqual((await user.status()).code, 0, user.stderr);
  },
}));

Deno.test(needs(["chromium"], {
  name: "the replay of an attached session shows its output after playing",
  async fn() {
    await using sys = await startSystem();
    const ran = await sys.cli([
      "run",
      "-a",
      "demo",
      "--no-tty",
      "--",
      "echo replay-marker-$((6*7))",
    ]);
    deepEqual(ran.code, 0, ran.stderr);
    match(ran.stdout, /replay-marker-42/);
    await waitEnded(sys, "one-off-1");
    await inBrowser("replay", sys, async (page) => {
      await signIn(page, sys.token);
      await page.goto("/apps/demo/runs/one-off-1");
      await page.locator(".ap-player").waitFor();
      ok(
        await page.locator("[data-problems]").isHidden(),
        await page.locator("[data-problems]").innerText(),
      );
      await page.locator(".ap-player").click();
      await page.locator(".ap-player", { hasText: "replay-marker-42" }).waitFor();
      const download = await page.locator("a[download]").getAttribute("href");
      deepEqual(download, "/api/apps/demo/runs/one-off-1/audit.cast");
    });
  },
}));

Deno.test(needs(["chromium"], {
  name:
    "the dashboard's session search finds a session's output and opens its replay at that moment",
  async fn() {
    await using sys = await startSystem();
    const ran = await sys.cli([
      "run",
      "-a",
      "demo",
      "--no-tty",
      "--reason",
      "browser <check>",
      "--",
      "echo first; sleep 1; echo browser-needle-$((6*7)); sleep 1; echo last",
    ]);
    deepEqual(ran.code, 0, ran.stderr);
    await waitEnded(sys, "one-off-1");
    await inBrowser("session-search", sys, async (page) => {
      await signIn(page, sys.token);
      await page.goto("/apps/demo");
      await page.getByRole("link", { name: "Sessions" }).click();
      await page.waitForLoadState();
      match(await text(page), /browser <check>/);
      await page.fill('input[name="text"]', "browser-needle-42");
      await page.getByRole("button", { name: "Search" }).click();
      await page.waitForLoadState();
      match(await text(page), /1 hit in 1 of 1 session/);
      ok(!page.url().includes("needle"), "the text is not in the URL");
      await page.locator("[data-hit]").first().click();
      await page.waitForLoadState();
      const t = Number(new URL(page.url()).searchParams.get("t"));
      ok(t >= 1 && t < 2.5, page.url());
      // Paused on the hit's moment: its line is on the screen, the last one not yet.
      await page.locator(".ap-player", { hasText: "browser-needle-42" }).waitFor();
      ok(!(await page.locator(".ap-player").innerText()).includes("last"));
    });
  },
}));
