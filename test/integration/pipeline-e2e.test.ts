// The whole pipeline, every part real: netns "pods" on a bridge, real HTTP / TLS 1.3 / mTLS
// peers between them, the real agent (`plainsight agent --mode local --aggregator …`, eBPF)
// streaming to the real aggregator, a real Prometheus scraping the aggregator, and the CLI
// (`flows --json`, `coverage --json`) reading it back. Then the aggregator SIGKILLed while
// the agent runs and traffic flows, restarted on the same port and data dir: every
// connection counted once, bytes equal to what the peers' sockets moved. Then agent ↔
// aggregator over mTLS (scripts/dev-certs.sh), and an agent with a certificate from another
// CA refused.
//
// Local mode naming (INTERFACE.md, aggregator/src/identity): namespace "local", workload =
// the netns name. One agent sees both ends of each connection (client pod's veth, server
// pod's veth); the aggregator joins them into one flow whose bytes are the max per
// direction, so each flow's bytes equal the client socket's written/read counts.
// Needs root, eBPF and /usr/bin/prometheus; skips with the reason otherwise.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { labCert, labCerts } from '../lab/certs.js';
import { Lab } from '../lab/lab.js';
import { REPO_ROOT, cliMissingReason, runCli } from '../lab/plainsight.js';
import { AggregatorProcess, PrometheusServer, freePort, metricSum, prometheusSkipReason, tempDir } from '../lab/aggregator.js';
import { AgentProcess, LabNode, bpfSkipReason, client, conns, fastArgs, finals, server, type Conn } from '../lab/agent-lab.js';
import type { FlowOut } from '../../cli/commands/flows.js';
import type { CoverageOut } from '../../cli/commands/coverage.js';

const skip = bpfSkipReason() ?? cliMissingReason() ?? prometheusSkipReason();

const total = (cs: readonly Conn[]): number => cs.reduce((a, c) => a + c.toServer + c.toClient, 0);
const key = (serverPort: number, clientPort: number): string => `${clientPort}>${serverPort}`;
const flowKey = (f: FlowOut): string => key(f.server.port, f.client.port);

/** `plainsight flows --aggregator ADDR --json [extra]`. */
async function cliFlows(address: string, extra: string[] = []): Promise<FlowOut[]> {
  const r = await runCli(['flows', '--aggregator', address, '--json', ...extra]);
  if (r.code !== 0) throw new Error(`flows --json failed (${r.code}): ${r.stderr}`);
  return (JSON.parse(r.stdout) as { flows: FlowOut[] }).flows;
}

/** Polls `flows --json` until every expected connection is there and has its final bytes (or the deadline). */
async function waitFlows(address: string, want: readonly Conn[], extra: string[] = [], timeoutMs = 20_000): Promise<FlowOut[]> {
  const deadline = Date.now() + timeoutMs;
  let last: FlowOut[] = [];
  for (;;) {
    last = await cliFlows(address, extra);
    const byKey = new Map(last.map((f) => [flowKey(f), f]));
    const done = want.every((c) => {
      const f = byKey.get(key(c.serverPort, c.clientPort));
      return f && f.ended && f.bytes.toServer === c.toServer && f.bytes.toClient === c.toClient;
    });
    if (done || Date.now() > deadline) return last;
    await sleep(300);
  }
}

t.test('pods → agent → aggregator → Prometheus and the CLI', { skip }, async (t) => {
  const started = Date.now();
  const lab = await Lab.open(t, 'pipe');
  const node = await LabNode.create(t, lab, 3);
  const [app, web, api] = node.pods as [typeof node.pods[0], typeof node.pods[0], typeof node.pods[0]];
  for (const p of node.pods) t.ok(/^198\.1[89]\./.test(p.ip4), `${p.name}: ${p.ip4} in 198.18.0.0/15`);
  const certs = await labCerts({ serverSans: ['DNS:api.lab'] });

  const grpcPort = await freePort();
  const metricsPort = await freePort();
  const dataDir = tempDir(t, 'ps-pipe-data-');
  const aggArgs = ['--grpc-addr', `127.0.0.1:${grpcPort}`, '--metrics-addr', `127.0.0.1:${metricsPort}`, '--data-dir', dataDir];
  let agg = await AggregatorProcess.start(t, aggArgs);
  const address = agg.address;
  const prom = await PrometheusServer.start(t, `127.0.0.1:${metricsPort}`);
  const agent = await AgentProcess.start(t, fastArgs(node.glob, ['--aggregator', address, '--node', 'lab-node']));
  await agent.waitLog((l) => l.msg === 'reporting to the aggregator', 5000);

  // ---- traffic: plain HTTP, TLS 1.3, TLS 1.3 with a client certificate ----------------------
  await server(lab, web.ns, 'tcp-server', { port: 8080, http: true });
  await server(lab, api.ns, 'tls-server', { port: 8443, cert: certs.server.cert, key: certs.server.key, minVersion: 'TLSv1.3' });
  await server(lab, api.ns, 'tls-server', { port: 8444, cert: certs.server.cert, key: certs.server.key, ca: certs.server.ca, requestCert: true, minVersion: 'TLSv1.3' });
  const plain = conns(8080, await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8080, http: true, count: 3 }));
  const tls: Conn[] = [];
  for (let i = 0; i < 2; i++) {
    const rs = await client(lab, app.ns, 'tls-client', { host: api.ip4, port: 8443, servername: 'api.lab', ca: certs.server.ca });
    t.match(rs[0], { protocol: 'TLSv1.3' }, '(TLS 1.3 negotiated)');
    tls.push(...conns(8443, rs));
  }
  const mrs = await client(lab, app.ns, 'tls-client', { host: api.ip4, port: 8444, servername: 'api.lab', ca: certs.server.ca, cert: certs.client.cert, key: certs.client.key });
  t.match(mrs[0], { protocol: 'TLSv1.3' }, '(mTLS 1.3 negotiated)');
  const mtls = conns(8444, mrs);
  t.equal(plain.length + tls.length + mtls.length, 6, 'the peers made 6 connections');
  const phase1 = [...plain, ...tls, ...mtls];

  await t.test('flows --json: every connection once, both ends joined, exact bytes, local naming', async (t) => {
    const flows = await waitFlows(address, phase1);
    t.equal(flows.length, phase1.length, `${phase1.length} flows (one per connection, not one per end)`);
    const byKey = new Map(flows.map((f) => [flowKey(f), f]));
    for (const c of phase1) {
      const f = byKey.get(key(c.serverPort, c.clientPort));
      if (!t.ok(f, `flow ${key(c.serverPort, c.clientPort)} present`)) continue;
      t.same(f!.bytes, { toServer: c.toServer, toClient: c.toClient }, `${key(c.serverPort, c.clientPort)}: bytes = what the client socket wrote / read`);
      t.match(f!, { client: { namespace: 'local', workload: app.name, ip: app.ip4 }, ended: true }, 'client end: namespace local, workload = netns name');
      t.same(f!.observedBy, ['lab-node', 'lab-node'], 'both ends (client and server veth of the one node) joined into this flow');
      t.notOk(f!.verdictDisagreement, 'the two ends agree');
    }
    t.ok(flows.filter((f) => f.server.port === 8080).every((f) => f.verdict === 'plaintext' && f.protocol === 'http/1.1' && f.server.workload === web.name), 'HTTP: plaintext http/1.1 to web');
    t.ok(flows.filter((f) => f.server.port === 8443).every((f) => f.verdict === 'tls' && f.protocol === 'tls' && f.tls?.version === '1.3' && f.tls?.sni === 'api.lab' && f.server.workload === api.name), 'TLS: tls 1.3, SNI api.lab, to api');
    t.ok(flows.filter((f) => f.server.port === 8444).every((f) => f.verdict === 'mtls' && f.tls?.version === '1.3' && f.server.workload === api.name), 'client certificate: mtls');

    const p = await cliFlows(address, ['--verdict', 'plaintext']);
    t.same(p.map(flowKey).sort(), plain.map((c) => key(c.serverPort, c.clientPort)).sort(), 'flows --verdict plaintext --json: exactly the HTTP connections');
    t.ok(p.every((f) => f.verdict === 'plaintext'), 'and no TLS one');
  });

  await t.test('Prometheus: plainsight_flows_total / plainsight_bytes_total with the right labels', async (t) => {
    const labels = (dst: string, port: number, verdict: string, protocol: string, tlsVersion: string) => ({
      src_namespace: 'local', src_workload: app.name, dst_namespace: 'local', dst_workload: dst,
      dst_port: String(port), verdict, protocol, mesh: 'none', tls_version: tlsVersion,
    });
    const cases = [
      { verdict: 'plaintext', want: labels(web.name, 8080, 'plaintext', 'http/1.1', 'none'), cs: plain },
      { verdict: 'tls', want: labels(api.name, 8443, 'tls', 'tls', '1.3'), cs: tls },
      { verdict: 'mtls', want: labels(api.name, 8444, 'mtls', 'tls', '1.3'), cs: mtls },
    ];
    for (const c of cases) {
      const q = `plainsight_flows_total{verdict="${c.verdict}"}`;
      const res = await prom.waitFor(q, (r) => r.length === 1 && Number(r[0]!.value[1]) === c.cs.length);
      t.equal(res.length, 1, `${q}: one series`);
      t.match(res[0]?.metric, { __name__: 'plainsight_flows_total', ...c.want }, `${q}: labels`);
      t.equal(Number(res[0]?.value[1]), c.cs.length, `${q} = ${c.cs.length}`);
      const bq = `plainsight_bytes_total{verdict="${c.verdict}"}`;
      const bytes = await prom.waitFor(bq, (r) => r.length === 1 && Number(r[0]!.value[1]) === total(c.cs));
      t.match(bytes[0]?.metric, { __name__: 'plainsight_bytes_total', ...c.want }, `${bq}: labels`);
      t.equal(Number(bytes[0]?.value[1]), total(c.cs), `${bq} = ${total(c.cs)} (what the peers moved)`);
    }
    const connected = await prom.waitFor('plainsight_agents_connected', (r) => r[0]?.value[1] === '1');
    t.equal(connected[0]?.value[1], '1', 'plainsight_agents_connected = 1');
    const lost = await prom.waitFor('plainsight_agent_lost_samples_total', (r) => r.length > 0);
    t.match(lost[0]?.metric, { node: 'lab-node' }, 'lost samples series for the node');
  });

  await t.test('coverage --by namespace --json: consistent with the bytes', async (t) => {
    const r = await runCli(['coverage', '--aggregator', address, '--by', 'namespace', '--json']);
    t.equal(r.code, 0, r.stderr);
    const rows = (JSON.parse(r.stdout) as { rows: CoverageOut[] }).rows;
    t.same(rows.map((x) => x.namespace), ['local'], 'one namespace: local');
    const row = rows[0]!;
    const enc = total(tls) + total(mtls);
    t.match(row, { plaintextBytes: total(plain), encryptedBytes: enc, plaintextConnections: 3, encryptedConnections: 3, unknownConnections: 0 });
    t.ok(Math.abs(row.ratio - enc / (enc + total(plain))) < 1e-9, `ratio ${row.ratio.toFixed(4)} = encrypted / all bytes`);
  });

  await t.test('loopback inside a pod: intra-pod, that pod on both ends, never an external plaintext series', async (t) => {
    await server(lab, web.ns, 'tcp-server', { port: 7070, http: true });
    const [r] = await client(lab, web.ns, 'tcp-client', { host: '127.0.0.1', port: 7070, http: true });
    const lo = { serverPort: 7070, clientPort: r!.localPort!, toServer: r!.bytesWritten, toClient: r!.bytesRead };
    const flows = await waitFlows(address, [lo]);
    const f = flows.find((x) => flowKey(x) === key(7070, lo.clientPort));
    t.match(f, { intraPod: true, verdict: 'plaintext', client: { namespace: 'local', workload: web.name }, server: { namespace: 'local', workload: web.name } }, 'labelled intra-pod, the pod on both ends');
    const text = await agg.metrics();
    t.equal(metricSum(text, 'plainsight_intra_pod_flows_total', { namespace: 'local', workload: web.name, dst_port: '7070', verdict: 'plaintext' }), 1, 'plainsight_intra_pod_flows_total');
    t.equal(metricSum(text, 'plainsight_intra_pod_bytes_total', { workload: web.name, dst_port: '7070' }), lo.toServer + lo.toClient, 'plainsight_intra_pod_bytes_total');
    t.equal(metricSum(text, 'plainsight_flows_total', { dst_port: '7070' }), 0, 'not in plainsight_flows_total');
    t.equal(metricSum(text, 'plainsight_flows_total', { dst_namespace: 'external', verdict: 'plaintext' }) + metricSum(text, 'plainsight_flows_total', { src_namespace: 'external', verdict: 'plaintext' }), 0, 'no external plaintext series');
  });

  await t.test('aggregator SIGKILLed during traffic, restarted: nothing lost, nothing doubled', async (t) => {
    await server(lab, web.ns, 'tcp-server', { port: 8081, http: true });
    const before = conns(8081, await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8081, http: true, count: 2 }));
    await sleep(300); // reported (or in the agent's buffer) when the aggregator dies
    await agg.kill();
    const during = conns(8081, await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8081, http: true, count: 4, gapMs: 500 }));
    await agent.waitLog((l) => l.msg === 'aggregator stream lost; reconnecting', 10_000);
    t.pass('the agent noticed and keeps buffering');
    await sleep(2000);
    t.ok(agent.running, 'agent still running without its aggregator');
    agg = await AggregatorProcess.start(t, aggArgs);
    t.ok(agg.logs().some((l) => l.msg === 'replayed ingest log'), 'the restarted aggregator replayed its log');
    const after = conns(8081, await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8081, http: true, count: 2 }));
    const all = [...phase1, ...before, ...during, ...after];
    // The loopback flow of the previous subtest is not on the wire: not one of these.
    const flows = (await waitFlows(address, all, [], 25_000)).filter((f) => !f.intraPod);
    t.equal(flows.length, all.length, `${all.length} flows: every connection once`);
    t.equal(new Set(flows.map(flowKey)).size, flows.length, 'no connection twice');
    const byKey = new Map(flows.map((f) => [flowKey(f), f]));
    const exact = all.filter((c) => {
      const f = byKey.get(key(c.serverPort, c.clientPort));
      return f && f.bytes.toServer === c.toServer && f.bytes.toClient === c.toClient;
    });
    t.equal(exact.length, all.length, 'every flow: bytes = what its client socket moved');
    const sum = flows.reduce((a, f) => a + f.bytes.toServer + f.bytes.toClient, 0);
    t.equal(sum, total(all), 'total bytes = what the peers moved');
    const p = (await cliFlows(address, ['--verdict', 'plaintext'])).filter((f) => !f.intraPod);
    t.equal(p.length, plain.length + before.length + during.length + after.length, 'plaintext flows: the 8080 and 8081 connections');

    const text = await agg.metrics();
    t.equal(metricSum(text, 'plainsight_flows_total'), all.length, '/metrics: plainsight_flows_total = connections');
    t.equal(metricSum(text, 'plainsight_bytes_total'), total(all), '/metrics: plainsight_bytes_total = bytes moved');
    t.equal(metricSum(text, 'plainsight_aggregator_agent_dropped_batches_total'), 0, 'no batch dropped');
    const connected = await prom.waitFor('plainsight_agents_connected', (r) => r[0]?.value[1] === '1');
    t.equal(connected[0]?.value[1], '1', 'Prometheus: plainsight_agents_connected back to 1');
    const pq = 'plainsight_flows_total{verdict="plaintext",dst_port="8081"}';
    const res = await prom.waitFor(pq, (r) => Number(r[0]?.value[1]) === 8);
    t.equal(Number(res[0]?.value[1]), 8, `${pq} = 8 after the restart`);
  });

  await t.test('agent ↔ aggregator over mTLS (scripts/dev-certs.sh); a certificate from another CA refused', async (t) => {
    await agent.stop('SIGTERM');
    const dir = tempDir(t, 'ps-pipe-certs-');
    execFileSync('bash', [join(REPO_ROOT, 'scripts/dev-certs.sh'), dir], { stdio: 'ignore' });
    const f = (n: string): string => join(dir, n);
    const tlsAgg = await AggregatorProcess.start(t, ['--tls-cert', f('aggregator.crt'), '--tls-key', f('aggregator.key'), '--tls-ca', f('ca.crt')]);
    const tlsAddr = `localhost:${tlsAgg.grpcPort}`;
    const cliTls = ['--tls-cert', f('agent.crt'), '--tls-key', f('agent.key'), '--tls-ca', f('ca.crt')];

    const good = await AgentProcess.start(t, fastArgs(node.glob, ['--aggregator', tlsAddr, '--node', 'tls-node', ...cliTls]));
    t.match(good.logs().find((l) => l.msg === 'reporting to the aggregator'), { mtls: true }, 'agent reports over mTLS');
    await server(lab, web.ns, 'tcp-server', { port: 8082, http: true });
    const viaTls = conns(8082, await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8082, http: true, count: 2 }));
    const got = await waitFlows(tlsAddr, viaTls, cliTls);
    const mine = got.filter((x) => x.server.port === 8082);
    t.same(mine.map(flowKey).sort(), viaTls.map((c) => key(c.serverPort, c.clientPort)).sort(), 'the connections arrived over mTLS');
    t.ok(mine.every((x) => x.verdict === 'plaintext' && x.observedBy.includes('tls-node')), 'plaintext, observed by the mTLS agent');
    t.ok(mine.every((x) => viaTls.some((c) => c.clientPort === x.client.port && c.toServer === x.bytes.toServer && c.toClient === x.bytes.toClient)), 'exact bytes');
    await good.stop('SIGTERM');
    const countBefore = (await cliFlows(tlsAddr, cliTls)).length;

    const other = await labCert({ cn: 'intruder', usage: 'client' }); // signed by the lab CA, not the dev CA
    const bad = await AgentProcess.start(t, fastArgs(node.glob, ['--aggregator', tlsAddr, '--node', 'intruder', '--tls-cert', other.cert, '--tls-key', other.key, '--tls-ca', f('ca.crt')]));
    await server(lab, web.ns, 'tcp-server', { port: 8083, http: true });
    await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8083, http: true, count: 1 });
    const refused = await bad.waitLog((l) => l.msg === 'aggregator stream lost; reconnecting', 10_000);
    t.ok(refused, `agent with a foreign certificate refused: ${String(refused.err)}`);
    await bad.waitFlows((ls) => finals(ls, { port: 8083 }).length >= 2, 10_000, 'the refused agent\'s final lines for :8083');
    t.pass('the refused agent did see (and tried to report) the :8083 connection at both ends');
    await sleep(1500); // several export intervals
    const after = await cliFlows(tlsAddr, cliTls);
    t.equal(after.length, countBefore, 'nothing from the refused agent');
    t.notOk(after.some((x) => x.server.port === 8083 || x.observedBy.includes('intruder')), 'its flows do not appear');
    t.equal(metricSum(await tlsAgg.metrics(), 'plainsight_agents_connected'), 0, 'it never counted as connected');
    await bad.stop('SIGTERM');
  });

  t.comment(`pipeline e2e: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
