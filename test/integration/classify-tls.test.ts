// TLS without client certificates: Node (OpenSSL 3 via node:tls) and the openssl CLI, TLS
// 1.3 and 1.2, with and without SNI/ALPN. Versions, ciphers, SNI and ALPN are checked
// against what the peers themselves negotiated; JA4 against a JA4 computed from tshark's
// dissection of the same ClientHello.

import t from 'tap';
import { labCerts } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { opensslClient, opensslServer, peerClient, peerServer, serverTls } from '../lab/peers.js';
import { classifyOrFail, describe, oneFlow } from '../lab/plainsight.js';
import { fields, hasField, ja4FromTshark } from '../lab/tshark.js';

const skip = labSkipReason();

t.test('TLS 1.3 and 1.2 without client certificates', { skip }, async (t) => {
  const lab = await Lab.open(t, 'tls');
  const { client, server } = await lab.pair();
  const certs = await labCerts();
  const host = server.ip4;
  const ca = certs.server.ca;
  const cap = await lab.capture(server.ns, server.ifname, 'tls.pcap');

  // Node, TLS 1.3, ALPN h2 + SNI.
  await peerServer(lab, server.ns, 'tls-server', { port: 8443, ...serverTls(certs.server), alpn: ['h2', 'http/1.1'], minVersion: 'TLSv1.3' });
  const [n13] = await peerClient(lab, client.ns, 'tls-client', { host, port: 8443, ca, servername: 'api.lab', checkHostname: false, alpn: ['h2', 'http/1.1'] });

  // Node, TLS 1.2 (client maxVersion), ALPN http/1.1.
  await peerServer(lab, server.ns, 'tls-server', { port: 8444, ...serverTls(certs.server), alpn: ['http/1.1'] });
  const [n12] = await peerClient(lab, client.ns, 'tls-client', { host, port: 8444, ca, servername: 'server.lab', alpn: ['http/1.1'], maxVersion: 'TLSv1.2' });

  // openssl CLI on both ends, 1.3 and 1.2; the 1.2 one without SNI.
  await opensslServer(lab, server.ns, { host, port: 9443, certs: certs.server, version: '1.3', clientAuth: 'none' });
  await opensslClient(lab, client.ns, { host, port: 9443, servername: 'server.lab', ca, version: '1.3' });
  await opensslServer(lab, server.ns, { host, port: 9444, certs: certs.server, version: '1.2', clientAuth: 'none' });
  await opensslClient(lab, client.ns, { host, port: 9444, ca, version: '1.2' });

  await cap.stop();
  t.ok(n13 && n12, 'node clients completed');
  if (!n13 || !n12) return;
  t.match(n13, { protocol: 'TLSv1.3', alpn: 'h2' }, '(peers negotiated TLS 1.3 + h2)');
  t.match(n12, { protocol: 'TLSv1.2', alpn: 'http/1.1' }, '(peers negotiated TLS 1.2)');

  const ja4s = await ja4FromTshark(cap.file);
  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;

  t.test('node TLS 1.3, ALPN h2, SNI', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8443 }, 'node tls 1.3');
    if (!f) return;
    t.match(f, { verdict: 'tls', protocol: 'tls', mesh: 'none', tls: { version: '1.3', sni: 'api.lab', cipher: n13.cipher, clientCertificate: 'none' } }, describe(f));
    t.ok(f.tls?.alpn?.includes('h2'), `alpn offered includes h2: ${JSON.stringify(f.tls?.alpn)}`);
    t.match(f.tls?.ja4 ?? '', /^t13d\d{4}h2_[0-9a-f]{12}_[0-9a-f]{12}$/, 'ja4 t13d…h2_…');
    t.notOk(f.upgradedFrom, 'not an upgrade');
  });

  t.test('node TLS 1.2 (maxVersion)', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8444 }, 'node tls 1.2');
    if (!f) return;
    t.match(f, { verdict: 'tls', protocol: 'tls', tls: { version: '1.2', sni: 'server.lab', cipher: n12.cipher, clientCertificate: 'none' } }, describe(f));
    t.match(f.tls?.cipher ?? '', /^TLS_ECDHE_/, 'an ECDHE suite');
    t.match(f.tls?.ja4 ?? '', /^t12d\d{4}h1_/, 'ja4 t12d…h1 (no supported_versions: legacy version 1.2)');
  });

  t.test('openssl s_client/s_server TLS 1.3', async (t) => {
    const f = oneFlow(t, out, { serverPort: 9443 }, 'openssl 1.3');
    if (!f) return;
    t.match(f, { verdict: 'tls', tls: { version: '1.3', sni: 'server.lab', clientCertificate: 'none' } }, describe(f));
    t.match(f.tls?.cipher ?? '', /^TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$/, 'a TLS 1.3 suite');
    t.match(f.tls?.ja4 ?? '', /^t13d\d{4}00_/, 'ja4: SNI, no ALPN');
  });

  t.test('openssl TLS 1.2 without SNI', async (t) => {
    const f = oneFlow(t, out, { serverPort: 9444 }, 'openssl 1.2');
    if (!f) return;
    t.match(f, { verdict: 'tls', tls: { version: '1.2', clientCertificate: 'none' } }, describe(f));
    t.notOk(f.tls?.sni, 'no SNI');
    t.match(f.tls?.ja4 ?? '', /^t12i\d{4}00_/, 'ja4 t12i (no SNI), 00 (no ALPN)');
  });

  t.test('JA4 equals JA4 computed from tshark dissection', async (t) => {
    t.equal(ja4s.length, 4, 'tshark saw four ClientHellos');
    for (const { clientPort, ja4, raw } of ja4s) {
      const f = out.flows.find((x) => x.transport === 'tcp' && x.client.port === clientPort);
      t.equal(f?.tls?.ja4, ja4, `flow from port ${clientPort} (${f?.server.port}); JA4_r ${raw}`);
    }
  });

  const nativeJa4 = await hasField('tls.handshake.ja4');
  const noNativeJa4 = 'this tshark has no tls.handshake.ja4 field (Wireshark >= 4.2 has it); checked against a JA4 computed from its dissection instead';
  t.test("tshark's own JA4 field", { skip: nativeJa4 ? false : noNativeJa4 }, async (t) => {
    const rows = await fields(cap.file, 'tls.handshake.type == 1', ['tcp.srcport', 'tls.handshake.ja4']);
    for (const [port, ja4] of rows) {
      const f = out.flows.find((x) => x.transport === 'tcp' && x.client.port === Number(port));
      t.equal(f?.tls?.ja4, ja4, `flow from port ${port}`);
    }
  });
});
