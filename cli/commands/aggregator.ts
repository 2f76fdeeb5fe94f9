// `plainsight aggregator [--grpc-addr :50051] [--metrics-addr :9100] [--retention 1h]
//  [--max-flows N] [--tls-cert F --tls-key F --tls-ca F] [--token-file F] [--data-dir DIR] [--wal-max-bytes N]
//  [--agent-rate-limit N] [--agent-rate-burst N] [--ingest-idle-timeout D] [--handshake-timeout D]
//  [--max-connections N] [--max-streams-per-connection N] [--keepalive D] [--connection-idle-timeout D]`

import { parse } from '../args.js';
import { untilStopSignal } from '../signals.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { DEFAULT_AGGREGATOR_CONFIG, parseBytes, parseDurationMs, parseHostPort, type AggregatorConfig } from '../../aggregator/src/config.js';

const HELP = `Usage: plainsight aggregator [options]

Accepts agent streams, joins both ends of each flow, and serves Prometheus metrics
(/metrics, /healthz, /readyz) and the gRPC query API (plainsight flows / coverage).

Options:
  --grpc-addr ADDR        gRPC (ingest, query, health, reflection) on HOST:PORT (default :50051)
  --metrics-addr ADDR     /metrics, /healthz, /readyz on HOST:PORT (default :9100; 'off' disables)
  --retention DURATION    forget flows not seen for this long, e.g. 30m, 1h (default 1h)
  --max-flows N           at most N stored flows, oldest evicted first (default 1000000)
  --max-series N          label sets per flow metric before overflow is counted (default 10000)
  --max-message-bytes N   refuse larger gRPC messages (default 4194304)
  --tls-cert FILE --tls-key FILE --tls-ca FILE
                          mTLS: serve with this certificate, require client certificates
                          signed by this CA (scripts/dev-certs.sh DIR makes a development set)
  --token-file FILE       require this bearer token on the query API
  --data-dir DIR          keep an ingest log there: a restart loses and double counts nothing
                          (segments past --retention are deleted)
  --wal-max-bytes N       the ingest log's bound on disk, e.g. 512MiB; past it the oldest
                          segments are deleted, counted and logged (default 1GiB)

Limits (defaults never hold back a healthy cluster):
  --agent-rate-limit N    flow summaries per second per agent; past it the agent's batches
                          wait in its buffer (backpressure, not refusal) (default 50000; 0: off)
  --agent-rate-burst N    summaries an agent may send at once (default twice the rate)
  --ingest-idle-timeout D close an agent stream with no batch for this long (default 5m)
  --handshake-timeout D   a connection must start a gRPC call / send HTTP request headers,
                          and a query its request, within this (default 10s)
  --max-connections N     open connections per port, gRPC and HTTP each (default 4096)
  --max-streams-per-connection N   concurrent calls on one connection (default 100)
  --keepalive D           ping gRPC connections this often; dead after no answer (default 30s)
  --connection-idle-timeout D      close a gRPC connection with no call for this long (default 10m)

Logs are JSON lines on stdout.
`;

export async function runAggregatorCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      'grpc-addr': { type: 'string' },
      'metrics-addr': { type: 'string' },
      retention: { type: 'string' },
      'max-flows': { type: 'string' },
      'max-series': { type: 'string' },
      'max-message-bytes': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'token-file': { type: 'string' },
      'data-dir': { type: 'string' },
      'wal-max-bytes': { type: 'string' },
      'agent-rate-limit': { type: 'string' },
      'agent-rate-burst': { type: 'string' },
      'ingest-idle-timeout': { type: 'string' },
      'handshake-timeout': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-streams-per-connection': { type: 'string' },
      keepalive: { type: 'string' },
      'connection-idle-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'aggregator',
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (msg: string): PlainsightError => new PlainsightError('PLAINSIGHT_ERR_USAGE', `aggregator: ${msg}`, { hint: 'run `plainsight aggregator --help` for usage' });
  if (positionals.length > 0) throw usage(`unexpected argument "${positionals[0]}"`);
  const c: AggregatorConfig = { ...DEFAULT_AGGREGATOR_CONFIG };
  if (values['grpc-addr'] !== undefined) {
    if (!parseHostPort(values['grpc-addr'])) throw usage(`--grpc-addr wants HOST:PORT or :PORT, not "${values['grpc-addr']}"`);
    c.grpcAddr = values['grpc-addr'];
  }
  if (values['metrics-addr'] !== undefined) {
    const a = values['metrics-addr'];
    if (a === 'off' || a === '') c.metricsAddr = '';
    else if (!parseHostPort(a)) throw usage(`--metrics-addr wants HOST:PORT or :PORT, not "${a}"`);
    else c.metricsAddr = a;
  }
  if (values.retention !== undefined) {
    const ms = parseDurationMs(values.retention);
    if (ms === undefined) throw usage(`--retention wants a duration like 30m or 1h, not "${values.retention}"`);
    c.retentionMs = ms;
  }
  const count = (name: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isSafeInteger(x) || x < min) throw usage(`--${name} wants a whole number ≥ ${min}, not "${v}"`);
    return x;
  };
  c.maxFlows = count('max-flows', values['max-flows'], 1) ?? c.maxFlows;
  c.maxSeries = count('max-series', values['max-series'], 1) ?? c.maxSeries;
  c.maxMessageBytes = count('max-message-bytes', values['max-message-bytes'], 1024) ?? c.maxMessageBytes;
  c.agentRateLimit = count('agent-rate-limit', values['agent-rate-limit'], 0) ?? c.agentRateLimit;
  const burst = count('agent-rate-burst', values['agent-rate-burst'], 1);
  if (burst !== undefined) c.agentRateBurst = burst;
  c.maxConnections = count('max-connections', values['max-connections'], 1) ?? c.maxConnections;
  c.maxStreamsPerConnection = count('max-streams-per-connection', values['max-streams-per-connection'], 1) ?? c.maxStreamsPerConnection;
  const duration = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const ms = parseDurationMs(v);
    if (ms === undefined) throw usage(`--${name} wants a duration like 500ms, 10s or 5m, not "${v}"`);
    return ms;
  };
  c.ingestIdleTimeoutMs = duration('ingest-idle-timeout', values['ingest-idle-timeout']) ?? c.ingestIdleTimeoutMs;
  c.handshakeTimeoutMs = duration('handshake-timeout', values['handshake-timeout']) ?? c.handshakeTimeoutMs;
  c.keepaliveMs = duration('keepalive', values.keepalive) ?? c.keepaliveMs;
  c.connectionIdleTimeoutMs = duration('connection-idle-timeout', values['connection-idle-timeout']) ?? c.connectionIdleTimeoutMs;
  const tls = [values['tls-cert'], values['tls-key'], values['tls-ca']];
  if (tls.some(Boolean)) {
    if (!tls.every(Boolean)) throw usage('--tls-cert, --tls-key and --tls-ca go together');
    c.tls = { cert: tls[0]!, key: tls[1]!, ca: tls[2]! };
  }
  if (values['token-file']) c.tokenFile = values['token-file'];
  if (values['data-dir']) c.dataDir = values['data-dir'];
  if (values['wal-max-bytes'] !== undefined) {
    const n = parseBytes(values['wal-max-bytes']);
    // Below 1 MiB a segment (an eighth) would hold few batches: deletion would churn.
    if (n === undefined || n < 1 << 20) throw usage(`--wal-max-bytes wants a size of at least 1MiB, like 512MiB or 4GiB, not "${values['wal-max-bytes']}"`);
    c.walMaxBytes = n;
  }
  const { runAggregator } = await import('../../aggregator/src/main.js');
  return runAggregator(c, untilStopSignal());
}
