// End to end, agent side faked only where the live agent is not ours to run: real HTTP and
// TLS traffic between two netns "pods", captured and classified by the built CLI; those
// flows streamed by the real Exporter (as two agents: both ends of each connection) to the
// real aggregator process; then read back through the query API (ListFlows filters and
// paging, GetCoverage), the CLI (`flows --verdict plaintext --json`, `coverage --json`),
// and a real Prometheus server scraping /metrics.

import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { labCerts } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { peerClient, peerServer } from '../lab/peers.js';
import { classifyOrFail, cliMissingReason, runCli, type FlowJson } from '../lab/plainsight.js';
import { AggregatorProcess, PrometheusServer, exportFlows, metricSum, prometheusSkipReason } from '../lab/aggregator.js';
import { Exporter } from '../../agent/src/export/index.js';
import { proto } from '../../proto/gen/index.js';
import type { ListFlowsResponse__Output } from '../../proto/gen/types/plainsight/v1/ListFlowsResponse.js';
import type { ListFlowsRequest } from '../../proto/gen/types/plainsight/v1/ListFlowsRequest.js';
import type { GetCoverageResponse__Output } from '../../proto/gen/types/plainsight/v1/GetCoverageResponse.js';

const skip = labSkipReason() ?? cliMissingReason() ?? prometheusSkipReason();

t.test('classified lab traffic → exporter → aggregator → query API, CLI, Prometheus', { skip }, async (t) => {
  // Traffic: 2 plain HTTP connections and 2 TLS 1.3 connections, client pod → server pod.
  const lab = await Lab.open(t, 'agg');
  const { client, server } = await lab.pair();
  const certs = await labCerts();
  const cap = await lab.capture(server.ns, server.ifname, 'agg.pcap', { filter: 'tcp' });
  await peerServer(lab, server.ns, 'http-server', { port: 8080, responseBytes: 5000 });
  await peerClient(lab, client.ns, 'http-client', { host: server.ip4, port: 8080, bodyBytes: 1000 });
  await peerClient(lab, client.ns, 'http-client', { host: server.ip4, port: 8080, bodyBytes: 2000 });
  await peerServer(lab, server.ns, 'tls-server', { port: 8443, cert: certs.server.cert, key: certs.server.key, minVersion: 'TLSv1.3' });
  await peerClient(lab, client.ns, 'tls-client', { host: server.ip4, port: 8443, ca: certs.server.ca, servername: 'server.lab', count: 2 });
  await cap.stop();
  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;
  const flows = out.flows.filter((f) => f.server.port === 8080 || f.server.port === 8443);
  const plain = flows.filter((f) => f.verdict === 'plaintext');
  const tls = flows.filter((f) => f.verdict === 'tls');
  t.equal(plain.length, 2, 'classifier: 2 plaintext flows');
  t.equal(tls.length, 2, 'classifier: 2 tls flows');
  if (plain.length !== 2 || tls.length !== 2) return;
  const bytesOf = (fs: FlowJson[]): number => fs.reduce((a, f) => a + f.bytes.toServer + f.bytes.toClient, 0);

  const agg = await AggregatorProcess.start(t);
  const prom = await PrometheusServer.start(t, `127.0.0.1:${agg.metricsPort}`);

  // Two agents, one per node: each sees both flows at its end (same connections, joined).
  const pods = [
    { name: client.ns.name, namespace: 'frontend', workload: 'web', ips: [client.ip4] },
    { name: server.ns.name, namespace: 'backend', workload: 'api', ips: [server.ip4] },
  ];
  const a = new Exporter({ address: agg.address, node: 'node-a' });
  const b = new Exporter({ address: agg.address, node: 'node-b' });
  t.teardown(() => Promise.all([a.close(0), b.close(0)]));
  // node-a first reports the flows half way (totals so far), then final totals.
  const half = flows.map((f) => ({ ...f, bytes: { toServer: Math.floor(f.bytes.toServer / 2), toClient: Math.floor(f.bytes.toClient / 2) } }));
  a.enqueue(exportFlows(half, 'node-a', { final: false }), [pods[0]!]);
  a.enqueue(exportFlows(flows, 'node-a'), [pods[0]!]);
  b.enqueue(exportFlows(flows, 'node-b'), [pods[1]!]);
  t.ok(await a.flushed(10_000), 'node-a: every batch acknowledged');
  t.ok(await b.flushed(10_000), 'node-b: every batch acknowledged');
  t.match(a.stats, { acked: 2, droppedBatches: 0, duplicates: 0 }, 'node-a exporter stats');

  const fc = new proto.plainsight.v1.FlowService(agg.address, grpc.credentials.createInsecure());
  t.teardown(() => fc.close());
  const list = (req: ListFlowsRequest): Promise<ListFlowsResponse__Output> =>
    new Promise((resolve, reject) => fc.ListFlows(req, (e, r) => (e || !r ? reject(e) : resolve(r))));

  t.test('ListFlows: joined, filtered, paged', async (t) => {
    const all = await list({});
    t.equal(all.flows.length, 4, 'both ends of each connection joined: 4 flows, not 8');
    for (const f of all.flows) {
      t.same([...f.observedBy].sort(), ['node-a', 'node-b'], `flow ${f.id} observed by both nodes`);
      t.equal(f.verdictDisagreement, false, 'ends agree');
      t.match(f.client, { namespace: 'frontend', workload: 'web' }, 'client resolved from node-a inventory');
      t.match(f.server, { namespace: 'backend', workload: 'api' }, 'server resolved from node-b inventory');
    }
    const sum = all.flows.reduce((acc, f) => acc + Number(f.bytes!.toServer) + Number(f.bytes!.toClient), 0);
    t.equal(sum, bytesOf(flows), 'bytes = what the classifier counted (not doubled by two observers, deltas summed)');

    const p = await list({ filter: { verdict: ['VERDICT_PLAINTEXT'] } });
    t.same(p.flows.map((f) => f.server!.port).sort(), [8080, 8080], 'verdict filter: the two HTTP flows');
    t.same((await list({ filter: { verdict: ['VERDICT_TLS'], namespace: ['backend'] } })).flows.length, 2, 'verdict + namespace');
    t.same((await list({ filter: { namespace: ['nowhere'] } })).flows.length, 0, 'unknown namespace: nothing');
    t.same((await list({ filter: { workload: ['web'], protocol: ['http/1.1'] } })).flows.length, 2, 'workload + protocol');
    t.same((await list({ filter: { mesh: ['MESH_ISTIO'] } })).flows.length, 0, 'mesh filter');
    const future = (BigInt(Date.now() + 60_000) * 1_000_000n).toString();
    t.same((await list({ sinceUnixNs: future })).flows.length, 0, 'since in the future: nothing');

    const ids: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const r = await list({ pageSize: 3, pageToken: token });
      ids.push(...r.flows.map((f) => f.id));
      token = r.nextPageToken;
      pages++;
    } while (token && pages < 10);
    t.equal(pages, 2, 'page size 3 over 4 flows: 2 pages');
    t.same(ids, all.flows.map((f) => f.id), 'pages cover every flow once, in order');
    await t.rejects(list({ pageToken: 'garbage' }), { code: grpc.status.INVALID_ARGUMENT }, 'a forged page token is refused');
  });

  t.test('GetCoverage', async (t) => {
    const cov = await new Promise<GetCoverageResponse__Output>((resolve, reject) =>
      fc.GetCoverage({ by: 'COVERAGE_GROUPING_EDGE' }, (e, r) => (e || !r ? reject(e) : resolve(r))),
    );
    t.equal(cov.rows.length, 1, 'one edge');
    const r = cov.rows[0]!;
    t.match(r, { namespace: 'frontend', workload: 'web', dstNamespace: 'backend', dstWorkload: 'api' }, 'edge web → api');
    t.equal(Number(r.encryptedBytes), bytesOf(tls), 'encrypted bytes = TLS flows');
    t.equal(Number(r.plaintextBytes), bytesOf(plain), 'plaintext bytes = HTTP flows');
    t.equal(Number(r.encryptedConnections), 2);
    t.equal(Number(r.plaintextConnections), 2);
    t.ok(Math.abs(r.ratio - bytesOf(tls) / bytesOf(flows)) < 1e-9, `ratio ${r.ratio}`);
    t.equal(r.connectionRatio, 0.5);
  });

  t.test('CLI: flows --verdict plaintext --json, coverage --json', async (t) => {
    const r = await runCli(['flows', '--aggregator', agg.address, '--verdict', 'plaintext', '--json']);
    t.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { flows: FlowJson[] };
    const key = (f: { client: { port: number }; server: { port: number } }): string => `${f.client.port}>${f.server.port}`;
    t.same(got.flows.map(key).sort(), plain.map(key).sort(), 'exactly the plaintext flows');
    t.ok(got.flows.every((f) => f.verdict === 'plaintext' && f.protocol === 'http/1.1'), 'all plaintext http/1.1');
    const table = await runCli(['flows', '--aggregator', agg.address]);
    t.equal(table.code, 0);
    t.match(table.stdout, /^CLIENT\s+SERVER\s+PORT\s+VERDICT/, 'table header');
    t.match(table.stdout, /4 flows \(2 plaintext, 2 tls\)/, 'table summary');
    const c = await runCli(['coverage', '--aggregator', agg.address, '--by', 'namespace', '--json']);
    t.equal(c.code, 0, c.stderr);
    const cov = JSON.parse(c.stdout) as { rows: { namespace: string; encryptedConnections: number; plaintextConnections: number }[] };
    t.same(cov.rows.map((x) => [x.namespace, x.encryptedConnections, x.plaintextConnections]), [['backend', 2, 2], ['frontend', 2, 2]]);
    const bad = await runCli(['flows', '--aggregator', agg.address, '--verdict', 'secure']);
    t.equal(bad.code, 2, 'unknown verdict: usage error');
    t.match(bad.stderr, /^plainsight: flows: --verdict wants one of/, 'one line');
  });

  t.test('Prometheus scrapes the INTERFACE.md metrics with the right labels', async (t) => {
    const text = await agg.metrics();
    t.equal(metricSum(text, 'plainsight_flows_total'), 4, '/metrics: 4 flows');
    const q = 'plainsight_flows_total{verdict="plaintext"}';
    const res = await prom.waitFor(q, (r) => r.length > 0);
    t.equal(res.length, 1, `${q}: one series`);
    t.match(res[0]?.metric, {
      __name__: 'plainsight_flows_total', src_namespace: 'frontend', src_workload: 'web', dst_namespace: 'backend', dst_workload: 'api',
      dst_port: '8080', verdict: 'plaintext', protocol: 'http/1.1', mesh: 'none', tls_version: 'none',
    });
    t.equal(res[0]?.value[1], '2', 'two plaintext connections');
    const tlsRes = await prom.waitFor('plainsight_flows_total{verdict="tls"}', (r) => r.length > 0);
    t.match(tlsRes[0]?.metric, { dst_port: '8443', verdict: 'tls', protocol: 'tls', tls_version: '1.3', dst_workload: 'api' });
    t.equal(tlsRes[0]?.value[1], '2');
    const bytes = await prom.waitFor('sum by (verdict) (plainsight_bytes_total)', (r) => r.length === 2);
    const byV = Object.fromEntries(bytes.map((s) => [s.metric.verdict, Number(s.value[1])]));
    t.same(byV, { plaintext: bytesOf(plain), tls: bytesOf(tls) }, 'bytes by verdict');
    const lost = await prom.waitFor('plainsight_agent_lost_samples_total', (r) => r.length === 2);
    t.same(lost.map((s) => s.metric.node).sort(), ['node-a', 'node-b'], 'lost samples: one series per node');
    for (const name of ['plainsight_agents_connected', 'plainsight_aggregator_ingest_summaries_total', 'plainsight_aggregator_series_overflow_total']) {
      t.ok((await prom.query(`count(${name}) or vector(0)`)).length > 0, `${name} queryable`);
    }
    const connected = await prom.waitFor('plainsight_agents_connected', (r) => r[0]?.value[1] === '2');
    t.equal(connected[0]?.value[1], '2', 'two agents connected');
  });
});
