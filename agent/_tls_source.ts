/**
 * Port 5000 over TLS, accepted as plain TCP and upgraded in-process, so that
 * the listener can always take a connection back. Deno's own TLS listener
 * keeps a socket whose handshake never started open after `close()` until
 * the client sends a byte or leaves; `node:tls` on a `node:net` socket lets
 * `destroy()` close the TCP connection itself, handshake or not.
 * @module
 */

import type netModule from "node:net";
import type tlsModule from "node:tls";

// Loaded by the first TLS listener: Node's compatibility layer costs an idle
// agent several MiB of resident memory, and plain TCP needs none of it.
let net: typeof netModule;
let tls: typeof tlsModule;

/** What the attach listener needs of a connection: Deno.Conn's stream calls. */
export type AttachConn = Pick<Deno.Conn, "read" | "write" | "close" | "closeWrite" | "remoteAddr">;

/** What the attach listener needs of a listener: Deno.Listener's accept calls. */
export interface AttachSource {
  /** The bound address. */
  readonly addr: Deno.Addr;
  /** The next connection; rejects once closed. */
  accept(): Promise<AttachConn>;
  /** Stops accepting; connections already accepted stay open. */
  close(): void;
}

/** Listens for TLS on `hostname:port` with `cert` and `key` (PEM). */
export async function listenTlsSource(
  where: { hostname: string; port: number },
  keys: { cert: string; key: string },
): Promise<AttachSource> {
  net ??= (await import("node:net")).default;
  tls ??= (await import("node:tls")).default;
  const context = tls.createSecureContext(keys);
  const source = new TlsSource(context);
  await source.listen(where);
  return source;
}

class TlsSource implements AttachSource {
  addr: Deno.NetAddr = { transport: "tcp", hostname: "", port: 0 };
  #server: netModule.Server;
  #queue: AttachConn[] = [];
  #waiting: { resolve: (conn: AttachConn) => void; reject: (err: Error) => void }[] = [];
  #closed = false;

  constructor(context: tlsModule.SecureContext) {
    this.#server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (raw) => {
      raw.on("error", () => {});
      if (this.#closed) return void raw.destroy();
      // Half-open allowed: a no-TTY client's FIN is EOF on stdin, not the end of the output.
      const secure = new tls.TLSSocket(raw, {
        isServer: true,
        secureContext: context,
        allowHalfOpen: true,
      } as tlsModule.TLSSocketOptions);
      const conn = new NodeConn(raw, secure);
      const waiter = this.#waiting.shift();
      if (waiter) waiter.resolve(conn);
      else this.#queue.push(conn);
    });
  }

  listen(where: { hostname: string; port: number }): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(where.port, where.hostname, () => {
        this.#server.off("error", reject);
        const address = this.#server.address() as netModule.AddressInfo;
        this.addr = { transport: "tcp", hostname: address.address, port: address.port };
        resolve();
      });
    });
  }

  accept(): Promise<AttachConn> {
    const conn = this.#queue.shift();
    if (conn) return Promise.resolve(conn);
    if (this.#closed) return Promise.reject(new Error("The attach listener is closed"));
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const conn of this.#queue.splice(0)) conn.close();
    for (const waiter of this.#waiting.splice(0)) {
      waiter.reject(new Error("The attach listener is closed"));
    }
  }
}

/**
 * A TLS socket read one chunk at a time: at most one chunk waits for a
 * reader (the socket is paused meanwhile), so a slow reader holds memory
 * constant and the client is held back by TCP.
 */
class NodeConn implements AttachConn {
  readonly remoteAddr: Deno.NetAddr;
  #raw: netModule.Socket;
  #socket: tlsModule.TLSSocket;
  #chunk: Uint8Array | undefined;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(raw: netModule.Socket, socket: tlsModule.TLSSocket) {
    this.#raw = raw;
    this.#socket = socket;
    this.remoteAddr = {
      transport: "tcp",
      hostname: (raw.remoteAddress ?? "").replace(/^::ffff:/, ""),
      port: raw.remotePort ?? 0,
    };
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunk = this.#chunk ? concat(this.#chunk, chunk) : chunk;
      socket.pause();
      this.#notify();
    });
    socket.on("end", () => (this.#ended = true, this.#notify()));
    socket.on("close", () => (this.#ended = true, this.#notify()));
    socket.on("error", (err: Error) => (this.#error = err, this.#notify()));
    raw.resume();
  }

  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#chunk === undefined) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      this.#socket.resume();
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const n = Math.min(buf.length, this.#chunk.length);
    buf.set(this.#chunk.subarray(0, n));
    this.#chunk = n < this.#chunk.length ? this.#chunk.subarray(n) : undefined;
    return n;
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.#socket.destroyed) return Promise.reject(new Error("The connection is closed"));
    // Copied: the caller may reuse its buffer once the promise settles, and
    // node keeps the chunk until it is flushed.
    const copy = bytes.slice();
    return new Promise((resolve, reject) => {
      this.#socket.write(copy, (err) => err ? reject(err) : resolve(copy.length));
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(() => resolve()));
  }

  close(): void {
    // The raw socket too: before the TLS handshake, that is what holds the descriptor.
    this.#socket.destroy();
    this.#raw.destroy();
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
