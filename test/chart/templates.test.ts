// Static checks of charts/plainsight/templates (helm is not installable here, so nothing is
// rendered): every `{{ }}` action closes, every .Values path exists in values.yaml, every
// included template is defined, the resources the chart promises are there, and the agent
// keeps its least-privilege shape (drop ALL, each capability added back with a comment).

import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { capabilitySet, missingCapabilities } from '../../agent/src/bpf/capabilities.js';
import { agentPrivilegeNeeds } from '../../agent/src/bpf/environment.js';
import { DEFAULT_AGGREGATOR_CONFIG } from '../../aggregator/src/config.js';

const chart = fileURLToPath(new URL('../../charts/plainsight/', import.meta.url));
const tdir = `${chart}templates/`;
const files = readdirSync(tdir).sort();
const text = Object.fromEntries(files.map((f) => [f, readFileSync(tdir + f, 'utf8')]));
const values = parse(readFileSync(`${chart}values.yaml`, 'utf8')) as Record<string, unknown>;
const all = Object.values(text).join('\n');

t.test('Chart.yaml', async (t) => {
  const c = parse(readFileSync(`${chart}Chart.yaml`, 'utf8')) as Record<string, string>;
  t.equal(c.apiVersion, 'v2');
  t.equal(c.name, 'plainsight');
  t.match(c.version, /^\d+\.\d+\.\d+/);
  t.ok(c.appVersion);
  t.ok(files.includes('_helpers.tpl') && files.includes('NOTES.txt'));
});

t.test('every {{ }} action is closed, and nothing else looks like one', async (t) => {
  for (const f of files) {
    const actions = text[f].match(/\{\{[\s\S]*?\}\}/g) ?? [];
    const rest = text[f].replace(/\{\{[\s\S]*?\}\}/g, '');
    t.notMatch(rest, /\{\{|\}\}/, `${f}: no stray braces outside ${actions.length} actions`);
    // Control structures pair up: if/range/with/define open, end closes.
    let depth = 0;
    for (const a of actions) {
      const body = a.replace(/^\{\{-?\s*/, '').replace(/\s*-?\}\}$/, '');
      if (/^\/\*/.test(body)) continue;
      if (/^(if|range|with|define|block)\b/.test(body)) depth++;
      else if (/^end\b/.test(body)) depth--;
      t.ok(depth >= 0, `${f}: no "end" without an opening block`);
    }
    t.equal(depth, 0, `${f}: every if/range/with/define has its end`);
  }
});

t.test('every .Values reference exists in values.yaml', async (t) => {
  const missing: string[] = [];
  let n = 0;
  for (const f of files) {
    for (const m of text[f].matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
      n++;
      let v: unknown = values;
      for (const k of m[1].slice(1).split('.')) {
        if (v && typeof v === 'object' && !Array.isArray(v) && k in (v as object)) v = (v as Record<string, unknown>)[k];
        else {
          missing.push(`${f}: .Values${m[1]}`);
          break;
        }
      }
    }
  }
  t.same(missing, []);
  t.ok(n > 80, `${n} references checked`);
});

t.test('every include names a defined template', async (t) => {
  const defined = new Set([...all.matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
  for (const m of all.matchAll(/include "([^"]+)"/g)) t.ok(defined.has(m[1]), `include "${m[1]}" is defined`);
});

t.test('the chart has the resources the issue asks for', async (t) => {
  const kinds = new Set([...all.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]));
  for (const k of ['DaemonSet', 'Deployment', 'Service', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'PrometheusRule', 'ServiceMonitor', 'Secret', 'Certificate', 'Issuer', 'PersistentVolumeClaim']) {
    t.ok(kinds.has(k), `kind: ${k}`);
  }
  t.match(text['servicemonitor.yaml'], /^\{\{- if \.Values\.serviceMonitor\.enabled \}\}/, 'ServiceMonitor behind a toggle');
  t.match(text['prometheusrule.yaml'], /^\{\{- if \.Values\.prometheusRule\.enabled \}\}/, 'PrometheusRule behind a toggle');
  t.equal((text['servicemonitor.yaml'].match(/kind: ServiceMonitor/g) ?? []).length, 2, 'ServiceMonitors for agent and aggregator');
});

t.test('agent DaemonSet: least privilege for eBPF', async (t) => {
  const ds = text['agent-daemonset.yaml'];
  const caps = /capabilities:\n\s+drop:\n\s+- ALL\n\s+add:\n([\s\S]*?)\n\s+volumeMounts:/.exec(ds);
  t.ok(caps, 'drop ALL, then add');
  const lines = caps![1].split('\n');
  const added: string[] = [];
  lines.forEach((l, i) => {
    const m = /^\s+- ([A-Z_]+)$/.exec(l);
    if (!m) return;
    added.push(m[1]);
    // The comment right above names the capability and says why.
    let j = i - 1;
    while (j >= 0 && /^\s+\{\{/.test(lines[j])) j--;
    const comment: string[] = [];
    while (j >= 0 && /^\s+#/.test(lines[j])) comment.unshift(lines[j--]);
    t.match(comment.join(' '), new RegExp(`# ${m[1]}: \\S`), `${m[1]} has a comment saying why`);
  });
  t.same(added, ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE', 'SYS_RESOURCE']);
  t.match(ds, /# SYS_ADMIN: setns\(2\)/, 'SYS_ADMIN: setns needs it, said so');
  // The chart's set is exactly what the agent's own pre-flight asks for in the chart's
  // mode (kubernetes, loopback observed): enough, and nothing in it is spare.
  const needs = agentPrivilegeNeeds({ mode: 'kubernetes', loopback: true });
  t.same(missingCapabilities(needs, capabilitySet(added)), [], 'the agent accepts the chart set');
  for (const cap of added.filter((c) => c !== 'SYS_RESOURCE')) {
    const without = capabilitySet(added.filter((c) => c !== cap));
    t.ok(missingCapabilities(needs, without).some((m) => m.cap === `CAP_${cap}`), `without ${cap} the agent names it`);
  }
  t.match(ds, /\{\{- if \.Values\.agent\.memlockCapability \}\}\n\s+# SYS_RESOURCE/, 'SYS_RESOURCE only for pre-5.11 kernels (toggle)');
  t.notMatch(ds, /privileged: true/);
  t.notMatch(ds, /\/host\/proc|hostPaths\.proc/, 'no host /proc mount: with hostPID the container\'s /proc (the agent\'s default --proc-root) shows every pid');
  for (const [re, what] of [
    [/privileged: false/, 'not privileged'],
    [/allowPrivilegeEscalation: false/, 'no privilege escalation'],
    [/readOnlyRootFilesystem: true/, 'read-only root filesystem'],
    [/runAsUser: 0/, 'uid 0'],
    [/hostPID: \{\{ \.Values\.agent\.hostPID \}\}/, 'hostPID from values'],
    [/hostNetwork: \{\{ \.Values\.agent\.hostNetwork \}\}/, 'hostNetwork from values'],
    [/fieldPath: spec\.nodeName/, 'NODE_NAME from the downward API'],
    [/mountPath: \/var\/run\/netns\n\s+mountPropagation: HostToContainer/, '/var/run/netns HostToContainer'],
    [/mountPath: \/sys\/kernel\/btf\n\s+readOnly: true/, 'BTF read-only'],
    [/- agent\n\s+- --mode\n\s+- kubernetes\n\s+- --aggregator\n[^\n]*:%d[^\n]*\n\s+- --metrics-addr/, 'agent args'],
    [/ClusterFirstWithHostNet/, 'cluster DNS with hostNetwork'],
  ] as const) {
    t.match(ds, re, what);
  }
  // The agent pins nothing (TCX links die with it; clsact filters are replaced at restart),
  // so it gets no bpffs mount: one host path less to write to.
  t.notMatch(ds, /\/sys\/fs\/bpf/, 'no bpffs mount');

  const hostNetComment = /# hostNetwork: [^\n]+\n(\s+#[^\n]*\n)*\s+hostNetwork:/.test(ds);
  const hostPidComment = /# hostPID: [^\n]+\n(\s+#[^\n]*\n)*\s+hostPID:/.test(ds);
  t.ok(hostNetComment && hostPidComment, 'hostNetwork and hostPID say why');
  const agent = values.agent as Record<string, any>;
  t.same(agent.tolerations, [{ operator: 'Exists' }], 'tolerates every taint by default');
  t.equal(agent.hostNetwork, true);
  t.equal(agent.hostPID, true);
});

t.test('aggregator, RBAC, mTLS, token', async (t) => {
  const agg = text['aggregator.yaml'];
  t.match(agg, /path: \/readyz/);
  t.match(agg, /path: \/healthz/);
  t.match(agg, /name: grpc\n\s+port: \{\{ \.Values\.aggregator\.grpcPort \}\}/);
  t.match(agg, /name: metrics\n\s+port: \{\{ \.Values\.aggregator\.metricsPort \}\}/);
  const v = values as Record<string, any>;
  t.same([v.aggregator.grpcPort, v.aggregator.metricsPort, v.agent.metricsPort], [50051, 9100, 9101]);
  t.match(text['rbac.yaml'], /resources: \["pods", "services", "nodes", "namespaces"\]\n\s+verbs: \["get", "list", "watch"\]/);
  const verbs = [...text['rbac.yaml'].matchAll(/verbs: \[([^\]]*)\]/g)].map((m) => m[1]);
  t.ok(verbs.length >= 3 && verbs.every((v) => v === '"get", "list", "watch"'), 'RBAC is read-only (get/list/watch)');
  t.equal(v.tls.enabled, true, 'mTLS on by default');
  t.match(text['tls-helm.yaml'], /genCA[^]*genSignedCert[^]*lookup|lookup[^]*genCA/, 'Helm-generated certificates, reused via lookup');
  t.match(text['tls-helm.yaml'], /Rotation:/, 'rotation documented');
  t.match(text['tls-cert-manager.yaml'], /kind: Certificate[^]*kind: Certificate/);
  t.match(text['query-token-secret.yaml'], /kind: Secret/);
});

t.test('PrometheusRule renders the tested rule file and the coverage targets', async (t) => {
  const pr = text['prometheusrule.yaml'];
  t.match(pr, /\.Files\.Get "files\/rules\/plainsight\.rules\.yaml" \| fromYaml/);
  t.match(pr, /toYaml \$rules\.groups/);
  // The same records the promtool test's coverage-targets.rules.yaml stands in for.
  const fixture = parse(readFileSync(fileURLToPath(new URL('coverage-targets.rules.yaml', import.meta.url)), 'utf8')) as { groups: { name: string; rules: { record: string }[] }[] };
  t.match(pr, new RegExp(`- name: ${fixture.groups[0].name}\\n`));
  for (const r of new Set(fixture.groups[0].rules.map((r) => r.record))) t.match(pr, new RegExp(`record: ${r.replace(/[.:]/g, '\\$&')}\\n`), `template records ${r}`);
  t.match(pr, /expr: vector\(\{\{ \.Values\.prometheusRule\.coverageTarget\.default \}\}\)/);
  t.match(pr, /range \$namespace, \$target := \.Values\.prometheusRule\.coverageTarget\.namespaces/);
});

t.test('dashboards become ConfigMaps labelled for the Grafana sidecar', async (t) => {
  const d = text['dashboards.yaml'];
  t.match(d, /\.Files\.Glob "files\/dashboards\/\*\.json"/);
  t.match(d, /kind: ConfigMap/);
  t.match(d, /\{\{ \$\.Values\.dashboards\.label \}\}: \{\{ \$\.Values\.dashboards\.labelValue \| quote \}\}/);
  const v = (values as Record<string, any>).dashboards;
  t.same([v.label, v.labelValue], ['grafana_dashboard', '1'], 'grafana_dashboard: "1" by default');
  const dashFiles = readdirSync(`${chart}files/dashboards`).filter((f) => f.endsWith('.json'));
  t.ok(dashFiles.includes('plainsight-coverage.json'));
});

// Memory: V8 sizes its heap from the node's RAM (4 GiB on a 24 GiB node), not from the
// container's limit, so under flow churn it lets garbage outgrow the limit (bench/soak:
// agent RSS peak 696 MiB against a 512Mi limit). The chart caps the old space with
// NODE_OPTIONS; what lives outside it was measured, and cap + that must fit the limit.
/** Agent memory outside V8's old space, MiB: young generation (3 × 16 MiB semi-spaces) + the
 * worst RSS − heap total of 8 soak runs, capped or not (177 MiB: ~64 file-backed — node,
 * libbpf, koffi —, ~80–90 buffers — ring, map-read batches, held samples —, malloc). */
const AGENT_OUTSIDE_OLD_SPACE_MIB = 48 + 180;
/** Agent heap used after collections with the table at its cap (1.25 × --max-flows): 90–120 MiB in the soak. */
const AGENT_LIVE_HEAP_MIB = 120;
/** Aggregator heap per stored flow, bytes (bench/aggregator: 1.1 KB, README "Measured"; 1115 B on 2026-11-21). */
const AGGREGATOR_BYTES_PER_FLOW = 1100;
/** Aggregator memory outside the old space, MiB (young generation, node, gRPC buffers). Measured:
 * bench/aggregator with 1M stored flows under a 1536 MiB cap peaked at 1704 MiB RSS, bench included. */
const AGGREGATOR_OUTSIDE_OLD_SPACE_MIB = 384;

function mebibytes(q: string): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`memory quantity ${q}: expected Mi or Gi`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

t.test('memory: V8 heap caps fit the memory limits', async (t) => {
  const v = values as Record<string, any>;
  for (const [file, key] of [['agent-daemonset.yaml', 'agent'], ['aggregator.yaml', 'aggregator']] as const) {
    const re = new RegExp(`\\{\\{- with \\.Values\\.${key}\\.heapLimitMiB \\}\\}\\n(\\s+#[^\\n]*\\n)+\\s+- name: NODE_OPTIONS\\n\\s+value: \\{\\{ printf "--max-old-space-size=%d" \\(int \\.\\) \\| quote \\}\\}\\n\\s+\\{\\{- end \\}\\}`);
    t.match(text[file], re, `${key}: NODE_OPTIONS=--max-old-space-size from ${key}.heapLimitMiB, with a comment why`);
    // extraEnv comes after it, so a user's own NODE_OPTIONS wins.
    t.ok(text[file].indexOf(`with .Values.${key}.heapLimitMiB }}`) < text[file].indexOf(`with .Values.${key}.extraEnv }}`), `${key}: extraEnv comes after it and can override it`);
  }
  t.match(text['aggregator.yaml'], /\{\{- if or \.Values\.aggregator\.heapLimitMiB \.Values\.aggregator\.extraEnv \}\}\n\s+env:/, 'aggregator: env: rendered for either');

  const agentLimit = mebibytes(v.agent.resources.limits.memory);
  const agentCap = v.agent.heapLimitMiB as number;
  t.ok(agentCap > 0, 'the agent is capped by default');
  t.ok(agentCap + AGENT_OUTSIDE_OLD_SPACE_MIB < agentLimit, `agent: cap ${agentCap} + ${AGENT_OUTSIDE_OLD_SPACE_MIB} MiB outside the old space < limit ${agentLimit} MiB`);
  t.ok(agentCap >= 1.5 * AGENT_LIVE_HEAP_MIB, `agent: cap ${agentCap} MiB ≥ 1.5 × the ${AGENT_LIVE_HEAP_MIB} MiB live at the table's cap`);
  t.ok(mebibytes(v.agent.resources.requests.memory) <= agentLimit, 'agent: request ≤ limit');

  const aggLimit = mebibytes(v.aggregator.resources.limits.memory);
  const aggCap = v.aggregator.heapLimitMiB as number;
  const maxFlows = DEFAULT_AGGREGATOR_CONFIG.maxFlows;
  t.notMatch(JSON.stringify(v.aggregator.extraArgs), /max-flows/, 'the store holds the CLI default --max-flows');
  const storeMiB = (maxFlows * AGGREGATOR_BYTES_PER_FLOW) / 1048576;
  t.ok(aggCap > 0, 'the aggregator is capped by default');
  t.ok(1.25 * storeMiB <= aggCap, `aggregator: a full store (${maxFlows} flows, ${storeMiB.toFixed(0)} MiB) + 25 % fits the ${aggCap} MiB cap`);
  t.ok(aggCap + AGGREGATOR_OUTSIDE_OLD_SPACE_MIB <= aggLimit, `aggregator: cap ${aggCap} + ${AGGREGATOR_OUTSIDE_OLD_SPACE_MIB} MiB ≤ limit ${aggLimit} MiB`);
});
