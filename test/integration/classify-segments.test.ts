// Handshakes split over many TCP segments, as on a real wire: a 576-byte MTU with TSO/GSO/
// GRO off, so the capture holds MSS-sized segments (not 64 KiB GSO packets). The reader
// must reassemble ClientHellos, server flights and client certificate flights.

import t from 'tap';
import { labCerts } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { peerClient, peerServer, serverTls } from '../lab/peers.js';
import { classifyOrFail, describe, oneFlow } from '../lab/plainsight.js';
import { conversations, fields, ja4FromTshark } from '../lab/tshark.js';

const skip = labSkipReason();
const MTU = 576;

t.test(`handshakes over ${MTU}-byte MTU segments`, { skip }, async (t) => {
  const lab = await Lab.open(t, 'segments');
  const { client, server } = await lab.pair({ mtu: MTU, offloads: false });
  const certs = await labCerts();
  const host = server.ip4;
  const ca = certs.server.ca;
  const cap = await lab.capture(server.ns, server.ifname, 'segments.pcap');

  await peerServer(lab, server.ns, 'http-server', { port: 8080, responseBytes: 50_000 });
  const [http] = await peerClient(lab, client.ns, 'http-client', { host, port: 8080, bodyBytes: 20_000 });

  const mtlsServer = { ...serverTls(certs.server), requestCert: true, rejectUnauthorized: true };
  const cc = { ca, servername: 'server.lab', cert: certs.client.cert, key: certs.client.key };
  await peerServer(lab, server.ns, 'tls-server', { port: 8451, ...mtlsServer, minVersion: 'TLSv1.3' });
  await peerClient(lab, client.ns, 'tls-client', { host, port: 8451, ...cc });
  await peerServer(lab, server.ns, 'tls-server', { port: 8450, ...mtlsServer, maxVersion: 'TLSv1.2' });
  await peerClient(lab, client.ns, 'tls-client', { host, port: 8450, ...cc });

  // A ClientHello of ~1.6 KB: 60 ALPN names before h2, so it spans several segments.
  const alpn = [...Array.from({ length: 60 }, (_, i) => `lab-protocol-${String(i).padStart(2, '0')}-x`), 'h2'];
  await peerServer(lab, server.ns, 'tls-server', { port: 8443, ...serverTls(certs.server), alpn: ['h2'] });
  const [big] = await peerClient(lab, client.ns, 'tls-client', { host, port: 8443, ca, servername: 'big.server.lab', checkHostname: false, alpn });

  await peerServer(lab, server.ns, 'h2c-server', { port: 8081 });
  await peerClient(lab, client.ns, 'h2c-client', { host, port: 8081, grpc: true });
  await cap.stop();

  t.ok(http && big, '(clients completed)');
  if (!http || !big) return;
  t.equal(big.alpn, 'h2', '(server picked h2 from the long list)');
  // The capture really is segmented: tshark reassembled the ClientHellos from several segments.
  const segs = await fields(cap.file, 'tls.handshake.type == 1', ['tcp.dstport', 'tcp.segment.count']);
  const bigSegs = Number(segs.find(([p]) => p === '8443')?.[1] ?? 1);
  t.ok(bigSegs >= 3, `(the big ClientHello spans ${bigSegs} segments)`);
  const convs = await conversations(cap.file);
  t.ok(convs.every((c) => c.payloadPackets.toServer + c.payloadPackets.toClient > 0), '(conversations carry payload)');

  const ja4s = await ja4FromTshark(cap.file);
  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;

  t.test('HTTP/1.1: bytes exact over a hundred segments', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8080 }, 'http');
    if (!f) return;
    t.match(f, { verdict: 'plaintext', protocol: 'http/1.1', bytes: { toServer: http.bytesWritten, toClient: http.bytesRead } }, describe(f));
    const conv = convs.find((c) => c.server.port === 8080);
    t.same(f.packets, conv?.packets, 'packets agree with tshark');
  });

  t.test('TLS 1.3 client certificate flight split over segments → mtls, inferred', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8451 }, 'mtls 1.3');
    if (f) t.match(f, { verdict: 'mtls', tls: { version: '1.3', clientCertificate: 'inferred' } }, describe(f));
  });

  t.test('TLS 1.2 Certificate messages split over segments → mtls, observed', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8450 }, 'mtls 1.2');
    if (f) t.match(f, { verdict: 'mtls', tls: { version: '1.2', clientCertificate: 'observed' } }, describe(f));
  });

  t.test('a ClientHello over several segments: SNI, ALPN, JA4', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8443 }, 'big hello');
    if (!f) return;
    t.match(f, { verdict: 'tls', tls: { version: '1.3', sni: 'big.server.lab', clientCertificate: 'none' } }, describe(f));
    // The classifier keeps a bounded ALPN list (32 names today): what it reports must be
    // the offered list's beginning, in order.
    const got = f.tls?.alpn ?? [];
    t.ok(got.length >= Math.min(alpn.length, 16), `a useful part of the ALPN list (${got.length} of ${alpn.length})`);
    t.same(got, alpn.slice(0, got.length), 'ALPN names as offered, in order');
    t.equal(f.tls?.ja4, ja4s.find((j) => j.clientPort === f.client.port)?.ja4, 'JA4 as computed from tshark');
  });

  t.test('gRPC over h2c, segmented → plaintext grpc', async (t) => {
    const f = oneFlow(t, out, { serverPort: 8081 }, 'grpc');
    if (f) t.match(f, { verdict: 'plaintext', protocol: 'grpc' }, describe(f));
  });
});
