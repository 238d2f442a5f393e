/**
 * Packs an app directory into a slug (a gzip tar whose root is the
 * directory itself), streamed so a large app never sits in memory.
 * @module
 */

import * as tar from "tar";

/** True for paths that never belong in a slug: any `.git` dir or submodule `.git` file. */
function skipped(path: string): boolean {
  return path.split("/").includes(".git");
}

/**
 * Streams a gzip tar of the contents of `dir`, entry paths relative to it
 * (`./Procfile`, `./bin/web`), without `.git`. Owner ids and names are left
 * out: the agent owns what it extracts.
 */
export function packDirectory(dir: string): ReadableStream<Uint8Array> {
  const pack = tar.c({ gzip: true, cwd: dir, portable: true, filter: (path) => !skipped(path) }, [
    ".",
  ]);
  return ReadableStream.from(pack);
}
