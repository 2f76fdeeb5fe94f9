// Mutual TLS from three real stacks — node:tls, the openssl CLI, nginx (ssl_verify_client
// on) with curl — in TLS 1.2 (client Certificate visible: "observed") and TLS 1.3 (client
// Certificate encrypted: "inferred" from the client's second flight), plus the TLS 1.3
// case where the server asks and the client has nothing to give (plain "tls", "none").

import t from 'tap';
import { labCerts } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { connEvents, curl, opensslClient, opensslServer, peerClient, peerServer, serverTls, startNginx } from '../lab/peers.js';
import { classifyOrFail, describe, oneFlow } from '../lab/plainsight.js';

const skip = labSkipReason();

t.test('client certificates, TLS 1.2 and 1.3, three stacks', { skip }, async (t) => {
  const lab = await Lab.open(t, 'mtls');
  const { client, server } = await lab.pair();
  const certs = await labCerts();
  const host = server.ip4;
  const ca = certs.server.ca;
  const clientCert = { cert: certs.client.cert, key: certs.client.key };
  const cap = await lab.capture(server.ns, server.ifname, 'mtls.pcap');

  // node:tls. requestCert + rejectUnauthorized: the handshake fails without a valid client cert.
  const s12 = await peerServer(lab, server.ns, 'tls-server', { port: 8450, ...serverTls(certs.server), requestCert: true, rejectUnauthorized: true, maxVersion: 'TLSv1.2' });
  const [n12] = await peerClient(lab, client.ns, 'tls-client', { host, port: 8450, ca, servername: 'server.lab', ...clientCert });
  const s13 = await peerServer(lab, server.ns, 'tls-server', { port: 8451, ...serverTls(certs.server), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
  const [n13] = await peerClient(lab, client.ns, 'tls-client', { host, port: 8451, ca, servername: 'server.lab', ...clientCert });
  // TLS 1.3, the server asks (CertificateRequest), the client has no certificate; the server lets it in.
  const s13none = await peerServer(lab, server.ns, 'tls-server', { port: 8452, ...serverTls(certs.server), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
  const [n13none] = await peerClient(lab, client.ns, 'tls-client', { host, port: 8452, ca, servername: 'server.lab' });

  // Session resumption after an mTLS handshake: the resumed handshakes carry no certificate.
  const s13r = await peerServer(lab, server.ns, 'tls-server', { port: 8453, ...serverTls(certs.server), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
  const r13 = await peerClient(lab, client.ns, 'tls-client', { host, port: 8453, ca, servername: 'server.lab', ...clientCert, resume: true, count: 3 });
  await peerServer(lab, server.ns, 'tls-server', { port: 8454, ...serverTls(certs.server), requestCert: true, rejectUnauthorized: true, maxVersion: 'TLSv1.2' });
  const r12 = await peerClient(lab, client.ns, 'tls-client', { host, port: 8454, ca, servername: 'server.lab', ...clientCert, resume: true, count: 3 });

  // openssl s_server -Verify 1 (client certificate required) / s_client -cert.
  await opensslServer(lab, server.ns, { host, port: 9450, certs: certs.server, version: '1.3', clientAuth: 'require' });
  await opensslClient(lab, client.ns, { host, port: 9450, servername: 'server.lab', ca, version: '1.3', cert: certs.client });
  await opensslServer(lab, server.ns, { host, port: 9451, certs: certs.server, version: '1.2', clientAuth: 'require' });
  await opensslClient(lab, client.ns, { host, port: 9451, servername: 'server.lab', ca, version: '1.2', cert: certs.client });

  // nginx, ssl_verify_client on; curl with a client certificate, TLS 1.3 then TLS 1.2.
  await startNginx(lab, server.ns, { listen: [host], port: 8460, certs: certs.server, verifyClient: true });
  const curlArgs = ['--cacert', ca, '--cert', certs.client.cert, '--key', certs.client.key, '--resolve', `server.lab:8460:${host}`, '-w', '\n%{local_port}', 'https://server.lab:8460/'];
  // curl prints the body ("ok") then, from -w, its local port on the last line.
  const bodyAndPort = (s: string) => [s.trim().split('\n')[0], s.trim().split('\n').at(-1)] as const;
  const c13 = bodyAndPort(await curl(lab, client.ns, ['--tlsv1.3', ...curlArgs]));
  const c12 = bodyAndPort(await curl(lab, client.ns, ['--tlsv1.2', '--tls-max', '1.2', ...curlArgs]));

  await cap.stop();

  t.ok(n12 && n13 && n13none, 'node clients completed');
  if (!n12 || !n13 || !n13none) return;
  t.match(connEvents(s12)[0], { protocol: 'TLSv1.2', authorized: true, peerCertificate: true }, '(node 1.2 server verified the client cert)');
  t.match(connEvents(s13)[0], { protocol: 'TLSv1.3', authorized: true, peerCertificate: true }, '(node 1.3 server verified the client cert)');
  t.match(connEvents(s13none)[0], { protocol: 'TLSv1.3', peerCertificate: false }, '(node 1.3 server got no client cert)');
  t.same(r13.map((r) => r.resumed), [false, true, true], '(TLS 1.3: first handshake full, then PSK resumption)');
  t.same(r12.map((r) => r.resumed), [false, true, true], '(TLS 1.2: first handshake full, then resumption)');
  t.equal(connEvents(s13r).length, 3, '(the TLS 1.3 server accepted all three)');
  t.equal(c13[0], 'ok', '(nginx answered curl over TLS 1.3 with a client cert)');
  t.equal(c12[0], 'ok', '(nginx answered curl over TLS 1.2 with a client cert)');

  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;

  const expect = (what: string, sel: { serverPort: number; clientPort?: number }, shape: Record<string, unknown>) =>
    t.test(what, async (t) => {
      const f = oneFlow(t, out, sel, what);
      if (f) t.match(f, shape, describe(f));
    });

  expect('node TLS 1.2 + client cert → mtls, observed', { serverPort: 8450 }, { verdict: 'mtls', tls: { version: '1.2', clientCertificate: 'observed' } });
  expect('node TLS 1.3 + client cert → mtls, inferred', { serverPort: 8451 }, { verdict: 'mtls', tls: { version: '1.3', clientCertificate: 'inferred' } });
  expect('node TLS 1.3, cert requested, none sent → tls, none', { serverPort: 8452 }, { verdict: 'tls', tls: { version: '1.3', clientCertificate: 'none' } });
  // Resumed: the certificate went in the original handshake; this one cannot tell (types.ts: "unknown").
  for (const [v, rs, port] of [['1.3', r13, 8453], ['1.2', r12, 8454]] as const) {
    expect(`TLS ${v} mTLS, full handshake before resumption → mtls`, { serverPort: port, clientPort: rs[0]?.localPort }, { verdict: 'mtls', tls: { version: v } });
    for (const r of rs.slice(1)) {
      expect(`TLS ${v} resumed session → tls, clientCertificate unknown, resumed`, { serverPort: port, clientPort: r.localPort }, {
        verdict: 'tls', tls: { version: v, clientCertificate: 'unknown', resumed: true },
      });
    }
  }
  expect('openssl TLS 1.3 -Verify 1 + -cert → mtls, inferred', { serverPort: 9450 }, { verdict: 'mtls', tls: { version: '1.3', clientCertificate: 'inferred' } });
  expect('openssl TLS 1.2 -Verify 1 + -cert → mtls, observed', { serverPort: 9451 }, { verdict: 'mtls', tls: { version: '1.2', clientCertificate: 'observed' } });
  expect('nginx ssl_verify_client on, curl TLS 1.3 → mtls, inferred', { serverPort: 8460, clientPort: Number(c13[1]) }, {
    verdict: 'mtls', tls: { version: '1.3', sni: 'server.lab', clientCertificate: 'inferred' },
  });
  expect('nginx ssl_verify_client on, curl TLS 1.2 → mtls, observed', { serverPort: 8460, clientPort: Number(c12[1]) }, {
    verdict: 'mtls', tls: { version: '1.2', sni: 'server.lab', clientCertificate: 'observed' },
  });
});
