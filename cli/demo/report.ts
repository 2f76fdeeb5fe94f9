// From what plainsight reported (the aggregator's flows and coverage, the agent's own
// intra-pod lines) to the demo's edges, and each scenario hop checked against what it
// should be. Rendered as a table (fits the terminal) or JSON.

import type { FlowOut } from '../commands/flows.js';
import type { CoverageOut } from '../commands/coverage.js';
import { humanBytes, renderTable, type Column } from '../table.js';
import { NETNS_PREFIX } from './lab.js';
import { EXPECTATIONS, SCENARIOS, type Expectation } from './scenarios.js';

/** An agent jsonl line (the fields the demo reads). */
export interface AgentLine {
  flowId: string;
  pod?: string;
  intraPod: boolean;
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  verdict: string;
  protocol: string;
  upgradedFrom?: string;
  tls?: { version?: string; sni?: string };
  mesh: string;
  bytes: { toServer: number; toClient: number };
  evidence: string;
}

export interface Edge {
  /** Client pod short name. */
  src: string;
  /** Server pod short name, or `external:<ip>`. */
  dst: string;
  /** What people read: the pod, or external/<SNI or IP>. */
  dstLabel: string;
  port: number;
  intraPod: boolean;
  verdict: string;
  /** Connections per verdict (more than one key: the verdict differed between connections). */
  verdicts: Record<string, number>;
  protocol: string;
  upgradedFrom?: string;
  tlsVersion?: string;
  sni?: string;
  mesh: string;
  bytes: number;
  connections: number;
  evidence: string;
  /** Plaintext between pods or to the outside: what an alert fires on. Intra-pod plaintext is not flagged. */
  flagged: boolean;
}

export interface HopResult {
  hop: string;
  edge: string;
  expected: { verdict: string[]; mesh?: string; upgradedFrom?: string; protocol?: string; sni?: string; tlsVersion?: string; intraPod: boolean };
  observed: Edge | null;
  ok: boolean;
}

export interface DemoReport {
  ok: boolean;
  seconds: number;
  endpoints: Record<string, string>;
  scenarios: { id: string; title: string; hops: HopResult[] }[];
  edges: Edge[];
  coverage: { rows: CoverageOut[]; total: CoverageOut | null };
  /** Share of bytes encrypted between pods and to the outside (intra-pod loopback not counted). */
  encryptedOnTheWire: number;
}

const short = (workload: string): string => (workload.startsWith(NETNS_PREFIX) ? workload.slice(NETNS_PREFIX.length) : workload);
const isLoopback = (ip: string): boolean => ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.');

interface Acc extends Edge {
  order: number;
}

export function buildEdges(flows: FlowOut[], agentLines: Iterable<AgentLine>): Edge[] {
  const edges = new Map<string, Acc>();
  const add = (
    key: { src: string; dst: string; dstLabel: string; port: number; intraPod: boolean },
    f: { verdict: string; protocol: string; upgradedFrom?: string; tls?: { version?: unknown; sni?: unknown }; mesh: string; bytes: { toServer: number; toClient: number }; evidence: string },
  ): void => {
    const id = `${key.src}|${key.dst}|${key.port}|${key.intraPod}`;
    let e = edges.get(id);
    if (!e) {
      e = { ...key, verdict: f.verdict, verdicts: {}, protocol: f.protocol, mesh: f.mesh, bytes: 0, connections: 0, evidence: f.evidence, flagged: false, order: edges.size };
      edges.set(id, e);
    }
    e.verdicts[f.verdict] = (e.verdicts[f.verdict] ?? 0) + 1;
    e.connections++;
    e.bytes += f.bytes.toServer + f.bytes.toClient;
    // The edge shows its most common verdict, and the details of a connection that had it.
    const top = Object.entries(e.verdicts).sort((a, b) => b[1] - a[1])[0]![0];
    if (f.verdict === top) {
      e.verdict = top;
      e.protocol = f.protocol;
      e.mesh = f.mesh;
      e.evidence = f.evidence;
      if (f.upgradedFrom) e.upgradedFrom = f.upgradedFrom;
      if (f.tls?.version) e.tlsVersion = String(f.tls.version);
      if (f.tls?.sni) e.sni = String(f.tls.sni);
    }
  };
  for (const f of flows) {
    if (isLoopback(f.client.ip) || isLoopback(f.server.ip)) continue; // the agent's lines name the pod
    const ext = f.server.namespace === 'external';
    add(
      {
        src: f.client.namespace === 'external' ? `external:${f.client.ip}` : short(f.client.workload),
        dst: ext ? `external:${f.server.ip}` : short(f.server.workload),
        dstLabel: ext ? `external/${f.server.workload === 'unknown' ? f.server.ip : f.server.workload}` : short(f.server.workload),
        port: f.server.port,
        intraPod: false,
      },
      f,
    );
  }
  const seen = new Map<string, AgentLine>();
  for (const l of agentLines) if (l.intraPod && l.pod) seen.set(l.flowId, l); // the latest line of each flow
  for (const l of seen.values()) {
    const pod = short(l.pod!);
    add({ src: pod, dst: pod, dstLabel: `${pod} (lo)`, port: l.server.port, intraPod: true }, l);
  }
  const out = [...edges.values()].sort((a, b) => a.order - b.order);
  for (const e of out) e.flagged = e.verdict === 'plaintext' && !e.intraPod;
  return out.map(({ order: _o, ...e }) => e);
}

function check(x: Expectation, e: Edge | undefined): boolean {
  if (!e) return false;
  if (!x.verdict.includes(e.verdict)) return false;
  if (x.mesh && e.mesh !== x.mesh) return false;
  if (x.upgradedFrom && e.upgradedFrom !== x.upgradedFrom) return false;
  if (x.protocol && e.protocol !== x.protocol) return false;
  if (x.sni && e.sni !== x.sni) return false;
  if (x.tlsVersion && e.tlsVersion !== x.tlsVersion) return false;
  return true;
}

export function report(edges: Edge[], coverage: DemoReport['coverage'], endpoints: Record<string, string>, seconds: number): DemoReport {
  const scenarios = Object.entries(SCENARIOS).map(([id, title]) => ({
    id,
    title,
    hops: EXPECTATIONS.filter((x) => x.scenario === id).map((x): HopResult => {
      const e = edges.find((g) => g.src === x.client && g.dst === x.server && g.port === x.port && g.intraPod === Boolean(x.intraPod));
      const expected: HopResult['expected'] = { verdict: x.verdict, intraPod: Boolean(x.intraPod) };
      for (const k of ['mesh', 'upgradedFrom', 'protocol', 'sni', 'tlsVersion'] as const) if (x[k]) expected[k] = x[k];
      return { hop: x.hop, edge: `${x.client} → ${x.intraPod ? `${x.client} (loopback)` : x.server}:${x.port}`, expected, observed: e ?? null, ok: check(x, e) };
    }),
  }));
  return { ok: scenarios.every((s) => s.hops.every((h) => h.ok)), seconds, endpoints, scenarios, edges, coverage, encryptedOnTheWire: encryptedShare(edges) };
}

/** Which scenario hop an edge is, if any. */
function hopOf(e: Edge): Expectation | undefined {
  return EXPECTATIONS.find((x) => x.client === e.src && x.server === e.dst && x.port === e.port && Boolean(x.intraPod) === e.intraPod);
}

function verdictCell(e: Edge): string {
  const mixed = Object.keys(e.verdicts).length > 1 ? '*' : '';
  if (e.intraPod && e.verdict === 'plaintext') return `plaintext (intra-pod)${mixed}`;
  if (e.flagged) return `PLAINTEXT !${mixed}`;
  return `${e.verdict}${mixed}`;
}

const EDGE_COLUMNS: Column<Edge>[] = [
  { header: 'SC', value: (e) => hopOf(e)?.scenario ?? '-' },
  { header: 'EDGE', value: (e) => `${e.src} → ${e.dstLabel}:${e.port}`, max: 56 },
  { header: 'VERDICT', value: verdictCell },
  { header: 'PROTOCOL', value: (e) => (e.upgradedFrom ? `${e.protocol}<-${e.upgradedFrom}` : e.protocol), max: 20 },
  { header: 'TLS', value: (e) => e.tlsVersion ?? '' },
  { header: 'MESH', value: (e) => (e.mesh === 'none' ? '' : e.mesh) },
  { header: 'CONNS', value: (e) => String(e.connections), align: 'right' },
  { header: 'BYTES', value: (e) => humanBytes(e.bytes), align: 'right' },
  { header: 'SNI', value: (e) => e.sni ?? '', flex: true },
];

/** Below 120 columns: mesh folded into the verdict, no SNI or connection count. */
const NARROW_COLUMNS: Column<Edge>[] = [
  { header: 'SC', value: (e) => hopOf(e)?.scenario ?? '-' },
  { header: 'EDGE', value: (e) => `${e.src} → ${e.dstLabel}:${e.port}`, flex: true },
  {
    header: 'VERDICT',
    value: (e) => (e.intraPod && e.verdict === 'plaintext' ? 'plain (intra-pod)' : e.flagged ? 'PLAINTEXT !' : `${e.verdict}${e.mesh === 'none' ? '' : ` ${e.mesh}`}`),
  },
  { header: 'PROTOCOL', value: (e) => (e.upgradedFrom ? `${e.protocol}<-${e.upgradedFrom}` : e.protocol), max: 12 },
  { header: 'TLS', value: (e) => e.tlsVersion ?? '' },
  { header: 'BYTES', value: (e) => humanBytes(e.bytes), align: 'right' },
];

const COVERAGE_COLUMNS: Column<CoverageOut>[] = [
  { header: 'NAMESPACE', value: (r) => r.namespace, max: 30 },
  { header: 'ENCRYPTED', value: (r) => `${(r.ratio * 100).toFixed(1)}%`, align: 'right' },
  { header: 'ENC BYTES', value: (r) => humanBytes(r.encryptedBytes), align: 'right' },
  { header: 'PLAIN BYTES', value: (r) => humanBytes(r.plaintextBytes), align: 'right' },
  { header: 'CONNS enc/plain/unk', value: (r) => `${r.encryptedConnections}/${r.plaintextConnections}/${r.unknownConnections}`, align: 'right' },
];

/** The live view: edges, coverage per namespace; at most `rows` lines when given. */
export function renderLive(edges: Edge[], coverage: DemoReport['coverage'], width: number, rows?: number): string {
  const flagged = edges.filter((e) => e.flagged).length;
  const intra = edges.filter((e) => e.intraPod).length;
  // Scenario hops in scenario order, anything else after them: rows stay put between redraws.
  const rank = (e: Edge): number => {
    const i = EXPECTATIONS.findIndex((x) => x.client === e.src && x.server === e.dst && x.port === e.port && Boolean(x.intraPod) === e.intraPod);
    return i < 0 ? EXPECTATIONS.length : i;
  };
  let edgeRows = [...edges].sort((a, b) => rank(a) - rank(b));
  const fixed = 6 + coverage.rows.length + 2;
  if (rows !== undefined && edges.length + fixed > rows) edgeRows = edgeRows.slice(0, Math.max(3, rows - fixed - 1));
  // Narrow terminals: no SNI column, the edge column takes what is left.
  const cols = width >= 120 ? EDGE_COLUMNS : NARROW_COLUMNS;
  let out = renderTable(edgeRows, cols, width);
  if (edgeRows.length < edges.length) out += `… ${edges.length - edgeRows.length} more edges (enlarge the terminal)\n`;
  out += `\n${edges.length} edges: ${flagged} plaintext, flagged (!); ${intra} intra-pod loopback (expected)\n`;
  out += `${encryptedLine(edges)}\n\n`;
  out += renderTable(coverage.rows, COVERAGE_COLUMNS, width);
  return out
    .split('\n')
    .map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l))
    .join('\n');
}

/** The final report as text. */
export function renderReport(r: DemoReport, width: number): string {
  let out = `\nplainsight demo: final report after ${r.seconds} s\n\n`;
  const rows = r.scenarios.flatMap((s) => s.hops.map((h) => ({ s, h })));
  out += renderTable(rows, [
    { header: 'SC', value: ({ s }) => s.id },
    { header: 'HOP', value: ({ h }) => h.hop, max: 46 },
    { header: 'EXPECTED', value: ({ h }) => `${h.expected.verdict.join('|')}${h.expected.mesh ? ` ${h.expected.mesh}` : ''}${h.expected.upgradedFrom ? ` <-${h.expected.upgradedFrom}` : ''}` },
    { header: 'OBSERVED', value: ({ h }) => (h.observed ? verdictCell(h.observed) : 'not seen') },
    { header: 'PROTOCOL', value: ({ h }) => (h.observed ? (h.observed.upgradedFrom ? `${h.observed.protocol}<-${h.observed.upgradedFrom}` : h.observed.protocol) : '') },
    { header: 'TLS', value: ({ h }) => h.observed?.tlsVersion ?? '' },
    { header: 'MESH', value: ({ h }) => (h.observed && h.observed.mesh !== 'none' ? h.observed.mesh : '') },
    { header: 'CONNS', value: ({ h }) => String(h.observed?.connections ?? 0), align: 'right' },
    { header: 'OK', value: ({ h }) => (h.ok ? 'ok' : 'NO') },
    { header: 'EVIDENCE', value: ({ h }) => h.observed?.evidence ?? '', flex: true },
  ], width);
  const bad = rows.filter(({ h }) => !h.ok).length;
  out += `\n${bad === 0 ? 'every scenario hop got the verdict it should' : `${bad} hop(s) did not get the expected verdict`}\n`;
  out += `${encryptedLine(r.edges)}\n\n`;
  out += renderTable(r.coverage.rows, COVERAGE_COLUMNS, width);
  return out;
}

/** Share of bytes encrypted on the wire between pods and to the outside (intra-pod loopback left out). */
export function encryptedShare(edges: Edge[]): number {
  let enc = 0;
  let all = 0;
  for (const e of edges) {
    if (e.intraPod) continue;
    all += e.bytes;
    if (e.verdict === 'tls' || e.verdict === 'mtls' || e.verdict === 'encrypted-other') enc += e.bytes;
  }
  return all === 0 ? 0 : enc / all;
}

function encryptedLine(edges: Edge[]): string {
  return `encrypted on the wire: ${(encryptedShare(edges) * 100).toFixed(1)}% of bytes (intra-pod not counted); by namespace:`;
}
