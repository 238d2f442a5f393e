import { deepEqual, equal } from "node:assert/strict";
import {
  decodeCreateAppBody,
  decodeCreateTokenBody,
  decodeEnvChangeBody,
  decodeResizeBody,
  decodeRunRequestBody,
  type RunRequestBody,
} from "./mod.ts";

function refusal(decoded: { ok: boolean; code?: string; error?: string }) {
  equal(decoded.ok, false);
  return [decoded.code, decoded.error];
}

Deno.test("a full run request decodes to itself", () => {
  const body: RunRequestBody = {
    command: "rake db:migrate",
    type: "worker",
    attached: true,
    tty: true,
    cols: 120,
    rows: 40,
    size: "L",
    env: { DEBUG: "1" },
    uploads: [{ name: "dump.sql", sha256: "ab".repeat(32) }],
    timeout: 60,
    term: "xterm-kitty",
  };
  deepEqual(decodeRunRequestBody(body), { ok: true, value: body });
  deepEqual(decodeRunRequestBody({}), { ok: true, value: {} });
});

Deno.test("a run request's unusable terminal size and TERM are left to the defaults", () => {
  deepEqual(
    decodeRunRequestBody({ command: "x", cols: 0, rows: 1e6, term: "bad term", size: null }),
    { ok: true, value: { command: "x" } },
  );
});

Deno.test("a run request is refused with the API's code and one line", () => {
  const cases: [unknown, string, string][] = [
    [{ size: "XXL" }, "unknown_size", 'Unknown size "XXL": use one of S, M, L, XL'],
    [{ command: 3 }, "invalid_command", "Give a command to run (or a process type with -t)"],
    [{ env: [] }, "invalid", 'Field "env" must be an object'],
    [{ env: { "A B": "1" } }, "invalid_env", 'Invalid variable "A B": give KEY=VALUE'],
    [{ env: { A: 1 } }, "invalid_env", 'Invalid variable "A": give KEY=VALUE'],
    [{ uploads: [{ name: "..", sha256: "ab" }] }, "invalid_upload", 'Invalid upload name ".."'],
    [
      { uploads: [{ name: "a", sha256: "xyz" }] },
      "invalid_upload",
      'Upload "a" was not uploaded first',
    ],
    [{ uploads: "a" }, "invalid", 'Field "uploads" must be a list'],
    [{ timeout: -1 }, "invalid", 'Field "timeout" must be a positive number of seconds'],
    [{ attached: "yes" }, "invalid", 'Field "attached" must be true or false'],
  ];
  for (const [body, code, error] of cases) {
    deepEqual(refusal(decodeRunRequestBody(body)), [code, error], JSON.stringify(body));
  }
});

Deno.test("env changes need a valid key and at least one change", () => {
  deepEqual(decodeEnvChangeBody({ set: { A: "1" }, unset: ["B"] }), {
    ok: true,
    value: { set: { A: "1" }, unset: ["B"] },
  });
  const cases: [unknown, string, string][] = [
    [{}, "invalid", "Nothing to change: give KEY=VALUE pairs or keys to unset"],
    [{ set: {}, unset: [] }, "invalid", "Nothing to change: give KEY=VALUE pairs or keys to unset"],
    [{ set: [] }, "invalid", 'Field "set" must be an object of KEY: "value"'],
    [{ set: { "BAD KEY": "x" } }, "invalid_key", 'Invalid variable name "BAD KEY"'],
    [{ set: { A: 1 } }, "invalid", 'Value of "A" must be a string'],
    [{ unset: "A" }, "invalid", 'Field "unset" must be a list of keys'],
    [{ unset: [1] }, "invalid_key", 'Invalid variable name "1"'],
  ];
  for (const [body, code, error] of cases) {
    deepEqual(refusal(decodeEnvChangeBody(body)), [code, error], JSON.stringify(body));
  }
});

Deno.test("apps, tokens and resizes are refused naming the field", () => {
  deepEqual(refusal(decodeCreateAppBody({})), ["invalid", 'Field "name" must be a string']);
  equal(refusal(decodeCreateAppBody({ name: "Demo" }))[0], "invalid_name");
  deepEqual(refusal(decodeCreateTokenBody({ role: "root" })), [
    "invalid_role",
    'Unknown role "root": use member or admin',
  ]);
  deepEqual(refusal(decodeCreateTokenBody({ apps: [1] })), [
    "invalid",
    'Field "apps[0]" must be a string',
  ]);
  deepEqual(refusal(decodeResizeBody({ cols: 80 })), [
    "invalid",
    "Give cols and rows as positive integers",
  ]);
  deepEqual(decodeResizeBody({ cols: 80, rows: 24 }), {
    ok: true,
    value: { cols: 80, rows: 24 },
  });
});
