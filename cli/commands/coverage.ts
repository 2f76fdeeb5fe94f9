// `plainsight coverage [--aggregator HOST:PORT] [--by namespace|workload|edge] [--json]`:
// how much traffic is encrypted, by namespace, workload or edge.

import type { CoverageRow__Output } from '../../proto/gen/types/plainsight/v1/CoverageRow.js';
import type { GetCoverageResponse__Output } from '../../proto/gen/types/plainsight/v1/GetCoverageResponse.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { parseDurationMs } from '../../aggregator/src/config.js';
import { parse } from '../args.js';
import { CLIENT_HELP, CLIENT_OPTIONS, callError, deadline, n, queryClient } from '../aggregator-client.js';
import { humanBytes, renderTable, type Column } from '../table.js';

const HELP = `Usage: plainsight coverage [options]

Encrypted vs plaintext traffic, by bytes and connections. unknown never counts as
encrypted. A flow counts for each namespace (workload) it touches; edges are client → server.

Options:
${CLIENT_HELP}  --by namespace|workload|edge   grouping (default namespace)
  --namespace NS          only flows with an end in NS (repeatable)
  --since DURATION        only flows seen in the last DURATION, e.g. 15m
  --json                  one JSON object {"by", "rows": [...], "total"}
`;

const GROUPINGS = { namespace: 'COVERAGE_GROUPING_NAMESPACE', workload: 'COVERAGE_GROUPING_WORKLOAD', edge: 'COVERAGE_GROUPING_EDGE' } as const;

export interface CoverageOut {
  namespace: string;
  workload?: string;
  dstNamespace?: string;
  dstWorkload?: string;
  encryptedBytes: number;
  plaintextBytes: number;
  unknownBytes: number;
  encryptedConnections: number;
  plaintextConnections: number;
  unknownConnections: number;
  ratio: number;
  connectionRatio: number;
}

export async function runCoverage(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...CLIENT_OPTIONS,
      by: { type: 'string' },
      namespace: { type: 'string', multiple: true },
      since: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    'coverage',
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (msg: string): PlainsightError => new PlainsightError('PLAINSIGHT_ERR_USAGE', `coverage: ${msg}`, { hint: 'run `plainsight coverage --help` for usage' });
  if (positionals.length > 0) throw usage(`unexpected argument "${positionals[0]}"`);
  const by = (values.by ?? 'namespace') as keyof typeof GROUPINGS;
  if (!(by in GROUPINGS)) throw usage(`--by wants namespace, workload or edge, not "${values.by}"`);
  let sinceNs = '0';
  if (values.since !== undefined) {
    const ms = parseDurationMs(values.since);
    if (ms === undefined) throw usage(`--since wants a duration like 15m or 1h, not "${values.since}"`);
    sinceNs = (BigInt(Math.round(Date.now() - ms)) * 1_000_000n).toString();
  }
  const q = queryClient(values, 'coverage');
  try {
    const res = await new Promise<GetCoverageResponse__Output>((resolve, reject) =>
      q.client.GetCoverage(
        { by: GROUPINGS[by], filter: { namespace: values.namespace ?? [] }, sinceUnixNs: sinceNs },
        q.metadata,
        deadline(),
        (err, r) => (err || !r ? reject(err) : resolve(r)),
      ),
    ).catch((e: unknown) => {
      throw callError(e, q.address, 'coverage');
    });
    const rows = res.rows.map((r) => rowOut(r, by));
    const total = rowOut(res.total, by);
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ by, rows, total })}\n`);
      return 0;
    }
    const cols: Column<CoverageOut>[] = [{ header: by === 'edge' ? 'CLIENT' : 'NAMESPACE', value: (r) => (by === 'namespace' ? r.namespace : `${r.namespace}/${r.workload}`), max: 40 }];
    if (by === 'edge') cols.push({ header: 'SERVER', value: (r) => `${r.dstNamespace}/${r.dstWorkload}`, max: 40 });
    else if (by === 'workload') cols[0]!.header = 'NAMESPACE/WORKLOAD';
    cols.push(
      { header: 'ENCRYPTED', value: (r) => pct(r.ratio), align: 'right' },
      { header: 'ENC BYTES', value: (r) => humanBytes(r.encryptedBytes), align: 'right' },
      { header: 'PLAIN BYTES', value: (r) => humanBytes(r.plaintextBytes), align: 'right' },
      { header: 'UNKNOWN BYTES', value: (r) => humanBytes(r.unknownBytes), align: 'right' },
      { header: 'CONNS enc/plain/unk', value: (r) => `${r.encryptedConnections}/${r.plaintextConnections}/${r.unknownConnections}`, align: 'right' },
    );
    process.stdout.write(renderTable(rows, cols));
    process.stdout.write(
      `\ntotal: ${pct(total.ratio)} of bytes encrypted (${total.encryptedConnections} encrypted, ${total.plaintextConnections} plaintext, ${total.unknownConnections} unknown connections)\n`,
    );
    return 0;
  } finally {
    q.close();
  }
}

function pct(r: number): string {
  return `${(r * 100).toFixed(1)}%`;
}

export function rowOut(r: CoverageRow__Output | null, by: string): CoverageOut {
  const o: CoverageOut = {
    namespace: r?.namespace ?? '',
    encryptedBytes: n(r?.encryptedBytes),
    plaintextBytes: n(r?.plaintextBytes),
    unknownBytes: n(r?.unknownBytes),
    encryptedConnections: n(r?.encryptedConnections),
    plaintextConnections: n(r?.plaintextConnections),
    unknownConnections: n(r?.unknownConnections),
    ratio: r?.ratio ?? 0,
    connectionRatio: r?.connectionRatio ?? 0,
  };
  if (by !== 'namespace') o.workload = r?.workload ?? '';
  if (by === 'edge') {
    o.dstNamespace = r?.dstNamespace ?? '';
    o.dstWorkload = r?.dstWorkload ?? '';
  }
  return o;
}
