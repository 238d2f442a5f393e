/**
 * Help text made from the command table: the overview, one command's full
 * help, and the lines a usage error ends with.
 * @module
 */
import { COMMANDS, type CommandSpec, type FlagSpec } from "./_commands.ts";

/** `-a, --app APP` as help shows it. */
function flagLabel(flag: FlagSpec): string {
  const long = `--${flag.name}${flag.value ? ` ${flag.value}` : ""}`;
  return flag.short ? `-${flag.short}, ${long}` : `    ${long}`;
}

/** Words wrapped into lines of at most `width` columns (a longer word stays whole). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return [...lines, line];
}

/** The overview: every command with its summary. */
export function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "oneoff: one-off runs of your apps, attached or detached.",
    "",
    "Usage: oneoff COMMAND [OPTIONS]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    'Run "oneoff help COMMAND" (or "oneoff COMMAND --help") for its options and examples.',
    "ONEOFF_SERVER, ONEOFF_TOKEN and ONEOFF_APP stand in for --server, --token and -a;",
    "ONEOFF_DEBUG=1 prints every request on stderr. oneoff --version prints the version.",
    "",
  ].join("\n");
}

/** The usage lines of a command. */
export function usageLines(spec: CommandSpec): string {
  return spec.usage.map((u, i) => `${i === 0 ? "Usage:" : "      "} oneoff ${u}`).join("\n");
}

/** What a usage error prints after its message. */
export function usageHint(spec: CommandSpec): string {
  return `${usageLines(spec)}\nRun "oneoff help ${spec.name}" for more\n`;
}

/** A command's full help: usage, notes, every flag explained, examples. */
export function commandHelp(spec: CommandSpec): string {
  const flags = [
    ...spec.flags.filter((f) => !f.hidden),
    { name: "help", short: "h", description: "Show this help" },
  ];
  const labels = flags.map(flagLabel);
  const width = Math.min(30, Math.max(...labels.map((l) => l.length)));
  const parts = [`oneoff ${spec.name}: ${spec.summary}`, "", usageLines(spec), ""];
  for (const note of spec.notes ?? []) parts.push(...wrap(note, 78), "");
  parts.push("Options:");
  flags.forEach((flag, i) => {
    const label = labels[i]!;
    const text = flag.description +
      ("default" in flag && flag.default ? ` (default: ${flag.default})` : "");
    const head = label.length > width
      ? [`  ${label}`, " ".repeat(width + 4)]
      : [`  ${label.padEnd(width)}  `];
    const lines = wrap(text, 98 - width);
    if (head.length === 2) parts.push(head[0]!);
    const indent = " ".repeat(width + 4);
    lines.forEach((l, j) => parts.push((j === 0 ? head.at(-1)! : indent) + l));
  });
  if (spec.examples.length > 0) {
    parts.push("", "Examples:", ...spec.examples.map((e) => `  ${e}`));
  }
  parts.push("");
  return parts.join("\n");
}
