/**
 * The dashboard's static files: its own stylesheet and script, and the
 * asciinema player from npm. Read once, served from memory with an ETag, a
 * gzip variant, and long caching when the URL carries the content version.
 * @module
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import type { Context } from "hono";

/** The names under `/assets/`. */
export type AssetName = "app.css" | "app.js" | "player.css" | "player.js";

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  gzip: Uint8Array<ArrayBuffer>;
  type: string;
  /** First hex digits of the content's SHA-256: the `?v=` of its URL. */
  version: string;
}

function sources(): Record<AssetName, { path: string; type: string }> {
  // require.resolve finds the package's real file wherever npm packages live
  // (node_modules here, Deno's cache elsewhere).
  const require = createRequire(import.meta.url);
  const player = (file: string) => require.resolve(`asciinema-player/dist/bundle/${file}`);
  const own = (file: string) => new URL(`./assets/${file}`, import.meta.url).pathname;
  const css = "text/css; charset=utf-8";
  const js = "text/javascript; charset=utf-8";
  return {
    "app.css": { path: own("app.css"), type: css },
    "app.js": { path: own("app.js"), type: js },
    "player.css": { path: player("asciinema-player.css"), type: css },
    "player.js": { path: player("asciinema-player.min.js"), type: js },
  };
}

/** The loaded assets. */
export class Assets {
  #files: Map<string, Asset>;

  constructor(files: Map<string, Asset>) {
    this.#files = files;
  }

  /** Reads every asset now, so that a missing file fails the server's start, not a page. */
  static load(): Assets {
    const files = new Map<string, Asset>();
    for (const [name, { path, type }] of Object.entries(sources())) {
      let body: Uint8Array<ArrayBuffer>;
      try {
        body = Deno.readFileSync(path);
      } catch (err) {
        throw new Error(`Cannot load dashboard asset "${name}" from "${path}": ${String(err)}`, {
          cause: err,
        });
      }
      const version = createHash("sha256").update(body).digest("hex").slice(0, 16);
      files.set(name, { body, gzip: new Uint8Array(gzipSync(body, { level: 9 })), type, version });
    }
    return new Assets(files);
  }

  /** The versioned URL of an asset, cacheable for good. */
  url(name: AssetName): string {
    const asset = this.#files.get(name);
    return `/assets/${name}?v=${asset?.version ?? "0"}`;
  }

  /** Answers `GET /assets/:name`. */
  serve(c: Context): Response {
    const asset = this.#files.get(c.req.param("name") ?? "");
    if (!asset) return c.text("No such asset", 404);
    const etag = `"${asset.version}"`;
    const headers = new Headers({
      "content-type": asset.type,
      etag,
      vary: "Accept-Encoding",
      "x-content-type-options": "nosniff",
      // A URL with the current version never changes; a bare one may.
      "cache-control": c.req.query("v") === asset.version
        ? "public, max-age=31536000, immutable"
        : "public, max-age=300",
    });
    if (c.req.header("if-none-match")?.split(/\s*,\s*/).includes(etag)) {
      return new Response(null, { status: 304, headers });
    }
    const gzip = /\bgzip\b/.test(c.req.header("accept-encoding") ?? "");
    if (gzip) headers.set("content-encoding", "gzip");
    return new Response(gzip ? asset.gzip : asset.body, { headers });
  }
}

let shared: Assets | undefined;

/** The process's assets, loaded on first use: they never change while it runs. */
export function assets(): Assets {
  shared ??= Assets.load();
  return shared;
}
