/**
 * What every route and service of the server shares.
 * @module
 */
import type { Limits, SizeName } from "../protocol/mod.ts";
import type { Logger } from "../util/log.ts";
import type { AuditService } from "./audit/mod.ts";
import type { BlobStore } from "./blob_store.ts";
import type { Cluster } from "./cluster/mod.ts";
import type { TrustedProxies } from "./client_address.ts";
import type { Store } from "./store/mod.ts";
import type { Signals } from "./signals.ts";
import type { ServerMetrics } from "./metrics.ts";

/** Server settings, from the command line. */
export interface ServerConfig {
  dataDir: string;
  /** Largest slug accepted by `deploy`. */
  maxSlugBytes: number;
  /** Largest uncompressed content of a slug (a gzip bomb stops here). */
  maxSlugUnpackedBytes: number;
  /** Longest `--timeout` a run may ask for, in ms (at most 2^31 - 1, a timer's range). */
  maxTimeoutMs: number;
  /** Largest single upload (`run -f`). */
  maxUploadBytes: number;
  /** Concurrent one-offs per app before the next is refused. */
  maxRunsPerApp: number;
  /** How long a run may stay `pending` before it fails. */
  queueTimeoutMs: number;
  /** How long an attached run waits for its client. */
  attachWindowMs: number;
  /** Attached sessions with no byte either way for this long are killed (an app may set its own). */
  idleTimeoutMs: number;
  /** How long a framed session's process waits for its dropped client (default REATTACH_GRACE_MS). */
  reattachGraceMs?: number;
  /** The longest idle timeout an app may set (default DEFAULT_MAX_IDLE_TIMEOUT_MS). */
  maxIdleTimeoutMs?: number;
  /** The longest reattach grace an app may set (default DEFAULT_MAX_REATTACH_GRACE_MS). */
  maxReattachGraceMs?: number;
  /** Bytes of log lines an app may keep; beyond, its oldest go (default DEFAULT_APP_LOG_QUOTA_BYTES). */
  appLogQuotaBytes?: number;
  /** Default maximum duration of a run. */
  maxDurationMs: number;
  /** Bytes of a detached run's output stored (default DEFAULT_LOG_QUOTA_BYTES). */
  logQuotaBytes?: number;
  /** Bytes of an attached session recorded (default DEFAULT_AUDIT_QUOTA_BYTES). */
  auditQuotaBytes?: number;
  /** Bytes of files a run may leave in /tmp/downloads (default DEFAULT_ARTIFACT_MAX_BYTES). */
  maxArtifactBytes?: number;
  sizes: Record<SizeName, Limits>;
  /** The join token agents enrol with (the default one; more may be in the store). */
  joinToken: string;
  /** Where the join token is kept, rewritten by a rotation; null when given by flag. */
  joinTokenFile: string | null;
  /** Enrolments the join token allows; null for any number. */
  joinTokenUses: number | null;
  /** How long the join token enrols after it is first registered, in ms; null for ever. */
  joinTokenTtlMs: number | null;
  /** Agents enrolled by the join token are approved at once (weaker: `oneoff dev`, tests). */
  autoApprove: boolean;
  /** How long a disconnected agent's runs wait for it before they are `lost`. */
  agentGraceMs: number;
  /** How long after a run's end with no log batch before missing lines are reported. */
  logsSettleMs: number;
  /** How often the server sends each agent a heartbeat; silence for 3 of them drops it. */
  heartbeatMs: number;
  /** The audit key file: outside the database by design. */
  auditKeyFile: string;
  /** `--trust-proxy`: whose `X-Forwarded-For` names the client; none by default. */
  trustProxy?: TrustedProxies;
}

/** The server's shared services. */
export interface ServerContext {
  config: ServerConfig;
  store: Store;
  blobs: BlobStore;
  log: Logger;
  signals: Signals;
  /** The other servers of the store, if any (server/cluster/). */
  cluster: Cluster;
  audit: AuditService;
  /** Prometheus metrics; `createApp` makes its own when absent (tests). */
  metrics?: ServerMetrics;
}
