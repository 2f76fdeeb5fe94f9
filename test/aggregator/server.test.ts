// The aggregator server in-process (no root needed): grpc.health.v1 and server reflection
// answer (what grpcurl uses), the Exporter streams to it and survives a server restart on
// the same port, WatchFlows follows, /healthz /readyz /metrics, and bad configuration
// fails with one actionable PlainsightError.

import t from 'tap';
import pino from 'pino';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { startAggregator } from '../../aggregator/src/server.js';
import { DEFAULT_AGGREGATOR_CONFIG, type AggregatorConfig } from '../../aggregator/src/config.js';
import { Exporter, type ExportFlow } from '../../agent/src/export/index.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { proto } from '../../proto/gen/index.js';
import type { WatchFlowsResponse__Output } from '../../proto/gen/types/plainsight/v1/WatchFlowsResponse.js';
import { freePort, metricSum } from '../lab/aggregator.js';
import type { AgentFlowJson } from '../../agent/src/capture/tracker.js';

// Compile time: the agent tracker's jsonl lines fit Exporter.add()/enqueue() as they are.
export const agentLinesFit = (l: AgentFlowJson): ExportFlow => l;

const require = createRequire(import.meta.url);
const log = pino({ level: 'silent' });
const config = (o: Partial<AggregatorConfig> = {}): AggregatorConfig => ({ ...DEFAULT_AGGREGATOR_CONFIG, grpcAddr: '127.0.0.1:0', metricsAddr: '127.0.0.1:0', ...o });

function flow(i: number, o: Partial<ExportFlow> = {}): ExportFlow {
  const now = Date.now();
  return {
    flowId: `f${i}`, transport: 'tcp', client: { ip: '198.18.9.1', port: 30000 + i }, server: { ip: '198.18.9.2', port: 5432 },
    verdict: 'tls', protocol: 'tls', tls: { version: '1.3', clientCertificate: 'none' }, mesh: 'none',
    packets: { toServer: 2, toClient: 2 }, bytes: { toServer: 100, toClient: 50 }, firstSeenMs: now, lastSeenMs: now, evidence: 'ClientHello + ServerHello', ...o,
  };
}
const pods = [{ name: 'app', namespace: 'prod', workload: 'app', ips: ['198.18.9.1'] }, { name: 'pg', namespace: 'prod', workload: 'postgres', ips: ['198.18.9.2'] }];

t.test('health and reflection answer', async (t) => {
  const agg = await startAggregator(config(), log);
  t.teardown(() => agg.close());
  const addr = `127.0.0.1:${agg.grpcPort}`;
  const healthDef = protoLoader.loadSync(join(dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1/health.proto'), { enums: String });
  const Health = grpc.loadPackageDefinition(healthDef) as unknown as { grpc: { health: { v1: { Health: typeof grpc.Client } } } };
  const h = new Health.grpc.health.v1.Health(addr, grpc.credentials.createInsecure()) as grpc.Client & { Check: (r: object, cb: (e: unknown, r: { status: string }) => void) => void };
  t.teardown(() => h.close());
  for (const service of ['', 'plainsight.v1.IngestService', 'plainsight.v1.FlowService']) {
    const r = await new Promise<{ status: string }>((resolve, reject) => h.Check({ service }, (e, res) => (e ? reject(e) : resolve(res))));
    t.equal(r.status, 'SERVING', `health "${service}"`);
  }
  const reflDef = protoLoader.loadSync(join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto'));
  const Refl = grpc.loadPackageDefinition(reflDef) as unknown as { grpc: { reflection: { v1: { ServerReflection: typeof grpc.Client } } } };
  const rc = new Refl.grpc.reflection.v1.ServerReflection(addr, grpc.credentials.createInsecure()) as grpc.Client & { ServerReflectionInfo: () => grpc.ClientDuplexStream<object, { listServicesResponse?: { service: { name: string }[] } }> };
  t.teardown(() => rc.close());
  const names = await new Promise<string[]>((resolve, reject) => {
    const call = rc.ServerReflectionInfo();
    call.on('data', (r) => {
      resolve((r.listServicesResponse?.service ?? []).map((x: { name: string }) => x.name));
      call.end();
    });
    call.on('error', reject);
    call.write({ listServices: '' });
  });
  t.ok(names.includes('plainsight.v1.FlowService') && names.includes('plainsight.v1.IngestService'), `reflection lists ${names.join(', ')}`);
});

t.test('exporter → aggregator: totals become deltas; restart on the same port; replay; watch', async (t) => {
  const port = await freePort();
  let agg = await startAggregator(config({ grpcAddr: `127.0.0.1:${port}` }), log);
  t.teardown(() => agg.close());
  const watchClient = new proto.plainsight.v1.FlowService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const watched: WatchFlowsResponse__Output[] = [];
  const watch = watchClient.WatchFlows({ follow: true, filter: { verdict: ['VERDICT_PLAINTEXT'] } });
  watch.on('data', (r: WatchFlowsResponse__Output) => watched.push(r));
  watch.on('error', () => undefined);
  t.teardown(() => {
    watch.cancel();
    watchClient.close();
  });

  const ex = new Exporter({ address: `127.0.0.1:${port}`, node: 'n', backoff: { initialMs: 20, maxMs: 100 } });
  t.teardown(() => ex.close(0));
  ex.enqueue([flow(1, { final: false, bytes: { toServer: 40, toClient: 10 } })], pods);
  ex.enqueue([flow(1)], pods); // totals 100/50: the delta is 60/40
  ex.enqueue([flow(2, { verdict: 'plaintext', protocol: 'postgresql', tls: undefined })], pods);
  t.ok(await ex.flushed(5000), 'acknowledged');
  let text = await agg.metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_bytes_total', { verdict: 'tls' }), 150, 'bytes = final totals, not the sum of totals');
  t.equal(metricSum(text, 'plainsight_flows_total', { dst_workload: 'postgres', dst_port: '5432' }), 2);
  await new Promise((r) => setTimeout(r, 100));
  t.same(watched.filter((w) => w.flow).map((w) => w.flow!.protocol), ['postgresql'], 'WatchFlows(follow, plaintext) saw the plaintext flow');

  // Restart without a data dir: in-memory state is gone; batches sent while down are replayed.
  await agg.close();
  ex.enqueue([flow(3)], pods);
  ex.enqueue([flow(4)], pods);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(ex.stats.connected, false, 'exporter notices');
  t.ok(ex.stats.queued >= 2, `batches wait (${ex.stats.queued}: two, and the inventory resent after the outage)`);
  agg = await startAggregator(config({ grpcAddr: `127.0.0.1:${port}` }), log);
  t.ok(await ex.flushed(5000), 'replayed after reconnect');
  text = await agg.metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_flows_total'), 2, 'the two replayed flows, once each');
  t.ok(ex.stats.reconnects >= 1);
});

t.test('HTTP endpoints', async (t) => {
  const agg = await startAggregator(config(), log);
  t.teardown(() => agg.close());
  const base = `http://127.0.0.1:${agg.metricsPort}`;
  t.equal((await fetch(`${base}/healthz`)).status, 200);
  t.equal((await fetch(`${base}/readyz`)).status, 200);
  t.equal((await fetch(`${base}/nope`)).status, 404);
  const m = await fetch(`${base}/metrics`);
  t.match(m.headers.get('content-type'), /text\/plain/);
  const text = await m.text();
  for (const name of ['plainsight_flows_total', 'plainsight_bytes_total', 'plainsight_active_flows', 'plainsight_agents_connected', 'plainsight_agent_lost_samples_total']) {
    t.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} declared`);
  }
});

t.test('configuration errors are one actionable line', async (t) => {
  const busy = await startAggregator(config(), log);
  t.teardown(() => busy.close());
  await t.rejects(startAggregator(config({ grpcAddr: `127.0.0.1:${busy.grpcPort}` }), log), { code: 'PLAINSIGHT_ERR_AGG_LISTEN' });
  await t.rejects(startAggregator(config({ metricsAddr: `127.0.0.1:${busy.metricsPort}` }), log), { code: 'PLAINSIGHT_ERR_AGG_LISTEN' });
  await t.rejects(startAggregator(config({ tokenFile: '/nonexistent/token' }), log), { code: 'PLAINSIGHT_ERR_AGG_TOKEN' });
  await t.rejects(startAggregator(config({ tls: { cert: '/nonexistent', key: '/x', ca: '/y' } }), log), { code: 'PLAINSIGHT_ERR_AGG_TLS' });
  const e = await startAggregator(config({ tokenFile: '/nonexistent/token' }), log).catch((x: unknown) => x);
  t.ok(e instanceof PlainsightError && /^plainsight: cannot read the token file .*\(PLAINSIGHT_ERR_AGG_TOKEN\); /.test(e.line()), (e as PlainsightError).line());
});

t.test('exporter interval mode: add() lines, one batch per interval with the inventory', async (t) => {
  const agg = await startAggregator(config(), log);
  t.teardown(() => agg.close());
  const ex = new Exporter({ address: `127.0.0.1:${agg.grpcPort}`, node: 'n', intervalMs: 50, inventory: () => pods });
  ex.add(flow(1, { final: false, bytes: { toServer: 10, toClient: 0 } }));
  ex.add(flow(1)); // later line of the same flow, totals 100/50
  ex.add(flow(2, { verdict: 'plaintext', protocol: 'postgresql', tls: undefined }));
  await new Promise((r) => setTimeout(r, 200));
  t.ok(await ex.flushed(5000));
  t.ok(ex.stats.sequence >= 2, `one batch per interval (${ex.stats.sequence} so far)`);
  const text = await agg.metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_flows_total'), 2);
  t.equal(metricSum(text, 'plainsight_bytes_total', { verdict: 'tls' }), 150, 'deltas within one batch add up to the totals');
  t.equal(metricSum(text, 'plainsight_flows_total', { src_workload: 'app', dst_workload: 'postgres' }), 2, 'inventory sent with the batches');
  ex.add(flow(3));
  await ex.close();
  t.equal(ex.stats.queued, 0, 'close() sends what was added and waits for the ack');
  t.equal(metricSum(await agg.metrics.registry.metrics(), 'plainsight_flows_total'), 3);
});

t.test('Report streams: a newer stream from the same agent replaces the older; a silent stream is closed', async (t) => {
  const agg = await startAggregator(config({ ingestIdleTimeoutMs: 1500 }), log);
  t.teardown(() => agg.close());
  const addr = `127.0.0.1:${agg.grpcPort}`;
  const open = (): { call: grpc.ClientDuplexStream<object, { sequence: string }>; acks: number[]; ended: Promise<grpc.ServiceError | undefined>; close(): void } => {
    const c = new proto.plainsight.v1.IngestService(addr, grpc.credentials.createInsecure());
    const call = c.Report() as unknown as grpc.ClientDuplexStream<object, { sequence: string }>;
    const acks: number[] = [];
    call.on('data', (r: { sequence: string }) => acks.push(Number(r.sequence)));
    const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
      call.on('error', (e: grpc.ServiceError) => resolve(e));
      call.on('end', () => resolve(undefined));
    });
    return { call, acks, ended, close: () => c.close() };
  };
  const req = (seq: number): object => ({ agentId: 'same-agent', sequence: seq, nodeName: 'n', flows: [] });
  const until = async (ok: () => boolean): Promise<void> => {
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
  };

  const a = open();
  t.teardown(a.close);
  a.call.write(req(1));
  await until(() => a.acks.length === 1);
  t.same(a.acks, [1], 'first stream acknowledged');
  const b = open();
  t.teardown(b.close);
  b.call.write(req(2));
  const errA = await a.ended;
  t.equal(errA?.code, grpc.status.ABORTED, `the older stream ends: ${errA?.details}`);
  await until(() => b.acks.length === 1);
  t.same(b.acks, [2], 'the newer stream goes on');
  let text = await agg.metrics.registry.metrics();
  t.equal(metricSum(text, 'plainsight_aggregator_ingest_streams_closed_total', { reason: 'replaced' }), 1);
  t.equal(metricSum(text, 'plainsight_agents_connected'), 1, 'one agent connected, not two');

  const silent = open();
  t.teardown(silent.close);
  const t0 = Date.now();
  const errS = await silent.ended;
  t.equal(errS?.code, grpc.status.DEADLINE_EXCEEDED, `a stream that sends nothing is closed after ${Date.now() - t0} ms: ${errS?.details}`);
  text = await agg.metrics.registry.metrics();
  t.ok(metricSum(text, 'plainsight_aggregator_ingest_streams_closed_total', { reason: 'idle' }) >= 1, 'counted as idle');
});
