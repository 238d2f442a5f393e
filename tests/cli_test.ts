import { deepEqual, equal, match, ok } from "node:assert/strict";
import { VERSION } from "../protocol/mod.ts";
import { startSystem } from "./_system.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The CLI without any system: help, version, completion, refusals before any request. */
async function oneoff(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

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
  match(unknownFlag.stderr, /Usage: oneoff ps -a APP.*\nRun "oneoff help ps" for more\n$/);
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

Deno.test("agents lists a pending agent, approve lets it take runs, join-token rotate prints a new token", async () => {
  await using sys = await startSystem({ demo: false, config: { autoApprove: false } });
  const listed = await sys.cli(["agents"]);
  deepEqual(listed.code, 0, listed.stderr);
  match(listed.stdout, /test-agent +online +pending/);
  match(listed.stdout, /Pending approval \(no run until then\): oneoff agents approve test-agent/);
  const approved = await sys.cli(["agents", "approve", "test-agent"]);
  deepEqual(approved.code, 0, approved.stderr);
  match(approved.stdout, /Approved agent "test-agent": it takes runs now/);
  match((await sys.cli(["agents"])).stdout, /test-agent +online +approved/);
  const missing = await sys.cli(["agents", "approve", "nope"]);
  deepEqual([missing.code, missing.stderr.trim()], [
    1,
    'oneoff: No agent named "nope" (see oneoff agents)',
  ]);
  const rotated = await sys.cli(["agents", "join-token", "rotate", "--uses", "2", "--ttl", "1h"]);
  deepEqual(rotated.code, 0, rotated.stderr);
  match(rotated.stdout, /^join_\S+\n$/);
  const usage = await sys.cli(["agents", "revoke"]);
  deepEqual(usage.code, 2);
  match(usage.stderr, /agents revoke needs the agent's NAME/);
});

Deno.test("help is the command's usage, flags explained and examples, for every command", async () => {
  const run = await oneoff(["run", "--help"]);
  equal(run.code, 0, run.stderr);
  match(run.stdout, /^Usage: oneoff run -a APP/m);
  match(run.stdout, /-d, --detached +Start at once/);
  match(run.stdout, /--timeout DURATION +.*\(default: 24h\)/);
  match(run.stdout, /One argument is a shell command line/);
  match(run.stdout, /Examples:\n {2}oneoff run -a demo bash/);
  equal((await oneoff(["help", "run"])).stdout, run.stdout);
  equal((await oneoff(["run", "-a", "demo", "-h"])).stdout, run.stdout);
  for (const role of ["server", "agent", "dev"]) {
    const help = await oneoff([role, "--help"]);
    equal(help.code, 0, help.stderr);
    match(help.stdout, new RegExp(`^Usage: oneoff ${role} `, "m"));
    match(help.stdout, /--data-dir DIR +\S/);
    equal((await oneoff(["help", role])).stdout, help.stdout);
  }
  const overview = await oneoff(["--help"]);
  equal(overview.code, 0);
  for (const name of ["run", "tokens", "logout", "whoami", "completion", "server"]) {
    match(overview.stdout, new RegExp(`^ {2}${name} +\\S`, "m"));
  }
  equal((await oneoff(["help"])).stdout, overview.stdout);
  const unknown = await oneoff(["frobnicate"]);
  equal(unknown.code, 2);
  equal(
    unknown.stderr,
    'oneoff: unknown command "frobnicate"\nRun "oneoff help" for the list of commands\n',
  );
  const badRole = await oneoff(["agent", "--bogus"]);
  equal(badRole.code, 2);
  match(
    badRole.stderr,
    /^oneoff agent: .*--bogus.*\nUsage: oneoff agent .*\nRun "oneoff help agent" for more\n$/,
  );
});

Deno.test("--version prints the one version, from the CLI and every role", async () => {
  for (
    const args of [["--version"], ["server", "--version"], ["agent", "--version"], [
      "dev",
      "--version",
    ]]
  ) {
    const res = await oneoff(args);
    equal(res.code, 0, res.stderr);
    match(res.stdout, new RegExp(`^oneoff ${VERSION.replaceAll(".", "\\.")} \\(deno `));
  }
});

Deno.test("completion bash is valid bash and completes commands, subcommands and flags", async () => {
  const script = (await oneoff(["completion", "bash"])).stdout;
  const check = await new Deno.Command("bash", { args: ["-n"], stdin: "piped", stderr: "piped" })
    .spawn();
  const writer = check.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const checked = await check.output();
  equal(checked.code, 0, new TextDecoder().decode(checked.stderr));
  // Completion as bash runs it: COMP_WORDS and COMP_CWORD, then the function.
  const complete = async (...words: string[]) => {
    const line = words.map((w) => `'${w}'`).join(" ");
    const res = await new Deno.Command("bash", {
      args: [
        "-c",
        `${script}\ncomplete -p oneoff\nCOMP_WORDS=(${line}); COMP_CWORD=${
          words.length - 1
        }; _oneoff; echo "\${COMPREPLY[*]}"`,
      ],
      stdout: "piped",
    }).output();
    return new TextDecoder().decode(res.stdout).trim().split("\n");
  };
  deepEqual(await complete("oneoff", "r"), ["complete -F _oneoff oneoff", "run"]);
  equal((await complete("oneoff", "to"))[1], "tokens");
  equal((await complete("oneoff", "tokens", ""))[1], "create list revoke");
  equal((await complete("oneoff", "run", "--no"))[1], "--no-tty");
  equal((await complete("oneoff", "apps", "destroy", "x", "--co"))[1], "--confirm");
  equal((await complete("oneoff", "help", "ser"))[1], "server");
  const zsh = await oneoff(["completion", "zsh"]);
  equal(zsh.code, 0);
  match(zsh.stdout, /^#compdef oneoff\n/);
  match(zsh.stdout, /'run:Start a one-off/);
  const fish = await oneoff(["completion", "fish"]);
  equal(fish.code, 2);
  match(fish.stderr, /No completion for "fish": use bash or zsh/);
});

Deno.test("run refuses -a after the command, unless after --, before any request", async () => {
  // No server at all: the refusal comes first.
  const env = { ONEOFF_SERVER: "http://127.0.0.1:1", ONEOFF_TOKEN: "x", ONEOFF_APP: "demo" };
  const late = await oneoff(["run", "bash", "-a", "other"], env);
  equal(late.code, 2);
  equal(
    late.stderr.split("\n")[0],
    'oneoff run: "-a other" comes after the command; put options before it: oneoff run -a other bash (or use -- to pass -a to the command)',
  );
  match(late.stderr, /\nRun "oneoff help run" for more\n$/);
  const dashes = await oneoff(["run", "--", "bash", "-a", "other"], env);
  equal(dashes.code, 1, "accepted, then the server is out of reach");
  match(dashes.stderr, /Cannot reach the server/);
});

Deno.test("run: one argument is a shell line, several are one command's words, as ps shows", async () => {
  await using sys = await startSystem();
  const words = await sys.cli([
    "run",
    "-a",
    "demo",
    "--no-tty",
    "--silent",
    "-x",
    "--",
    "printf",
    "[%s]\\n",
    "a b",
    "$HOME",
    "it's",
  ]);
  equal(words.code, 0, words.stderr);
  equal(words.stdout, "[a b]\n[$HOME]\n[it's]\n");
  const line = await sys.cli([
    "run",
    "-a",
    "demo",
    "--no-tty",
    "--silent",
    "--",
    "for i in 1 2; do echo $i$HOME; done",
  ]);
  equal(line.stdout, "1/app\n2/app\n");
  const exit = await sys.cli([
    "run",
    "-a",
    "demo",
    "--no-tty",
    "--silent",
    "-x",
    "sh",
    "-c",
    "exit 7",
  ]);
  equal(exit.code, 7, "-x changes nothing: the exit code is passed on");
  const runs = JSON.parse((await sys.cli(["ps", "-a", "demo", "--json"])).stdout) as {
    command: string;
  }[];
  deepEqual(runs.map((r) => r.command).reverse(), [
    "printf '[%s]\\n' 'a b' '$HOME' 'it'\\''s'",
    "for i in 1 2; do echo $i$HOME; done",
    "sh -c 'exit 7'",
  ]);
  const detached = await sys.cli(["run", "-a", "demo", "-d", "--json", "--", "echo", "hi there"]);
  equal(detached.code, 0, detached.stderr);
  const run = JSON.parse(detached.stdout);
  equal(run.label, "one-off-4");
  equal(run.command, "echo 'hi there'");
  equal(run.app, "demo");
});

Deno.test("tokens list shows no secret, revoke stops the token at once and reads on the timeline", async () => {
  await using sys = await startSystem();
  const made = await sys.cli(["tokens", "create", "-a", "demo", "--name", "alice"]);
  equal(made.code, 0, made.stderr);
  const alice = made.stdout.trim();
  equal((await sys.cli(["ps", "-a", "demo"], { env: { ONEOFF_TOKEN: alice } })).code, 0);
  const list = await sys.cli(["tokens", "list"]);
  equal(list.code, 0, list.stderr);
  match(list.stdout, /^ID +NAME +ROLE +APPS +CREATED\n/);
  match(list.stdout, /\n2 +alice +member +demo +\d{4}-/);
  const json = await sys.cli(["tokens", "list", "--json"]);
  const tokens = JSON.parse(json.stdout) as Record<string, unknown>[];
  deepEqual(Object.keys(tokens[1]!).sort(), [
    "apps",
    "created_at",
    "id",
    "name",
    "role",
  ]);
  for (const text of [list.stdout, json.stdout]) {
    ok(!text.includes(alice) && !text.includes(sys.token), "no secret is shown");
    ok(!/[0-9a-f]{64}/.test(text), "no hash is shown");
  }
  // A member may not list or revoke.
  const member = await sys.cli(["tokens", "list"], { env: { ONEOFF_TOKEN: alice } });
  equal(member.code, 1);
  match(member.stderr, /needs an admin token/);

  const revoked = await sys.cli(["tokens", "revoke", "alice"]);
  equal(revoked.code, 0, revoked.stderr);
  equal(revoked.stdout, 'Revoked member token "alice" (id 2): it no longer works\n');
  const after = await sys.cli(["ps", "-a", "demo"], { env: { ONEOFF_TOKEN: alice } });
  equal(after.code, 1);
  equal(after.stderr, "oneoff: Invalid API token\n");
  match(
    (await sys.cli(["timeline", "-a", "demo"])).stdout,
    /revoked a member token "alice"/,
  );
  const again = await sys.cli(["tokens", "revoke", "2"]);
  equal(again.code, 1);
  equal(again.stderr, 'oneoff: No token "2"\n');
  const last = await sys.cli(["tokens", "revoke", "1"]);
  equal(last.code, 1);
  match(last.stderr, /is the last admin token: create another admin token first/);
});

Deno.test("whoami, env get, apps destroy --confirm and logout", async () => {
  await using sys = await startSystem({ demo: false });
  const who = await sys.cli(["whoami"]);
  equal(who.code, 0, who.stderr);
  match(who.stdout, new RegExp(`^\\S+ \\(admin, every app\\) on ${sys.url}\n$`));
  equal(JSON.parse((await sys.cli(["whoami", "--json"])).stdout).role, "admin");

  equal((await sys.cli(["apps", "create", "shop"])).code, 0);
  await sys.cli(["env", "set", "-a", "shop", "URL=postgres://db/shop?a=1", "EMPTY="]);
  equal(
    (await sys.cli(["env", "get", "-a", "shop", "URL"])).stdout,
    "postgres://db/shop?a=1\n",
  );
  equal((await sys.cli(["env", "get", "-a", "shop", "EMPTY"])).stdout, "\n");
  const unset = await sys.cli(["env", "get", "-a", "shop", "NOPE"]);
  equal(unset.code, 1);
  equal(unset.stderr, 'oneoff: "NOPE" is not set on "shop"\n');

  const refused = await sys.cli(["apps", "destroy", "shop"]);
  equal(refused.code, 2, "stdin is not a terminal: no prompt");
  match(refused.stderr, /^oneoff apps: Destroying "shop" .*: pass --confirm shop\n/);
  const wrong = await sys.cli(["apps", "destroy", "shop", "--confirm", "shoe"]);
  equal(wrong.code, 1);
  equal(wrong.stderr, 'oneoff: Not destroyed: "shoe" is not "shop"\n');
  ok(await sys.server.ctx.store.appByName("shop"), "still there");
  const destroyed = await sys.cli(["apps", "destroy", "shop", "--confirm", "shop"]);
  equal(destroyed.code, 0, destroyed.stderr);
  equal(await sys.server.ctx.store.appByName("shop"), null);

  const home = await Deno.makeTempDir({ dir: sys.dir });
  const alone = { HOME: home, ONEOFF_SERVER: "", ONEOFF_TOKEN: "" };
  equal(
    (await sys.cli(["login", "--server", sys.url, "--token", sys.token], { env: alone })).code,
    0,
  );
  equal((await sys.cli(["whoami"], { env: alone })).code, 0);
  const out = await sys.cli(["logout"], { env: alone });
  equal(out.stdout, `Logged out: removed ${home}/.config/oneoff/config.json\n`);
  const gone = await sys.cli(["whoami"], { env: alone });
  equal(gone.code, 1);
  match(gone.stderr, /^oneoff: Not logged in/);
  match((await sys.cli(["logout"], { env: alone })).stdout, /^Not logged in: no /);
});

Deno.test("every request has a User-Agent; ONEOFF_DEBUG=1 prints each one without the token", async () => {
  const agents: string[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    agents.push(req.headers.get("user-agent") ?? "");
    return Response.json({ apps: [] });
  });
  const env = {
    ONEOFF_SERVER: `http://127.0.0.1:${server.addr.port}`,
    ONEOFF_TOKEN: "oo_secret-token",
    ONEOFF_DEBUG: "1",
  };
  const res = await oneoff(["apps", "list"], env);
  equal(res.code, 0, res.stderr);
  deepEqual(agents, [`oneoff/${VERSION} (deno ${Deno.version.deno}; linux)`]);
  match(
    res.stderr,
    new RegExp(
      `^oneoff debug: GET http://127\\.0\\.0\\.1:${server.addr.port}/api/apps 200 \\(\\d+ ms\\)\n$`,
    ),
  );
  ok(!res.stderr.includes("secret"));
  const quiet = await oneoff(["apps", "list"], { ...env, ONEOFF_DEBUG: "" });
  equal(quiet.stderr, "");
});
