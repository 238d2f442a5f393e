import { deepEqual, equal, match } from "node:assert/strict";
/**
 * `oneoff apps set` and `apps show` end to end: the roles as separate
 * processes, a real sandbox, and an idle timeout set short on the app that
 * really stops an attached run that goes quiet.
 * @module
 */
import type { AppInfo, RunInfo } from "../protocol/mod.ts";
import { cli, freePort, Proc, startAgent, startServer, waitOnline } from "./_processes.ts";
import { needs } from "./_tools.ts";
import { waitFor } from "./_wait.ts";

const DEMO = new URL("../examples/demo", import.meta.url).pathname;

Deno.test(
  needs(["root"], {
    name: "an app's idle timeout set with apps set stops a quiet attached run, shown by ps",
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "oneoff-app-settings-" });
      try {
        const port = freePort();
        await using _server = await startServer(`${dir}/server`, port, [
          "--max-idle-timeout",
          "1h",
        ]);
        await using _agent = startAgent(`${dir}/agent`, port, "vm-1");
        const token = (await Deno.readTextFile(`${dir}/server/admin.token`)).trim();
        const env = { ONEOFF_SERVER: `http://127.0.0.1:${port}`, ONEOFF_TOKEN: token, HOME: dir };
        await waitOnline(env, ["vm-1"]);
        equal((await cli(env, ["apps", "create", "demo"])).code, 0);
        const deployed = await cli(env, ["deploy", "-a", "demo", DEMO]);
        equal(deployed.code, 0, deployed.stderr);

        const tooLong = await cli(env, ["apps", "set", "demo", "--idle-timeout", "2h"]);
        deepEqual(
          [tooLong.code, tooLong.stderr.trim()],
          [
            1,
            "oneoff: Cannot set the idle timeout to 2h: this server's maximum is 1h (its --max-idle-timeout)",
          ],
        );
        const set = await cli(env, ["apps", "set", "demo", "--idle-timeout", "2s"]);
        equal(set.code, 0, set.stderr);
        match(set.stdout, /^Idle timeout: +2s, at most 1h$/m);
        const shown = await cli(env, ["apps", "show", "demo", "--json"]);
        const app = JSON.parse(shown.stdout) as AppInfo;
        deepEqual([app.settings.idle_timeout_ms, app.settings.network], [2000, "isolated"]);

        // A member may set the idle timeout, not the network: told why.
        const member = await cli(env, ["tokens", "create", "-a", "demo", "--name", "bob"]);
        const bob = { ...env, ONEOFF_TOKEN: member.stdout.match(/oo_\S+/)![0] };
        const refused = await cli(bob, ["apps", "set", "demo", "--network", "host"]);
        equal(refused.code, 1);
        match(refused.stderr, /only an admin may, since they decide how far/);

        const started = Date.now();
        await using run = new Proc(["run", "-a", "demo", "--no-tty", "--", "echo hi; sleep 60"], {
          env,
          stdin: true,
        });
        await waitFor(() => run.stdout.includes("hi"), {
          message: "the run to start",
          seen: () => run.stderr,
        });
        const ps = await cli(env, ["ps", "-a", "demo", "--json"]);
        const [info] = JSON.parse(ps.stdout) as RunInfo[];
        equal(info?.idle_timeout_ms, 2000);
        match((await cli(env, ["ps", "-a", "demo"])).stdout, /IDLE[\s\S]*one-off-1 .* 2s /);
        const status = await run.status();
        deepEqual(status.code, 124, run.stderr);
        match(run.stderr, /one-off-1 timed out/);
        const took = Date.now() - started;
        // Far under the 30 min default, and not before the 2 s of quiet.
        equal(took >= 2000 && took < 30_000, true, `stopped after ${took} ms`);
        const timeline = await cli(env, ["timeline", "-a", "demo"]);
        match(timeline.stdout, /admin +set idle-timeout from default \(30m\) to 2s/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  }),
);
