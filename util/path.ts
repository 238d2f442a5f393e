/**
 * Paths without `node:path`: loading Node's compatibility layer costs an
 * idle agent several MiB of resident memory.
 * @module
 */

/** `path` made absolute against the working directory and normalized, as node:path's `resolve`. */
export function absolutePath(path: string): string {
  const parts: string[] = [];
  for (const part of (path.startsWith("/") ? path : `${Deno.cwd()}/${path}`).split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}
