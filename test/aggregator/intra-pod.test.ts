// Intra-pod flows: what an agent saw on a pod's loopback (app ↔ sidecar, plaintext by
// design) is that pod on both ends, never `external`; two pods' identical loopback tuples
// never join; and it is kept out of the wire metrics, active flows and coverage, counted
// in plainsight_intra_pod_* instead. Batches go through the wire format as in store.test.ts.

import t from 'tap';
import pino from 'pino';
import * as grpc from '@grpc/grpc-js';
import { packageDefinition } from '../../proto/gen/index.js';
import type { ReportRequest, ReportRequest__Output } from '../../proto/gen/types/plainsight/v1/ReportRequest.js';
import type { FlowSummary } from '../../proto/gen/types/plainsight/v1/FlowSummary.js';
import { IdentityResolver } from '../../aggregator/src/identity/index.js';
import { Ingest } from '../../aggregator/src/ingest/index.js';
import { AggregatorMetrics } from '../../aggregator/src/metrics/index.js';
import { FlowStore } from '../../aggregator/src/store/index.js';
import { coverage, flowToProto, listFlows } from '../../aggregator/src/query/index.js';
import { metricSum } from '../lab/aggregator.js';

const def = (packageDefinition['plainsight.v1.IngestService'] as grpc.ServiceDefinition).Report!;
const wire = (r: ReportRequest): ReportRequest__Output => def.requestDeserialize(def.requestSerialize(r)) as ReportRequest__Output;

function setup(maxSeries = 100) {
  const identity = new IdentityResolver();
  const store = new FlowStore({ retentionMs: 3_600_000, maxFlows: 1000 }, identity);
  let ingest!: Ingest;
  const metrics = new AggregatorMetrics({ activeGroups: () => store.active.values(), agentsConnected: () => ingest.connectedAgents, storedFlows: () => store.size }, maxSeries);
  ingest = new Ingest(store, identity, metrics, pino({ level: 'silent' }));
  return { identity, store, metrics, ingest };
}

const NOW_NS = (BigInt(Date.now()) * 1_000_000n).toString();
function summary(id: string, o: { pod?: string; intraPod?: boolean; client?: string; server?: string; cport?: number; sport?: number; verdict?: string; bytes?: number } = {}): FlowSummary {
  return {
    flowId: id,
    key: { transport: 'TRANSPORT_TCP', client: { ip: o.client ?? '127.0.0.1', port: o.cport ?? 40000 }, server: { ip: o.server ?? '127.0.0.1', port: o.sport ?? 8080 } },
    pod: o.pod ?? '',
    intraPod: o.intraPod ?? true,
    verdict: (o.verdict ?? 'VERDICT_PLAINTEXT') as never,
    protocol: 'http/1.1',
    mesh: 'MESH_NONE',
    packetsDelta: { toServer: 1, toClient: 1 },
    bytesDelta: { toServer: o.bytes ?? 100, toClient: 0 },
    firstSeenUnixNs: NOW_NS,
    lastSeenUnixNs: NOW_NS,
    final: false,
    evidence: 'test',
  };
}
const pods = {
  pods: [
    { name: 'web-1', namespace: 'shop', workload: 'web', ips: ['198.18.0.1'] },
    { name: 'db-1', namespace: 'data', workload: 'db', ips: ['198.18.0.2'] },
  ],
};

t.test('two pods with identical loopback tuples: two flows, each its own pod on both ends, off the wire metrics', async (t) => {
  const { ingest, store, metrics } = setup();
  ingest.apply(wire({
    agentId: 'n1/x', sequence: 1, nodeName: 'n1', inventory: pods,
    flows: [
      summary('lo-web', { pod: 'web-1', bytes: 100 }),
      summary('lo-db', { pod: 'db-1', bytes: 30 }),
      // On the wire, for comparison: web → db (plaintext too).
      summary('wire', { intraPod: false, client: '198.18.0.1', server: '198.18.0.2', sport: 5432, bytes: 7 }),
    ],
  }));
  ingest.apply(wire({ agentId: 'n1/x', sequence: 2, nodeName: 'n1', flows: [summary('lo-web', { pod: 'web-1', bytes: 50 })] }));
  t.equal(store.size, 3, 'same 127.0.0.1 tuple in two pods: not joined');
  const [web, db, onWire] = [...store.iterate()];
  t.match(web, { intraPod: true, clientId: { namespace: 'shop', workload: 'web', pod: 'web-1' }, serverId: { namespace: 'shop', workload: 'web', pod: 'web-1' } });
  t.match(db, { intraPod: true, clientId: { namespace: 'data', workload: 'db', pod: 'db-1' }, serverId: { namespace: 'data', workload: 'db', pod: 'db-1' } });
  t.equal(web!.bytes.toServer, 150, 'updates of one pod\'s loopback flow stay with it');
  t.equal(web!.observations.length, 1);
  t.equal(onWire!.intraPod, false);
  t.equal(flowToProto(web!).intraPod, true, 'ListFlows / WatchFlows say so');
  t.equal(flowToProto(onWire!).intraPod, false);
  t.same(listFlows(store, { namespaces: new Set(['shop']) }, 100, '').flows.map((f) => f.seq), [web!.seq, onWire!.seq], 'found by its pod\'s namespace');

  const text = await metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_flows_total'), 1, 'only the wire flow');
  t.equal(metricSum(text, 'plainsight_bytes_total'), 7);
  t.equal(metricSum(text, 'plainsight_flows_total', { src_namespace: 'external' }) + metricSum(text, 'plainsight_flows_total', { dst_namespace: 'external' }), 0, 'no external series');
  t.equal(metricSum(text, 'plainsight_active_flows'), 1, 'loopback flows are not active wire flows');
  t.equal(metricSum(text, 'plainsight_intra_pod_flows_total'), 2);
  t.equal(metricSum(text, 'plainsight_intra_pod_flows_total', { namespace: 'shop', workload: 'web', dst_port: '8080', verdict: 'plaintext', protocol: 'http/1.1' }), 1);
  t.equal(metricSum(text, 'plainsight_intra_pod_bytes_total', { namespace: 'shop', workload: 'web' }), 150);
  t.equal(metricSum(text, 'plainsight_intra_pod_bytes_total', { namespace: 'data', workload: 'db' }), 30);

  const c = coverage(store, {}, 'edge');
  t.match(c.total, { plaintextConnections: 1, plaintextBytes: 7, encryptedConnections: 0, unknownConnections: 0 }, 'coverage: the wire flow only');
  t.same(c.rows.map((r) => `${r.namespace}/${r.workload}>${r.dstNamespace}/${r.dstWorkload}`), ['shop/web>data/db']);
});

t.test('two agents, same pod name and tuple: still two flows', async (t) => {
  const { ingest, store } = setup();
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'na', inventory: { pods: [pods.pods[0]!] }, flows: [summary('x', { pod: 'web-1' })] }));
  ingest.apply(wire({ agentId: 'b', sequence: 1, nodeName: 'nb', inventory: { pods: [{ name: 'web-1', namespace: 'other', workload: 'web', ips: ['198.18.0.9'] }] }, flows: [summary('x', { pod: 'web-1' })] }));
  t.same([...store.iterate()].map((f) => f.clientId.namespace), ['shop', 'other']);
});

t.test('a pod the inventory lacks: namespace "unknown", workload = pod name, never external; resolved when the inventory comes', async (t) => {
  const { ingest, store, metrics } = setup();
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'n', flows: [summary('x', { pod: 'late-1' })] }));
  const f = [...store.iterate()][0]!;
  t.match(f, { clientId: { namespace: 'unknown', workload: 'late-1', pod: 'late-1' }, serverId: { namespace: 'unknown', workload: 'late-1' } });
  t.equal(metricSum(await metrics.registry.metrics(), 'plainsight_intra_pod_flows_total'), 0, 'waits (grace) for the inventory');
  ingest.apply(wire({ agentId: 'a', sequence: 2, nodeName: 'n', inventory: { pods: [{ name: 'late-1', namespace: 'shop', workload: 'late', ips: ['198.18.0.5'] }] }, flows: [summary('x', { pod: 'late-1', bytes: 10 })] }));
  t.match(f, { clientId: { namespace: 'shop', workload: 'late' }, serverId: { namespace: 'shop', workload: 'late' } });
  const text = await metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_intra_pod_flows_total', { namespace: 'shop', workload: 'late' }), 1);
  t.equal(metricSum(text, 'plainsight_intra_pod_bytes_total', { namespace: 'shop', workload: 'late' }), 110);
  t.same(listFlows(store, { namespaces: new Set(['shop']) }, 100, '').flows.length, 1, 'indexed under its namespace once resolved');

  // Past the grace, a still-unknown pod is counted as such (not external).
  ingest.apply(wire({ agentId: 'a', sequence: 3, nodeName: 'n', flows: [summary('y', { pod: 'ghost-1', cport: 40001 })] }));
  ingest.flushPending(Infinity);
  const after = await metrics.registry.metrics();
  t.equal(metricSum(after, 'plainsight_intra_pod_flows_total', { namespace: 'unknown', workload: 'ghost-1' }), 1);
  t.equal(metricSum(after, 'plainsight_flows_total'), 0);
});

t.test('intra-pod series are capped like the wire ones', async (t) => {
  const { ingest, metrics } = setup(2);
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'n', inventory: pods, flows: [8080, 8081, 8082].map((p, i) => summary(`s${i}`, { pod: 'web-1', sport: p, cport: 42000 + i })) }));
  const text = await metrics.registry.metrics();
  t.equal(text.split('\n').filter((l) => l.startsWith('plainsight_intra_pod_flows_total{')).length, 2);
  t.equal(metricSum(text, 'plainsight_aggregator_series_overflow_total', { metric: 'plainsight_intra_pod_flows_total' }), 1);
  t.equal(metricSum(text, 'plainsight_aggregator_series_overflow_total', { metric: 'plainsight_intra_pod_bytes_total' }), 1);
});
