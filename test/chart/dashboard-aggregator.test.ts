// Every dashboard panel's PromQL against the REAL aggregator: flows from an agent's exporter
// (agent/src/export, the same client the agent uses) → `plainsight aggregator` (the built
// CLI) → its /metrics → a real Prometheus with the chart's recording rules → each panel's
// query must return data, and the recorded coverage must be what the traffic implies.
// Synthetic flows with INTERFACE.md's label values stand in for captured traffic (no
// cluster, no lab needed); dashboard.test.ts runs the same check on a scripted exporter.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Exporter, type ExportFlow, type ExportPod } from '../../agent/src/export/index.js';
import { AggregatorProcess, PrometheusServer, prometheusSkipReason } from '../lab/aggregator.js';
import { panelQueries, runPanelQueries, type Dashboard } from '../lab/dashboard.js';
import { FAKE_EDGES } from '../lab/fake-metrics.js';
import { cliMissingReason } from '../lab/plainsight.js';

const chart = fileURLToPath(new URL('../../charts/plainsight/', import.meta.url));
const RULES = `${chart}files/rules/plainsight.rules.yaml`;
const dashboard = JSON.parse(readFileSync(`${chart}files/dashboards/plainsight-coverage.json`, 'utf8')) as Dashboard;

const skip = prometheusSkipReason() ?? cliMissingReason() ?? false;

t.test('every panel query returns data: exporter → real aggregator → Prometheus', { skip }, async (t) => {
  // One pod per in-cluster workload; external servers are addresses no inventory holds.
  const pods: ExportPod[] = [];
  const ipOf = new Map<string, string>();
  const podIp = (ns: string, wl: string): string => {
    const key = `${ns}/${wl}`;
    let ip = ipOf.get(key);
    if (!ip) {
      ip = `10.42.0.${pods.length + 10}`;
      ipOf.set(key, ip);
      pods.push({ name: `${wl}-0`, namespace: ns, workload: wl, ips: [ip] });
    }
    return ip;
  };
  let ext = 0;
  const edges = FAKE_EDGES.map(([l, bytesPerTick], i) => {
    const client = podIp(l.src_namespace, l.src_workload);
    const server = l.dst_namespace === 'external' ? `203.0.113.${++ext}` : podIp(l.dst_namespace, l.dst_workload);
    const tls: ExportFlow['tls'] | undefined = l.tls_version !== 'none' ? { version: l.tls_version, ...(l.dst_namespace === 'external' && l.dst_workload !== 'unknown' ? { sni: l.dst_workload } : {}) } : undefined;
    return { i, l, client, server, bytesPerTick, tls };
  });

  const agg = await AggregatorProcess.start(t);
  const prom = await PrometheusServer.start(t, `127.0.0.1:${agg.metricsPort}`, undefined, [RULES]);
  const exporter = new Exporter({ address: agg.address, node: 'node-a' });
  t.teardown(() => exporter.close(0));

  // Each tick: one long-lived connection per edge grows (totals), and one short connection
  // per edge starts and ends — so bytes, new flows and active flows all move.
  let tick = 0;
  const send = () => {
    tick++;
    const now = Date.now();
    const flows: ExportFlow[] = [];
    for (const e of edges) {
      const base = {
        transport: 'tcp' as const,
        server: { ip: e.server, port: Number(e.l.dst_port) },
        verdict: e.l.verdict as ExportFlow['verdict'],
        protocol: e.l.protocol,
        mesh: e.l.mesh as ExportFlow['mesh'],
        ...(e.tls ? { tls: e.tls } : {}),
      };
      const half = e.bytesPerTick / 2;
      flows.push({ ...base, flowId: `long-${e.i}`, client: { ip: e.client, port: 40000 + e.i }, packets: { toServer: tick, toClient: tick }, bytes: { toServer: half * tick, toClient: 0 }, firstSeenMs: now - tick * 300, lastSeenMs: now, final: false });
      flows.push({ ...base, flowId: `short-${e.i}-${tick}`, client: { ip: e.client, port: 20000 + ((e.i * 1000 + tick) % 20000) }, packets: { toServer: 1, toClient: 1 }, bytes: { toServer: half / 2, toClient: half / 2 }, firstSeenMs: now - 100, lastSeenMs: now, final: true });
    }
    exporter.enqueue(flows, pods);
    exporter.addLostSamples(3);
  };
  send();
  const timer = setInterval(send, 300);
  t.teardown(() => clearInterval(timer));

  const ready = await prom.waitFor('plainsight:encryption_coverage:ratio{by="edge", dst_namespace="external"}', (r) => r.length >= 3, 40_000);
  t.ok(ready.length >= 3, `recording rules over the aggregator's metrics, external edges resolved (${ready.length})`);
  await sleep(2500); // a few more scrapes and evaluations with every series present

  const queries = panelQueries(dashboard);
  for (const [label, vars] of [
    ['all namespaces', { namespace: '.*' }],
    ['two namespaces selected', { namespace: '(legacy|shop)' }],
  ] as const) {
    const results = await runPanelQueries(prom, queries, vars);
    for (const r of results) t.ok(r.samples > 0 && !r.error, `${label}: "${r.title}" returns data (${r.samples} series) — ${r.error ?? r.query}`);
  }

  const labels = await prom.query('count by (verdict, mesh, tls_version) (plainsight_bytes_total)');
  t.ok(labels.some((s) => s.metric.verdict === 'mtls' && s.metric.mesh === 'istio' && s.metric.tls_version === '1.3'), 'aggregator labels: mtls/istio/1.3');
  const egress = await prom.query('plainsight_bytes_total{dst_namespace="external", dst_workload="api.stripe.com"}');
  t.ok(egress.length > 0, 'external endpoint: dst_namespace="external", dst_workload = SNI');

  const cov = await prom.query('plainsight:encryption_coverage:ratio{by="namespace"}');
  const by = Object.fromEntries(cov.map((s) => [s.metric.src_namespace, Number(s.value[1])]));
  t.ok(Math.abs(by.blobs - 0.5) < 0.05, `blobs coverage ${by.blobs} ≈ 0.5 (unknown is not encrypted)`);
  t.ok(Math.abs(by.shop - 10000 / 11100) < 0.05, `shop coverage ${by.shop} ≈ 0.90`);
  t.equal(by.payments, 1, 'payments coverage 1');
  t.ok(by.legacy < 0.5, `legacy coverage ${by.legacy} low (plaintext egress)`);
  t.equal(exporter.stats.droppedBatches, 0, 'no batch dropped');
});
