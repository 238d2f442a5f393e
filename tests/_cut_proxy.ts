/**
 * A TCP proxy the test controls, to drop attach connections mid-session:
 * `cut()` closes every connection through it at once (no clean close of the
 * session), `block()` refuses new ones until `unblock()`.
 * @module
 */

/** A TCP proxy from `listen` to `target` that a test can cut. */
export class CutProxy implements AsyncDisposable {
  #listener: Deno.Listener;
  #target: { hostname: string; port: number };
  #conns = new Set<Deno.Conn>();
  #blocked = false;
  #loop: Promise<void>;
  /** Connections accepted and passed on so far. */
  accepted = 0;

  /** Listens on `listen` and forwards to `target`. */
  constructor(
    listen: { hostname: string; port: number },
    target: { hostname: string; port: number },
  ) {
    this.#listener = Deno.listen(listen);
    this.#target = target;
    this.#loop = this.#accept();
  }

  /** Closes every connection now, both sides. */
  cut(): void {
    for (const conn of this.#conns) close(conn);
    this.#conns.clear();
  }

  /** New connections are closed at once until `unblock`. */
  block(): void {
    this.#blocked = true;
  }

  /** New connections go through again. */
  unblock(): void {
    this.#blocked = false;
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) {
      if (this.#blocked) {
        close(client);
        continue;
      }
      this.accepted++;
      Deno.connect(this.#target).then((server) => {
        this.#conns.add(client);
        this.#conns.add(server);
        pipe(client, server);
        pipe(server, client);
      }, () => close(client));
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.cut();
    this.#listener.close();
    await this.#loop.catch(() => {});
  }
}

async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
    await to.closeWrite();
  } catch {
    close(from);
    close(to);
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
