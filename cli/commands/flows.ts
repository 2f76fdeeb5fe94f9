// `plainsight flows [--aggregator HOST:PORT] [--namespace NS] [--workload W] [--verdict V]
//  [--since 15m] [--follow] [--json]`: the aggregator's flows, as a table or JSON.

import type { Flow__Output } from '../../proto/gen/types/plainsight/v1/Flow.js';
import type { ListFlowsResponse__Output } from '../../proto/gen/types/plainsight/v1/ListFlowsResponse.js';
import type { WatchFlowsResponse__Output } from '../../proto/gen/types/plainsight/v1/WatchFlowsResponse.js';
import type { FlowFilter } from '../../proto/gen/types/plainsight/v1/FlowFilter.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { parseDurationMs } from '../../aggregator/src/config.js';
import { MESHES, VERDICTS, meshFromProto, meshToProto, nsToMs, transportFromProto, verdictFromProto, verdictToProto, type Mesh, type Verdict } from '../../aggregator/src/model.js';
import { parse } from '../args.js';
import { CLIENT_HELP, CLIENT_OPTIONS, callError, deadline, n, queryClient } from '../aggregator-client.js';
import { humanBytes, renderTable, type Column } from '../table.js';

const HELP = `Usage: plainsight flows [options]

Lists the flows the aggregator holds, oldest first: who talked to whom, the verdict
(plaintext, tls, mtls, encrypted-other, unknown), protocol, TLS details and bytes.
Flows inside one pod (its loopback, e.g. app <-> sidecar) are marked "(intra-pod)"
("intraPod": true in JSON); they are not on the wire and not in coverage.

Options:
${CLIENT_HELP}  --namespace NS          only flows with an end in NS (repeatable)
  --workload W            only flows with an end in workload W (repeatable)
  --verdict V             only this verdict (repeatable): ${VERDICTS.join(', ')}
  --protocol P            only this protocol, e.g. http/1.1, tls (repeatable)
  --mesh M                only this mesh (repeatable): ${MESHES.join(', ')}
  --since DURATION        only flows seen in the last DURATION, e.g. 15m
  --follow                keep watching: print each new or updated flow as it arrives
  --json                  one JSON object {"flows": [...]} (with --follow: one flow per line)
`;

/** A flow as `flows --json` prints it: classify's flow shape plus who each end is. */
export interface FlowOut {
  id: string;
  transport: string;
  client: { ip: string; port: number; namespace: string; workload: string; pod?: string };
  server: { ip: string; port: number; namespace: string; workload: string; pod?: string };
  verdict: string;
  protocol: string;
  upgradedFrom?: string;
  tls?: Record<string, unknown>;
  mesh: string;
  packets: { toServer: number; toClient: number };
  bytes: { toServer: number; toClient: number };
  firstSeen?: string;
  lastSeen?: string;
  evidence: string;
  observedBy: string[];
  verdictDisagreement?: { verdicts: string[] };
  ended: boolean;
  /** Only when true: seen on a pod's loopback (app ↔ sidecar); both ends are that pod. */
  intraPod?: true;
}

export async function runFlows(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...CLIENT_OPTIONS,
      namespace: { type: 'string', multiple: true },
      workload: { type: 'string', multiple: true },
      verdict: { type: 'string', multiple: true },
      protocol: { type: 'string', multiple: true },
      mesh: { type: 'string', multiple: true },
      since: { type: 'string' },
      follow: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    'flows',
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (msg: string): PlainsightError => new PlainsightError('PLAINSIGHT_ERR_USAGE', `flows: ${msg}`, { hint: 'run `plainsight flows --help` for usage' });
  if (positionals.length > 0) throw usage(`unexpected argument "${positionals[0]}"`);
  for (const v of values.verdict ?? []) if (!VERDICTS.includes(v as Verdict)) throw usage(`--verdict wants one of ${VERDICTS.join(', ')}, not "${v}"`);
  for (const m of values.mesh ?? []) if (!MESHES.includes(m as Mesh)) throw usage(`--mesh wants one of ${MESHES.join(', ')}, not "${m}"`);
  let sinceNs = '0';
  if (values.since !== undefined) {
    const ms = parseDurationMs(values.since);
    if (ms === undefined) throw usage(`--since wants a duration like 15m or 1h, not "${values.since}"`);
    sinceNs = (BigInt(Math.round(Date.now() - ms)) * 1_000_000n).toString();
  }
  const filter: FlowFilter = {
    namespace: values.namespace ?? [],
    workload: values.workload ?? [],
    verdict: (values.verdict ?? []).map((v) => verdictToProto(v as Verdict)),
    protocol: values.protocol ?? [],
    mesh: (values.mesh ?? []).map((m) => meshToProto(m as Mesh)),
  };
  const q = queryClient(values, 'flows');
  try {
    if (values.follow) return await follow(q, filter, sinceNs, values.json === true);
    const flows: FlowOut[] = [];
    let pageToken = '';
    do {
      const page = await new Promise<ListFlowsResponse__Output>((resolve, reject) =>
        q.client.ListFlows({ filter, sinceUnixNs: sinceNs, pageSize: 1000, pageToken }, q.metadata, deadline(), (err, res) => (err || !res ? reject(err) : resolve(res))),
      ).catch((e: unknown) => {
        throw callError(e, q.address, 'flows');
      });
      for (const f of page.flows) flows.push(flowOut(f));
      pageToken = page.nextPageToken;
    } while (pageToken);
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ flows })}\n`);
      return 0;
    }
    process.stdout.write(renderTable(flows, COLUMNS));
    const by = new Map<string, number>();
    for (const f of flows) by.set(f.verdict, (by.get(f.verdict) ?? 0) + 1);
    process.stdout.write(`\n${flows.length} flows (${[...by].map(([v, c]) => `${c} ${v}`).join(', ') || 'none'})\n`);
    return 0;
  } finally {
    q.close();
  }
}

async function follow(q: ReturnType<typeof queryClient>, filter: FlowFilter, sinceNs: string, json: boolean): Promise<number> {
  const call = q.client.WatchFlows({ filter, sinceUnixNs: sinceNs, follow: true }, q.metadata);
  const stop = (): void => call.cancel();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let header = false;
  return new Promise<number>((resolve, reject) => {
    call.on('data', (r: WatchFlowsResponse__Output) => {
      if (r.event === 'lostEvents') {
        process.stderr.write(`plainsight: warning: ${n(r.lostEvents)} flow updates lost (this reader was too slow)\n`);
        return;
      }
      if (!r.flow) return;
      const f = flowOut(r.flow);
      if (json) process.stdout.write(`${JSON.stringify(f)}\n`);
      else {
        const lines = renderTable([f], COLUMNS).split('\n');
        if (!header) process.stdout.write(`${lines[0]}\n`);
        header = true;
        process.stdout.write(`${lines[1]}\n`);
      }
    });
    call.on('error', (e: { code?: number }) => {
      if (e.code === 1 /* CANCELLED: ours */) resolve(0);
      else reject(callError(e, q.address, 'flows'));
    });
    call.on('end', () => resolve(0));
  }).finally(() => {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  });
}

export function flowOut(f: Flow__Output): FlowOut {
  const end = (p: Flow__Output['client']): FlowOut['client'] => {
    const o: FlowOut['client'] = { ip: p?.ip ?? '', port: p?.port ?? 0, namespace: p?.namespace ?? '', workload: p?.workload ?? '' };
    if (p?.pod) o.pod = p.pod;
    return o;
  };
  const out: FlowOut = {
    id: f.id,
    transport: transportFromProto(f.transport),
    client: end(f.client),
    server: end(f.server),
    verdict: verdictFromProto(f.verdict) ?? 'unknown',
    protocol: f.protocol,
    mesh: meshFromProto(f.mesh),
    packets: { toServer: n(f.packets?.toServer), toClient: n(f.packets?.toClient) },
    bytes: { toServer: n(f.bytes?.toServer), toClient: n(f.bytes?.toClient) },
    evidence: f.evidence,
    observedBy: f.observedBy,
    ended: f.ended,
  };
  if (f.upgradedFrom) out.upgradedFrom = f.upgradedFrom;
  if (f.tls) {
    const t: Record<string, unknown> = {};
    if (f.tls.version) t.version = f.tls.version;
    if (f.tls.sni) t.sni = f.tls.sni;
    if (f.tls.alpn.length) t.alpn = f.tls.alpn;
    if (f.tls.alpnSelected) t.alpnSelected = f.tls.alpnSelected;
    if (f.tls.cipher) t.cipher = f.tls.cipher;
    if (f.tls.ja4) t.ja4 = f.tls.ja4;
    const cc = f.tls.clientCertificate;
    if (typeof cc === 'string' && cc !== 'CLIENT_CERTIFICATE_UNSPECIFIED') t.clientCertificate = cc.slice('CLIENT_CERTIFICATE_'.length).toLowerCase();
    out.tls = t;
  }
  const first = nsToMs(f.firstSeenUnixNs);
  const last = nsToMs(f.lastSeenUnixNs);
  if (first > 0) out.firstSeen = new Date(first).toISOString();
  if (last > 0) out.lastSeen = new Date(last).toISOString();
  if (f.intraPod) out.intraPod = true;
  if (f.verdictDisagreement) out.verdictDisagreement = { verdicts: f.observedVerdicts.map((v) => verdictFromProto(v) ?? 'unknown') };
  return out;
}

const who = (e: FlowOut['client']): string => (e.namespace === 'external' ? `external/${e.workload}` : `${e.namespace}/${e.workload}`);

const COLUMNS: Column<FlowOut>[] = [
  { header: 'CLIENT', value: (f) => who(f.client), max: 32 },
  { header: 'SERVER', value: (f) => who(f.server), max: 32 },
  { header: 'PORT', value: (f) => `${f.transport}/${f.server.port}` },
  { header: 'VERDICT', value: (f) => `${f.verdict}${f.verdictDisagreement ? '!' : ''}${f.intraPod ? ' (intra-pod)' : ''}` },
  { header: 'PROTOCOL', value: (f) => (f.upgradedFrom ? `${f.protocol}<-${f.upgradedFrom}` : f.protocol), max: 22 },
  { header: 'TLS', value: (f) => String(f.tls?.version ?? '') },
  { header: 'MESH', value: (f) => (f.mesh === 'none' ? '' : f.mesh) },
  { header: 'BYTES →', value: (f) => humanBytes(f.bytes.toServer), align: 'right' },
  { header: 'BYTES ←', value: (f) => humanBytes(f.bytes.toClient), align: 'right' },
  { header: 'LAST SEEN', value: (f) => (f.lastSeen ? f.lastSeen.slice(11, 19) : '') },
  { header: 'EVIDENCE', value: (f) => f.evidence, flex: true },
];
