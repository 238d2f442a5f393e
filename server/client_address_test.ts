import { deepEqual, equal, throws } from "node:assert/strict";
import { NO_PROXIES, parseIp, parseTrustedProxies } from "./client_address.ts";

Deno.test("X-Forwarded-For is ignored unless the peer is a trusted proxy", () => {
  equal(NO_PROXIES.clientAddress("127.0.0.1", "203.0.113.9"), "127.0.0.1");
  const trusted = parseTrustedProxies("10.0.0.0/8");
  equal(trusted.clientAddress("192.0.2.1", "203.0.113.9"), "192.0.2.1");
  equal(trusted.clientAddress("10.1.2.3", undefined), "10.1.2.3");
  equal(parseTrustedProxies("none").trusts("127.0.0.1"), false);
});

Deno.test("the client is the rightmost X-Forwarded-For entry that is not a trusted proxy", () => {
  const trusted = parseTrustedProxies("loopback,10.0.0.0/8");
  // The client wrote "1.1.1.1" itself; the proxy appended what it saw.
  equal(trusted.clientAddress("127.0.0.1", "1.1.1.1, 203.0.113.9"), "203.0.113.9");
  equal(trusted.clientAddress("127.0.0.1", "203.0.113.9, 10.0.0.7"), "203.0.113.9");
  equal(trusted.clientAddress("::1", "[2001:db8::5]:443"), "2001:db8::5");
  equal(trusted.clientAddress("127.0.0.1", "10.0.0.1, 10.0.0.2"), "10.0.0.1");
});

Deno.test("trusted proxies match addresses, CIDRs, IPv6 and IPv4-mapped IPv6", () => {
  const trusted = parseTrustedProxies("192.0.2.10, 2001:db8::/32, loopback");
  deepEqual(
    ["192.0.2.10", "192.0.2.11", "2001:db8:1::1", "2001:db9::1", "::ffff:127.0.0.2", "::1"].map(
      (a) => trusted.trusts(a),
    ),
    [true, false, true, false, true, true],
  );
  equal(parseIp("::ffff:1.2.3.4")?.v6, false);
  equal(parseIp("1:2:3:4:5:6:7:8")?.v6, true);
  equal(parseIp("not-an-ip"), undefined);
  equal(parseIp("1.2.3.256"), undefined);
});

Deno.test("a bad --trust-proxy entry is refused by name", () => {
  throws(() => parseTrustedProxies("10.0.0.0/33"), /Invalid --trust-proxy entry "10.0.0.0\/33"/);
  throws(() => parseTrustedProxies("proxy.example"), /"proxy.example"/);
});
