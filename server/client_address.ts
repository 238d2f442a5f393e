/**
 * The client's address behind reverse proxies: `--trust-proxy` names the
 * proxies (addresses, CIDRs, `loopback`) whose `X-Forwarded-For` is
 * believed. Anyone else's header is ignored, so a client cannot pick the
 * address it is rate-limited under.
 * @module
 */

/** One trusted range: an address family and a prefix of its bits. */
interface Range {
  v6: boolean;
  base: bigint;
  bits: number;
}

/** The proxies whose `X-Forwarded-For` is believed; empty trusts none. */
export class TrustedProxies {
  readonly #ranges: Range[];
  /** The list as given, for logs and `--print-config`. */
  readonly spec: string;

  constructor(ranges: Range[], spec: string) {
    this.#ranges = ranges;
    this.spec = spec;
  }

  /** True when `address` is one of the trusted proxies. */
  trusts(address: string): boolean {
    const ip = parseIp(address);
    if (!ip) return false;
    return this.#ranges.some((r) => r.v6 === ip.v6 && prefix(ip, r.bits) === r.base);
  }

  /**
   * The client's address: the peer's own, unless the peer is trusted; then
   * the rightmost `X-Forwarded-For` entry that is not a trusted proxy (each
   * proxy appends the address it saw, so everything left of that entry was
   * written by the client and proves nothing).
   */
  clientAddress(peer: string, forwardedFor: string | undefined): string {
    if (!forwardedFor || !this.trusts(peer)) return peer;
    const hops = forwardedFor.split(",").map((h) => h.trim()).filter((h) => h !== "");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = unbracket(hops[i]!);
      if (!this.trusts(hop)) return hop;
    }
    return hops[0] ? unbracket(hops[0]) : peer;
  }
}

/** No proxy is trusted: the default. */
export const NO_PROXIES = new TrustedProxies([], "");

/**
 * Parses `--trust-proxy`: comma-separated addresses and CIDRs,
 * `loopback` for 127.0.0.0/8 and ::1, `none` (the default) for none.
 */
export function parseTrustedProxies(spec: string): TrustedProxies {
  const ranges: Range[] = [];
  for (const raw of spec.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    if (raw === "none") continue;
    if (raw === "loopback") {
      ranges.push(range("127.0.0.0", 8)!, range("::1", 128)!);
      continue;
    }
    const [addr, len, extra] = raw.split("/");
    const bits = len === undefined ? undefined : Number(len);
    const r = extra === undefined && (len === undefined || /^\d+$/.test(len))
      ? range(addr!, bits)
      : undefined;
    if (!r) {
      throw new Error(
        `Invalid --trust-proxy entry "${raw}": give addresses or CIDRs, e.g. 127.0.0.1,10.0.0.0/8 or loopback`,
      );
    }
    ranges.push(r);
  }
  return new TrustedProxies(ranges, spec);
}

function range(address: string, bits?: number): Range | undefined {
  const ip = parseIp(address);
  if (!ip) return undefined;
  const width = ip.v6 ? 128 : 32;
  const n = bits ?? width;
  if (n < 0 || n > width) return undefined;
  return { v6: ip.v6, base: prefix(ip, n), bits: n };
}

interface Ip {
  v6: boolean;
  value: bigint;
}

function prefix(ip: Ip, bits: number): bigint {
  const width = ip.v6 ? 128n : 32n;
  return ip.value >> (width - BigInt(bits));
}

function unbracket(hop: string): string {
  // `[::1]:1234` or `1.2.3.4:5678` (some proxies add the port).
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (v6) return v6[1]!;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(hop);
  return v4 ? v4[1]! : hop;
}

/** Parses an IPv4 or IPv6 address; IPv4-mapped IPv6 counts as IPv4. */
export function parseIp(text: string): Ip | undefined {
  const v4 = parseV4(text);
  if (v4 !== undefined) return { v6: false, value: v4 };
  const v6 = parseV6(text);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === 0xffffn) return { v6: false, value: v6 & 0xffffffffn };
  return { v6: true, value: v6 };
}

function parseV4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    value = (value << 8n) | BigInt(part);
  }
  return value;
}

function parseV6(text: string): bigint | undefined {
  let s = text.split("%")[0]!; // a zone id names an interface, not an address
  if (!s.includes(":")) return undefined;
  let tail: bigint[] = [];
  const lastColon = s.lastIndexOf(":");
  const v4 = parseV4(s.slice(lastColon + 1));
  if (v4 !== undefined) {
    tail = [v4 >> 16n, v4 & 0xffffn];
    const head = s.slice(0, lastColon + 1);
    s = head.endsWith("::") ? head : head.slice(0, -1);
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const words = (h: string) => h === "" ? [] : h.split(":");
  const head = words(halves[0]!);
  const rest = halves.length === 2 ? words(halves[1]!) : [];
  const given = head.length + rest.length + tail.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return undefined;
  const all = [...head, ...Array(8 - given).fill("0"), ...rest];
  let value = 0n;
  for (const w of all) {
    if (!/^[0-9a-f]{1,4}$/i.test(w)) return undefined;
    value = (value << 16n) | BigInt(parseInt(w, 16));
  }
  for (const t of tail) value = (value << 16n) | t;
  return value;
}
