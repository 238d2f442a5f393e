import { deepEqual, equal, match, ok } from "node:assert/strict";
import { startSystem, type TestSystem } from "./_system.ts";
import { waitFor } from "./_wait.ts";
import { openStore } from "../server/store/open.ts";
import { AuditService } from "../server/audit/mod.ts";
import { recordFakeSession } from "../server/audit/_fake_sessions.ts";

/** Stores `count` ordinary recorded sessions of "demo" through the server's own audit ingest. */
async function fakeSessions(sys: TestSystem, count: number): Promise<void> {
  // The server's database and key file, as a second server process would use them.
  const store = await openStore(`sqlite:${sys.dir}/server/oneoff.db`);
  try {
    const audit = await AuditService.open(store, `${sys.dir}/server/audit.key`);
    const app = (await store.appByName("demo"))!;
    for (let i = 0; i < count; i++) {
      await recordFakeSession({ store, audit }, app, {
        actor: "admin",
        typed: ["psql -c 'select count(*) from orders'", "exit"],
        output: Array.from({ length: 40 }, (_, n) => ` ${n} | order ${n * 13} | paid`),
      });
    }
  } finally {
    await store.close();
  }
}

// Every file under a folder, as latin1 text.
async function everyFile(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) { for (const [p, text] of await everyFile(path)) files.set(p, text); }
    else if (entry.isFile) {
      files.set(path, new TextDecoder("latin1").decode(await Deno.readFile(path)));
    }
  }
  return files;
}

Deno.test("audit search finds the marker typed in one real session among 200 recorded ones, nothing of it in clear on disk or in logs", async () => {
  const logged: string[] = [];
  await using sys = await startSystem({ logSink: (line) => logged.push(line) });
  await fakeSessions(sys, 200);
  const marker = `typed-marker-${crypto.randomUUID()}`;
  const run = await sys.cli(
    ["run", "-a", "demo", "--no-tty", "--silent", "--reason", "INC-1234: check", "--", "cat"],
    { stdin: `${marker}\n` },
  );
  equal(run.code, 0, run.stderr);
  await waitFor(async () => {
    const audit = await sys.api<{ final: boolean }>("GET", "/apps/demo/runs/one-off-201/audit");
    return audit.final;
  }, { message: "one-off-201's recording to be final" });

  const started = performance.now();
  const search = await sys.cli(["audit", "search", "-a", "demo", marker]);
  const took = performance.now() - started;
  equal(search.code, 0, search.stderr);
  console.log(
    `oneoff audit search over 201 sessions: ${Math.round(took)} ms (${search.stderr.trim()})`,
  );
  match(search.stderr, /^2 hits in 1 of 201 sessions of the last 7d/);
  const lines = search.stdout.trimEnd().split("\n");
  match(lines[0]!, /^one-off-201 by admin at \S+: cat \(reason: INC-1234: check\)$/);
  equal(lines.length, 3, search.stdout);
  ok(lines.slice(1).every((l) => /^ {2}\+0:\d\d\.\d [⟩ ] /.test(l) && l.endsWith(marker)));

  const list = await sys.cli(["audit", "list", "-a", "demo", "-n", "3", "--json"]);
  equal(list.code, 0, list.stderr);
  const sessions = JSON.parse(list.stdout) as { run: string; reason: string; bytes: number }[];
  deepEqual(sessions.map((s) => s.run), ["one-off-201", "one-off-200", "one-off-199"]);
  deepEqual([sessions[0]!.reason, sessions[0]!.bytes], ["INC-1234: check", marker.length * 2 + 2]);

  const table = await sys.cli(["audit", "list", "-a", "demo", "-n", "2"]);
  equal(table.code, 0, table.stderr);
  const [head, first] = table.stdout.split("\n");
  match(head!, /^NAME +USER +STARTED +DURATION +EXIT +BYTES +COMMAND +REASON$/);
  match(first!, /^one-off-201 +admin +\S+ \S+ +\d+s +0 +\d+ B +cat +INC-1234: check$/);
  match(table.stderr, /older sessions not listed/);

  // The transcript for grep, and the recording's header with who ran it and why.
  const text = await sys.cli(["audit", "show", "-a", "demo", "one-off-201", "--format", "text"]);
  equal(text.code, 0, text.stderr);
  ok(text.stdout.includes(`⟩ ${marker}`), text.stdout);
  const cast = await sys.cli(["audit", "show", "-a", "demo", "one-off-201", "--format", "cast"]);
  const header = JSON.parse(cast.stdout.split("\n")[0]!);
  deepEqual([header.user, header.command, header.reason], ["admin", "cat", "INC-1234: check"]);

  // The search is on the timeline, its text is nowhere in clear: not the
  // database, the key file, the blobs, nor what the server and agent logged.
  const timeline = await sys.cli(["timeline", "-a", "demo", "-n", "5"]);
  match(timeline.stdout, /searched 201 session recordings of the last 7d: 2 hits/);
  for (const [path, text] of await everyFile(sys.dir)) {
    if (path.includes("/.config/")) continue;
    ok(!text.includes(marker), `no plaintext marker in ${path}`);
  }
  ok(logged.length > 0, "the server and agent logged");
  ok(!logged.some((line) => line.includes(marker)), "the marker is not in any log line");
});

Deno.test("an app that requires a reason refuses a run without one; the reason shows in ps and the timeline; another app's member may not search", async () => {
  await using sys = await startSystem();
  const set = await sys.cli(["apps", "set", "demo", "--require-reason"]);
  equal(set.code, 0, set.stderr);
  match(set.stdout, /Require reason: {2}yes/);
  const refused = await sys.cli(["run", "-a", "demo", "-d", "true"]);
  equal(refused.code, 1);
  equal(
    refused.stderr,
    'oneoff: Cannot start a one-off of "demo": the app requires a reason for every run; ' +
      'say why with --reason "..."\n',
  );
  const reason = "<script>alert(1)</script> INC-9";
  const detached = await sys.cli(["run", "-a", "demo", "-d", "--reason", reason, "true"]);
  equal(detached.code, 0, detached.stderr);
  const ps = await sys.cli(["ps", "-a", "demo"]);
  match(ps.stdout, /REASON/);
  ok(ps.stdout.includes(reason), ps.stdout);
  const psJson = JSON.parse((await sys.cli(["ps", "-a", "demo", "--json"])).stdout);
  equal(psJson[0].purpose, reason);
  const timeline = await sys.cli(["timeline", "-a", "demo", "-n", "5"]);
  ok(timeline.stdout.includes(`because: ${reason}`), timeline.stdout);

  await sys.cli(["apps", "create", "other"]);
  const token = (await sys.cli(["tokens", "create", "--role", "member", "--app", "other"])).stdout
    .trim();
  const denied = await sys.cli(["audit", "search", "-a", "demo", "INC"], {
    env: { ONEOFF_TOKEN: token },
  });
  equal(denied.code, 1);
  match(denied.stderr, /may not use app "demo"/);
  const deniedList = await sys.cli(["audit", "list", "-a", "demo"], {
    env: { ONEOFF_TOKEN: token },
  });
  equal(deniedList.code, 1);
});
