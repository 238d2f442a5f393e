import { deepEqual, equal, match, ok } from "node:assert/strict";
import { displayEvents, toAsciicast, toTranscript } from "./render.ts";
import type { AuditEvent, AuditReadout } from "./verify.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const T0 = Date.UTC(2030, 0, 2, 3, 4, 5, 678);

function readout(
  events: AuditEvent[],
  size: AuditReadout["size"] = { cols: 100, rows: 30 },
): AuditReadout {
  return { events, size, t0: T0, final: true, problems: [] };
}

/** A shell session as a terminal shows it: echo, colours, a title, line editing. */
const SHELL = readout([
  { t: 0, kind: "o", bytes: bytes("\x1b]0;demo@box\x07\x1b[32m$\x1b[0m ") },
  { t: 100, kind: "i", bytes: bytes("l") },
  { t: 101, kind: "o", bytes: bytes("l") },
  { t: 150, kind: "i", bytes: bytes("x") },
  { t: 151, kind: "o", bytes: bytes("x") },
  { t: 200, kind: "i", bytes: bytes("\x7f") },
  { t: 201, kind: "o", bytes: bytes("\b\x1b[K") },
  { t: 250, kind: "i", bytes: bytes("s\r") },
  { t: 251, kind: "o", bytes: bytes("s\r\n") },
  { t: 260, kind: "o", bytes: bytes("a.txt\tb.txt\r\n10%\r100%\r\n$ ") },
  { t: 300, kind: "r", cols: 120, rows: 40 },
  { t: 400, kind: "i", bytes: bytes("sleep 9\r") },
  { t: 401, kind: "o", bytes: bytes("sleep 9\r\n") },
  { t: 900, kind: "i", bytes: bytes("\x03") },
  { t: 901, kind: "o", bytes: bytes("^C\r\n$ ") },
]);

Deno.test("asciicast has a v2 header and one well-formed event per line", () => {
  const cast = toAsciicast(SHELL, { title: "demo one-off-3: bash", term: "xterm" });
  ok(cast.endsWith("\n"));
  const [head, ...lines] = cast.trimEnd().split("\n");
  deepEqual(JSON.parse(head!), {
    version: 2,
    width: 100,
    height: 30,
    timestamp: Math.floor(T0 / 1000),
    env: { TERM: "xterm", SHELL: "/bin/sh" },
    title: "demo one-off-3: bash",
  });
  let last = 0;
  for (const line of lines) {
    const event = JSON.parse(line);
    ok(Array.isArray(event) && event.length === 3, line);
    const [t, kind, data] = event;
    equal(typeof t, "number");
    ok(t >= last, `times go back at ${line}`);
    last = t;
    ok(["o", "i", "r"].includes(kind), line);
    equal(typeof data, "string");
    if (kind === "r") match(data, /^\d+x\d+$/);
  }
  deepEqual(JSON.parse(lines[0]!), [0, "o", "\x1b]0;demo@box\x07\x1b[32m$\x1b[0m "]);
  deepEqual(JSON.parse(lines[1]!), [0.1, "i", "l"]);
  ok(lines.includes(JSON.stringify([0.3, "r", "120x40"])));
  equal(lines.length, SHELL.events.length);
});

Deno.test("asciicast of a no-TTY run uses 80x24 and starts each line at the left", () => {
  const cast = toAsciicast({
    events: [{ t: 5, kind: "o", bytes: bytes("one\ntwo\r\nthree\n") }],
    size: null,
    t0: null,
    final: true,
    problems: [],
  });
  const [head, line] = cast.trimEnd().split("\n");
  const header = JSON.parse(head!);
  equal(header.width, 80);
  equal(header.height, 24);
  equal("timestamp" in header, false);
  equal("title" in header, false);
  deepEqual(JSON.parse(line!), [0.005, "o", "one\r\ntwo\r\nthree\r\n"]);
});

Deno.test("a character split between two events is decoded whole", () => {
  const euro = bytes("€"); // three bytes
  const events = displayEvents(readout([
    { t: 1, kind: "o", bytes: euro.subarray(0, 1) },
    { t: 2, kind: "i", bytes: bytes("y") },
    { t: 3, kind: "o", bytes: Uint8Array.of(...euro.subarray(1), 0x21) },
  ]));
  deepEqual(events, [[0.002, "i", "y"], [0.003, "o", "€!"]]);
});

Deno.test("bytes that are not UTF-8 are shown escaped, in the cast and the transcript", () => {
  const binary = readout([
    { t: 0, kind: "o", bytes: Uint8Array.of(0x61, 0xff, 0xc3, 0x28, 0x62, 0x00, 0x0a) },
    { t: 1, kind: "o", bytes: Uint8Array.of(0xe2, 0x82) }, // cut short at the very end
  ]);
  const lines = toAsciicast(binary).trimEnd().split("\n").slice(1).map((l) => JSON.parse(l));
  deepEqual(lines, [[0, "o", "a\\xff\\xc3(b\x00\n"], [0.001, "o", "\\xe2\\x82"]]);
  equal(toTranscript(binary), "a\\xff\\xc3(b\\x00\n\\xe2\\x82\n");
});

Deno.test("transcript shows the output as it looked, each input line marked", () => {
  equal(
    toTranscript(SHELL),
    [
      "$ ls",
      "⟩ lx^?s",
      "a.txt   b.txt",
      "100%",
      "$ sleep 9",
      "⟩ [terminal resized to 120x40]",
      "⟩ sleep 9",
      "⟩ ^C",
      "^C",
      "$",
      "",
    ].join("\n"),
  );
});

Deno.test("transcript of a no-TTY run puts unechoed input on its own line", () => {
  const plain = readout([
    { t: 0, kind: "o", bytes: bytes("Name? ") },
    { t: 1, kind: "i", bytes: bytes("bob\r\n") },
    { t: 2, kind: "o", bytes: bytes("Hello bob\n") },
    { t: 3, kind: "i", bytes: bytes("tail without newline") },
  ], null);
  equal(toTranscript(plain), "Name?\n⟩ bob\nHello bob\n⟩ tail without newline\n");
});

Deno.test("transcript never passes control sequences through to the reader's terminal", () => {
  const hostile = readout([
    {
      t: 0,
      kind: "o",
      bytes: bytes("a\x1bP+q\x1b\\b\x1b]52;c;aGk=\x1b\\c\x1b(Bd\x07e\x1b[2Jf\u009b31mg\x01\r\n"),
    },
  ]);
  const text = toTranscript(hostile);
  equal(text, "abcdef\\u009b31mg\\x01\n");
  const unsafe = [...text].filter((ch) => {
    const code = ch.codePointAt(0)!;
    return (code < 0x20 && ch !== "\n") || (code >= 0x7f && code <= 0x9f);
  });
  deepEqual(unsafe, []);
});

Deno.test("an empty readout renders as a bare header and an empty transcript", () => {
  const empty: AuditReadout = { events: [], size: null, t0: null, final: false, problems: [] };
  equal(toAsciicast(empty).split("\n").length, 2);
  equal(toTranscript(empty), "");
});
