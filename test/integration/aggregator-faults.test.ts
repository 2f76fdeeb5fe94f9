// The aggregator under faults, as real processes: a batch sent twice; the aggregator
// killed (SIGKILL) and restarted while the exporter sends; an exporter whose buffer
// overflows while the aggregator is away; garbage bytes and an oversized message on the
// gRPC port; mTLS with a wrong or missing client certificate; the query API's bearer token;
// the aggregator hung (SIGSTOP: connection open, nothing answers) while the exporter sends;
// the per-agent rate limit holding one agent back without loss while another flows freely.
// Flows are the classifier's output on a real capture (one HTTP connection in the lab),
// replicated with distinct client ports where many are needed.

import t from 'tap';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { labCert } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { REPO_ROOT, cliMissingReason, runCli, type FlowJson } from '../lab/plainsight.js';
import { AggregatorProcess, realHttpFlow, exportFlows, freePort, metricSum, tempDir } from '../lab/aggregator.js';
import { Exporter, type ExportFlow } from '../../agent/src/export/index.js';
import { AgentMetrics } from '../../agent/src/metrics.js';
import { proto } from '../../proto/gen/index.js';
import type { ReportRequest } from '../../proto/gen/types/plainsight/v1/ReportRequest.js';
import type { ReportResponse__Output } from '../../proto/gen/types/plainsight/v1/ReportResponse.js';
import type { Flow__Output } from '../../proto/gen/types/plainsight/v1/Flow.js';

const skip = labSkipReason() ?? cliMissingReason();

/** All stored flows, through ListFlows pages. */
async function allFlows(address: string, creds = grpc.credentials.createInsecure(), md = new grpc.Metadata()): Promise<Flow__Output[]> {
  const c = new proto.plainsight.v1.FlowService(address, creds);
  try {
    const out: Flow__Output[] = [];
    let pageToken = '';
    do {
      const r = await new Promise<{ flows: Flow__Output[]; nextPageToken: string }>((resolve, reject) =>
        c.ListFlows({ pageSize: 1000, pageToken }, md, { deadline: Date.now() + 10_000 }, (e, res) => (e || !res ? reject(e) : resolve(res))),
      );
      out.push(...r.flows);
      pageToken = r.nextPageToken;
    } while (pageToken);
    return out;
  } finally {
    c.close();
  }
}

/** One bidi Report stream from the generated client: sends `reqs`, collects acks until it ends. */
function report(address: string, reqs: ReportRequest[], creds = grpc.credentials.createInsecure()): Promise<{ acks: ReportResponse__Output[]; error?: grpc.ServiceError }> {
  const c = new proto.plainsight.v1.IngestService(address, creds);
  return new Promise((resolve) => {
    const acks: ReportResponse__Output[] = [];
    const call = c.Report({ deadline: Date.now() + 10_000 });
    const done = (error?: grpc.ServiceError): void => {
      c.close();
      resolve(error ? { acks, error } : { acks });
    };
    call.on('data', (r: ReportResponse__Output) => {
      acks.push(r);
      if (acks.length === reqs.length) call.end();
    });
    call.on('error', (e: grpc.ServiceError) => done(e));
    call.on('end', () => done());
    for (const r of reqs) call.write(r);
    if (reqs.length === 0) call.end();
  });
}

function toRequest(agentId: string, sequence: number, flows: ExportFlow[], pods?: { name: string; namespace: string; workload: string; ips: string[] }[]): ReportRequest {
  return {
    agentId,
    sequence,
    nodeName: 'raw-node',
    ...(pods ? { inventory: { pods } } : {}),
    flows: flows.map((f) => ({
      flowId: f.flowId,
      key: { transport: 'TRANSPORT_TCP', client: f.client, server: f.server },
      verdict: `VERDICT_${f.verdict.toUpperCase().replace(/-/g, '_')}` as never,
      protocol: f.protocol,
      mesh: 'MESH_NONE',
      packetsDelta: f.packets,
      bytesDelta: f.bytes,
      firstSeenUnixNs: (BigInt(Math.round(f.firstSeenMs ?? Date.now())) * 1_000_000n).toString(),
      lastSeenUnixNs: (BigInt(Math.round(f.lastSeenMs ?? Date.now())) * 1_000_000n).toString(),
      final: true,
      evidence: f.evidence ?? '',
    })),
  };
}

t.test('aggregator faults', { skip }, async (t) => {
  // One real plaintext HTTP flow from the lab, classified by the CLI.
  const lab = await Lab.open(t, 'aggf');
  const real = await realHttpFlow(t, lab);
  if (!real) return;
  const { base, client, server } = real;
  t.equal(base.verdict, 'plaintext');
  const perFlowBytes = base.bytes.toServer + base.bytes.toClient;
  /** `n` distinct connections shaped like the real one (client ports from `from`). */
  const many = (n: number, from: number, node: string): ExportFlow[] => {
    const fs: FlowJson[] = Array.from({ length: n }, (_, i) => ({ ...base, client: { ip: base.client.ip, port: from + i } }));
    return exportFlows(fs, node);
  };
  const pods = [
    { name: 'client', namespace: 'lab', workload: 'client', ips: [client.ip4] },
    { name: 'server', namespace: 'lab', workload: 'server', ips: [server.ip4] },
  ];

  t.test('the same (agent, sequence) twice is counted once', async (t) => {
    const agg = await AggregatorProcess.start(t);
    const req = toRequest('dup-agent', 1, many(1, 50000, 'dup'), pods);
    const first = await report(agg.address, [req, req]);
    t.same(first.acks.map((a) => [a.sequence, a.duplicate]), [[1, false], [1, true]], 'same stream: acked twice, second as duplicate');
    const again = await report(agg.address, [req]);
    t.same(again.acks.map((a) => a.duplicate), [true], 'a new stream (a retry after reconnect): duplicate');
    const text = await agg.metrics();
    t.equal(metricSum(text, 'plainsight_flows_total'), 1, 'plainsight_flows_total = 1');
    t.equal(metricSum(text, 'plainsight_bytes_total'), perFlowBytes, 'bytes once');
    t.equal(metricSum(text, 'plainsight_aggregator_ingest_batches_total', { result: 'duplicate' }), 2);
    t.equal((await allFlows(agg.address)).length, 1);
  });

  t.test('aggregator killed and restarted while the exporter sends: nothing lost, nothing doubled', async (t) => {
    const dir = tempDir(t, 'ps-agg-data-');
    const port = await freePort();
    const args = ['--grpc-addr', `127.0.0.1:${port}`, '--data-dir', dir];
    let agg = await AggregatorProcess.start(t, args);
    const ex = new Exporter({ address: `127.0.0.1:${port}`, node: 'node-r', backoff: { initialMs: 50, maxMs: 300 } });
    t.teardown(() => ex.close(0));
    const BATCHES = 60;
    const PER = 5;
    let killedAt = -1;
    for (let i = 0; i < BATCHES; i++) {
      ex.enqueue(many(PER, 20000 + i * PER, 'node-r'), pods);
      if (i === 20) {
        await agg.kill();
        killedAt = ex.stats.acked;
      }
      if (i === 40) agg = await AggregatorProcess.start(t, args);
      await sleep(15);
    }
    t.ok(await ex.flushed(20_000), 'every batch acknowledged after recovery');
    const s = ex.stats;
    t.ok(killedAt < BATCHES, `killed mid-stream (after ${killedAt} acks)`);
    t.ok(s.reconnects >= 1, `exporter reconnected (${s.reconnects} times)`);
    t.equal(s.droppedBatches, 0, 'nothing dropped (within the buffer bound)');
    const flows = await allFlows(agg.address);
    t.equal(flows.length, BATCHES * PER, `${BATCHES * PER} flows, each once`);
    t.equal(new Set(flows.map((f) => f.client!.port)).size, BATCHES * PER, 'distinct connections');
    const bytes = flows.reduce((a, f) => a + Number(f.bytes!.toServer) + Number(f.bytes!.toClient), 0);
    t.equal(bytes, BATCHES * PER * perFlowBytes, 'bytes: exactly what was sent');
    const text = await agg.metrics();
    t.equal(metricSum(text, 'plainsight_flows_total'), BATCHES * PER, 'plainsight_flows_total = what was sent');
    t.equal(metricSum(text, 'plainsight_bytes_total'), BATCHES * PER * perFlowBytes, 'plainsight_bytes_total = what was sent');
    t.ok(agg.logs().some((l) => l.msg === 'replayed ingest log'), 'the restarted aggregator replayed its log');
  });

  t.test('exporter buffer bound: oldest dropped, counted, reported in-band', async (t) => {
    const port = await freePort();
    const ex = new Exporter({ address: `127.0.0.1:${port}`, node: 'node-d', maxBufferBytes: 4096, backoff: { initialMs: 50, maxMs: 200 } });
    t.teardown(() => ex.close(0));
    for (let i = 0; i < 40; i++) t.ok(ex.enqueue(many(2, 30000 + i * 2, 'node-d'), pods) > 0 || true);
    const s = ex.stats;
    t.ok(s.droppedBatches > 0, `dropped ${s.droppedBatches} batches with no aggregator`);
    t.ok(s.queuedBytes <= 4096, `buffer stays within its bound (${s.queuedBytes} bytes)`);
    const agg = await AggregatorProcess.start(t, ['--grpc-addr', `127.0.0.1:${port}`]);
    ex.enqueue([], pods); // carries the final drop count
    t.ok(await ex.flushed(10_000), 'the rest acknowledged once the aggregator is up');
    const text = await agg.metrics();
    t.equal(metricSum(text, 'plainsight_aggregator_agent_dropped_batches_total', { node: 'node-d' }), ex.stats.droppedBatches, 'aggregator knows how many were dropped');
    t.equal(metricSum(text, 'plainsight_flows_total'), (40 - ex.stats.droppedBatches) * 2, 'the kept batches counted');
  });

  t.test('aggregator hung (SIGSTOP ~20 s) while the exporter sends: noticed, reconnected, nothing lost or doubled', async (t) => {
    const agg = await AggregatorProcess.start(t);
    const cont = (): boolean => agg.proc.kill('SIGCONT');
    t.teardown(cont); // never leave a stopped process behind
    const ex = new Exporter({ address: agg.address, node: 'node-h', ackTimeoutMs: 4000, backoff: { initialMs: 100, maxMs: 2000 } });
    t.teardown(() => ex.close(0));
    const metrics = new AgentMetrics({ flowsTracked: () => 0, mapFillRatio: () => 0, attachments: () => ({ tcx: 0, clsact: 0, socket: 0 }), pods: () => 0, exporter: () => ex.stats });
    t.teardown(() => metrics.close());
    const PER = 5;
    let sent = 0;
    const send = (): void => {
      ex.enqueue(many(PER, 10000 + sent * PER, 'node-h'), pods);
      sent++;
    };
    for (let i = 0; i < 10; i++) send();
    t.ok(await ex.flushed(10_000), 'acknowledged before the hang');
    const before = metricSum(await metrics.registry.metrics(), 'plainsight_agent_export_reconnects_total');

    agg.proc.kill('SIGSTOP');
    const ackedAtStop = ex.stats.acked;
    const stoppedAt = Date.now();
    while (Date.now() - stoppedAt < 20_000) {
      send();
      await sleep(500);
    }
    const during = ex.stats;
    t.equal(during.acked, ackedAtStop, 'nothing acknowledged while the aggregator is stopped');
    t.ok(during.reconnects > 0, `the exporter gave up the silent stream and reconnected (${during.reconnects} times): ${during.lastError}`);
    t.match(during.lastError ?? '', /no acknowledgement/, 'because no acknowledgement came');
    cont();
    t.ok(await ex.flushed(30_000), 'every batch acknowledged after SIGCONT');
    const s = ex.stats;
    t.equal(s.droppedBatches, 0, `nothing dropped (${sent} batches, within the buffer bound)`);
    const after = metricSum(await metrics.registry.metrics(), 'plainsight_agent_export_reconnects_total');
    t.ok(after >= before + 1, `plainsight_agent_export_reconnects_total went up (${before} → ${after})`);
    const flows = await allFlows(agg.address);
    t.equal(flows.length, sent * PER, `${sent * PER} flows stored, each once`);
    const text = await agg.metrics();
    t.equal(metricSum(text, 'plainsight_aggregator_ingest_summaries_total'), sent * PER, 'summaries accepted = what was enqueued (replays were duplicates)');
    t.equal(metricSum(text, 'plainsight_bytes_total'), sent * PER * perFlowBytes, 'bytes: exactly what was sent');
  });

  t.test('per-agent rate limit: one agent held back by backpressure, nothing lost; another not throttled', async (t) => {
    const RATE = 400;
    const agg = await AggregatorProcess.start(t, ['--agent-rate-limit', String(RATE), '--agent-rate-burst', String(RATE)]);
    const fast = new Exporter({ address: agg.address, node: 'node-fast', backoff: { initialMs: 100, maxMs: 1000 } });
    const calm = new Exporter({ address: agg.address, node: 'node-calm', backoff: { initialMs: 100, maxMs: 1000 } });
    t.teardown(() => Promise.all([fast.close(0), calm.close(0)]));
    const BATCHES = 60;
    const PER = 40; // 2400 summaries: at 400/s after a burst of 400, at least 5 s
    const t0 = Date.now();
    for (let i = 0; i < BATCHES; i++) fast.enqueue(many(PER, 20000 + i * PER, 'node-fast'), pods);
    // Meanwhile the calm agent sends a little, well within its own limit.
    let calmSent = 0;
    const calmWaits: number[] = [];
    for (let i = 0; i < 5; i++) {
      await sleep(300);
      const c0 = Date.now();
      calm.enqueue(many(4, 30000 + i * 4, 'node-calm'), pods);
      calmSent += 4;
      t.ok(await calm.flushed(10_000), `calm agent batch ${i + 1} acknowledged`);
      calmWaits.push(Date.now() - c0);
    }
    t.ok(fast.stats.queued > 0, `the fast agent is still held back meanwhile (${fast.stats.queued} batches waiting)`);
    t.comment(`calm agent ack times: ${calmWaits.join(', ')} ms`);
    t.ok(await fast.flushed(60_000), 'the fast agent: every batch acknowledged in the end');
    const took = Date.now() - t0;
    const floor = ((BATCHES * PER - RATE) / RATE) * 1000;
    t.ok(took >= floor * 0.6, `the fast agent took ${took} ms (≥ ~${floor} ms at ${RATE}/s)`);
    t.equal(fast.stats.droppedBatches, 0, 'nothing dropped');
    const flows = await allFlows(agg.address);
    t.equal(flows.length, BATCHES * PER + calmSent, `all ${BATCHES * PER + calmSent} flows arrived, each once`);
    const text = await agg.metrics();
    t.ok(metricSum(text, 'plainsight_aggregator_throttled_seconds_total', { node: 'node-fast' }) > 0, `throttled seconds (fast): ${metricSum(text, 'plainsight_aggregator_throttled_seconds_total', { node: 'node-fast' }).toFixed(1)}`);
    t.ok(metricSum(text, 'plainsight_aggregator_rate_limited_batches_total', { node: 'node-fast' }) > 0, 'rate-limited batches counted (fast)');
    t.equal(metricSum(text, 'plainsight_aggregator_throttled_seconds_total', { node: 'node-calm' }), 0, 'the calm agent was never throttled');
  });

  t.test('garbage bytes and an oversized message are refused; the server keeps serving', async (t) => {
    const agg = await AggregatorProcess.start(t, ['--max-message-bytes', '65536']);
    for (const junk of [randomBytes(64 * 1024), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + 'garbage'.repeat(100))]) {
      const closed = await new Promise<boolean>((resolve) => {
        const s = connect(agg.grpcPort, '127.0.0.1', () => s.write(junk));
        const timer = setTimeout(() => {
          s.destroy();
          resolve(false);
        }, 5000);
        s.on('error', () => undefined);
        s.on('data', () => undefined);
        s.on('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      t.ok(closed, `${junk.length} bytes of junk: connection closed by the server`);
    }
    const big = toRequest('big-agent', 1, many(1, 51000, 'big'));
    big.flows![0]!.evidence = 'x'.repeat(100_000);
    const r = await report(agg.address, [big]);
    t.equal(r.error?.code, grpc.status.RESOURCE_EXHAUSTED, `oversized message: ${r.error?.details}`);
    const ok = await report(agg.address, [toRequest('big-agent', 2, many(1, 51001, 'big'))]);
    t.same(ok.acks.map((a) => a.duplicate), [false], 'a normal batch afterwards is accepted');
    t.equal((await allFlows(agg.address)).length, 1, 'query API still serves; only the valid flow stored');
    t.equal(agg.proc.exitCode, null, 'still running');
    const h = await fetch(`http://127.0.0.1:${agg.metricsPort}/healthz`);
    t.equal(h.status, 200, '/healthz');
  });

  t.test('mTLS: the right client certificate is accepted, a wrong or missing one refused', async (t) => {
    const dir = tempDir(t, 'ps-agg-certs-');
    execFileSync('bash', [join(REPO_ROOT, 'scripts/dev-certs.sh'), dir], { stdio: 'ignore' });
    const f = (n: string): string => join(dir, n);
    const agg = await AggregatorProcess.start(t, ['--tls-cert', f('aggregator.crt'), '--tls-key', f('aggregator.key'), '--tls-ca', f('ca.crt')]);
    const address = `localhost:${agg.grpcPort}`;
    const ex = new Exporter({ address, node: 'node-m', tls: { cert: f('agent.crt'), key: f('agent.key'), ca: f('ca.crt') } });
    t.teardown(() => ex.close(0));
    ex.enqueue(many(1, 52000, 'node-m'), pods);
    t.ok(await ex.flushed(10_000), 'exporter with the dev agent certificate: acknowledged');

    const ca = readFileSync(f('ca.crt'));
    const other = await labCert({ cn: 'intruder', usage: 'client' }); // signed by another CA
    const wrong = grpc.credentials.createSsl(ca, readFileSync(other.key), readFileSync(other.cert));
    const r1 = await report(address, [toRequest('intruder', 1, many(1, 52100, 'x'))], wrong);
    t.ok(r1.error && r1.acks.length === 0, `certificate from another CA refused: ${r1.error?.code} ${r1.error?.details}`);
    const r2 = await report(address, [toRequest('intruder', 1, many(1, 52101, 'x'))], grpc.credentials.createSsl(ca));
    t.ok(r2.error && r2.acks.length === 0, `no client certificate refused: ${r2.error?.details}`);
    const r3 = await report(address, [toRequest('intruder', 1, many(1, 52102, 'x'))]);
    t.ok(r3.error && r3.acks.length === 0, 'plaintext gRPC refused');
    const cli = await runCli(['flows', '--aggregator', address, '--json', '--tls-cert', f('agent.crt'), '--tls-key', f('agent.key'), '--tls-ca', f('ca.crt')]);
    t.equal(cli.code, 0, cli.stderr);
    t.equal((JSON.parse(cli.stdout) as { flows: unknown[] }).flows.length, 1, 'only the authenticated agent\'s flow');
  });

  t.test('the bearer token guards the query API', async (t) => {
    const dir = tempDir(t, 'ps-agg-token-');
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${randomBytes(16).toString('hex')}\n`);
    const wrongFile = join(dir, 'wrong');
    writeFileSync(wrongFile, 'not-the-token\n');
    const agg = await AggregatorProcess.start(t, ['--token-file', tokenFile]);
    const none = await runCli(['flows', '--aggregator', agg.address]);
    t.equal(none.code, 1, 'no token: exit 1');
    t.match(none.stderr, /PLAINSIGHT_ERR_GRPC_UNAUTHENTICATED/, 'no token: one actionable line');
    t.equal(none.stderr.trim().split('\n').length, 1, 'one line');
    const wrong = await runCli(['coverage', '--aggregator', agg.address, '--token-file', wrongFile]);
    t.equal(wrong.code, 1, 'wrong token refused');
    const right = await runCli(['flows', '--aggregator', agg.address, '--token-file', tokenFile, '--json']);
    t.equal(right.code, 0, right.stderr);
    const down = await runCli(['flows', '--aggregator', '127.0.0.1:1']);
    t.equal(down.code, 1);
    t.match(down.stderr, /PLAINSIGHT_ERR_GRPC_UNAVAILABLE/, 'no aggregator there: says so');
  });
});
