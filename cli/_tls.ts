/**
 * TLS to an agent's attach port, pinned to the certificate fingerprint the
 * server reported for that agent. Agents usually have self-signed
 * certificates: no CA vouches for them, the pin does. Deno's own TLS client
 * cannot show the peer's certificate, node:tls can.
 * @module
 */
import { certificateFingerprint } from "../protocol/mod.ts";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { CliError } from "./_io.ts";

/** The few byte-stream operations the attach loop needs (a subset of Deno.Conn). */
export interface ByteConn {
  read(buf: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/** Connects with TLS and checks the certificate's SHA-256 against `fingerprint`. */
export function connectPinned(host: string, port: number, fingerprint: string): Promise<ByteConn> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port,
      rejectUnauthorized: false,
      servername: "oneoff-agent",
    });
    socket.once(
      "error",
      (e) => reject(new CliError(`Cannot connect to ${host}:${port} with TLS: ${e.message}`)),
    );
    socket.once("secureConnect", async () => {
      const raw = socket.getPeerCertificate(false)?.raw;
      const actual = raw ? await certificateFingerprint(raw) : "";
      if (actual !== fingerprint.toLowerCase()) {
        socket.destroy();
        reject(
          new CliError(
            `The agent at ${host}:${port} presented a certificate that is not the one the server knows (sha256 ${
              actual.slice(0, 16)
            }…): refusing to send the secret`,
          ),
        );
        return;
      }
      resolve(new TlsConn(socket));
    });
  });
}

class TlsConn implements ByteConn {
  #socket: TLSSocket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #waiting: (() => void) | null = null;

  constructor(socket: TLSSocket) {
    this.#socket = socket;
    const wake = () => {
      this.#waiting?.();
      this.#waiting = null;
    };
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      // Backpressure: stop reading until the terminal has taken what we have.
      if (this.#chunks.length > 16) socket.pause();
      wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      wake();
    });
    socket.on("error", () => {});
  }

  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#waiting = r);
    }
    const head = this.#chunks[0]!;
    const n = Math.min(head.length, buf.length);
    buf.set(head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    if (this.#chunks.length <= 16) this.#socket.resume();
    return n;
  }

  write(bytes: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#socket.destroyed) return reject(new Error("Connection closed"));
      const ok = this.#socket.write(bytes.slice(), (err) => err && reject(err));
      if (ok) resolve(bytes.length);
      else this.#socket.once("drain", () => resolve(bytes.length));
    });
  }

  closeWrite(): Promise<void> {
    this.#socket.end();
    return Promise.resolve();
  }

  close(): void {
    this.#socket.destroy();
  }
}
