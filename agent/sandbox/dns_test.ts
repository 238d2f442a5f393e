import { deepEqual, equal, match } from "node:assert/strict";
/**
 * DNS in isolated runs when the host's resolver is on its loopback
 * (systemd-resolved's 127.0.0.53, a local dnsmasq): a real resolver on
 * 127.0.0.x, a real sandbox and pasta, on both backends.
 * @module
 */
import { SANDBOX_KINDS, type SandboxKind } from "../../protocol/mod.ts";
import { needs } from "../../tests/_tools.ts";
import { waitFor } from "../../tests/_wait.ts";
import { DNS_FORWARD_ADDRESS } from "./_network.ts";
import { DNS_SERVER } from "./_testing_dns.ts";
import type { RunResult } from "./_testing.ts";

const SCRIPT = new URL("./_testing_dns.ts", import.meta.url).pathname;
/** A loopback address nothing else on the host uses. */
const RESOLVER = "127.0.0.77";
const ANSWER = "198.18.53.7";

/** Runs one sandbox in a mount namespace whose /etc/resolv.conf is `resolvConf`. */
async function resolveIn(
  kind: SandboxKind,
  network: "isolated" | "host",
  resolvConf: string,
): Promise<RunResult> {
  const out = await new Deno.Command("unshare", {
    args: [
      ...["--mount", "--propagation", "private", "--", "/bin/sh", "-c"],
      'mount --bind "$1" /etc/resolv.conf && exec "$2" run -A --quiet "$3" "$4" "$5" probe.oneoff.test',
      ...["oneoff-dns", resolvConf, Deno.execPath(), SCRIPT, kind, network],
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(text) as RunResult;
}

for (const kind of SANDBOX_KINDS) {
  Deno.test(needs(
    kind === "runc" ? ["root", "runc", "pasta", "python3"] : [
      "root",
      "pasta",
      "python3",
    ],
    {
      name: `${kind}: isolated: names resolve through a resolver on the host's loopback`,
      async fn() {
        const dir = await Deno.makeTempDir({ prefix: "oneoff-dns-" });
        const server = new Deno.Command("python3", {
          args: ["-c", DNS_SERVER, RESOLVER, ANSWER],
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        try {
          const ready = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
          let seen = "";
          await waitFor(async () => (seen += (await ready.read()).value ?? "").includes("ready"), {
            message: "the test resolver to listen",
          });
          const resolvConf = `${dir}/resolv.conf`;
          await Deno.writeTextFile(
            resolvConf,
            `nameserver ${RESOLVER}\nnameserver ::1\nsearch oneoff.test\noptions edns0\n`,
          );
          const isolated = await resolveIn(kind, "isolated", resolvConf);
          const [conf, answer] = isolated.stdout.split("---\n");
          deepEqual(
            [isolated.status.code, answer?.trim().split(/\s+/)],
            [0, [ANSWER, "probe.oneoff.test"]],
            isolated.stderr,
          );
          match(
            conf!,
            new RegExp(`^nameserver ${DNS_FORWARD_ADDRESS.replaceAll(".", "\\.")}$`, "m"),
          );
          deepEqual(
            conf!.split("\n").filter((line) => !line.startsWith("#")),
            [`nameserver ${DNS_FORWARD_ADDRESS}`, "search oneoff.test", "options edns0", ""],
            "the host's search and options kept, its loopback nameservers replaced",
          );
          // Network "host" needs none of it: the loopback is the host's.
          const host = await resolveIn(kind, "host", resolvConf);
          match(host.stdout, new RegExp(`^nameserver ${RESOLVER.replaceAll(".", "\\.")}$`, "m"));
          match(
            host.stdout,
            new RegExp(`${ANSWER.replaceAll(".", "\\.")}\\s+probe\\.oneoff\\.test`),
          );
          await ready.cancel();
        } finally {
          server.kill("SIGKILL");
          await server.status;
          await server.stderr.cancel().catch(() => {});
          await Deno.remove(dir, { recursive: true });
        }
      },
    },
  ));
}
