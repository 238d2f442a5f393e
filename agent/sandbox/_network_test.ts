import { deepEqual, equal, ok } from "node:assert/strict";
import { DNS_FORWARD_ADDRESS, isolatedResolvConf, pastaArgs } from "./_network.ts";

Deno.test("a host resolver off the loopback serves isolated runs as it is", () => {
  equal(isolatedResolvConf("nameserver 10.0.0.53\nsearch example.com\n"), null);
});

Deno.test("a loopback resolver is replaced by pasta's forwarder, the rest kept", () => {
  const text = isolatedResolvConf(
    "# systemd-resolved stub\nnameserver 127.0.0.53\nnameserver 127.0.0.2\n" +
      "nameserver 10.0.0.53\nnameserver ::1\noptions edns0 trust-ad\nsearch corp.example\n",
  );
  const lines = text!.split("\n");
  ok(lines[0]!.startsWith("# oneoff: the host's resolver 127.0.0.53, 127.0.0.2, ::1 is on"));
  deepEqual(lines.slice(1), [
    "# systemd-resolved stub",
    `nameserver ${DNS_FORWARD_ADDRESS}`,
    "nameserver 10.0.0.53",
    "options edns0 trust-ad",
    "search corp.example",
    "",
  ]);
});

Deno.test("a loopback resolver after a reachable one is only left out", () => {
  const text = isolatedResolvConf("nameserver 10.0.0.53\nnameserver 127.0.0.1\n")!;
  deepEqual(text.split("\n").slice(1), ["nameserver 10.0.0.53", ""]);
  ok(text.startsWith("# oneoff: the host's resolver 127.0.0.1 is on its loopback"));
});

Deno.test("pasta forwards the run's DNS to the host's resolver", () => {
  const args = pastaArgs("/run/x/netns-1", []);
  equal(args[args.indexOf("--dns-forward") + 1], DNS_FORWARD_ADDRESS);
});
