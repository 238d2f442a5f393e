/**
 * `HOST:PORT` addresses on the command line.
 * @module
 */

/** Splits `HOST:PORT`; throws a clear error otherwise. */
export function parseAddr(addr: string): { hostname: string; port: number } {
  const match = /^(.*):(\d{1,5})$/.exec(addr);
  const port = Number(match?.[2]);
  if (!match || port > 65535) {
    throw new Error(`Invalid address "${addr}": use HOST:PORT, e.g. 127.0.0.1:8080`);
  }
  return { hostname: match[1]!.replace(/^\[(.*)\]$/, "$1") || "0.0.0.0", port };
}
