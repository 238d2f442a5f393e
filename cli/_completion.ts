/**
 * `oneoff completion bash|zsh`: completion scripts generated from the
 * command table, so they know every command, subcommand and flag.
 * @module
 */
import { COMMANDS, type CommandSpec } from "./_commands.ts";
import { out, UsageError } from "./_io.ts";

/** POSIX single quotes around `text`. */
function sq(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

function flagWords(spec: CommandSpec): string[] {
  return [
    ...spec.flags.filter((f) => !f.hidden).flatMap((f) => [
      `--${f.name}`,
      ...(f.short ? [`-${f.short}`] : []),
    ]),
    "--help",
  ];
}

/** The bash script: `complete -F _oneoff oneoff`. */
export function bashCompletion(): string {
  const names = COMMANDS.map((c) => c.name).join(" ");
  const cases = COMMANDS.map((c) =>
    `    ${c.name}) opts=${sq(flagWords(c).join(" "))}; subs=${
      sq((c.subcommands ?? []).join(" "))
    } ;;`
  );
  return [
    '# oneoff completion for bash: eval "$(oneoff completion bash)"',
    "_oneoff() {",
    '  local cur="${COMP_WORDS[COMP_CWORD]}" opts="" subs=""',
    "  COMPREPLY=()",
    '  if [ "$COMP_CWORD" -eq 1 ]; then',
    `    COMPREPLY=( $(compgen -W ${sq(`${names} help --help --version`)} -- "$cur") )`,
    "    return 0",
    "  fi",
    '  case "${COMP_WORDS[1]}" in',
    `    help) COMPREPLY=( $(compgen -W ${sq(names)} -- "$cur") ); return 0 ;;`,
    ...cases,
    "  esac",
    '  if [[ "$cur" == -* ]]; then',
    '    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )',
    '  elif [ "$COMP_CWORD" -eq 2 ] && [ -n "$subs" ]; then',
    '    COMPREPLY=( $(compgen -W "$subs" -- "$cur") )',
    "  else",
    '    COMPREPLY=( $(compgen -f -- "$cur") )',
    "  fi",
    "}",
    "complete -F _oneoff oneoff",
    "",
  ].join("\n");
}

/** `NAME:description` for zsh's `_describe`, colons in the name escaped. */
function described(name: string, description: string): string {
  return sq(`${name.replaceAll(":", "\\:")}:${description}`);
}

/** The zsh script: `compdef _oneoff oneoff`. */
export function zshCompletion(): string {
  const commands = COMMANDS.map((c) => `    ${described(c.name, c.summary)}`);
  const cases = COMMANDS.map((c) => {
    const opts = [
      ...c.flags.filter((f) => !f.hidden).flatMap((f) =>
        [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])].map((w) => described(w, f.description))
      ),
      described("--help", "Show the help"),
    ];
    const subs = (c.subcommands ?? []).map((s) => described(s, `${c.name} ${s}`));
    return `    ${c.name}) opts=(${opts.join(" ")}); subs=(${subs.join(" ")}) ;;`;
  });
  return [
    "#compdef oneoff",
    '# oneoff completion for zsh: eval "$(oneoff completion zsh)"',
    "_oneoff() {",
    "  local -a commands opts subs",
    "  commands=(",
    ...commands,
    "  )",
    "  if (( CURRENT == 2 )); then",
    "    _describe 'command' commands",
    "    return",
    "  fi",
    "  case $words[2] in",
    "    help) _describe 'command' commands; return ;;",
    ...cases,
    "  esac",
    "  if [[ $PREFIX == -* ]]; then",
    "    _describe 'option' opts",
    "  elif (( CURRENT == 3 && ${#subs} > 0 )); then",
    "    _describe 'subcommand' subs",
    "  else",
    "    _files",
    "  fi",
    "}",
    "compdef _oneoff oneoff",
    "",
  ].join("\n");
}

/** `oneoff completion bash|zsh`. */
export function completion(args: string[]): Promise<void> {
  const [shell, ...rest] = args;
  if (rest.length > 0) throw new UsageError(`Unexpected argument "${rest[0]}"`);
  if (shell === "bash") out(bashCompletion());
  else if (shell === "zsh") out(zshCompletion());
  else {throw new UsageError(
      shell ? `No completion for "${shell}": use bash or zsh` : "Which shell? bash or zsh",
    );}
  return Promise.resolve();
}
