import { deepEqual, equal, ok } from "node:assert/strict";
import {
  type AgentMessage,
  decodeAgentMessage,
  decodeServerMessage,
  DEFAULT_SIZES,
  type RunSpec,
  type ServerMessage,
} from "./mod.ts";

const hello: AgentMessage = {
  type: "hello",
  token: "join_x",
  name: "a1",
  version: "0.1.0",
  capacity: 2,
  sandbox: "bwrap",
  attach: { host: "127.0.0.1", port: 5000, tls: true, tlsFingerprint: "ab" },
  running: ["r1"],
  ended: [{ runId: "r0", state: "exited", exitCode: 0, at: 1, lines: 12 }],
  warnings: [],
};

const spec: RunSpec = {
  runId: "r1",
  app: "demo",
  label: "one-off-1",
  command: "echo hi",
  env: { APP: "demo" },
  slug: { sha256: "cd".repeat(32), size: 10 },
  size: "M",
  limits: DEFAULT_SIZES.M,
  tty: false,
  cols: 80,
  rows: 24,
  attach: { secretSha256: "ef".repeat(32), expiresAt: 1_700_000_000_000 },
  timeoutMs: 1000,
  idleTimeoutMs: 1000,
  uploads: [{ name: "a.txt", sha256: "ab".repeat(32), size: 3 }],
  network: "host",
};

const { attach: _, ...rest } = spec;
const detached: RunSpec = { ...rest, uploads: [] };

Deno.test("every agent message survives the round trip through its decoder", () => {
  const messages: AgentMessage[] = [
    hello,
    {
      type: "hello",
      credential: "c".repeat(43),
      name: "a1",
      version: "0.1.0",
      capacity: 1,
      sandbox: "runc",
      attach: { host: "h", port: 5000, tls: false },
      running: [],
      ended: [],
      warnings: [],
    },
    { type: "heartbeat", running: [] },
    { type: "run_state", runId: "r1", state: "exited", exitCode: 3, at: 1 },
    { type: "run_state", runId: "r1", state: "running", at: 1 },
    { type: "attach_ready", runId: "r1", expiresAt: 2 },
    {
      type: "logs",
      runId: "r1",
      batch: 0,
      records: [{ seq: 0, stream: "stderr", ts: 1, line: "x" }],
    },
    { type: "audit", runId: "r1", seq: 4, data: "AAAA" },
    { type: "session_event", runId: "r1", kind: "reattached", at: 3, address: "10.0.0.5:4" },
    { type: "draining" },
  ];
  for (const msg of messages) {
    deepEqual(decodeAgentMessage(JSON.stringify(msg)), { ok: true, value: msg });
  }
});

Deno.test("every server message survives the round trip through its decoder", () => {
  const messages: ServerMessage[] = [
    { type: "welcome", agentId: "a", heartbeatMs: 5000 },
    { type: "welcome", agentId: "a", heartbeatMs: 5000, trust: "pending" },
    { type: "enrolled", agentId: "a", credential: "c".repeat(43) },
    { type: "refused", reason: "Wrong join token" },
    { type: "start_run", spec },
    { type: "start_run", spec: detached },
    { type: "stop_run", runId: "r1" },
    { type: "resize", runId: "r1", cols: 100, rows: 30 },
    { type: "reattach", runId: "r1", secretSha256: "ab".repeat(32), expiresAt: 5 },
    { type: "heartbeat" },
    { type: "logs_ack", runId: "r1", batch: 9 },
    { type: "logs_nack", runId: "r1", batch: 9, reason: "Store unavailable" },
    { type: "audit_ack", runId: "r1", seq: 9 },
    { type: "audit_nack", runId: "r1", seq: 9, reason: "Store unavailable" },
    { type: "state_ack", runId: "r1" },
  ];
  for (const msg of messages) {
    deepEqual(decodeServerMessage(JSON.stringify(msg)), { ok: true, value: msg });
  }
});

Deno.test("a malformed agent message is refused with the field that is wrong", () => {
  const cases: [unknown, string][] = [
    [{ type: "run_state", runId: 7, state: "exited", at: 1 }, 'Field "runId" must be a string'],
    [
      { type: "run_state", runId: "r", state: "done", at: 1 },
      'Field "state" must be one of pending, starting, running, exited, failed, timed_out, stopped, expired, lost',
    ],
    [
      { ...hello, attach: { host: "h", port: "5000", tls: false } },
      'Field "attach.port" must be an integer',
    ],
    [{ ...hello, sandbox: "docker" }, 'Field "sandbox" must be one of bwrap, runc'],
    [
      { type: "logs", runId: "r", batch: 0, records: [{ seq: 0, stream: "stdout", ts: 1 }] },
      'Field "records[0].line" must be a string',
    ],
    [{ type: "shout" }, 'Unknown message type "shout"'],
    [{ runId: "r" }, 'Field "type" must be a string'],
    [[1], "Value must be an object"],
  ];
  for (const [msg, error] of cases) {
    deepEqual(decodeAgentMessage(JSON.stringify(msg)), {
      ok: false,
      error,
      code: "invalid",
    });
  }
  equal(decodeAgentMessage("{nope").ok, false);
});

Deno.test("a decoded message holds only the fields of its type", () => {
  const decoded = decodeAgentMessage(
    JSON.stringify({ type: "heartbeat", running: [], extra: { huge: true } }),
  );
  deepEqual(decoded, { ok: true, value: { type: "heartbeat", running: [] } });
});

Deno.test("a start_run with a bad spec is refused whole, naming the nested field", () => {
  const bad = { type: "start_run", spec: { ...spec, limits: { ...spec.limits, pids: "many" } } };
  deepEqual(decodeServerMessage(JSON.stringify(bad)), {
    ok: false,
    error: 'Field "spec.limits.pids" must be an integer',
    code: "invalid",
  });
});

Deno.test("a __proto__ key in a decoded map stays a plain key", () => {
  const text = JSON.stringify({ type: "start_run", spec }).replace(
    '"env":{',
    '"env":{"__proto__":{"polluted":"yes"},',
  );
  const decoded = decodeServerMessage(text);
  equal(decoded.ok, false, "a non-string value is refused");
  const stringValue = decodeServerMessage(text.replace('{"polluted":"yes"}', '"x"'));
  ok(stringValue.ok && stringValue.value.type === "start_run");
  const env = stringValue.value.spec.env;
  equal(Object.getPrototypeOf(env), Object.prototype);
  equal(Object.getOwnPropertyDescriptor(env, "__proto__")?.value, "x");
});
