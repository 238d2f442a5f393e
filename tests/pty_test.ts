import { deepEqual, match } from "node:assert/strict";
import { startSystem } from "./_system.ts";
import { Terminal } from "./_terminal.ts";
import { waitFor } from "./_wait.ts";

Deno.test("an interactive PTY session: tty, resize, Ctrl-C and the shell's exit code", async () => {
  await using sys = await startSystem();
  const term = new Terminal(["run", "-a", "demo", "bash"], sys.cliEnv(), { cols: 100, rows: 30 });
  term.type("PS1='READY> '\r");
  await term.waitFor(/READY> /);
  let mark = term.output.length;
  term.type("tty; stty size\r");
  const first = await term.waitFor(/30 100[\s\S]*READY> /, mark);
  match(first, /\/dev\/(pts\/\d+|console)\s/);

  // The resize travels CLI → server → agent: ask until the shell sees it.
  term.resize(120, 40);
  await waitFor(async () => {
    mark = term.output.length;
    term.type("stty size\r");
    const seen = await term.waitFor(/\d+ \d+\s[\s\S]*READY> /, mark);
    return /40 120/.test(seen);
  }, { message: "the shell to see the new size 40 120", seen: () => term.output.slice(mark) });

  // $((...)) is expanded by the shell, so the marker shows only once sleep runs.
  mark = term.output.length;
  term.type("echo sleeping-$((6*7)); sleep 30; echo after-sleep\r");
  await term.waitFor(/sleeping-42/, mark);
  mark = term.output.length;
  term.type("\x03");
  await term.waitFor(/READY> /, mark);
  deepEqual(
    term.output.slice(mark).includes("after-sleep\r"),
    false,
    "Ctrl-C ended the whole command line",
  );
  mark = term.output.length;
  term.type("echo still-$((40+2))\r");
  await term.waitFor(/still-42/, mark);

  term.type("exit 3\r");
  deepEqual(await term.exit, 3);
});

Deno.test("the prompt of a one-off says where you are, unless the app sets its own PS1", async () => {
  await using sys = await startSystem();
  const term = new Terminal(["run", "-a", "demo", "bash"], sys.cliEnv(), { cols: 100, rows: 30 });
  const first = await term.waitFor(/one-off-\d+ demo:\/app \$ /);
  const label = /one-off-\d+/.exec(first)![0];
  let mark = term.output.length;
  term.type("cd /tmp\r");
  await term.waitFor(new RegExp(`${label} demo:/tmp \\$ `), mark);
  term.type("exit\r");
  deepEqual(await term.exit, 0);

  await sys.cli(["env", "set", "-a", "demo", "PS1=app-prompt> "]);
  const own = new Terminal(["run", "-a", "demo", "bash"], sys.cliEnv(), { cols: 100, rows: 30 });
  await own.waitFor(/app-prompt> /);
  own.type("exit 4\r");
  deepEqual(await own.exit, 4);
  const flagged = new Terminal(
    ["run", "-a", "demo", "-e", "PS1=mine> ", "bash"],
    sys.cliEnv(),
    { cols: 100, rows: 30 },
  );
  mark = 0;
  await flagged.waitFor(/mine> /, mark);
  flagged.type("exit\r");
  deepEqual(await flagged.exit, 0);
});

Deno.test("deploy on a terminal shows the bytes sent on stderr; apps destroy asks for the name", async () => {
  await using sys = await startSystem({ demo: false });
  await sys.cli(["apps", "create", "big"]);
  const dir = await Deno.makeTempDir({ dir: sys.dir });
  // Random bytes do not compress: the slug is about this size.
  const data = new Uint8Array(3 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  await Deno.writeFile(`${dir}/blob.bin`, data);
  const deploy = new Terminal(["deploy", "-a", "big", dir], sys.cliEnv(), { cols: 100, rows: 30 });
  deepEqual(await deploy.exit, 0, deploy.output);
  match(deploy.output, /Uploading: 3\.\d MiB \([\d.]+ [KMG]?i?B\/s\)/);
  match(deploy.output, /Deployed "big" v1/);

  const destroy = new Terminal(["apps", "destroy", "big"], sys.cliEnv(), { cols: 100, rows: 30 });
  await destroy.waitFor(/Type its name to confirm: /);
  destroy.type("big\r");
  deepEqual(await destroy.exit, 0, destroy.output);
  match(destroy.output, /Destroyed app "big"/);
  deepEqual(await sys.server.ctx.store.appByName("big"), null);
});

Deno.test("port 5000 blocked: an interactive PTY session through the server, resize, Ctrl-C and the exit code", async () => {
  // Advertised where nothing answers (TEST-NET-1): auto falls back to the relay.
  await using sys = await startSystem({ advertise: "192.0.2.1" });
  const term = new Terminal(["run", "-a", "demo", "bash"], sys.cliEnv(), { cols: 100, rows: 30 });
  await term.waitFor(/attaching through the server/);
  term.type("PS1='READY> '\r");
  await term.waitFor(/READY> /);
  let mark = term.output.length;
  term.type("tty; stty size\r");
  match(await term.waitFor(/30 100[\s\S]*READY> /, mark), /\/dev\/(pts\/\d+|console)\s/);
  term.resize(120, 40);
  await waitFor(async () => {
    mark = term.output.length;
    term.type("stty size\r");
    const seen = await term.waitFor(/\d+ \d+\s[\s\S]*READY> /, mark);
    return /40 120/.test(seen);
  }, { message: "the shell to see the new size 40 120", seen: () => term.output.slice(mark) });
  mark = term.output.length;
  term.type("echo sleeping-$((6*7)); sleep 30; echo after-sleep\r");
  await term.waitFor(/sleeping-42/, mark);
  mark = term.output.length;
  term.type("\x03");
  await term.waitFor(/READY> /, mark);
  deepEqual(term.output.slice(mark).includes("after-sleep\r"), false, "Ctrl-C reached the shell");
  term.type("exit 5\r");
  deepEqual(await term.exit, 5);
  deepEqual(term.output.match(/attaching through the server/g)?.length, 1, "said once");
});
