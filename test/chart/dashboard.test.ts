// The Grafana dashboard (charts/plainsight/files/dashboards/plainsight-coverage.json): valid
// JSON, a query on every panel, the ${datasource} variable; then EVERY panel's PromQL runs
// against a real Prometheus (/usr/bin/prometheus) that scrapes INTERFACE.md's metrics and
// evaluates the chart's recording rules, and must return data. The metrics come from
// test/lab/fake-metrics.ts here; dashboard-aggregator.test.ts runs the same check against a
// Prometheus scraping the real aggregator (runPanelQueries() takes any Prometheus).

import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { PrometheusServer, prometheusSkipReason } from '../lab/aggregator.js';
import { allPanels, panelQueries, runPanelQueries, substituteVariables, type Dashboard } from '../lab/dashboard.js';
import { FakeAggregatorMetrics } from '../lab/fake-metrics.js';

const chart = fileURLToPath(new URL('../../charts/plainsight/', import.meta.url));
const RULES = `${chart}files/rules/plainsight.rules.yaml`;
const dashboard = JSON.parse(readFileSync(`${chart}files/dashboards/plainsight-coverage.json`, 'utf8')) as Dashboard & Record<string, any>;

t.test('dashboard JSON', async (t) => {
  t.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, `schemaVersion ${dashboard.schemaVersion}`);
  t.equal(dashboard.uid, 'plainsight-coverage');
  const vars = dashboard.templating!.list;
  const ds = vars.find((v) => v.name === 'datasource');
  t.same([ds?.type, ds?.query], ['datasource', 'prometheus'], 'datasource is a variable of type prometheus');
  const ns = vars.find((v) => v.name === 'namespace') as Record<string, any> | undefined;
  t.equal(ns?.type, 'query', 'namespace variable');
  t.match(JSON.stringify(ns?.query), /label_values\(plainsight_bytes_total, src_namespace\)/);
  t.equal(ns?.datasource?.uid, '${datasource}');

  const panels = allPanels(dashboard);
  t.ok(panels.length >= 10, `${panels.length} panels`);
  const ids = dashboard.panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of panels as (typeof panels[number] & Record<string, any>)[]) {
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: datasource variable`);
    t.ok(p.targets?.length, `${p.title}: has a query`);
    for (const tg of p.targets ?? []) {
      t.ok(tg.expr && tg.expr.trim().length > 0, `${p.title}/${tg.refId}: non-empty expr`);
      t.equal((tg as Record<string, any>).datasource?.uid, '${datasource}', `${p.title}/${tg.refId}: target datasource`);
    }
    t.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.h > 0, `${p.title}: gridPos`);
  }
  // The panels are all there.
  const titles = panels.map((p) => p.title).join('\n');
  for (const re of [/coverage by namespace/i, /top plaintext edges/i, /by verdict/i, /protocol/i, /TLS versions/i, /meshes/i, /external plaintext egress/i, /agents connected/i, /lost/i]) {
    t.match(titles, re, `a panel for ${re}`);
  }
  // Recording rules the dashboard reads exist in the rules file.
  const records = new Set(
    (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { record?: string }[] }[] }).groups.flatMap((g) => g.rules.map((r) => r.record)).filter(Boolean),
  );
  for (const q of panelQueries(dashboard)) {
    for (const m of q.expr.match(/plainsight:[a-z_:]+/g) ?? []) t.ok(records.has(m), `${q.title}: ${m} is recorded by the chart`);
  }
});

t.test('variable substitution', async (t) => {
  t.equal(substituteVariables('rate(x{ns=~"$namespace"}[$__rate_interval])', { namespace: '.*' }), 'rate(x{ns=~".*"}[1m])');
  t.equal(substituteVariables('x{a="${namespace}", b="[[namespace]]"}', { namespace: 'shop' }), 'x{a="shop", b="shop"}');
  t.throws(() => substituteVariables('x{a="$nope"}', {}), /\$nope/);
});

t.test('every panel query returns data from a real Prometheus', { skip: prometheusSkipReason() ?? false }, async (t) => {
  const metrics = await FakeAggregatorMetrics.start(t);
  const prom = await PrometheusServer.start(t, metrics.target, undefined, [RULES]);
  // Two scrapes for rate(), one rule evaluation after them.
  const ready = await prom.waitFor('plainsight:encryption_coverage:ratio{by="edge"}', (r) => r.length > 0, 30_000);
  t.ok(ready.length > 0, 'recording rules produce series');

  const queries = panelQueries(dashboard);
  for (const [label, vars] of [
    ['all namespaces', { namespace: '.*' }],
    ['two namespaces selected', { namespace: '(legacy|shop)' }],
  ] as const) {
    const results = await runPanelQueries(prom, queries, vars);
    t.equal(results.length, queries.length);
    for (const r of results) t.ok(r.samples > 0 && !r.error, `${label}: "${r.title}" returns data (${r.samples} series) — ${r.error ?? r.query}`);
  }

  // The numbers are the ones the traffic implies (unknown is not encrypted).
  const cov = await prom.query('plainsight:encryption_coverage:ratio{by="namespace"}');
  const by = Object.fromEntries(cov.map((s) => [s.metric.src_namespace, Number(s.value[1])]));
  t.ok(Math.abs(by.legacy - 0.25) < 0.02, `legacy coverage ${by.legacy} ≈ 0.25`);
  t.ok(Math.abs(by.blobs - 0.5) < 0.02, `blobs coverage ${by.blobs} ≈ 0.5 (unknown not encrypted)`);
  t.ok(Math.abs(by.payments - 1) < 1e-9, `payments coverage ${by.payments} = 1`);
  t.ok(Math.abs(by.shop - 10000 / 11100) < 0.02, `shop coverage ${by.shop} ≈ 0.90`);
});
