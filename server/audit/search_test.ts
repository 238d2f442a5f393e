import { deepEqual, equal, ok } from "node:assert/strict";
import { CONTEXT_CHARS, searchRecording } from "./search.ts";
import type { AuditEvent, AuditRecording } from "./verify.ts";

function recording(
  events: [number, "i" | "o", string | Uint8Array][],
  tty = true,
): AuditRecording {
  return {
    size: tty ? { cols: 80, rows: 24 } : null,
    t0: 0,
    final: true,
    problems: [],
    async *events(): AsyncGenerator<AuditEvent> {
      for (const [t, kind, text] of events) {
        yield { t, kind, bytes: typeof text === "string" ? new TextEncoder().encode(text) : text };
      }
    },
  };
}

Deno.test("a search sees through colours, chunk boundaries and split characters", async () => {
  const found = await searchRecording(
    recording([
      [0, "o", "$ "],
      [1000, "o", "\x1b[31mneed"],
      // "é" is two bytes, one in each event.
      [1500, "o", new Uint8Array([...new TextEncoder().encode("le\x1b[0m caf"), 0xc3])],
      [2000, "o", new Uint8Array([0xa9, ...new TextEncoder().encode(" end\r\n$ ")])],
    ]),
    "needle café",
    { maxHits: 10 },
  );
  deepEqual(found, { hits: [{ t: 2, stream: "output", line: "$ needle café end" }], more: false });
});

Deno.test("a search tells input from output and stops at its most hits", async () => {
  const events: [number, "i" | "o", string][] = [];
  for (let i = 0; i < 5; i++) events.push([i * 1000, "i", `grep x${i}\n`]);
  const found = await searchRecording(recording(events, false), "grep", { maxHits: 3 });
  deepEqual(found.hits.map((h) => [h.stream, h.line, h.t]), [
    ["input", "grep x0", 0],
    ["input", "grep x1", 1],
    ["input", "grep x2", 2],
  ]);
  equal(found.more, true);
});

Deno.test("a hit on a long line keeps the text with the context around it", async () => {
  const line = "a".repeat(5000) + "THE-TEXT" + "b".repeat(5000);
  const { hits } = await searchRecording(recording([[0, "o", `${line}\r\n`]]), "THE-TEXT", {
    maxHits: 1,
  });
  const shown = hits[0]!.line;
  ok(shown.includes("THE-TEXT") && shown.startsWith("…") && shown.endsWith("…"), shown);
  ok(shown.length <= CONTEXT_CHARS + 2);
});
