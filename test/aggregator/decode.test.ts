// The ingest decoder (aggregator/src/ingest/decode.ts) against proto-loader's objects: the
// same bytes decoded either way leave the store, the query answers and the metrics exactly
// the same; 64-bit integers come out as numbers; the ingest log's encoder round-trips.

import t from 'tap';
import pino from 'pino';
import * as grpc from '@grpc/grpc-js';
import { packageDefinition } from '../../proto/gen/index.js';
import type { ReportRequest, ReportRequest__Output } from '../../proto/gen/types/plainsight/v1/ReportRequest.js';
import type { FlowSummary } from '../../proto/gen/types/plainsight/v1/FlowSummary.js';
import { IdentityResolver } from '../../aggregator/src/identity/index.js';
import { Ingest } from '../../aggregator/src/ingest/index.js';
import { decodeReport, encodeReport } from '../../aggregator/src/ingest/decode.js';
import { AggregatorMetrics } from '../../aggregator/src/metrics/index.js';
import { FlowStore } from '../../aggregator/src/store/index.js';
import { coverage, flowToProto, listFlows } from '../../aggregator/src/query/index.js';

const def = (packageDefinition['plainsight.v1.IngestService'] as grpc.ServiceDefinition).Report!;

function setup() {
  const identity = new IdentityResolver();
  const store = new FlowStore({ retentionMs: 3_600_000, maxFlows: 1000 }, identity);
  let ingest!: Ingest;
  const metrics = new AggregatorMetrics({ activeGroups: () => store.active.values(), agentsConnected: () => ingest.connectedAgents, storedFlows: () => store.size }, 100);
  store.onEvict = (reason, n) => metrics.evictions.inc({ reason }, n);
  ingest = new Ingest(store, identity, metrics, pino({ level: 'silent' }));
  return { store, metrics, ingest };
}

const NOW_NS = BigInt(Date.now()) * 1_000_000n;
const summary = (id: string, cport: number, o: Partial<FlowSummary> = {}): FlowSummary => ({
  flowId: id,
  key: { transport: 'TRANSPORT_TCP', client: { ip: '198.18.0.1', port: cport }, server: { ip: '198.18.0.2', port: 443 } },
  verdict: 'VERDICT_TLS',
  protocol: 'tls',
  mesh: 'MESH_NONE',
  tls: { version: '1.3', sni: 'db.data', alpn: ['h2', 'http/1.1'], alpnSelected: 'h2', cipher: 'TLS_AES_128_GCM_SHA256', ja4: 't13d1516h2_8daaf6152771_b0da82dd1658', clientCertificate: 'CLIENT_CERTIFICATE_OBSERVED', resumed: true, helloRetryRequest: false },
  packetsDelta: { toServer: 3, toClient: 4 },
  bytesDelta: { toServer: 1234, toClient: 9_007_199_254 },
  firstSeenUnixNs: (NOW_NS + BigInt(cport)).toString(),
  lastSeenUnixNs: (NOW_NS + 1_000_123_456n).toString(),
  evidence: 'ClientHello + ServerHello',
  ...o,
});

const batches: ReportRequest[] = [
  {
    agentId: 'a',
    sequence: 1,
    nodeName: 'node-a',
    inventory: { pods: [{ name: 'web-1', namespace: 'shop', workload: 'web', ips: ['198.18.0.1'] }, { name: 'db-1', namespace: 'data', workload: 'db', ips: ['198.18.0.2'] }] },
    flows: [
      summary('x', 40001),
      summary('y', 40002, { verdict: 'VERDICT_PLAINTEXT', protocol: 'http/1.1', tls: null, mesh: 'MESH_ISTIO' }),
      summary('z', 40003, { key: { transport: 'TRANSPORT_UDP', client: { ip: '198.18.0.1', port: 40003 }, server: { ip: '203.0.113.7', port: 53 } }, verdict: 'VERDICT_UNKNOWN', tls: null, protocol: '' }),
      summary('s', 40004, { protocol: 'smtp', upgradedFrom: 'smtp', key: { transport: 'TRANSPORT_TCP', client: { ip: '198.18.0.1', port: 40004 }, server: { ip: '203.0.113.8', port: 587 } } }),
    ],
    droppedBatches: 2,
    droppedFlows: 7,
    lostSamplesDelta: 5,
    oldestPendingSequence: 1,
    sentUnixNs: NOW_NS.toString(),
  },
  { agentId: 'a', sequence: 2, nodeName: 'node-a', flows: [summary('x', 40001, { final: true, bytesDelta: { toServer: 10, toClient: 0 } })], oldestPendingSequence: 2 },
  // The other end of x, with another verdict (a disagreement), and y seen by b.
  { agentId: 'b', sequence: 1, nodeName: 'node-b', flows: [summary('x-b', 40001, { verdict: 'VERDICT_PLAINTEXT' }), summary('y-b', 40002, { verdict: 'VERDICT_PLAINTEXT', tls: null })] },
  { agentId: 'a', sequence: 2, nodeName: 'node-a', flows: [summary('x', 40001)] }, // a duplicate
];

t.test('decodeReport and proto-loader: the same batches apply identically', async (t) => {
  const viaLoader = setup();
  const viaDecoder = setup();
  for (const b of batches) {
    const bytes = def.requestSerialize(b);
    const a = viaLoader.ingest.apply(def.requestDeserialize(bytes) as ReportRequest__Output);
    const d = viaDecoder.ingest.apply(decodeReport(bytes) as ReportRequest__Output);
    t.same(d, a, `batch ${b.agentId}/${b.sequence}: same result`);
  }
  const page = (s: FlowStore) => listFlows(s, {}, 100, '').flows.map(flowToProto);
  const fl = page(viaLoader.store);
  const fd = page(viaDecoder.store);
  t.equal(fd.length, 4, 'x (both ends), y (both ends), z, s');
  t.strictSame(fd, fl, 'the same flows, field for field');
  t.strictSame(fd[0]!.verdictDisagreement, true, 'x: the ends disagree');
  t.strictSame(
    viaDecoder.store.get(1)!.tls,
    { version: '1.3', sni: 'db.data', alpn: ['h2', 'http/1.1'], alpnSelected: 'h2', cipher: 'TLS_AES_128_GCM_SHA256', ja4: 't13d1516h2_8daaf6152771_b0da82dd1658', clientCertificate: 'CLIENT_CERTIFICATE_OBSERVED', resumed: true, helloRetryRequest: false },
    'TLS details stored as a plain object, the enum by name',
  );
  // The store copies TLS details field by field: a field added to TlsDetails must be copied too.
  const decodedTls = (def.requestDeserialize(def.requestSerialize(batches[0]!)) as ReportRequest__Output).flows[0]!.tls!;
  t.same(Object.keys(viaDecoder.store.get(1)!.tls!).sort(), Object.keys(decodedTls).sort(), 'every TlsDetails field kept');
  t.equal(viaDecoder.store.get(4)!.tls, viaDecoder.store.get(1)!.tls, 'the same TLS details: one shared object');
  t.same(coverage(viaDecoder.store, {}, 'edge'), coverage(viaLoader.store, {}, 'edge'), 'coverage');
  viaLoader.ingest.flushPending(Infinity);
  viaDecoder.ingest.flushPending(Infinity);
  const scrape = async (m: AggregatorMetrics) => (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('plainsight_') && !l.startsWith('plainsight_aggregator_process') && !/^plainsight_aggregator_(nodejs|heap|process|eventloop)/.test(l));
  t.same(await scrape(viaDecoder.metrics), await scrape(viaLoader.metrics), 'metrics');
});

t.test('decodeReport: 64-bit integers as numbers, enums as numbers; encodeReport round-trips', async (t) => {
  const bytes = def.requestSerialize(batches[0]!);
  const m = decodeReport(bytes) as ReportRequest__Output & { flows: { firstSeenUnixNs: unknown; bytesDelta: { toClient: unknown }; verdict: unknown }[] };
  t.equal(m.sequence, 1);
  t.equal(m.droppedBatches, 2);
  t.equal(typeof m.flows[0]!.firstSeenUnixNs, 'number');
  t.equal(m.flows[0]!.bytesDelta.toClient, 9_007_199_254);
  t.equal(typeof m.flows[0]!.verdict, 'number');
  const again = encodeReport(m as object);
  t.same(def.requestDeserialize(again), def.requestDeserialize(bytes), 'encodeReport(decodeReport(b)) decodes to the same request');
  t.same(def.requestDeserialize(encodeReport(def.requestDeserialize(bytes) as object)), def.requestDeserialize(bytes), 'proto-loader objects encode too');
});
