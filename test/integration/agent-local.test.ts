// The real agent (`plainsight agent --mode local --output jsonl`, a child process) on a
// small node: pods (netns) on a root-namespace bridge, real servers and clients between
// them. Per flow: verdict, protocol, TLS details, pod/peerPod, and byte counters equal to
// what the peers' sockets moved — seen once at each end (client pod's veth, server pod's
// veth). Then: many short connections, port reuse, IPv6, intra-pod loopback, a pod added
// and removed while running, /metrics and /healthz, and a clean stop that leaves no hook.
// Needs root and eBPF; skips with the reason otherwise.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { labCerts } from '../lab/certs.js';
import { Lab } from '../lab/lab.js';
import { peerClient, peerServer, redisCli, startRedis } from '../lab/peers.js';
import { cliMissingReason } from '../lab/plainsight.js';
import { BPF_TCX_EGRESS, BPF_TCX_INGRESS, progQuery } from '../../agent/src/bpf/libbpf.js';
import { AgentProcess, LabNode, bpfSkipReason, client, fastArgs, finals, server, type FlowLine } from '../lab/agent-lab.js';

const skip = bpfSkipReason() ?? cliMissingReason();

function show(l: FlowLine | undefined): string {
  if (!l) return '(none)';
  const { pod, peerPod, client: c, server: s, verdict, protocol, tls, mesh, bytes, evidence, intraPod } = l;
  return JSON.stringify({ pod, peerPod, c, s, verdict, protocol, tls, mesh, bytes, intraPod, evidence });
}

t.test('agent --mode local on a small node', { skip }, async (t) => {
  const lab = await Lab.open(t, 'agent');
  const node = await LabNode.create(t, lab, 3);
  const [web, app, db] = node.pods as [typeof node.pods[0], typeof node.pods[0], typeof node.pods[0]];
  const certs = await labCerts({ serverSans: ['DNS:web.default.svc.cluster.local'] });
  const agent = await AgentProcess.start(t, fastArgs(node.glob));
  const started = agent.usage();

  /** The final line of one connection at one pod, exactly one. */
  const oneAt = async (pod: string, port: number, clientPort: number, transport = 'tcp'): Promise<FlowLine> => {
    const lines = await agent.waitFlows((ls) => finals(ls, { pod, port, clientPort, transport }).length > 0, 15_000, `final line at ${pod} for ${transport}/${port} from ${clientPort}`);
    const f = finals(lines, { pod, port, clientPort, transport });
    t.equal(f.length, 1, `one final line at ${pod} for ${transport}/${port} from port ${clientPort}`);
    return f[0]!;
  };

  /** The same connection at the client's pod and at the server's pod. */
  const bothEnds = async (clientPod: string, serverPod: string, port: number, clientPort: number, transport = 'tcp') => {
    const c = await oneAt(clientPod, port, clientPort, transport);
    const s = await oneAt(serverPod, port, clientPort, transport);
    t.equal(c.peerPod, serverPod, 'client side: peerPod is the server pod');
    t.equal(s.peerPod, clientPod, 'server side: peerPod is the client pod');
    t.same(c.bytes, s.bytes, 'both ends counted the same bytes');
    t.equal(c.countersComplete, true);
    t.equal(c.intraPod, false);
    return c;
  };

  await t.test('HTTP/1.1 (node http): plaintext, exact bytes', async (t) => {
    await peerServer(lab, web.ns, 'http-server', { port: 8080, responseBytes: 7000 });
    const [r] = await peerClient(lab, app.ns, 'http-client', { host: web.ip4, port: 8080, bodyBytes: 30_000 });
    const f = await bothEnds(app.name, web.name, 8080, r!.localPort);
    t.match(f, { verdict: 'plaintext', protocol: 'http/1.1', client: { ip: app.ip4 }, server: { ip: web.ip4 } }, show(f));
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead }, 'bytes = what the client socket wrote / read');
    t.ok(f.packets.toServer >= Math.ceil(30_000 / 1448), `packets up: ${f.packets.toServer}`);
  });

  await t.test('TLS 1.3 with a client certificate and Istio-like ALPN/SNI: mtls, mesh istio', async (t) => {
    const srv = await server(lab, web.ns, 'tls-server', { port: 8443, cert: certs.server.cert, key: certs.server.key, ca: certs.server.ca, requestCert: true, alpn: ['istio-peer-exchange', 'istio'] });
    const sni = 'outbound_.8443_._.web.default.svc.cluster.local';
    const [r] = await client(lab, app.ns, 'tls-client', { host: web.ip4, port: 8443, servername: sni, checkHostname: false, alpn: ['istio-peer-exchange', 'istio'], cert: certs.client.cert, key: certs.client.key, ca: certs.client.ca });
    t.match(r, { protocol: 'TLSv1.3', alpn: 'istio-peer-exchange' }, '(the handshake happened as asked)');
    const f = await bothEnds(app.name, web.name, 8443, r!.localPort!);
    t.match(f, { verdict: 'mtls', protocol: 'tls', mesh: 'istio', tls: { version: '1.3', sni, alpn: ['istio-peer-exchange', 'istio'] } }, show(f));
    t.equal(f.tls?.cipher, r!.cipher, 'negotiated cipher');
    t.ok(f.tls?.ja4?.startsWith('t13d'), `ja4 ${f.tls?.ja4}`);
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead }, 'bytes = raw socket bytes (handshake included)');
    await srv.waitFor('stdout', /"conn"/);
    t.match(srv.events()[1], { peerCertificate: true }, '(the server got the client certificate)');
  });

  await t.test('TLS 1.2 with a client certificate: mtls observed', async (t) => {
    await server(lab, web.ns, 'tls-server', { port: 8444, cert: certs.server.cert, key: certs.server.key, ca: certs.server.ca, requestCert: true, maxVersion: 'TLSv1.2' });
    const [r] = await client(lab, app.ns, 'tls-client', { host: web.ip4, port: 8444, servername: 'web.default.svc.cluster.local', cert: certs.client.cert, key: certs.client.key, ca: certs.client.ca });
    const f = await bothEnds(app.name, web.name, 8444, r!.localPort!);
    t.match(f, { verdict: 'mtls', protocol: 'tls', mesh: 'none', tls: { version: '1.2', sni: 'web.default.svc.cluster.local', clientCertificate: 'observed' } }, show(f));
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead });
  });

  await t.test('TLS 1.3 without a client certificate: tls', async (t) => {
    await server(lab, web.ns, 'tls-server', { port: 8445, cert: certs.server.cert, key: certs.server.key, ca: certs.server.ca, alpn: ['h2', 'http/1.1'] });
    const [r] = await client(lab, app.ns, 'tls-client', { host: web.ip4, port: 8445, servername: 'web.default.svc.cluster.local', alpn: ['h2', 'http/1.1'], ca: certs.server.ca });
    const f = await bothEnds(app.name, web.name, 8445, r!.localPort!);
    t.match(f, { verdict: 'tls', protocol: 'tls', mesh: 'none', tls: { version: '1.3', alpn: ['h2', 'http/1.1'], clientCertificate: 'none' } }, show(f));
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead });
  });

  await t.test('redis-server + redis-cli: plaintext redis', async (t) => {
    await startRedis(lab, db.ns, { hosts: [db.ip4], port: 6379 });
    const out = await redisCli(lab, app.ns, { host: db.ip4, port: 6379, args: ['SET', 'plainsight', 'visible'] });
    t.equal(out, 'OK');
    const lines = await agent.waitFlows((ls) => finals(ls, { pod: db.name, port: 6379 }).length > 0 && finals(ls, { pod: app.name, port: 6379 }).length > 0, 15_000);
    const [atDb] = finals(lines, { pod: db.name, port: 6379 });
    const [atApp] = finals(lines, { pod: app.name, port: 6379 });
    t.match(atDb, { verdict: 'plaintext', protocol: 'redis', peerPod: app.name }, show(atDb));
    // *3\r\n$3\r\nSET\r\n$10\r\nplainsight\r\n$7\r\nvisible\r\n  →  +OK\r\n
    const request = '*3\r\n$3\r\nSET\r\n$10\r\nplainsight\r\n$7\r\nvisible\r\n';
    t.same(atDb?.bytes, { toServer: request.length, toClient: 5 }, 'RESP request and +OK, byte for byte');
    t.same(atApp?.bytes, atDb?.bytes, 'same at the client pod');
  });

  await t.test('UDP: DNS queries and answers, datagrams counted exactly', async (t) => {
    await peerServer(lab, db.ns, 'dns-server', { port: 5353, host: '::' });
    const datagrams = ['web.default.svc.cluster.local', 'db.default.svc.cluster.local', 'api.default.svc.cluster.local'].map((n, i) => dnsQuery(0x4200 + i, n).toString('hex'));
    const [r] = await client(lab, app.ns, 'udp-client', { host: db.ip4, port: 5353, datagrams });
    const f = await bothEnds(app.name, db.name, 5353, r!.localPort!, 'udp');
    t.match(f, { verdict: 'plaintext', protocol: 'dns', transport: 'udp' }, show(f));
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead }, 'bytes = what the client sent and received');
    t.same(f.packets, { toServer: 3, toClient: 3 });
  });

  await t.test('IPv6', async (t) => {
    await peerServer(lab, web.ns, 'http-server', { port: 8086, responseBytes: 1234 });
    const [r] = await peerClient(lab, app.ns, 'http-client', { host: web.ip6, port: 8086, bodyBytes: 4321 });
    const f = await bothEnds(app.name, web.name, 8086, r!.localPort);
    t.match(f, { verdict: 'plaintext', protocol: 'http/1.1', client: { ip: app.ip6 }, server: { ip: web.ip6 } }, show(f));
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead });
  });

  await t.test('many short connections: as many flows, each counted exactly', async (t) => {
    const N = 150;
    await server(lab, web.ns, 'tcp-server', { port: 8090, http: true });
    const rs = await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8090, http: true, count: N, parallel: 10 });
    t.equal(rs.length, N);
    const lines = await agent.waitFlows((ls) => finals(ls, { pod: web.name, port: 8090 }).length >= N && finals(ls, { pod: app.name, port: 8090 }).length >= N, 20_000, `${N} flows at both ends`);
    for (const pod of [web.name, app.name]) {
      const fs = finals(lines, { pod, port: 8090 });
      t.equal(fs.length, N, `${N} final lines at ${pod}`);
      t.equal(new Set(fs.map((f) => f.client.port)).size, N, 'one per client port');
      const byPort = new Map(rs.map((r) => [r.localPort, r]));
      const exact = fs.filter((f) => {
        const r = byPort.get(f.client.port);
        return r && f.bytes.toServer === r.bytesWritten && f.bytes.toClient === r.bytesRead;
      });
      t.equal(exact.length, N, 'every flow: bytes = what its client socket moved');
      t.equal(fs.filter((f) => f.verdict === 'plaintext' && f.protocol === 'http/1.1').length, N, 'every flow classified http/1.1');
    }
  });

  await t.test('port reuse: one 4-tuple, several connections, as many flows', async (t) => {
    const CONNS = 5;
    await server(lab, web.ns, 'tcp-server', { port: 8091, expect: 100, reply: 10 });
    const localPort = randomPort();
    const rs = await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8091, bytes: 100, count: CONNS, localPort, gapMs: 600 });
    t.equal(rs.length, CONNS);
    const lines = await agent.waitFlows((ls) => finals(ls, { pod: web.name, port: 8091, clientPort: localPort }).length >= CONNS, 15_000);
    const fs = finals(lines, { pod: web.name, port: 8091, clientPort: localPort });
    t.equal(fs.length, CONNS, `${CONNS} flows for one 4-tuple`);
    t.equal(new Set(fs.map((f) => f.flowId)).size, CONNS, 'distinct flow ids');
    t.ok(fs.every((f) => f.bytes.toServer === 100 && f.bytes.toClient === 10), `each counted alone: ${fs.map((f) => `${f.bytes.toServer}/${f.bytes.toClient}`).join(' ')}`);
  });

  await t.test('loopback inside a pod: intra-pod, labelled, not mixed with the veth', async (t) => {
    await server(lab, db.ns, 'tcp-server', { port: 7070, http: true });
    const [r] = await client(lab, db.ns, 'tcp-client', { host: '127.0.0.1', port: 7070, http: true });
    const f = await oneAt(db.name, 7070, r!.localPort!);
    t.match(f, { intraPod: true, peerPod: db.name, verdict: 'plaintext', protocol: 'http/1.1', interface: `${db.name}/lo` }, show(f));
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead }, 'counted once (AF_PACKET sees loopback twice)');
  });

  await t.test('a pod added, then removed, while the agent runs', async (t) => {
    const late = await node.addPod();
    // A rescan may find the namespace before its veth exists (then a socket filter on eth0,
    // "pod interfaces changed" once the host peer appears): either way, a tc hook in the end.
    await agent.waitLog((l) => (l.msg === 'pod attached' || l.msg === 'pod interfaces changed') && l.pod === late.name && (l.hooks as string[]).some((h) => h.startsWith('tc/')), 10_000);
    t.pass('new namespace picked up and attached');
    await peerServer(lab, web.ns, 'http-server', { port: 8087, responseBytes: 100 });
    const [r] = await peerClient(lab, late.ns, 'http-client', { host: web.ip4, port: 8087, bodyBytes: 200 });
    const f = await bothEnds(late.name, web.name, 8087, r!.localPort);
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead });

    await lab.run(late.ns, ['true']); // nothing left running inside
    await new Promise((r) => setTimeout(r, 200));
    execFileSync('ip', ['netns', 'del', late.name]);
    await agent.waitLog((l) => l.msg === 'namespace gone: pod detached' && l.pod === late.name, 10_000);
    t.pass('vanished namespace detached');
    // Its loopback socket was closed, so the kernel can tear the namespace (and the veth) down.
    await waitFor(() => !hostLinkExists(late.hostIf), 10_000);
    t.notOk(hostLinkExists(late.hostIf), 'host veth gone with the namespace (no reference kept)');
    t.ok(agent.running, 'agent still running');
    const [r2] = await peerClient(lab, app.ns, 'http-client', { host: web.ip4, port: 8087, bodyBytes: 10 });
    await bothEnds(app.name, web.name, 8087, r2!.localPort);
  });

  await t.test('/metrics and /healthz', async (t) => {
    const text = await agent.metrics();
    for (const name of [
      'plainsight_agent_flows_tracked',
      'plainsight_agent_lost_samples_total',
      'plainsight_agent_attach_failures_total',
      'plainsight_agent_map_fill_ratio',
      'plainsight_agent_classify_seconds_bucket',
      'plainsight_agent_evictions_total',
      'plainsight_agent_event_loop_lag_seconds',
    ]) {
      t.match(text, new RegExp(`^${name}`, 'm'), name);
    }
    t.match(text, /^plainsight_agent_lost_samples_total 0$/m, 'no sample lost');
    t.match(text, /^plainsight_agent_evictions_total 0$/m, 'no eviction');
    const count = Number(/^plainsight_agent_classify_seconds_count (\d+)/m.exec(text)?.[1]);
    t.ok(count >= 300, `classifications timed: ${count}`);
    t.match(text, /^plainsight_agent_attachments\{kind="tcx"\} 6$/m, 'three pods × two TCX hooks');
    t.match(text, /^plainsight_agent_pods 3$/m);
    const h = await fetch(`http://127.0.0.1:${agent.metricsPort}/healthz`);
    t.equal(h.status, 200);
  });

  await t.test('SIGTERM: clean stop, final lines, nothing left attached', async (t) => {
    const u = agent.usage();
    t.comment(`agent during the tests: ${(u.cpuSeconds - started.cpuSeconds).toFixed(2)} s CPU, RSS ${u.rssMiB.toFixed(0)} MiB (peak ${u.peakRssMiB.toFixed(0)} MiB), ${agent.flows().length} lines`);
    const info = await agent.stop('SIGTERM');
    t.same(info, { code: 0, signal: null }, 'exit 0');
    t.ok(agent.logs().some((l) => l.msg === 'agent stopped'), 'logged its stop');
    const lines = agent.flows();
    const ids = new Set(lines.map((l) => l.flowId));
    const finalIds = new Set(lines.filter((l) => l.final).map((l) => l.flowId));
    t.equal(finalIds.size, ids.size, 'every flow got its final line');
    t.equal(lines.filter((l) => l.final).length, finalIds.size, 'exactly one final line per flow');
    for (const p of node.pods.filter((p) => hostLinkExists(p.hostIf))) {
      t.same([...progQuery(p.hostIfindex, BPF_TCX_INGRESS), ...progQuery(p.hostIfindex, BPF_TCX_EGRESS)], [], `no TCX program left on ${p.hostIf}`);
    }
  });
});

/** A DNS query (RD set) for an A record. */
function dnsQuery(id: number, name: string): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

function randomPort(): number {
  return 40_000 + Math.floor(Math.random() * 20_000);
}

function hostLinkExists(ifname: string): boolean {
  return existsSync(`/sys/class/net/${ifname}`);
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}
