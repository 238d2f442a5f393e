/**
 * Test support for DNS in isolated runs: a tiny DNS server (python3) that
 * answers every A query with one address, and a script that runs one
 * sandbox and prints what it resolved. The DNS test runs the script in a
 * mount namespace of its own whose /etc/resolv.conf names a resolver on the
 * host's loopback, as systemd-resolved's does: the agent and pasta read
 * that file as they would the host's.
 * @module
 */
import { isSandboxKind } from "../../protocol/mod.ts";
import { Fixture } from "./_testing.ts";

/** A python3 DNS server on `ADDRESS:53` (UDP) answering every A query with `ANSWER`; prints `ready`. */
export const DNS_SERVER = `import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 53))
answer = socket.inet_aton(sys.argv[2])
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    question = q[12:12 + q[12:].index(b"\\0") + 5]
    a = struct.unpack(">H", question[-4:-2])[0] == 1
    head = q[:2] + b"\\x81\\x80" + struct.pack(">HHHH", 1, 1 if a else 0, 0, 0)
    body = b"\\xc0\\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + answer if a else b""
    s.sendto(head + question + body, peer)
`;

// Run as a script: `deno run -A _testing_dns.ts KIND NETWORK NAME` prints the
// run's /etc/resolv.conf and what `getent hosts NAME` answered, as JSON.
if (import.meta.main) {
  const [kind, network, name] = Deno.args;
  if (!kind || !isSandboxKind(kind) || (network !== "isolated" && network !== "host") || !name) {
    throw new Error("Usage: _testing_dns.ts bwrap|runc isolated|host NAME");
  }
  await using fx = await Fixture.create(kind);
  const result = await fx.run(`cat /etc/resolv.conf; echo ---; getent hosts ${name}`, { network });
  console.log(JSON.stringify(result));
}
