import { deepEqual, match } from "node:assert/strict";
import type { AttachInfo } from "../protocol/mod.ts";
import { readmeLines, runLines } from "./_readme.ts";
import { startSystem } from "./_system.ts";
import { selfSignedCertificate } from "./_tls.ts";
import { needs } from "./_tools.ts";

Deno.test(needs(["openssl", "ncat"], {
  name: "with a certificate the attach port speaks TLS; the CLI pins it and ncat --ssl works",
  async fn() {
    const { cert, key } = await selfSignedCertificate();
    await using sys = await startSystem({ tls: { cert, key } });
    const res = await sys.cli([
      "run",
      "-a",
      "demo",
      "--no-tty",
      "--silent",
      "--",
      "tr a-z A-Z; exit 4",
    ], {
      stdin: "over tls\n",
    });
    deepEqual([res.code, res.stdout], [4, "OVER TLS\n"], res.stderr);

    const info: AttachInfo = JSON.parse(
      (await sys.cli([
        "run",
        "-a",
        "demo",
        "--no-tty",
        "--attach-info",
        "--",
        "read x; echo got-$x",
      ])).stdout,
    );
    deepEqual(info.tls, true);
    match(info.tls_fingerprint ?? "", /^[0-9a-f]{64}$/);
    const ncat = new Deno.Command("ncat", {
      args: ["--ssl", info.host, String(info.port)],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    // ncat drops the whole TLS connection when its input ends, so its input
    // stays open until the process has answered, as in an interactive session.
    const writer = ncat.stdin.getWriter();
    await writer.write(new TextEncoder().encode(`${info.secret}\nping\n`));
    let seen = "";
    for await (const chunk of ncat.stdout.pipeThrough(new TextDecoderStream())) {
      seen += chunk;
      if (seen.includes("\n")) break;
    }
    await writer.close();
    await ncat.status;
    deepEqual(seen, "got-ping\n");

    // An agent whose certificate is not the one the server recorded: the CLI refuses before sending the secret.
    const store = sys.server.ctx.store;
    const agent = (await store.listAgents())[0]!;
    await store.upsertAgent({ ...agent, tls_fingerprint: "00".repeat(32) });
    const refused = await sys.cli(["run", "-a", "demo", "--no-tty", "--", "echo never"], {
      stdin: "",
    });
    deepEqual(refused.code, 1);
    match(refused.stderr, /presented a certificate that is not the one the server knows/);
  },
}));

Deno.test(needs(["openssl", "socat", "jq"], {
  name: "the README's openssl fingerprint check and socat pipe work against a TLS agent",
  async fn() {
    const { cert, key } = await selfSignedCertificate();
    await using sys = await startSystem({ tls: { cert, key } });
    const lines = await readmeLines('socat - "OPENSSL:');
    const out = await runLines(lines, sys.cliEnv());
    deepEqual(out.code, 0, out.stderr);
    const [openssl, recorded, socat] = out.stdout.trim().split("\n");
    deepEqual(openssl!.split("=")[1]!.replaceAll(":", "").toLowerCase(), recorded);
    // `hello\n` through socat, half-closed, is 6 bytes at the process's stdin.
    deepEqual(socat, "6 /tmp/x");
  },
}));
