// Service-mesh handshakes, reproduced with node:tls exactly as each mesh shapes them on the
// wire (ALPN, SNI, port, client certificate with a SPIFFE identity), plus a control: TLS
// to a cluster-local name without any mesh's ALPN or client certificate is not a mesh;
// and look-alikes (a mesh's ALPN/SNI/port, but provably no client certificate) are not mtls.

import t from 'tap';
import { labCert, labCerts } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { peerClient, peerServer, serverTls } from '../lab/peers.js';
import { classifyOrFail, describe, oneFlow } from '../lab/plainsight.js';

const skip = labSkipReason();

const ISTIO_SNI = 'outbound_.8000_._.httpbin.default.svc.cluster.local';
const LINKERD_SNI = 'default.default.serviceaccount.identity.linkerd.cluster.local';
const CONSUL_SNI = 'web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul';

t.test('mesh handshakes', { skip }, async (t) => {
  const lab = await Lab.open(t, 'mesh');
  const { client, server } = await lab.pair();
  const certs = await labCerts();
  const workload = await labCert({ cn: 'sleep', usage: 'client', sans: ['URI:spiffe://cluster.local/ns/default/sa/sleep'] });
  const host = server.ip4;
  const srv = { ...serverTls(certs.server), requestCert: true, rejectUnauthorized: true };
  const cli = { host, ca: certs.server.ca, checkHostname: false, cert: workload.cert, key: workload.key };
  const cap = await lab.capture(server.ns, server.ifname, 'mesh.pcap');

  // Istio sidecar → sidecar: to the pod's port (8000), ALPN istio-peer-exchange/istio, SNI outbound_.….
  await peerServer(lab, server.ns, 'tls-server', { port: 8000, ...srv, alpn: ['istio-peer-exchange', 'istio'] });
  const [istio] = await peerClient(lab, client.ns, 'tls-client', { ...cli, port: 8000, servername: ISTIO_SNI, alpn: ['istio-peer-exchange', 'istio'] });
  // Control: an app's own TLS to a cluster-local name, ALPN h2, no client certificate — no mesh.
  await peerServer(lab, server.ns, 'tls-server', { port: 8001, ...serverTls(certs.server), alpn: ['h2'] });
  const [control] = await peerClient(lab, client.ns, 'tls-client', { host, port: 8001, ca: certs.server.ca, checkHostname: false, servername: 'httpbin.default.svc.cluster.local', alpn: ['h2'] });

  // Istio ambient (ztunnel HBONE): port 15008, ALPN h2, mutual TLS.
  await peerServer(lab, server.ns, 'tls-server', { port: 15008, ...srv, alpn: ['h2'] });
  const [ambient] = await peerClient(lab, client.ns, 'tls-client', { ...cli, port: 15008, servername: 'httpbin.default.svc.cluster.local', alpn: ['h2'] });

  // Linkerd proxy → proxy: inbound port 4143, ALPN transport.l5d.io/v1, identity SNI.
  await peerServer(lab, server.ns, 'tls-server', { port: 4143, ...srv, alpn: ['transport.l5d.io/v1'] });
  const [linkerd] = await peerClient(lab, client.ns, 'tls-client', { ...cli, port: 4143, servername: LINKERD_SNI, alpn: ['transport.l5d.io/v1'] });

  // Consul Connect (Envoy): public listener, SNI <svc>.<ns>.<dc>.internal.<trust-domain>.consul, TLS 1.2 here.
  await peerServer(lab, server.ns, 'tls-server', { port: 21000, ...srv });
  const [consul] = await peerClient(lab, client.ns, 'tls-client', { ...cli, port: 21000, servername: CONSUL_SNI, maxVersion: 'TLSv1.2' });

  await cap.stop();
  t.ok(istio && control && ambient && linkerd && consul, 'mesh clients completed');
  if (!istio || !control || !ambient || !linkerd || !consul) return;
  t.match(istio, { alpn: 'istio-peer-exchange', protocol: 'TLSv1.3' }, '(istio: server selected istio-peer-exchange)');
  t.match(linkerd, { alpn: 'transport.l5d.io/v1' }, '(linkerd: transport ALPN selected)');

  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;

  t.test('Istio sidecar', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8000, clientPort: istio.localPort }, 'istio');
    if (!f) return;
    t.match(f, { verdict: 'mtls', mesh: 'istio', tls: { version: '1.3', sni: ISTIO_SNI } }, describe(f));
    t.same(f.tls?.alpn, ['istio-peer-exchange', 'istio'], 'ALPN offered');
  });

  t.test('control: cluster-local SNI, ALPN h2, no client cert → tls, no mesh', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8001 }, 'control');
    if (f) t.match(f, { verdict: 'tls', mesh: 'none', tls: { sni: 'httpbin.default.svc.cluster.local', clientCertificate: 'none' } }, describe(f));
  });

  t.test('Istio ambient (HBONE)', async (t) => {
    const f = oneFlow(t, out, { serverPort: 15008 }, 'ambient');
    if (f) t.match(f, { verdict: 'mtls', mesh: 'istio-ambient', tls: { version: '1.3', alpn: ['h2'] } }, describe(f));
  });

  t.test('Linkerd', async (t) => {
    const f = oneFlow(t, out, { serverPort: 4143 }, 'linkerd');
    if (f) t.match(f, { verdict: 'mtls', mesh: 'linkerd', tls: { sni: LINKERD_SNI, alpn: ['transport.l5d.io/v1'] } }, describe(f));
  });

  t.test('Consul Connect', async (t) => {
    const f = oneFlow(t, out, { serverPort: 21000 }, 'consul');
    if (f) t.match(f, { verdict: 'mtls', mesh: 'consul', tls: { version: '1.2', sni: CONSUL_SNI, clientCertificate: 'observed' } }, describe(f));
  });

  t.test('mesh look-alikes without a client certificate are not mtls', async (t) => {
    // Same ALPN/SNI/ports, but the servers never ask for a certificate (TLS 1.2: no
    // CertificateRequest at all; TLS 1.3: the client's second flight is a lone Finished).
    // The handshake proves there is no client authentication, so "mtls" would overclaim.
    const look = await lab.pair();
    const lcap = await lab.capture(look.server.ns, look.server.ifname, 'lookalike.pcap');
    const noAuth = { ...serverTls(certs.server) };
    const anon = { host: look.server.ip4, ca: certs.server.ca, checkHostname: false };
    const runs: Array<[string, number, Record<string, unknown>, Record<string, unknown>]> = [
      ['istio', 8000, { alpn: ['istio-peer-exchange', 'istio'] }, { servername: ISTIO_SNI, alpn: ['istio-peer-exchange', 'istio'] }],
      ['istio-ambient', 15008, { alpn: ['h2'] }, { servername: 'httpbin.default.svc.cluster.local', alpn: ['h2'] }],
      ['linkerd', 4143, { alpn: ['transport.l5d.io/v1'] }, { servername: LINKERD_SNI, alpn: ['transport.l5d.io/v1'] }],
      ['consul', 21000, {}, { servername: CONSUL_SNI, maxVersion: 'TLSv1.2' }],
    ];
    for (const [, port, so, co] of runs) {
      await peerServer(lab, look.server.ns, 'tls-server', { port, ...noAuth, ...so });
      await peerClient(lab, look.client.ns, 'tls-client', { ...anon, port, ...co });
    }
    await lcap.stop();
    const lout = await classifyOrFail(t, [lcap.file]);
    if (!lout) return;
    for (const [mesh, port] of runs) {
      const f = oneFlow(t, lout, { serverPort: port }, `${mesh} look-alike`);
      if (!f) continue;
      t.equal(f.tls?.clientCertificate, 'none', `${mesh} look-alike: the handshake shows no client certificate`);
      t.equal(f.verdict, 'tls', `${mesh} look-alike on ${port}: verdict tls, not mtls, when clientCertificate is none: ${describe(f)}`);
    }
  });
});
