import { deepEqual, match, ok } from "node:assert/strict";
import { startSystem } from "./_system.ts";

Deno.test("a new user creates an app, sets env, deploys and reads the timeline with the CLI", async () => {
  await using sys = await startSystem({ demo: false });
  const created = await sys.cli(["apps", "create", "shop"]);
  deepEqual(created.code, 0, created.stderr);
  deepEqual(
    (await sys.cli(["env", "set", "-a", "shop", "DATABASE_URL=postgres://db/shop", "MODE=prod"]))
      .code,
    0,
  );
  const env = await sys.cli(["env", "-a", "shop"]);
  deepEqual(env.stdout, "DATABASE_URL=postgres://db/shop\nMODE=prod\n");
  const app = await Deno.makeTempDir({ dir: sys.dir });
  await Deno.writeTextFile(`${app}/Procfile`, "web: ./server\nmigrate: ./migrate.sh\n");
  await Deno.writeTextFile(`${app}/migrate.sh`, "#!/bin/sh\necho migrated\n");
  const deployed = await sys.cli(["deploy", "-a", "shop", app]);
  deepEqual(deployed.code, 0, deployed.stderr);
  match(deployed.stdout, /Deployed "shop" v1 .*process types: web, migrate/);
  const list = JSON.parse((await sys.cli(["apps", "list", "--json"])).stdout);
  deepEqual(list.map((a: { name: string; release: number }) => [a.name, a.release]), [[
    "shop",
    1,
  ]]);
  const timeline = await sys.cli(["timeline", "-a", "shop"]);
  deepEqual(timeline.code, 0);
  match(
    timeline.stdout,
    /deployed release v1 \([\d.]+ K?i?B\) with process types web, migrate/,
  );
  match(timeline.stdout, /set DATABASE_URL, MODE/);
  match(timeline.stdout, /created the app/);
  ok(
    !timeline.stdout.includes("app.created"),
    "the CLI tells events in words, as the dashboard",
  );
  ok(!timeline.stdout.includes("postgres://db/shop"), "env values stay out of the timeline");
});

Deno.test("CLI usage errors exit 2 with usage, failures print one line and exit 1", async () => {
  await using sys = await startSystem({ demo: false });
  const usage = await sys.cli(["apps", "create"]);
  deepEqual(usage.code, 2);
  match(usage.stderr, /Usage: oneoff apps/);
  const unknownFlag = await sys.cli(["ps", "-a", "x", "--bogus"]);
  deepEqual(unknownFlag.code, 2);
  const missing = await sys.cli(["env", "-a", "nope"]);
  deepEqual(missing.code, 1);
  deepEqual(missing.stderr, 'oneoff: No app named "nope"\n');
  const badDeploy = await sys.cli(["apps", "create", "x1"]);
  deepEqual(badDeploy.code, 0);
  const file = `${sys.dir}/not-a-slug.tar.gz`;
  await Deno.writeTextFile(file, "hello");
  const refused = await sys.cli(["deploy", "-a", "x1", file]);
  deepEqual(refused.code, 1);
  deepEqual(refused.stderr.split("\n").length, 2, "one line");
  match(refused.stderr, /Cannot deploy "x1": .*not gzip/);
  const help = await sys.cli(["run", "--help"]);
  deepEqual(help.code, 0);
  match(help.stdout, /oneoff run -a APP/);
  const noServer = await sys.cli(["apps", "list"], {
    env: { ONEOFF_SERVER: "http://127.0.0.1:1" },
  });
  deepEqual(noServer.code, 1);
  match(noServer.stderr, /^oneoff: Cannot reach the server at http:\/\/127\.0\.0\.1:1/);
});

Deno.test("login stores the server and token with mode 0600 and later commands use them", async () => {
  await using sys = await startSystem({ demo: false });
  const home = await Deno.makeTempDir({ dir: sys.dir });
  const env = { HOME: home };
  const bad = await sys.cli(["login", "--server", sys.url, "--token", "oo_wrong"], {
    env: { HOME: home },
  });
  deepEqual(bad.code, 1);
  const good = await sys.cli(["login", "--server", sys.url, "--token", sys.token], {
    env: { HOME: home },
  });
  deepEqual(good.code, 0, good.stderr);
  const info = await Deno.stat(`${home}/.config/oneoff/config.json`);
  deepEqual(info.mode! & 0o777, 0o600);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", new URL("../main.ts", import.meta.url).pathname, "apps", "list"],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  });
  const out = await child.output();
  deepEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  match(new TextDecoder().decode(out.stdout), /No apps yet/);
});

Deno.test("tokens create prints a member token limited to its app", async () => {
  await using sys = await startSystem({ demo: false });
  await sys.cli(["apps", "create", "one"]);
  await sys.cli(["apps", "create", "two"]);
  const made = await sys.cli(["tokens", "create", "--role", "member", "--app", "one"]);
  deepEqual(made.code, 0, made.stderr);
  const token = made.stdout.trim();
  const mine = await sys.cli(["env", "-a", "one"], { env: { ONEOFF_TOKEN: token } });
  deepEqual(mine.code, 0);
  const theirs = await sys.cli(["env", "-a", "two"], { env: { ONEOFF_TOKEN: token } });
  deepEqual(theirs.code, 1);
  match(theirs.stderr, /may not use app "two"/);
});
