import { deepEqual, equal } from "node:assert/strict";
import {
  describeEvent,
  eventText,
  isKnownEvent,
  type TimelineEventBody,
  type TimelineEventKind,
} from "./mod.ts";

// One event of every kind and how it reads; the Record type makes a new kind
// without a row here a compile error.
const SENTENCES: Record<TimelineEventKind, [TimelineEventBody, string]> = {
  "app.created": [{ kind: "app.created", data: {} }, "created the app"],
  "app.destroyed": [{ kind: "app.destroyed", data: {} }, "destroyed the app"],
  "app.settings": [
    {
      kind: "app.settings",
      data: {
        changes: [
          { setting: "idle-timeout", from: "default (30m)", to: "1h" },
          { setting: "network", from: "isolated", to: "host" },
        ],
      },
    },
    "set idle-timeout from default (30m) to 1h, network from isolated to host",
  ],
  "logs.trimmed": [
    { kind: "logs.trimmed", data: { lines: 1200, bytes: 3 * 1024 ** 2, quota: 4 * 1024 ** 3 } },
    "removed the app's oldest 1200 log lines (3 MiB) (over the server's log quota of 4 GiB per app)",
  ],
  "deploy": [
    {
      kind: "deploy",
      data: {
        release: 3,
        sha256: "0".repeat(64),
        size: 1_258_291,
        process_types: ["web", "worker"],
      },
    },
    "deployed release v3 (1.2 MiB) with process types web, worker",
  ],
  "env.set": [{ kind: "env.set", data: { keys: ["A", "B"] } }, "set A, B"],
  "env.unset": [{ kind: "env.unset", data: { keys: ["A"] } }, "unset A"],
  "run.created": [
    {
      kind: "run.created",
      data: {
        run: "one-off-7",
        command: "rake db:migrate",
        attached: true,
        size: "L",
        env_keys: [],
      },
    },
    "started one-off-7 attached, size L: rake db:migrate",
  ],
  "run.ended": [
    {
      kind: "run.ended",
      data: {
        run: "one-off-7",
        command: "rake db:migrate",
        state: "exited",
        exit_code: 1,
        reason: null,
        duration_ms: 61_000,
      },
    },
    "one-off-7 ended exited with exit code 1 after 1 min 1 s: rake db:migrate",
  ],
  "run.stop": [{ kind: "run.stop", data: { run: "one-off-8" } }, "asked one-off-8 to stop"],
  "run.artifacts": [
    {
      kind: "run.artifacts",
      data: { run: "one-off-9", files: 2, bytes: 2048, refused: ['"p": a symbolic link'] },
    },
    'kept 2 files (2 KiB) of one-off-9 (refused: "p": a symbolic link)',
  ],
  "run.reattached": [
    { kind: "run.reattached", data: { run: "one-off-8", address: "10.0.0.5:41234" } },
    "reattached to one-off-8 (from 10.0.0.5:41234)",
  ],
  "run.recovered": [
    { kind: "run.recovered", data: { run: "one-off-7", command: "sleep 600" } },
    "one-off-7 is running again (marked lost, but its agent came back still running it): sleep 600",
  ],
  "run.logs_missing": [
    { kind: "run.logs_missing", data: { run: "one-off-7", missing: 10000, lines: 70000 } },
    "one-off-7 is missing 10000 of its 70000 log lines (they never reached the server's store)",
  ],
  "run.watch_started": [
    { kind: "run.watch_started", data: { run: "one-off-7" } },
    "started watching one-off-7",
  ],
  "run.watch_ended": [
    { kind: "run.watch_ended", data: { run: "one-off-7", duration_ms: 90_000 } },
    "stopped watching one-off-7 after 1 min 30 s",
  ],
  "audit.viewed": [
    { kind: "audit.viewed", data: { run: "one-off-7", format: "cast" } },
    "viewed the session recording of one-off-7 (cast)",
  ],
  "audit.searched": [
    { kind: "audit.searched", data: { sessions: 200, hits: 1, since_ms: 7 * 86_400_000 } },
    "searched 200 session recordings of the last 7d: 1 hit (the text searched for is not kept)",
  ],
  "audit.key_rotated": [
    { kind: "audit.key_rotated", data: { key: "k2" } },
    "rotated the audit key, now k2",
  ],
  "token.created": [
    { kind: "token.created", data: { role: "admin", name: "ci" } },
    'created an admin token "ci"',
  ],
  "token.revoked": [
    { kind: "token.revoked", data: { role: "member", name: "alice" } },
    'revoked a member token "alice"',
  ],
  "agent.approved": [
    { kind: "agent.approved", data: { agent: "vm-1" } },
    'approved the agent "vm-1"',
  ],
  "agent.revoked": [
    { kind: "agent.revoked", data: { agent: "vm-1" } },
    'revoked the agent "vm-1"',
  ],
  "join_token.rotated": [{ kind: "join_token.rotated", data: {} }, "rotated the join token"],
};

Deno.test("every kind of event reads as a sentence", () => {
  for (const [kind, [event, sentence]] of Object.entries(SENTENCES)) {
    equal(event.kind, kind);
    equal(isKnownEvent(event), true, kind);
    equal(eventText(event), sentence, kind);
  }
});

Deno.test("optional parts of a sentence show only when the event has them", () => {
  equal(
    eventText({
      kind: "run.created",
      data: { run: "one-off-2", command: "sh", attached: false, size: "M", env_keys: ["X", "Y"] },
    }),
    "started one-off-2 detached, size M: sh with X, Y",
  );
  equal(
    eventText({
      kind: "run.created",
      data: {
        run: "one-off-3",
        command: "sh",
        attached: true,
        size: "M",
        env_keys: [],
        reason: "INC-9",
      },
    }),
    "started one-off-3 attached, size M: sh, because: INC-9",
  );
  equal(
    eventText({
      kind: "run.ended",
      data: {
        run: "one-off-2",
        command: "sh",
        state: "lost",
        exit_code: null,
        reason: "Agent went away",
        duration_ms: null,
      },
    }),
    "one-off-2 ended lost (Agent went away): sh",
  );
  equal(
    eventText({
      kind: "deploy",
      data: { release: 1, sha256: "0".repeat(64), size: 512, process_types: [] },
    }),
    "deployed release v1 (512 B)",
  );
  equal(
    eventText({ kind: "token.created", data: { role: "member", name: "bob" } }),
    'created a member token "bob"',
  );
});

Deno.test("run labels come out as run references, keys and commands as their own pieces", () => {
  deepEqual(describeEvent({ kind: "run.stop", data: { run: "one-off-8" } }), [
    { type: "text", text: "asked " },
    { type: "run", text: "one-off-8" },
    { type: "text", text: " to stop" },
  ]);
  const ended = describeEvent({
    kind: "run.ended",
    data: {
      run: "one-off-3",
      command: "true",
      state: "exited",
      exit_code: 0,
      reason: null,
      duration_ms: 850,
    },
  });
  deepEqual(ended.filter((s) => s.type !== "text"), [
    { type: "run", text: "one-off-3" },
    { type: "state", text: "exited" },
    { type: "exit", text: "0" },
    { type: "command", text: "true" },
  ]);
  deepEqual(describeEvent({ kind: "env.unset", data: { keys: ["A", "B"] } }), [
    { type: "text", text: "unset " },
    { type: "name", text: "A" },
    { type: "text", text: ", " },
    { type: "name", text: "B" },
  ]);
});

Deno.test("kinds no longer written and data that does not fit its kind read as they are", () => {
  deepEqual(describeEvent({ kind: "app.renamed", data: { from: "a", to: "b" } }), [
    { type: "text", text: "app.renamed " },
    { type: "data", text: '{"from":"a","to":"b"}' },
  ]);
  equal(eventText({ kind: "legacy.thing", data: {} }), "legacy.thing");
  // A known kind with old or broken data: no sentence, no crash, no link.
  const broken = [
    { kind: "deploy", data: { release: 2 } },
    { kind: "env.set", data: { keys: "A" } },
    { kind: "run.stop", data: { run: "../../admin" } },
    { kind: "run.ended", data: { run: "one-off-1", state: "exited" } },
    { kind: "token.created", data: { role: "root", name: "x" } },
    { kind: "app.created", data: null as unknown as Record<string, unknown> },
    { kind: "run.created", data: ["one-off-1"] as unknown as Record<string, unknown> },
  ];
  for (const event of broken) {
    equal(isKnownEvent(event), false, event.kind);
    const segments = describeEvent(event);
    equal(segments[0]?.text, `${event.kind} `);
    equal(segments.some((s) => s.type === "run"), false, event.kind);
  }
});

Deno.test("data may carry fields a newer server added", () => {
  const event = { kind: "run.stop", data: { run: "one-off-4", by: "the reaper" } };
  equal(isKnownEvent(event), true);
  equal(eventText(event), "asked one-off-4 to stop");
});
