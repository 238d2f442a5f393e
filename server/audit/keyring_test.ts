import { deepEqual, equal, rejects } from "node:assert/strict";
import { loadKeyring, rotateKey } from "./keyring.ts";

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-keyring-test-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function roundTrip(encryptWith: CryptoKey, decryptWith: CryptoKey): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv },
    encryptWith,
    new TextEncoder().encode("hi"),
  );
  return new TextDecoder().decode(
    await crypto.subtle.decrypt({ name: "AES-GCM", iv }, decryptWith, sealed),
  );
}

Deno.test("loadKeyring creates a missing key file with one fresh key, mode 0600", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/etc/audit-keys.json`;
    const keyring = await loadKeyring(path);
    equal(keyring.current, "k1");
    deepEqual([...keyring.keys.keys()], ["k1"]);
    equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const file = JSON.parse(await Deno.readTextFile(path));
    equal(file.current, "k1");
    equal(Uint8Array.fromBase64(file.keys.k1).length, 32);
    const again = await loadKeyring(path);
    equal(await roundTrip(keyring.keys.get("k1")!, again.keys.get("k1")!), "hi");
    deepEqual([...Deno.readDirSync(`${dir}/etc`)].map((e) => e.name), ["audit-keys.json"]);
  });
});

Deno.test("two servers creating the key file at once end up with the same key", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/keys.json`;
    const [a, b] = await Promise.all([loadKeyring(path), loadKeyring(path)]);
    equal(await roundTrip(a.keys.get("k1")!, b.keys.get("k1")!), "hi");
  });
});

Deno.test("rotateKey adds a current key, keeps the old ones and the mode, and leaves no temp file", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/keys.json`;
    const before = await loadKeyring(path);
    equal(await rotateKey(path), "k2");
    equal(await rotateKey(path), "k3");
    const after = await loadKeyring(path);
    equal(after.current, "k3");
    deepEqual([...after.keys.keys()].sort(), ["k1", "k2", "k3"]);
    equal(await roundTrip(before.keys.get("k1")!, after.keys.get("k1")!), "hi");
    equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["keys.json"]);
  });
});

Deno.test("rotateKey refuses a key file that does not exist", async () => {
  await withDir(async (dir) => {
    await rejects(
      rotateKey(`${dir}/none.json`),
      new Error(`Cannot rotate audit keys: key file "${dir}/none.json" does not exist`),
    );
  });
});

Deno.test("loadKeyring refuses a key file other users may read", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/keys.json`;
    await loadKeyring(path);
    await Deno.chmod(path, 0o644);
    await rejects(
      loadKeyring(path),
      new Error(
        `Audit key file "${path}" is open to other users (mode 0644): run chmod 600 "${path}"`,
      ),
    );
  });
});

Deno.test("loadKeyring explains what is wrong with a malformed key file", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/keys.json`;
    const expected = 'expected {"current":"k1","keys":{"k1":"<base64 of 32 bytes>"}}';
    const cases: [string, string][] = [
      ["not json", "it is not JSON"],
      ['{"current":"k1"}', '"keys" is not an object'],
      ['{"current":"k1","keys":{"k1":"c2hvcnQ="}}', 'key "k1" is not the base64 of 32 bytes'],
      [
        `{"current":"k2","keys":{"k1":"${new Uint8Array(32).toBase64()}"}}`,
        '"current" does not name one of its keys',
      ],
      [
        `{"current":"a b","keys":{"a b":"${new Uint8Array(32).toBase64()}"}}`,
        'key id "a b" has characters other than A-Z a-z 0-9 . _ -',
      ],
    ];
    for (const [content, why] of cases) {
      await Deno.writeTextFile(path, content, { mode: 0o600 });
      await rejects(
        loadKeyring(path),
        new Error(`Audit key file "${path}" is invalid: ${why}; ${expected}`),
      );
    }
  });
});
