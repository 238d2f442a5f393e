/**
 * Timeline events: every change to an app, with its actor.
 * @module
 */

/** A timeline event as the API shows it. */
export interface TimelineEvent {
  id: number;
  at: string;
  app: string | null;
  actor: string;
  kind: string;
  data: Record<string, unknown>;
}
