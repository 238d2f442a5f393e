/**
 * Labels: `key=value` pairs an agent declares (`oneoff agent --labels`) and
 * an app requires (`oneoff apps set APP --labels`). A run of an app is
 * placed only on an agent that has every label the app requires, so that
 * a compromised agent host sees only the runs (and secrets) of the apps
 * meant for it.
 * @module
 */
import { DecodeError, type Decoder } from "./_decode.ts";

/** A label key: lowercase letters, digits, `.`, `_`, `-` and `/`, 1-63 characters. */
export const LABEL_KEY: RegExp = /^[a-z0-9][a-z0-9._/-]{0,62}$/;
/** A label value: letters, digits, `.`, `_` and `-`, at most 63 characters. */
export const LABEL_VALUE: RegExp = /^[A-Za-z0-9._-]{0,63}$/;

/** Labels by key. */
export type Labels = Record<string, string>;

/** Why a label is not one, or null when it is. */
export function labelProblem(key: string, value: string): string | null {
  if (!LABEL_KEY.test(key)) {
    return `Invalid label key "${key}": use lowercase letters, digits, ".", "_", "-", "/"`;
  }
  if (!LABEL_VALUE.test(value)) {
    return `Invalid label value "${value}" of "${key}": use letters, digits, ".", "_", "-"`;
  }
  return null;
}

/** `k=v,k2=v2` (or `none`, or empty) as labels; throws a readable Error for a bad one. */
export function parseLabels(text: string): Labels {
  const labels: Labels = {};
  if (text.trim() === "" || text.trim() === "none") return labels;
  for (const item of text.split(",")) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new Error(`Invalid label "${item.trim()}": use KEY=VALUE, e.g. region=eu`);
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    const problem = labelProblem(key, value);
    if (problem) throw new Error(problem);
    labels[key] = value;
  }
  return labels;
}

/** Labels as `k=v,k2=v2`, sorted; `none` when there are none. */
export function labelsText(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.length ? keys.map((k) => `${k}=${labels[k]}`).join(",") : "none";
}

/** Whether `has` holds every label of `required`. */
export function hasLabels(has: Labels, required: Labels): boolean {
  return Object.entries(required).every(([key, value]) => has[key] === value);
}

/** Checks labels that crossed a wire: an object of valid keys and string values. */
export const labelsDecoder: Decoder<Labels> = (value, field) => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DecodeError(`Field "${field}" must be an object of label: "value"`);
  }
  const labels: Labels = {};
  for (const [key, one] of Object.entries(value)) {
    if (typeof one !== "string") throw new DecodeError(`Label "${key}" must be a string`);
    const problem = labelProblem(key, one);
    if (problem) throw new DecodeError(problem, "invalid_label");
    labels[key] = one;
  }
  if (Object.keys(labels).length > 32) throw new DecodeError(`Field "${field}" has over 32 labels`);
  return labels;
};
