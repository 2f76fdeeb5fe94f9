// The aggregator's core in-process: ingest idempotence, joining both ends, verdict
// disagreement, identity, bounded store (retention, capacity), paging, coverage, and the
// series cap. Batches are real ReportRequest objects, encoded and decoded by the runtime's
// own (generated) serializers as on the wire.

import t from 'tap';
import pino from 'pino';
import * as grpc from '@grpc/grpc-js';
import { packageDefinition } from '../../proto/gen/index.js';
import type { ReportRequest, ReportRequest__Output } from '../../proto/gen/types/plainsight/v1/ReportRequest.js';
import type { FlowSummary } from '../../proto/gen/types/plainsight/v1/FlowSummary.js';
import { IdentityResolver } from '../../aggregator/src/identity/index.js';
import { Ingest, InvalidBatch } from '../../aggregator/src/ingest/index.js';
import { AggregatorMetrics } from '../../aggregator/src/metrics/index.js';
import { FlowStore } from '../../aggregator/src/store/index.js';
import { coverage, listFlows } from '../../aggregator/src/query/index.js';
import { metricSum } from '../lab/aggregator.js';

const def = (packageDefinition['plainsight.v1.IngestService'] as grpc.ServiceDefinition).Report!;
/** Through the wire format, as the server would see it. */
const wire = (r: ReportRequest): ReportRequest__Output => def.requestDeserialize(def.requestSerialize(r)) as ReportRequest__Output;

function setup(opts: { retentionMs?: number; maxFlows?: number; maxSeries?: number } = {}) {
  const identity = new IdentityResolver();
  const store = new FlowStore({ retentionMs: opts.retentionMs ?? 3_600_000, maxFlows: opts.maxFlows ?? 1000 }, identity);
  let ingest!: Ingest;
  const metrics = new AggregatorMetrics({ activeGroups: () => store.active.values(), agentsConnected: () => ingest.connectedAgents, storedFlows: () => store.size }, opts.maxSeries ?? 100);
  store.onEvict = (reason, n) => metrics.evictions.inc({ reason }, n);
  ingest = new Ingest(store, identity, metrics, pino({ level: 'silent' }));
  return { identity, store, metrics, ingest };
}

const NOW_NS = BigInt(Date.now()) * 1_000_000n;
function summary(id: string, o: { cport?: number; sport?: number; verdict?: string; bytes?: number; final?: boolean; sni?: string; server?: string; firstNs?: bigint } = {}): FlowSummary {
  return {
    flowId: id,
    key: { transport: 'TRANSPORT_TCP', client: { ip: '198.18.0.1', port: o.cport ?? 40000 }, server: { ip: o.server ?? '198.18.0.2', port: o.sport ?? 80 } },
    verdict: (o.verdict ?? 'VERDICT_PLAINTEXT') as never,
    protocol: o.verdict === 'VERDICT_TLS' ? 'tls' : 'http/1.1',
    mesh: 'MESH_NONE',
    tls: o.sni ? { version: '1.3', sni: o.sni, clientCertificate: 'CLIENT_CERTIFICATE_NONE' } : null,
    packetsDelta: { toServer: 1, toClient: 1 },
    bytesDelta: { toServer: o.bytes ?? 100, toClient: 0 },
    firstSeenUnixNs: (o.firstNs ?? NOW_NS).toString(),
    lastSeenUnixNs: NOW_NS.toString(),
    final: o.final ?? false,
    evidence: 'test',
  };
}
const pods = { pods: [{ name: 'web-1', namespace: 'shop', workload: 'web', ips: ['198.18.0.1'] }, { name: 'db-1', namespace: 'data', workload: 'db', ips: ['198.18.0.2'] }] };

t.test('a batch sent twice counts once; sequences below the agent floor are duplicates', async (t) => {
  const { ingest, store, metrics } = setup();
  const batch = wire({ agentId: 'n1/x', sequence: 1, nodeName: 'n1', inventory: pods, flows: [summary('a')], oldestPendingSequence: 1 });
  t.same(ingest.apply(batch), { duplicate: false });
  t.same(ingest.apply(batch), { duplicate: true }, 'same (agent, sequence): duplicate');
  t.same(ingest.apply(wire({ agentId: 'n2/y', sequence: 1, nodeName: 'n2', flows: [] })), { duplicate: false }, 'another agent has its own sequences');
  t.equal(store.size, 1);
  const text = await metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_flows_total'), 1);
  t.equal(metricSum(text, 'plainsight_bytes_total'), 100, 'bytes not doubled');
  t.equal(metricSum(text, 'plainsight_aggregator_ingest_batches_total', { result: 'duplicate' }), 1);
  // The agent moved on: 2..4 accepted with floor 3, then a late replay of 2 is a duplicate.
  for (const s of [2, 3, 4]) ingest.apply(wire({ agentId: 'n1/x', sequence: s, nodeName: 'n1', flows: [summary('a', { bytes: 10 })], oldestPendingSequence: 3 }));
  t.same(ingest.apply(wire({ agentId: 'n1/x', sequence: 2, nodeName: 'n1', flows: [summary('a', { bytes: 10 })] })), { duplicate: true });
  t.equal(metricSum(await metrics.registry.metrics(), 'plainsight_bytes_total'), 130, '3 more deltas of 10');
  t.throws(() => ingest.apply(wire({ agentId: '', sequence: 1, flows: [] })), InvalidBatch, 'no agent id: invalid');
  t.throws(() => ingest.apply(wire({ agentId: 'z', sequence: 0, flows: [] })), InvalidBatch, 'sequence 0: invalid');
});

t.test('both ends join into one flow; a disagreement keeps the cautious verdict and is reported', async (t) => {
  const { ingest, store, metrics } = setup();
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'node-a', inventory: { pods: [pods.pods[0]!] }, flows: [summary('x', { verdict: 'VERDICT_TLS', sni: 'db.data' })] }));
  ingest.apply(wire({ agentId: 'b', sequence: 1, nodeName: 'node-b', inventory: { pods: [pods.pods[1]!] }, flows: [summary('y', { verdict: 'VERDICT_PLAINTEXT', firstNs: NOW_NS + 2_000_000_000n })] }));
  t.equal(store.size, 1, 'joined');
  const f = [...store.iterate()][0]!;
  t.equal(f.verdict, 'plaintext', 'tls vs plaintext → plaintext (never call plaintext encrypted)');
  t.equal(f.disagreement, true);
  t.same(f.observations.map((o) => [o.node, o.verdict]), [['node-a', 'tls'], ['node-b', 'plaintext']]);
  t.equal(f.bytes.toServer, 100, 'bytes: max of the ends, not the sum');
  t.match(f.clientId, { namespace: 'shop', workload: 'web' });
  t.match(f.serverId, { namespace: 'data', workload: 'db' }, 'server resolved once node-b inventory arrived');
  const text = await metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_aggregator_verdict_disagreements_total'), 1);
  t.equal(metricSum(text, 'plainsight_flows_total', { src_workload: 'web', dst_workload: 'db' }), 1, 'counted once node-b\'s inventory resolved the server (no external series)');
  t.equal(metricSum(text, 'plainsight_flows_total', { dst_namespace: 'external' }), 0);
  // Same 5-tuple much later from the same agent after it ended: a new connection (port reuse).
  ingest.apply(wire({ agentId: 'a', sequence: 2, nodeName: 'node-a', flows: [summary('x', { verdict: 'VERDICT_TLS', final: true })] }));
  ingest.apply(wire({ agentId: 'a', sequence: 3, nodeName: 'node-a', flows: [summary('x2', { verdict: 'VERDICT_TLS' })] }));
  t.equal(store.size, 2, 'port reuse after the end is a new flow');
});

t.test('external endpoints: named by SNI, else unknown', async (t) => {
  const { ingest, store } = setup();
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'n', inventory: { pods: [pods.pods[0]!] }, flows: [summary('e1', { server: '203.0.113.9', verdict: 'VERDICT_TLS', sni: 'api.example.com', sport: 443 }), summary('e2', { server: '203.0.113.10', cport: 40001 })] }));
  const [a, b] = [...store.iterate()];
  t.match(a!.serverId, { namespace: 'external', workload: 'api.example.com' });
  t.match(b!.serverId, { namespace: 'external', workload: 'unknown' });
});

t.test('bounded: capacity evicts the oldest first, retention sweeps; both counted', async (t) => {
  const { ingest, store, metrics } = setup({ maxFlows: 3, retentionMs: 60_000 });
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'n', flows: [1, 2, 3, 4, 5].map((i) => summary(`f${i}`, { cport: 40000 + i })) }));
  t.equal(store.size, 3);
  t.same([...store.iterate()].map((f) => f.client.port), [40003, 40004, 40005], 'the two oldest went');
  t.equal(store.sweep(Date.now() + 120_000), 3, 'all older than the retention window');
  const text = await metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_aggregator_flows_evicted_total', { reason: 'capacity' }), 2);
  t.equal(metricSum(text, 'plainsight_aggregator_flows_evicted_total', { reason: 'retention' }), 3);
});

t.test('paging is stable and complete; coverage ratios', async (t) => {
  const { ingest, store } = setup();
  ingest.apply(wire({
    agentId: 'a', sequence: 1, nodeName: 'n', inventory: pods,
    flows: Array.from({ length: 25 }, (_, i) => summary(`f${i}`, { cport: 41000 + i, verdict: i % 5 === 0 ? 'VERDICT_PLAINTEXT' : i % 5 === 1 ? 'VERDICT_UNKNOWN' : 'VERDICT_TLS', bytes: 10 })),
  }));
  const seen: number[] = [];
  let token = '';
  do {
    const p = listFlows(store, {}, 7, token);
    seen.push(...p.flows.map((f) => f.seq));
    token = p.next;
  } while (token);
  t.same(seen, Array.from({ length: 25 }, (_, i) => i + 1), '25 flows in 4 pages, each once, in order');
  const c = coverage(store, {}, 'namespace');
  t.same(c.rows.map((r) => r.namespace), ['data', 'shop']);
  t.match(c.total, { encryptedConnections: 15, plaintextConnections: 5, unknownConnections: 5, encryptedBytes: 150, plaintextBytes: 50, unknownBytes: 50 });
  const edge = coverage(store, { verdicts: new Set(['plaintext'] as const) }, 'edge');
  t.match(edge.rows, [{ namespace: 'shop', workload: 'web', dstNamespace: 'data', dstWorkload: 'db', plaintextConnections: 5, encryptedConnections: 0 }]);
});

t.test('series cap: past maxSeries nothing new is created and the overflow is counted', async (t) => {
  const { ingest, metrics } = setup({ maxSeries: 2 });
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'n', flows: [80, 81, 82, 83].map((p, i) => summary(`s${i}`, { sport: p, cport: 42000 + i })) }));
  t.equal(metricSum(await metrics.registry.metrics(), 'plainsight_flows_total'), 0, 'unresolved ends: not counted within the grace');
  ingest.flushPending(Infinity);
  const text = await metrics.registry.metrics();
  t.equal(text.split('\n').filter((l) => l.startsWith('plainsight_flows_total{')).length, 2, 'two series');
  t.equal(metricSum(text, 'plainsight_aggregator_series_overflow_total', { metric: 'plainsight_flows_total' }), 2);
  t.equal(metricSum(text, 'plainsight_aggregator_series_overflow_total', { metric: 'plainsight_bytes_total' }), 2);
});

t.test('a silent agent\'s inventory expires; its dedup state stays', async (t) => {
  const { ingest, identity } = setup();
  ingest.apply(wire({ agentId: 'gone', sequence: 1, nodeName: 'n', inventory: pods, flows: [] }));
  t.equal(identity.resolve('198.18.0.1').workload, 'web');
  ingest.expireInventories(Date.now() + 11 * 60_000);
  t.equal(identity.resolve('198.18.0.1').namespace, 'external', 'forgotten after 10 minutes of silence');
  t.same(ingest.apply(wire({ agentId: 'gone', sequence: 1, nodeName: 'n', flows: [] })), { duplicate: true }, 'a late replay is still a duplicate');
});

t.test('plainsight_active_flows follows flows as they start, end, go quiet, and are evicted', async (t) => {
  const { ingest, store, metrics } = setup({ retentionMs: 3_600_000 });
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'n', inventory: pods, flows: [summary('x', { cport: 1 }), summary('y', { cport: 2, verdict: 'VERDICT_TLS' }), summary('z', { cport: 3 })] }));
  const active = async (): Promise<number> => metricSum(await metrics.registry.metrics(), 'plainsight_active_flows');
  t.equal(await active(), 3);
  t.equal(metricSum(await metrics.registry.metrics(), 'plainsight_active_flows', { src_namespace: 'shop', dst_namespace: 'data', verdict: 'plaintext' }), 2);
  ingest.apply(wire({ agentId: 'a', sequence: 2, nodeName: 'n', flows: [summary('x', { cport: 1, final: true, bytes: 0 })] }));
  t.equal(await active(), 2, 'an ended flow is no longer active');
  store.sweep(Date.now() + 5 * 60_000);
  t.equal(await active(), 0, 'quiet for more than 2 minutes: not active (still stored)');
  t.equal(store.size, 3);
});

t.test('the per-verdict index: a flow that changes verdict is found, in order, once', async (t) => {
  const { ingest, store } = setup();
  ingest.apply(wire({ agentId: 'a', sequence: 1, nodeName: 'n', inventory: pods, flows: Array.from({ length: 10 }, (_, i) => summary(`v${i}`, { cport: 43000 + i, verdict: i % 2 ? 'VERDICT_TLS' : 'VERDICT_PLAINTEXT' })) }));
  // Flow seq 2 (tls) is re-classified plaintext by its agent; seq 3 (plaintext) flips to tls and back.
  ingest.apply(wire({ agentId: 'a', sequence: 2, nodeName: 'n', flows: [summary('v1', { cport: 43001, verdict: 'VERDICT_PLAINTEXT', bytes: 0 })] }));
  ingest.apply(wire({ agentId: 'a', sequence: 3, nodeName: 'n', flows: [summary('v2', { cport: 43002, verdict: 'VERDICT_TLS', bytes: 0 })] }));
  ingest.apply(wire({ agentId: 'a', sequence: 4, nodeName: 'n', flows: [summary('v2', { cport: 43002, verdict: 'VERDICT_PLAINTEXT', bytes: 0 })] }));
  const q = { verdicts: new Set(['plaintext'] as const) };
  const seqs: number[] = [];
  let token = '';
  do {
    const p = listFlows(store, q, 2, token);
    seqs.push(...p.flows.map((f) => f.seq));
    token = p.next;
  } while (token);
  t.same(seqs, [1, 2, 3, 5, 7, 9], 'every plaintext flow once, in seq order, across pages');
  t.same(listFlows(store, { verdicts: new Set(['tls'] as const) }, 100, '').flows.map((f) => f.seq), [4, 6, 8, 10], 'tls no longer lists the re-classified ones');
  store.sweep(Date.now());
  t.same(listFlows(store, q, 100, '').flows.map((f) => f.seq), [1, 2, 3, 5, 7, 9], 'same after compaction');
});
