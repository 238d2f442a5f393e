/**
 * Reads Prometheus text exposition with a real parser: the Prometheus
 * Python client's own (`prometheus_client.parser`, Debian's
 * python3-prometheus-client). Declare `needs(["prometheus_parser"])`.
 * @module
 */

/** One sample of a metric family. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One metric family, as the parser understood it. */
export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const SCRIPT = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation, "samples": [
        {"name": s.name, "labels": s.labels,
         "value": s.value if math.isfinite(s.value) else (1e308 if s.value > 0 else -1e308)}
        for s in f.samples]})
json.dump(out, sys.stdout)
`;

/** Parses `text`; throws with the parser's error when it is not valid exposition. */
export async function parsePrometheus(text: string): Promise<Family[]> {
  // Debian's python3, which the package installs the parser for (not a pyenv one on PATH).
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-c", SCRIPT],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`Not Prometheus text format: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** The family named `name` (without `_total` for counters); throws when absent. */
export function family(families: Family[], name: string): Family {
  const found = families.find((f) => f.name === name);
  if (!found) throw new Error(`No metric family "${name}" in ${families.map((f) => f.name)}`);
  return found;
}

/** The value of the sample `name` whose labels include `labels`; 0 when there is none. */
export function value(f: Family, name: string, labels: Record<string, string> = {}): number {
  const sample = f.samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  return sample?.value ?? 0;
}
