/**
 * The shapes of the HTTP API's replies.
 * @module
 */
import type { RunState, SizeName } from "./run.ts";

/** An app as the API shows it. */
export interface AppInfo {
  name: string;
  created_at: string;
  release: number | null;
  process_types: Record<string, string>;
}

/** A run as the API shows it. */
export interface RunInfo {
  id: string;
  app: string;
  label: string;
  command: string;
  state: RunState;
  attached: boolean;
  tty: boolean;
  size: SizeName;
  agent: string | null;
  exit_code: number | null;
  reason: string | null;
  actor: string;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

/** A stored log line as the API shows it. */
export interface LogLine {
  id: number;
  ts: string;
  source: string;
  stream: string;
  line: string;
}

/** An agent as the API shows it. */
export interface AgentInfo {
  id: string;
  name: string;
  state: "online" | "offline";
  since: string;
  version: string;
  capacity: number;
  running: number;
  sandbox: string;
  attach: string;
  warnings: string[];
}

/** The JSON body of every API error. */
export interface ApiError {
  error: { code: string; message: string };
}
