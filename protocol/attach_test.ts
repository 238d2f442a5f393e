import { equal, throws } from "node:assert/strict";
import { selfSignedCertificate } from "../tests/_tls.ts";
import { needs } from "../tests/_tools.ts";
import { attachRefusal, certificateFingerprint, pemFingerprint } from "./mod.ts";

Deno.test(needs(["openssl"], {
  name: "pemFingerprint matches openssl's SHA-256 fingerprint",
  async fn() {
    const { cert, opensslFingerprint } = await selfSignedCertificate();
    equal(await pemFingerprint(cert), opensslFingerprint);
  },
}));

Deno.test("pemFingerprint refuses text without a certificate", () => {
  throws(() => pemFingerprint("-----BEGIN PRIVATE KEY-----\n"), /no "BEGIN CERTIFICATE"/);
});

Deno.test("certificateFingerprint is lowercase hex of the DER's SHA-256", async () => {
  equal(
    await certificateFingerprint(new TextEncoder().encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("a refusal is one line ending in CRLF", () => {
  equal(attachRefusal("unknown secret"), "oneoff: unknown secret\r\n");
});
