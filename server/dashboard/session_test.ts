import { deepEqual, match, ok, rejects } from "node:assert/strict";
import { lazySigner, loadSessionKey, SessionSigner } from "./session.ts";

const HASH = "ab".repeat(32);
const ID = "session-id-0123456789";

function signer(fill = 7): SessionSigner {
  return new SessionSigner(new Uint8Array(32).fill(fill));
}

Deno.test("a signed session verifies until it expires", () => {
  const s = signer();
  const value = s.sign({ id: ID, tokenHash: HASH, expiresAt: 2_000 });
  deepEqual(s.verify(value, 1_999), { id: ID, tokenHash: HASH, expiresAt: 2_000 });
  deepEqual(s.verify(value, 2_000), null);
});

Deno.test("a session signed with another key, or altered, does not verify", () => {
  const value = signer(1).sign({ id: ID, tokenHash: HASH, expiresAt: Date.now() + 60_000 });
  deepEqual(signer(2).verify(value), null);
  const [payload, sig] = value.split(".") as [string, string];
  const later = btoa(JSON.stringify({ id: ID, h: HASH, exp: Date.now() + 9e9 })).replace(/=+$/, "");
  deepEqual(signer(1).verify(`${later}.${sig}`), null);
  deepEqual(signer(1).verify(`${payload}.${sig.slice(0, -2)}`), null);
  deepEqual(signer(1).verify(`${payload}.${sig}.x`), null);
  deepEqual(signer(1).verify(""), null);
});

Deno.test("a CSRF token is bound to its session and its purpose", () => {
  const s = signer();
  const a = s.sign({ id: ID, tokenHash: HASH, expiresAt: 1e15 });
  const b = s.sign({ id: ID, tokenHash: HASH, expiresAt: 1e15 + 1 });
  const token = s.csrf("session", a);
  ok(s.checkCsrf("session", a, token));
  ok(!s.checkCsrf("session", b, token));
  ok(!s.checkCsrf("login", a, token));
  ok(!s.checkCsrf("session", a, ""));
  // A CSRF token is never the cookie's signature, though both are HMACs of it.
  ok(!a.endsWith(token));
});

Deno.test("a key shorter than 32 bytes is refused", () => {
  let message = "";
  try {
    new SessionSigner(new Uint8Array(16));
  } catch (err) {
    message = String(err);
  }
  match(message, /Session key is too short: 16 bytes/);
});

Deno.test("the session key file is made once, 0600, and read back the same", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-session-key-" });
  try {
    const path = `${dir}/session.key`;
    const [a, b, c] = await Promise.all([
      loadSessionKey(path),
      loadSessionKey(path),
      loadSessionKey(path),
    ]);
    deepEqual(a.length, 32);
    deepEqual([...a], [...b!]);
    deepEqual([...a], [...c!]);
    deepEqual([...a], [...await loadSessionKey(path)]);
    deepEqual((await Deno.stat(path)).mode! & 0o777, 0o600);
    deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["session.key"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a malformed session key file is reported, not replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-session-key-" });
  try {
    await Deno.writeTextFile(`${dir}/session.key`, "not hex\n");
    await rejects(
      () => loadSessionKey(`${dir}/session.key`),
      /Session key ".*session.key" is malformed/,
    );
    const load = lazySigner(`${dir}/session.key`);
    await rejects(() => load());
    // A failed load is retried on the next use, once the file is fixed.
    await Deno.writeTextFile(`${dir}/session.key`, "11".repeat(32));
    ok((await load()) instanceof SessionSigner);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a signed session without an id does not verify: it could not be revoked", () => {
  const s = signer();
  const value = s.sign({ id: "", tokenHash: HASH, expiresAt: 1e15 });
  deepEqual(s.verify(value), null);
});
