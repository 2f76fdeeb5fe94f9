// Plaintext protocols, spoken by real clients and servers in two namespaces, captured on
// the server's veth, classified by the built CLI: HTTP/1.1 (byte-exact, and one 4-tuple
// used twice), h2c, gRPC over h2c, Redis (redis-server + redis-cli), DNS (Node's c-ares
// resolver). And the dangerous direction: plain HTTP on TLS/mesh ports, and high-entropy
// bytes with no protocol, must never be called encrypted.

import t from 'tap';
import { Lab, labSkipReason } from '../lab/lab.js';
import { connEvents, peerClient, peerServer, redisCli, startRedis } from '../lab/peers.js';
import { classifyOrFail, describe, oneFlow } from '../lab/plainsight.js';
import { conversations } from '../lab/tshark.js';

const skip = labSkipReason();

t.test('plaintext protocols from real peers', { skip }, async (t) => {
  const lab = await Lab.open(t, 'plain');
  const { client, server } = await lab.pair();
  const host = server.ip4;
  const cap = await lab.capture(server.ns, server.ifname, 'plain.pcap');

  // HTTP/1.1: a POST of a known size, a response of a known size, one connection.
  const REQUEST_BODY = 54_321;
  const RESPONSE_BODY = 123_456;
  const httpSrv = await peerServer(lab, server.ns, 'http-server', { port: 8080, responseBytes: RESPONSE_BODY });
  const [http] = await peerClient(lab, client.ns, 'http-client', { host, port: 8080, bodyBytes: REQUEST_BODY });

  // Two connections, one after the other, on the same 4-tuple (the client binds the same port).
  const REUSED = 40_000;
  const [reuse1] = await peerClient(lab, client.ns, 'http-client', { host, port: 8080, bodyBytes: 10, localPort: REUSED });
  const [reuse2] = await peerClient(lab, client.ns, 'http-client', { host, port: 8080, bodyBytes: 2000, localPort: REUSED });

  // h2c with prior knowledge: a plain GET, then a gRPC-style POST (content-type application/grpc).
  await peerServer(lab, server.ns, 'h2c-server', { port: 8081 });
  const [h2c] = await peerClient(lab, client.ns, 'h2c-client', { host, port: 8081 });
  const [grpc] = await peerClient(lab, client.ns, 'h2c-client', { host, port: 8081, grpc: true });

  // Redis: the real server and CLI.
  await startRedis(lab, server.ns, { hosts: [host], port: 6379 });
  const set = await redisCli(lab, client.ns, { host, port: 6379, args: ['SET', 'plainsight:lab', 'hello'] });
  const get = await redisCli(lab, client.ns, { host, port: 6379, args: ['GET', 'plainsight:lab'] });

  // DNS over UDP: a tiny responder, queried by a real resolver (c-ares in Node's dns.Resolver).
  await peerServer(lab, server.ns, 'dns-server', { port: 53, host });
  const [dns] = await peerClient(lab, client.ns, 'dns-client', { server: host, name: 'web.default.svc.cluster.local' });

  // The dangerous error is calling plaintext encrypted: plain HTTP on the ports TLS and
  // meshes use, and high-entropy bytes with no protocol (TCP on 443, UDP on 443).
  const tlsPorts = [443, 15008, 4143];
  const onTlsPorts: Record<number, number> = {};
  for (const port of tlsPorts) {
    await peerServer(lab, server.ns, 'http-server', { port, responseBytes: 100 });
    onTlsPorts[port] = (await peerClient(lab, client.ns, 'http-client', { host, port, bodyBytes: 10 }))[0]?.localPort ?? 0;
  }
  await peerServer(lab, server.ns, 'raw-server', { port: 8443, seed: 'tcp' });
  await peerClient(lab, client.ns, 'raw-client', { host, port: 8443, seed: 'tcp' });
  await peerServer(lab, server.ns, 'raw-server', { port: 443, proto: 'udp', host, seed: 'udp' });
  await peerClient(lab, client.ns, 'raw-client', { host, port: 443, proto: 'udp', seed: 'udp' });

  await cap.stop();

  t.equal(set, 'OK', 'redis SET answered');
  t.equal(get, 'hello', 'redis GET answered');
  t.same(dns?.addrs, ['198.18.0.53'], 'resolver got the answer');
  t.ok(http && h2c && grpc && reuse1 && reuse2, 'all clients completed');
  if (!http || !h2c || !grpc || !reuse1 || !reuse2) return;

  const oracle = await conversations(cap.file);
  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;

  t.test('HTTP/1.1 → plaintext http/1.1, byte counters exact', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8080, clientPort: http.localPort }, 'http');
    if (!f) return;
    t.match(f, { transport: 'tcp', verdict: 'plaintext', protocol: 'http/1.1', mesh: 'none' }, describe(f));
    t.match(f, { client: { ip: client.ip4, port: http.localPort }, server: { ip: host, port: 8080 } }, 'client is the SYN sender');
    const srv = connEvents(httpSrv).find((c) => c.remotePort === http.localPort);
    // Both peers' socket counters agree, and the classifier's L4 payload counters equal them.
    t.equal(f.bytes.toServer, http.bytesWritten, 'bytes.toServer = what the client wrote');
    t.equal(f.bytes.toClient, http.bytesRead, 'bytes.toClient = what the client read');
    t.equal(srv?.bytesRead, http.bytesWritten, '(server read what the client wrote)');
    t.ok(Number(http.bytesWritten) > REQUEST_BODY && Number(http.bytesRead) > RESPONSE_BODY, '(counts include the bodies)');
    const conv = oracle.find((c) => c.transport === 'tcp' && c.server.port === 8080 && c.client.port === http.localPort);
    t.same(f.bytes, conv?.bytes, 'bytes agree with tshark');
    t.same(f.packets, conv?.packets, 'packets agree with tshark (all packets of the flow, SYN and ACKs included)');
    t.notMatch(f.evidence, /upload|aaaa/, 'evidence carries no path or body');
  });

  t.test('one 4-tuple used twice → two flows, each with its own bytes', async (t) => {
    const fs = out.flows.filter((f) => f.transport === 'tcp' && f.server.port === 8080 && f.client.port === REUSED);
    t.equal(fs.length, 2, 'two flows');
    for (const f of fs) t.match(f, { verdict: 'plaintext', protocol: 'http/1.1' }, describe(f));
    const byBytes = (b: { toServer: unknown; toClient: unknown }[]) => b.map((x) => `${x.toServer}/${x.toClient}`).sort();
    t.same(byBytes(fs.map((f) => f.bytes)), byBytes([reuse1, reuse2].map((r) => ({ toServer: r.bytesWritten, toClient: r.bytesRead }))), 'each flow has its own connection\'s bytes');
  });

  t.test('h2c → plaintext h2c', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8081, clientPort: h2c.localPort }, 'h2c');
    if (!f) return;
    t.match(f, { verdict: 'plaintext', protocol: 'h2c', mesh: 'none' }, describe(f));
  });

  t.test('gRPC over h2c → plaintext grpc', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8081, clientPort: grpc.localPort }, 'grpc');
    if (!f) return;
    t.equal(f.verdict, 'plaintext', describe(f));
    // Node (nghttp2) HPACK-encodes "content-type: application/grpc" with Huffman coding:
    // detecting grpc needs the classifier to decode it.
    t.equal(f.protocol, 'grpc', `content-type application/grpc (HPACK, Huffman-coded by nghttp2): ${describe(f)}`);
  });

  t.test('Redis → plaintext redis', async (t) => {
    const fs = out.flows.filter((f) => f.transport === 'tcp' && f.server.port === 6379);
    t.equal(fs.length, 2, 'two redis-cli connections');
    for (const f of fs) t.match(f, { verdict: 'plaintext', protocol: 'redis', mesh: 'none' }, describe(f));
  });

  t.test('DNS over UDP → plaintext dns', async (t) => {
    const f = oneFlow(t, out, { serverPort: 53, transport: 'udp' }, 'dns');
    if (!f) return;
    t.match(f, { transport: 'udp', verdict: 'plaintext', protocol: 'dns', client: { ip: client.ip4 }, server: { ip: host } }, describe(f));
    const conv = oracle.find((c) => c.transport === 'udp' && c.server.port === 53);
    t.same(f.bytes, conv?.bytes, 'UDP payload bytes agree with tshark');
  });

  t.test('plain HTTP on TLS and mesh ports stays plaintext', async (t) => {
    for (const port of tlsPorts) {
      const f = oneFlow(t, out, { serverPort: port, clientPort: onTlsPorts[port] }, `http on ${port}`);
      if (f) t.match(f, { verdict: 'plaintext', protocol: 'http/1.1', mesh: 'none' }, `port ${port}: ${describe(f)}`);
    }
  });

  t.test('high-entropy bytes without a protocol are unknown, never encrypted', async (t) => {
    const tcp = oneFlow(t, out, { serverPort: 8443 }, 'noise over tcp');
    if (tcp) t.equal(tcp.verdict, 'unknown', `TCP noise on 8443: ${describe(tcp)}`);
    const udp = oneFlow(t, out, { serverPort: 443, transport: 'udp' }, 'noise over udp');
    if (udp) t.equal(udp.verdict, 'unknown', `UDP noise on 443: ${describe(udp)}`);
  });

  t.test('summary adds up', async (t) => {
    t.equal(out.summary.flows, out.flows.length, 'summary.flows');
    const byVerdict: Record<string, number> = {};
    for (const f of out.flows) byVerdict[f.verdict] = (byVerdict[f.verdict] ?? 0) + 1;
    t.same(Object.fromEntries(Object.entries(out.summary.byVerdict).filter(([, n]) => n > 0)), byVerdict, 'summary.byVerdict');
    t.notOk(out.flows.some((f) => f.transport === 'tcp' && ['tls', 'mtls', 'encrypted-other'].includes(f.verdict)), 'nothing here is called encrypted');
  });
});
