#!/usr/bin/env node
// plainsight aggregator benchmark — NOT part of the test suite, never run in CI.
//
//   node --expose-gc bench/aggregator/run.mjs [--flows N] [--series N] [--json]
//
// Uses the built code (npm run build:ts). Prints, on this machine:
//   1. ingest: flow summaries/s on one core — ReportRequests decoded from protobuf bytes
//      (the wire format) by the server's own Report deserializer (ingest/decode.ts) and applied (dedup, join, identity, store, metrics), single thread;
//      half of the summaries create flows, half update them;
//   2. query: ListFlows latency for plaintext flows over N stored flows (default 1M),
//      over gRPC to an in-process server: first page (100); plaintext ∩ namespace "rare",
//      whose only matches are the 1000 newest flows (a full scan of the store before the
//      per-namespace index, now a walk of the smaller index: the namespace's); and
//      GetCoverage by namespace (a full scan, still);
//   3. scrape: GET /metrics time with S label sets (default 10k) per flow counter;
//   4. memory per stored flow (heap delta after GC / flows).
// Goals (issue 4): ≥200k summaries/s/core, ≤100 ms query, ≤250 ms scrape. Wall times
// suffer on a busy machine; CPU times are printed next to them (client and server share
// this process, so a query's CPU time includes the client's decoding).

import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { cpus } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { packageDefinition, proto } from '../../dist/proto/gen/index.js';
import { startAggregator } from '../../dist/aggregator/src/server.js';
import { DEFAULT_AGGREGATOR_CONFIG } from '../../dist/aggregator/src/config.js';
import { decodeReport } from '../../dist/aggregator/src/ingest/decode.js';

const { values } = parseArgs({ options: { flows: { type: 'string' }, series: { type: 'string' }, json: { type: 'boolean' } } });
const FLOWS = Number(values.flows ?? 1_000_000);
const SERIES = Number(values.series ?? 10_000);
const gc = globalThis.gc ?? (() => undefined);
if (!globalThis.gc) process.stderr.write('bench: run with node --expose-gc for a meaningful memory figure\n');
const log = pino({ level: 'silent' });
const def = packageDefinition['plainsight.v1.IngestService'].Report;
const VERDICTS = ['VERDICT_TLS', 'VERDICT_TLS', 'VERDICT_MTLS', 'VERDICT_TLS', 'VERDICT_ENCRYPTED_OTHER', 'VERDICT_TLS', 'VERDICT_MTLS', 'VERDICT_UNKNOWN', 'VERDICT_TLS', 'VERDICT_PLAINTEXT'];
const NOW_NS = BigInt(Date.now()) * 1_000_000n;
const progress = (m) => process.stderr.write(`bench: ${m}\n`);

/** Pods: 100 namespaces × 10 workloads, 20 IPs each (so 5-tuples stay distinct over millions of flows). */
const IPS = 20;
const pods = [];
for (let n = 0; n < 100; n++) for (let w = 0; w < 10; w++) pods.push({ name: `p${n}-${w}`, namespace: `ns${n}`, workload: `wl${w}`, ips: Array.from({ length: IPS }, (_, k) => `10.${n}.${w}.${k + 1}`) });

function summary(i, { update = false, ns = undefined, verdict = undefined, port = undefined } = {}) {
  const c = pods[i % pods.length];
  const s = pods[(i * 7 + 3) % pods.length];
  return {
    flowId: `f${i}`,
    // Distinct per i: (client pod, client IP, client port) walk through 1000 × 20 × 60000 values.
    key: { transport: 'TRANSPORT_TCP', client: { ip: ns ? `10.${ns}.0.1` : c.ips[Math.floor(i / pods.length) % IPS], port: 1024 + (Math.floor(i / (pods.length * IPS)) % 60000) }, server: { ip: s.ips[0], port: port ?? [443, 80, 5432, 6379, 8080][i % 5] } },
    verdict: verdict ?? VERDICTS[i % 10],
    protocol: 'tls',
    mesh: 'MESH_NONE',
    tls: { version: '1.3', sni: 'svc.cluster.local', clientCertificate: 'CLIENT_CERTIFICATE_NONE', cipher: 'TLS_AES_128_GCM_SHA256', alpn: ['h2'] },
    packetsDelta: { toServer: 10, toClient: 12 },
    bytesDelta: { toServer: update ? 500 : 1500, toClient: 9000 },
    firstSeenUnixNs: (NOW_NS + BigInt(i)).toString(),
    lastSeenUnixNs: (NOW_NS + BigInt(i) + 1_000_000n).toString(),
    final: update,
    evidence: 'ClientHello + ServerHello (TLS 1.3)',
  };
}

function encodeBatches(agentId, from, count, per, opts = {}) {
  const out = [];
  let seq = opts.seqFrom ?? 1;
  for (let b = 0; b < count; b++) {
    const flows = [];
    for (let k = 0; k < per; k++) flows.push(summary(from + b * per + k, opts));
    out.push(def.requestSerialize({ agentId, sequence: seq++, nodeName: agentId, inventory: b === 0 ? { pods } : undefined, flows, oldestPendingSequence: seq - 1 }));
  }
  return out;
}

function apply(agg, bufs) {
  for (const b of bufs) agg.ingest.apply(decodeReport(b));
}

const results = { cpu: cpus()[0]?.model, node: process.version };
const config = { ...DEFAULT_AGGREGATOR_CONFIG, grpcAddr: '127.0.0.1:0', metricsAddr: '127.0.0.1:0', maxFlows: FLOWS + 100_000, maxSeries: Math.max(SERIES * 2, 10_000), retentionMs: 86_400_000 };

// 1. Ingest rate (fresh aggregator; 100k new flows, then 100k updates of them).
{
  const agg = await startAggregator(config, log);
  const N = 100_000;
  const creates = encodeBatches('ingest', 0, N / 1000, 1000);
  const updates = encodeBatches('ingest', 0, N / 1000, 1000, { update: true, seqFrom: N / 1000 + 1 });
  apply(agg, encodeBatches('warm', 10_000_000, 20, 1000)); // JIT warm-up
  gc();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  apply(agg, creates);
  apply(agg, updates);
  const cpu = process.cpuUsage(c0);
  const ms = performance.now() - t0;
  results.ingestSummariesPerSec = Math.round((2 * N) / (ms / 1000));
  results.ingestSummariesPerCpuSec = Math.round((2 * N) / ((cpu.user + cpu.system) / 1e6));
  // The two halves: protobuf decode (the server's Report deserializer) and apply (dedup, join, store, metrics).
  const again = encodeBatches('split', 20_000_000, N / 1000, 1000);
  gc();
  const c1 = process.cpuUsage();
  const decoded = again.map((b) => decodeReport(b));
  const c2 = process.cpuUsage();
  for (const d of decoded) agg.ingest.apply(d);
  const c3 = process.cpuUsage();
  const cpuS = (a, b) => (b.user + b.system - a.user - a.system) / 1e6;
  results.decodeSummariesPerCpuSec = Math.round(N / cpuS(c1, c2));
  results.applySummariesPerCpuSec = Math.round(N / cpuS(c2, c3));
  progress(`ingest: ${results.ingestSummariesPerSec} summaries/s (${results.ingestSummariesPerCpuSec}/CPU-s; decode ${results.decodeSummariesPerCpuSec}/CPU-s, apply ${results.applySummariesPerCpuSec}/CPU-s)`);
  await agg.close();
}

// 2 + 4. Query over FLOWS stored flows, memory per flow.
{
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const agg = await startAggregator(config, log);
  const PER = 5000;
  let seq = 1;
  for (let i = 0; i < FLOWS - 1000; i += PER) {
    const n = Math.min(PER, FLOWS - 1000 - i);
    const flows = [];
    for (let k = 0; k < n; k++) flows.push(summary(i + k, { verdict: (i + k) % 10 === 9 ? 'VERDICT_PLAINTEXT' : VERDICTS[(i + k) % 9] }));
    agg.ingest.apply(decodeReport(def.requestSerialize({ agentId: 'fill', sequence: seq++, nodeName: 'fill', inventory: i === 0 ? { pods: [...pods, { name: 'rare', namespace: 'rare', workload: 'rare', ips: ['10.200.0.1'] }] } : undefined, flows })));
    if (seq % 40 === 0) progress(`filled ${agg.store.size} flows`);
  }
  // The newest 1000: the only ones in namespace "rare" (a filter that scans everything).
  const rare = [];
  for (let k = 0; k < 1000; k++) rare.push(summary(FLOWS + k, { ns: 200, verdict: 'VERDICT_PLAINTEXT' }));
  agg.ingest.apply(decodeReport(def.requestSerialize({ agentId: 'fill', sequence: seq++, nodeName: 'fill', flows: rare })));
  agg.ingest.flushPending(Infinity);
  gc();
  const heap1 = process.memoryUsage().heapUsed;
  results.storedFlows = agg.store.size;
  results.bytesPerStoredFlow = Math.round((heap1 - heap0) / agg.store.size);
  progress(`stored ${agg.store.size} flows, ~${results.bytesPerStoredFlow} bytes of heap each`);

  const client = new proto.plainsight.v1.FlowService(`127.0.0.1:${agg.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 << 20 });
  const call = (method, req) =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      client[method](req, (e, r) => (e ? reject(e) : resolve({ ms: performance.now() - t0, r })));
    });
  // Client and server share this process: CPU time of the call is both sides' work.
  const median = async (method, req, runs = 7) => {
    const ts = [];
    const cs = [];
    let last;
    for (let i = 0; i < runs; i++) {
      const c0 = process.cpuUsage();
      const { ms, r } = await call(method, req);
      const c = process.cpuUsage(c0);
      ts.push(ms);
      cs.push((c.user + c.system) / 1000);
      last = r;
    }
    ts.sort((a, b) => a - b);
    cs.sort((a, b) => a - b);
    return { ms: Math.round(ts[Math.floor(runs / 2)] * 10) / 10, cpuMs: Math.round(cs[Math.floor(runs / 2)] * 10) / 10, r: last };
  };
  const first = await median('ListFlows', { filter: { verdict: ['VERDICT_PLAINTEXT'] }, pageSize: 100 });
  const scan = await median('ListFlows', { filter: { verdict: ['VERDICT_PLAINTEXT'], namespace: ['rare'] }, pageSize: 1000 });
  const cov = await median('GetCoverage', { by: 'COVERAGE_GROUPING_NAMESPACE' }, 3);
  results.queryPlaintextFirstPageMs = first.ms;
  results.queryPlaintextFirstPageCpuMs = first.cpuMs;
  results.queryPlaintextFullScanMs = scan.ms;
  results.queryPlaintextFullScanCpuMs = scan.cpuMs;
  results.queryPlaintextFullScanFlows = scan.r.flows.length;
  results.coverageByNamespaceMs = cov.ms;
  progress(`query: plaintext first page ${first.ms} ms, plaintext in "rare" (1000 of ${agg.store.size}) ${scan.ms} ms → ${scan.r.flows.length} flows, coverage ${cov.ms} ms`);
  client.close();
  await agg.close();
}

// 3. Scrape time with SERIES label sets per flow counter.
{
  gc();
  const agg = await startAggregator({ ...config, maxSeries: SERIES }, log);
  const flows = [];
  // Distinct label sets: 1000 workload pairs × 10 ports (dst_port is a label).
  for (let i = 0; i < SERIES; i++) flows.push(summary(i, { port: 1000 + Math.floor(i / pods.length) }));
  agg.ingest.apply(decodeReport(def.requestSerialize({ agentId: 'series', sequence: 1, nodeName: 'series', inventory: { pods }, flows })));
  agg.ingest.flushPending(Infinity);
  const url = `http://127.0.0.1:${agg.metricsPort}/metrics`;
  await (await fetch(url)).text();
  const ts = [];
  const cs = [];
  let size = 0;
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const text = await (await fetch(url)).text();
    const c = process.cpuUsage(c0);
    ts.push(performance.now() - t0);
    cs.push((c.user + c.system) / 1000);
    size = text.length;
  }
  ts.sort((a, b) => a - b);
  cs.sort((a, b) => a - b);
  results.seriesPerCounter = agg.metrics.seriesCount;
  results.scrapeMs = Math.round(ts[3] * 10) / 10;
  results.scrapeCpuMs = Math.round(cs[3] * 10) / 10;
  results.scrapeBytes = size;
  progress(`scrape: ${results.scrapeMs} ms for ${results.seriesPerCounter} label sets × 2 counters (${Math.round(size / 1024)} KiB)`);
  await agg.close();
}

const goals = {
  ingest: results.ingestSummariesPerCpuSec >= 200_000,
  query: Math.max(results.queryPlaintextFirstPageMs, results.queryPlaintextFullScanMs) <= 100,
  scrape: results.scrapeMs <= 250,
};
if (values.json) process.stdout.write(`${JSON.stringify({ ...results, goals })}\n`);
else {
  process.stdout.write(`plainsight aggregator benchmark (${results.cpu}, node ${results.node})
  ingest      ${results.ingestSummariesPerSec.toLocaleString()} summaries/s wall, ${results.ingestSummariesPerCpuSec.toLocaleString()} per CPU-second (goal ≥200,000)  ${goals.ingest ? 'ok' : 'BELOW GOAL'}
              of which protobuf decode ${results.decodeSummariesPerCpuSec.toLocaleString()}/CPU-s, apply ${results.applySummariesPerCpuSec.toLocaleString()}/CPU-s
  query       plaintext, first page of 100: ${results.queryPlaintextFirstPageMs} ms (${results.queryPlaintextFirstPageCpuMs} ms CPU); plaintext ∩ namespace "rare" (1,000 of ${results.storedFlows.toLocaleString()}): ${results.queryPlaintextFullScanMs} ms (${results.queryPlaintextFullScanCpuMs} ms CPU) (goal ≤100)  ${goals.query ? 'ok' : 'ABOVE GOAL'}
  coverage    by namespace over ${results.storedFlows.toLocaleString()} flows: ${results.coverageByNamespaceMs} ms
  scrape      /metrics with ${results.seriesPerCounter.toLocaleString()} label sets per counter: ${results.scrapeMs} ms (${results.scrapeCpuMs} ms CPU), ${Math.round(results.scrapeBytes / 1024)} KiB (goal ≤250)  ${goals.scrape ? 'ok' : 'ABOVE GOAL'}
  memory      ~${results.bytesPerStoredFlow} bytes of heap per stored flow
`);
}
