/**
 * Test support: a throwaway self-signed certificate made with openssl.
 * @module
 */

/** A PEM certificate and key, and the fingerprint openssl itself reports. */
export interface TestCertificate {
  cert: string;
  key: string;
  /** SHA-256 of the certificate as `openssl x509 -fingerprint` says it, lowercase hex. */
  opensslFingerprint: string;
}

/**
 * Makes an EC P-256 self-signed certificate valid for a day; `altNames`
 * (e.g. `IP:127.0.0.1`) for a server that clients check by name.
 */
export async function selfSignedCertificate(
  options: { altNames?: string } = {},
): Promise<TestCertificate> {
  const dir = await Deno.makeTempDir({ prefix: "oneoff-test-tls-" });
  try {
    const req = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=oneoff-agent",
        // rustls (Deno's fetch and WebSocket) refuses a CA certificate as a server's own.
        ...(options.altNames ? ["-addext", `subjectAltName=${options.altNames}`] : []),
        ...(options.altNames ? ["-addext", "basicConstraints=critical,CA:FALSE"] : []),
        "-days",
        "1",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!req.success) {
      throw new Error(`openssl req failed: ${new TextDecoder().decode(req.stderr)}`);
    }
    const x509 = await new Deno.Command("openssl", {
      args: ["x509", "-in", `${dir}/cert.pem`, "-noout", "-fingerprint", "-sha256"],
    }).output();
    const line = new TextDecoder().decode(x509.stdout).trim();
    return {
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
      opensslFingerprint: line.slice(line.indexOf("=") + 1).replaceAll(":", "").toLowerCase(),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
