// charts/plainsight/values.yaml against values.schema.json (ajv, draft-07), a few invalid
// values the schema must reject, and the helm-docs rule: every key has a `# --` comment
// (a documented key documents its whole value; an undocumented key must be a group whose
// keys are all documented).

import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { isMap, isScalar, parse, parseDocument, type Pair, type YAMLMap } from 'yaml';

const chart = fileURLToPath(new URL('../../charts/plainsight/', import.meta.url));
const valuesText = readFileSync(`${chart}values.yaml`, 'utf8');
const schema = JSON.parse(readFileSync(`${chart}values.schema.json`, 'utf8')) as Record<string, unknown>;

function values(): Record<string, any> {
  return parse(valuesText) as Record<string, any>;
}

t.test('values.schema.json is draft-07 and compiles in strict mode', async (t) => {
  t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  const ajv = new Ajv({ allErrors: true, strict: true });
  t.doesNotThrow(() => ajv.compile(schema));
});

t.test('values.yaml validates against the schema', async (t) => {
  const validate = new Ajv({ allErrors: true }).compile(schema);
  const ok = validate(values());
  t.ok(ok, JSON.stringify(validate.errors));
});

t.test('invalid values are rejected', async (t) => {
  const validate = new Ajv({ allErrors: true }).compile(schema);
  const cases: [string, (v: Record<string, any>) => void, string][] = [
    ['unknown certificate source', (v) => (v.tls.source = 'vault'), '/tls/source'],
    ['port out of range', (v) => (v.agent.metricsPort = 70000), '/agent/metricsPort'],
    ['typo in a key (additionalProperties)', (v) => (v.agent.privilegd = true), '/agent'],
    ['coverage target above 1', (v) => (v.prometheusRule.coverageTarget.default = 1.5), '/prometheusRule/coverageTarget/default'],
    ['per-namespace target not a number', (v) => (v.prometheusRule.coverageTarget.namespaces = { payments: 'high' }), '/prometheusRule/coverageTarget/namespaces/payments'],
    ['per-namespace target for an invalid namespace name', (v) => (v.prometheusRule.coverageTarget.namespaces = { Payments_1: 1 }), '/prometheusRule/coverageTarget/namespaces'],
    ['bad pull policy', (v) => (v.image.pullPolicy = 'Sometimes'), '/image/pullPolicy'],
    ['relative host path', (v) => (v.agent.hostPaths.netns = 'var/run/netns'), '/agent/hostPaths/netns'],
    ['hostNetwork as a string', (v) => (v.agent.hostNetwork = 'yes'), '/agent/hostNetwork'],
    ['bad duration', (v) => (v.serviceMonitor.interval = '30 seconds'), '/serviceMonitor/interval'],
    ['heap cap as a quantity string', (v) => (v.agent.heapLimitMiB = '256Mi'), '/agent/heapLimitMiB'],
    ['negative heap cap', (v) => (v.aggregator.heapLimitMiB = -1), '/aggregator/heapLimitMiB'],
  ];
  for (const [name, mutate, path] of cases) {
    const v = values();
    mutate(v);
    t.notOk(validate(v), `${name}: rejected`);
    t.ok(
      (validate.errors ?? []).some((e) => e.instancePath === path || e.instancePath.startsWith(`${path}/`)),
      `${name}: error at ${path} (${JSON.stringify(validate.errors?.map((e) => e.instancePath))})`,
    );
  }
  const good = values();
  good.prometheusRule.coverageTarget.namespaces = { payments: 1, 'kube-system': 0.5 };
  good.tls.source = 'certManager';
  good.tls.certManager.issuerRef = { name: 'corp-ca', kind: 'ClusterIssuer' };
  good.agent.updateStrategy.maxUnavailable = '10%';
  t.ok(validate(good), `a realistic override validates: ${JSON.stringify(validate.errors)}`);
});

t.test('every key in values.yaml has a `# --` comment (helm-docs)', async (t) => {
  const doc = parseDocument(valuesText);
  t.equal(doc.errors.length, 0, 'values.yaml parses');
  const undocumented: string[] = [];
  let documented = 0;
  const isDoc = (c: string | null | undefined) => typeof c === 'string' && /(^|\n)\s*--\s\S/.test(c);
  const walk = (map: YAMLMap, path: string) => {
    map.items.forEach((pair: Pair, i) => {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?';
      const keyPath = path ? `${path}.${key}` : key;
      // The comment above the first key of a map can be attached to the map itself.
      const comment = (isScalar(pair.key) ? pair.key.commentBefore : undefined) ?? (i === 0 ? map.commentBefore : undefined);
      if (isDoc(comment)) {
        documented++;
        return;
      }
      if (isMap(pair.value) && pair.value.items.length > 0) walk(pair.value, keyPath);
      else undocumented.push(keyPath);
    });
  };
  t.ok(isMap(doc.contents));
  walk(doc.contents as YAMLMap, '');
  t.same(undocumented, [], 'keys without a `# --` comment');
  t.ok(documented >= 60, `documented keys: ${documented}`);
});

t.test('the schema covers every key of values.yaml (and only those)', async (t) => {
  const missing: string[] = [];
  const walk = (v: unknown, s: any, path: string) => {
    if (!v || typeof v !== 'object' || Array.isArray(v) || !s?.properties) return;
    for (const [k, sub] of Object.entries(v)) {
      if (!(k in s.properties)) missing.push(`${path}${k}`);
      else walk(sub, s.properties[k], `${path}${k}.`);
    }
  };
  walk(values(), schema, '');
  t.same(missing, []);
});
