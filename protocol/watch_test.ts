import { equal, ok } from "node:assert/strict";
import { isWatchNotice, watchMarker, watchNotice } from "./watch.ts";

Deno.test("a watcher named with terminal controls cannot erase or hide the notice its user gets", () => {
  // Cursor up and erase line: the notice would wipe itself off the user's terminal.
  const name = "\x1b[1A\x1b[2K\reve\u202e";
  const notice = watchNotice(name);
  // deno-lint-ignore no-control-regex -- the controls are what must not be there
  ok(!/[\x00-\x1f\x7f-\x9f\u202a-\u202e]/.test(notice), JSON.stringify(notice));
  equal(notice, "\\u001b[1A\\u001b[2K\\u000deve\\u202e is watching this session");
  ok(isWatchNotice(notice));
  equal(watchNotice("eve"), "eve is watching this session");
  const marker = watchMarker(name, true);
  equal(marker, "\r\n[oneoff: \\u001b[1A\\u001b[2K\\u000deve\\u202e started watching]\r\n");
});
