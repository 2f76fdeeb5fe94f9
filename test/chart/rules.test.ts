// The alert and recording rules of charts/plainsight/files/rules/plainsight.rules.yaml:
// `promtool check rules` and `promtool test rules` (rules.test.yaml: realistic INTERFACE.md
// series, alerts that must and must not fire), plus the conventions every alert follows.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const RULES = 'charts/plainsight/files/rules/plainsight.rules.yaml';
const TARGETS = 'test/chart/coverage-targets.rules.yaml';
const TESTS = 'test/chart/rules.test.yaml';
const PROMTOOL = '/usr/bin/promtool';
const skip = existsSync(PROMTOOL) ? false : 'promtool is not installed (Debian package `prometheus`)';

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (parse(readFileSync(`${root}${RULES}`, 'utf8')) as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

function promtool(...args: string[]) {
  const r = spawnSync(PROMTOOL, args, { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

t.test('promtool check rules', { skip }, async (t) => {
  for (const f of [RULES, TARGETS]) {
    const r = promtool('check', 'rules', f);
    t.equal(r.code, 0, `${f}: ${r.out}`);
  }
});

t.test('promtool test rules: alerts that must fire fire, the others stay quiet', { skip }, async (t) => {
  const r = promtool('test', 'rules', TESTS);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /SUCCESS/);
});

t.test('the rule set', async (t) => {
  t.same(
    rules.filter((r) => r.alert).map((r) => r.alert).sort(),
    [
      'PlainsightAgentDown',
      'PlainsightAgentLosingSamples',
      'PlainsightCoverageBelowTarget',
      'PlainsightDeprecatedTls',
      'PlainsightMeshedWorkloadReceivingPlaintext',
      'PlainsightPlaintextBetweenWorkloads',
      'PlainsightPlaintextEgress',
    ],
  );
  const records = rules.filter((r) => r.record);
  t.same(records.map((r) => [r.record, r.labels?.by]), [
    ['plainsight:encryption_coverage:ratio', 'namespace'],
    ['plainsight:encryption_coverage:ratio', 'edge'],
  ]);
  for (const r of records) {
    t.match(r.expr, /verdict=~"tls\|mtls\|encrypted-other"/, `${r.record}: encrypted = tls|mtls|encrypted-other`);
    t.notMatch(r.expr, /unknown/, `${r.record}: unknown is never in the numerator`);
  }
  for (const r of rules.filter((r) => r.alert)) {
    t.match(r.labels?.severity, /^(warning|critical)$/, `${r.alert}: severity`);
    for (const a of ['summary', 'description', 'runbook']) t.ok(r.annotations?.[a], `${r.alert}: ${a}`);
    t.match(`${r.annotations?.summary}${r.annotations?.description}`, /\$labels\./, `${r.alert}: annotations name the labels`);
    t.match(r.annotations?.runbook, /README\.md#runbooks/, `${r.alert}: runbook hint`);
    t.ok(r.for, `${r.alert}: has a for: duration`);
  }
  const used = new Set(JSON.stringify(rules).match(/plainsight_[a-z_]+/g));
  for (const m of used) {
    t.ok(
      ['plainsight_bytes_total', 'plainsight_flows_total', 'plainsight_active_flows', 'plainsight_agents_connected', 'plainsight_agent_lost_samples_total'].includes(m),
      `${m} is an INTERFACE.md metric`,
    );
  }
});
