// The demo's report logic without a lab: aggregator flows and the agent's intra-pod lines
// become edges; loopback flows are named by the agent's pod (the aggregator only sees
// 127.0.0.1), plaintext between pods is flagged and intra-pod plaintext is not; each
// scenario hop is checked against its expectation.

import t from 'tap';
import type { FlowOut } from '../../cli/commands/flows.js';
import { buildEdges, renderLive, renderReport, report, type AgentLine } from '../../cli/demo/report.js';
import { CONSUL_SNI } from '../../cli/demo/scenarios.js';

const end = (ip: string, port: number, workload: string, namespace = 'local') => ({ ip, port, namespace, workload });

function flow(o: Partial<FlowOut> & Pick<FlowOut, 'client' | 'server' | 'verdict'>): FlowOut {
  return { id: String(Math.random()), transport: 'tcp', protocol: 'tls', mesh: 'none', packets: { toServer: 1, toClient: 1 }, bytes: { toServer: 100, toClient: 200 }, evidence: 'e', observedBy: ['n'], ended: true, ...o };
}

const flows: FlowOut[] = [
  flow({ client: end('198.18.1.10', 40000, 'ps-demo-gateway'), server: end('198.18.1.11', 8080, 'ps-demo-web'), verdict: 'plaintext', protocol: 'http/1.1' }),
  flow({ client: end('198.18.1.10', 40001, 'ps-demo-gateway'), server: end('198.18.1.11', 8080, 'ps-demo-web'), verdict: 'plaintext', protocol: 'http/1.1' }),
  flow({ client: end('198.18.1.10', 40002, 'ps-demo-gateway'), server: end('198.18.1.11', 21000, 'ps-demo-web'), verdict: 'mtls', mesh: 'consul', tls: { version: '1.2', sni: CONSUL_SNI } }),
  // What the aggregator makes of a loopback flow today: both ends external/unknown.
  flow({ client: end('127.0.0.1', 50000, 'unknown', 'external'), server: end('127.0.0.1', 8080, 'unknown', 'external'), verdict: 'plaintext', protocol: 'http/1.1' }),
  flow({ client: end('198.18.1.16', 40003, 'ps-demo-egress'), server: end('198.19.80.80', 443, 'api.example.com', 'external'), verdict: 'tls', tls: { version: '1.3', sni: 'api.example.com' } }),
];
const lines: AgentLine[] = [
  { flowId: 'a', pod: 'ps-demo-web', intraPod: true, client: { ip: '127.0.0.1', port: 50000 }, server: { ip: '127.0.0.1', port: 8080 }, verdict: 'plaintext', protocol: 'http/1.1', mesh: 'none', bytes: { toServer: 10, toClient: 20 }, evidence: 'e' },
  // A later line of the same flow (final totals) replaces the earlier one.
  { flowId: 'a', pod: 'ps-demo-web', intraPod: true, client: { ip: '127.0.0.1', port: 50000 }, server: { ip: '127.0.0.1', port: 8080 }, verdict: 'plaintext', protocol: 'http/1.1', mesh: 'none', bytes: { toServer: 78, toClient: 145 }, evidence: 'e' },
];

t.test('edges', async (t) => {
  const edges = buildEdges(flows, lines);
  t.equal(edges.length, 4, 'the loopback flow is not an external edge');
  const plain = edges.find((e) => e.port === 8080 && !e.intraPod)!;
  t.match(plain, { src: 'gateway', dst: 'web', verdict: 'plaintext', connections: 2, bytes: 600, flagged: true });
  const lo = edges.find((e) => e.intraPod)!;
  t.match(lo, { src: 'web', dst: 'web', port: 8080, verdict: 'plaintext', connections: 1, bytes: 223, flagged: false });
  t.match(edges.find((e) => e.port === 21000), { verdict: 'mtls', mesh: 'consul', tlsVersion: '1.2', sni: CONSUL_SNI, flagged: false });
  t.match(edges.find((e) => e.port === 443), { dst: 'external:198.19.80.80', dstLabel: 'external/api.example.com', verdict: 'tls' });
});

t.test('report and rendering', async (t) => {
  const edges = buildEdges(flows, lines);
  const cov = { rows: [], total: null };
  const r = report(edges, cov, { grpc: '127.0.0.1:50051' }, 20);
  const hops = r.scenarios.flatMap((s) => s.hops);
  t.equal(r.ok, false, 'scenarios without traffic are not ok');
  t.match(hops.find((h) => /plain HTTP/.test(h.hop) && h.edge.startsWith('gateway')), { ok: true });
  t.match(hops.find((h) => /Consul/.test(h.hop)), { ok: true });
  t.match(hops.find((h) => /web sidecar → web app/.test(h.hop)), { ok: true });
  t.match(hops.find((h) => /Istio mTLS/.test(h.hop)), { ok: false, observed: null });
  for (const width of [72, 100, 160]) {
    const live = renderLive(edges, cov, width, 12);
    t.match(live, /PLAINTEXT !/);
    t.match(live, /plain(text)? \(intra-pod\)/);
    t.ok(live.split('\n').every((l) => l.length <= width), `fits ${width} columns:\n${live}`);
  }
  t.match(renderReport(r, 120), /hop\(s\) did not get the expected verdict/);
});
