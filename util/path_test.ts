import { equal } from "node:assert/strict";
import { resolve } from "node:path";
import { absolutePath } from "./path.ts";

Deno.test("absolutePath resolves as node:path does", () => {
  for (const path of ["/a/b", "/a/./b/", "a/b", "./a/../b", "/../x", "/", ".", "a//b/.."]) {
    equal(absolutePath(path), resolve(path), path);
  }
});
