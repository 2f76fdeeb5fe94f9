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
}

export const DEFAULT_AGGREGATOR_CONFIG: AggregatorConfig = {
  grpcAddr: ':50051',
  metricsAddr: ':9100',
  retentionMs: 60 * 60 * 1000,
  maxFlows: 1_000_000,
  maxSeries: 10_000,
  maxMessageBytes: 4 << 20,
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
