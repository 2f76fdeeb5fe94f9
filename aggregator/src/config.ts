// Aggregator configuration: defaults, and the parsers the CLI uses.

export interface AggregatorConfig {
  /** HOST:PORT or :PORT for gRPC (ingest, query, health, reflection). */
  grpcAddr: string;
  /** HOST:PORT or :PORT for /metrics, /healthz, /readyz; '' disables. */
  metricsAddr: string;
  /** Flows last seen longer ago than this are evicted. */
  retentionMs: number;
  /** At most this many stored flows; past it the oldest are evicted. */
  maxFlows: number;
  /** Label sets per flow counter; past it increments are dropped and counted. */
  maxSeries: number;
  /** gRPC messages larger than this are refused (RESOURCE_EXHAUSTED). */
  maxMessageBytes: number;
  /** PEM files; all three together turn on mTLS (client certificates required). */
  tls?: { cert: string; key: string; ca: string };
  /** A file holding the bearer token the query API requires. */
  tokenFile?: string;
  /** Write-ahead log of accepted batches; survives restarts. Unset: memory only. */
  dataDir?: string;
  /** The write-ahead log's segments together stay within this; past it the oldest are deleted. */
  walMaxBytes: number;
  /**
   * Flow summaries per second each agent may send (token bucket; 0: unlimited). Enforced
   * by backpressure (acks wait), so nothing is lost: the agent's buffer absorbs the rest.
   */
  agentRateLimit: number;
  /** Summaries an agent may send at once above the rate. Default: twice the rate. */
  agentRateBurst?: number;
  /** A Report stream with no batch for this long is closed (the agent reconnects). */
  ingestIdleTimeoutMs: number;
  /**
   * A new connection must start its first gRPC call (or send its HTTP request headers)
   * within this; a unary call's request must arrive within it too.
   */
  handshakeTimeoutMs: number;
  /** Open connections per listener (gRPC, HTTP); past it new ones are refused at accept. */
  maxConnections: number;
  /** Concurrent calls on one HTTP/2 connection. */
  maxStreamsPerConnection: number;
  /** A gRPC connection with no call for this long is closed (grpc.max_connection_idle_ms). */
  connectionIdleTimeoutMs: number;
  /** gRPC keepalive: ping an idle connection this often; no answer in a third of it: close. */
  keepaliveMs: number;
}

export const DEFAULT_AGGREGATOR_CONFIG: AggregatorConfig = {
  grpcAddr: ':50051',
  metricsAddr: ':9100',
  retentionMs: 60 * 60 * 1000,
  maxFlows: 1_000_000,
  maxSeries: 10_000,
  maxMessageBytes: 4 << 20,
  walMaxBytes: 1 << 30,
  // Far above a busy node's rate (a few thousand summaries per interval): it throttles only a runaway.
  agentRateLimit: 50_000,
  ingestIdleTimeoutMs: 5 * 60_000,
  handshakeTimeoutMs: 10_000,
  maxConnections: 4096,
  maxStreamsPerConnection: 100,
  keepaliveMs: 30_000,
  connectionIdleTimeoutMs: 10 * 60_000,
};

/** ":9100" → host '' (every address); "127.0.0.1:9100"; "[::1]:9100". undefined when malformed. */
export function parseHostPort(addr: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return { host, port };
}

/** "15m", "1h", "30s", "500ms", "2d" → ms; undefined when malformed. */
export function parseDurationMs(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  const ms = Number(m[1]) * unit;
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/** "4194304", "512KiB", "4MiB", "1GiB" (also K/M/G, KB/MB/GB as powers of 1024) → bytes; undefined when malformed. */
export function parseBytes(v: string): number | undefined {
  const m = /^(\d+)\s*(|k|ki|kb|kib|m|mi|mb|mib|g|gi|gb|gib)$/i.exec(v.trim());
  if (!m) return undefined;
  const unit = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30 }[m[2]!.charAt(0).toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}
