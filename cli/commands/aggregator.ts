// `plainsight aggregator [--grpc-addr :50051] [--metrics-addr :9100] [--retention 1h]
//  [--max-flows N] [--tls-cert F --tls-key F --tls-ca F] [--token-file F] [--data-dir DIR]`

import { parse } from '../args.js';
import { untilStopSignal } from '../signals.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { DEFAULT_AGGREGATOR_CONFIG, parseDurationMs, parseHostPort, type AggregatorConfig } from '../../aggregator/src/config.js';

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
  const tls = [values['tls-cert'], values['tls-key'], values['tls-ca']];
  if (tls.some(Boolean)) {
    if (!tls.every(Boolean)) throw usage('--tls-cert, --tls-key and --tls-ca go together');
    c.tls = { cert: tls[0]!, key: tls[1]!, ca: tls[2]! };
  }
  if (values['token-file']) c.tokenFile = values['token-file'];
  if (values['data-dir']) c.dataDir = values['data-dir'];
  const { runAggregator } = await import('../../aggregator/src/main.js');
  return runAggregator(c, untilStopSignal());
}
