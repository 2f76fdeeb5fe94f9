// A stand-in for the aggregator's /metrics while no cluster feeds a real one: a prom-client
// Registry with INTERFACE.md's metric names and label sets, counters growing every 200 ms
// like a small cluster's (meshed shop, encrypted payments, a legacy namespace with
// plaintext egress and TLS 1.0, unknown traffic, WireGuard). Same names and labels as
// aggregator/src/metrics: dashboards and rules tested against it work on the real one.
//
//   const m = await FakeAggregatorMetrics.start(t);   // m.target = '127.0.0.1:PORT'

import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';

interface TapLike {
  teardown(fn: () => unknown): void;
}

const FLOW_LABELS = ['src_namespace', 'src_workload', 'dst_namespace', 'dst_workload', 'dst_port', 'verdict', 'protocol', 'mesh', 'tls_version'] as const;
type FlowLabels = Record<(typeof FLOW_LABELS)[number], string>;

/** [labels, bytes per tick, new flows per tick] */
export const FAKE_EDGES: readonly [FlowLabels, number, number][] = [
  [{ src_namespace: 'shop', src_workload: 'frontend', dst_namespace: 'shop', dst_workload: 'cart', dst_port: '8080', verdict: 'mtls', protocol: 'tls', mesh: 'istio', tls_version: '1.3' }, 10_000, 2],
  [{ src_namespace: 'shop', src_workload: 'frontend', dst_namespace: 'shop', dst_workload: 'catalog', dst_port: '8080', verdict: 'plaintext', protocol: 'http/1.1', mesh: 'none', tls_version: 'none' }, 1_000, 1],
  [{ src_namespace: 'shop', src_workload: 'frontend', dst_namespace: 'kube-system', dst_workload: 'coredns', dst_port: '53', verdict: 'plaintext', protocol: 'dns', mesh: 'none', tls_version: 'none' }, 100, 3],
  [{ src_namespace: 'payments', src_workload: 'api', dst_namespace: 'payments', dst_workload: 'db', dst_port: '5432', verdict: 'mtls', protocol: 'tls', mesh: 'linkerd', tls_version: '1.3' }, 5_000, 1],
  [{ src_namespace: 'payments', src_workload: 'api', dst_namespace: 'external', dst_workload: 'api.stripe.com', dst_port: '443', verdict: 'tls', protocol: 'tls', mesh: 'none', tls_version: '1.2' }, 2_000, 1],
  [{ src_namespace: 'legacy', src_workload: 'batch', dst_namespace: 'external', dst_workload: 'unknown', dst_port: '80', verdict: 'plaintext', protocol: 'http/1.1', mesh: 'none', tls_version: 'none' }, 3_000, 1],
  [{ src_namespace: 'legacy', src_workload: 'batch', dst_namespace: 'legacy', dst_workload: 'oldsoap', dst_port: '8443', verdict: 'tls', protocol: 'tls', mesh: 'none', tls_version: '1.0' }, 1_000, 1],
  [{ src_namespace: 'blobs', src_workload: 'indexer', dst_namespace: 'blobs', dst_workload: 'store', dst_port: '9000', verdict: 'unknown', protocol: 'unknown', mesh: 'none', tls_version: 'none' }, 1_000, 1],
  [{ src_namespace: 'blobs', src_workload: 'indexer', dst_namespace: 'blobs', dst_workload: 'store', dst_port: '9443', verdict: 'tls', protocol: 'tls', mesh: 'none', tls_version: '1.3' }, 1_000, 1],
  [{ src_namespace: 'vpn', src_workload: 'gateway', dst_namespace: 'external', dst_workload: 'unknown', dst_port: '51820', verdict: 'encrypted-other', protocol: 'wireguard', mesh: 'none', tls_version: 'none' }, 4_000, 1],
];

export class FakeAggregatorMetrics {
  private constructor(
    private readonly server: Server,
    private readonly timer: NodeJS.Timeout,
    readonly target: string,
  ) {}

  static async start(t: TapLike, tickMs = 200): Promise<FakeAggregatorMetrics> {
    const registry = new Registry();
    const registers = [registry];
    const flows = new Counter({ name: 'plainsight_flows_total', help: 'Connections seen, by edge and verdict.', labelNames: FLOW_LABELS, registers });
    const bytes = new Counter({ name: 'plainsight_bytes_total', help: 'Payload bytes (both directions), by edge and verdict.', labelNames: FLOW_LABELS, registers });
    const active = new Gauge({ name: 'plainsight_active_flows', help: 'Connections open now.', labelNames: ['src_namespace', 'dst_namespace', 'verdict'] as const, registers });
    const agents = new Gauge({ name: 'plainsight_agents_connected', help: 'Agents with an open ingest stream.', registers });
    const lost = new Counter({ name: 'plainsight_agent_lost_samples_total', help: 'Handshake samples agents could not read.', labelNames: ['node'] as const, registers });
    agents.set(3);
    for (const [l] of FAKE_EDGES) active.inc({ src_namespace: l.src_namespace, dst_namespace: l.dst_namespace, verdict: l.verdict });
    const tick = () => {
      for (const [l, b, f] of FAKE_EDGES) {
        bytes.inc(l, b);
        flows.inc(l, f);
      }
      lost.inc({ node: 'node-a' }, 5);
      lost.inc({ node: 'node-b' }, 0);
    };
    tick();
    const timer = setInterval(tick, tickMs);
    const server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (e: Error) => res.writeHead(500).end(e.message),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const a = server.address();
    const port = typeof a === 'object' && a ? a.port : 0;
    const m = new FakeAggregatorMetrics(server, timer, `127.0.0.1:${port}`);
    t.teardown(() => m.close());
    return m;
  }

  close(): Promise<void> {
    clearInterval(this.timer);
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
