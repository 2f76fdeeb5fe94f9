// analyzeTls on real handshakes (node's tls on both ends, recorded by a relay) and on
// hand-made bytes for what real stacks no longer send (SSLv2 hellos, SSL 3.0).

import { constants as cryptoConstants } from 'node:crypto';
import net from 'node:net';
import { createServer as tlsCreateServer } from 'node:tls';
import type tls from 'node:tls';
import t from 'tap';
import { analyzeTls, looksLikeTls, type TlsAnalysis } from '../../agent/src/classify/tls/analyze.js';
import { readHandshakeMessages } from '../../agent/src/classify/tls/handshake.js';
import { HELLO_RETRY_REQUEST_RANDOM } from '../../agent/src/classify/tls/hello.js';
import { walkRecords } from '../../agent/src/classify/tls/records.js';
import {
  alpnExt,
  bytes,
  clientHelloBody,
  concat,
  ext,
  handshake,
  record,
  reframe,
  serverHelloBody,
  sniExt,
  supportedVersionsExt,
  u16,
  u24,
} from '../lab/tls-build.js';
import { Relay, makePki, nodeClient, nodeServer, opensslClient, type Capture, type NodeExchangeResult } from '../lab/tls-lab.js';

const pki = makePki();
t.teardown(pki.cleanup);
const serverBase: tls.TlsOptions = { key: pki.pem(pki.serverKey), cert: pki.pem(pki.serverCert), ca: pki.pem(pki.caCert) };
const clientBase: tls.ConnectionOptions = { ca: pki.pem(pki.caCert), servername: 'api.example' };
const ecCert = { cert: pki.pem(pki.clientEcCert), key: pki.pem(pki.clientEcKey) };
const rsaCert = { cert: pki.pem(pki.clientRsaCert), key: pki.pem(pki.clientRsaKey) };
const askCert: tls.TlsOptions = { requestCert: true, rejectUnauthorized: false };

/** One node client <-> node server exchange per client option set, through a relay. */
async function node(serverOpts: tls.TlsOptions, ...clients: (tls.ConnectionOptions & { waitSession?: boolean } | ((prev: NodeExchangeResult[]) => tls.ConnectionOptions))[]): Promise<NodeExchangeResult[]> {
  const srv = await nodeServer({ ...serverBase, ...serverOpts });
  const relay = await Relay.start(srv.port);
  const out: NodeExchangeResult[] = [];
  try {
    for (const c of clients) {
      const opts = typeof c === 'function' ? c(out) : c;
      out.push(await nodeClient(relay, { ...clientBase, ...opts }));
    }
  } finally {
    await relay.close();
    await srv.close();
  }
  return out;
}

function analyze(c: Capture): TlsAnalysis {
  const a = analyzeTls(c.client, c.server);
  if (a === null) throw new Error('analyzeTls returned null for a TLS client stream');
  return a;
}

t.test('looksLikeTls', async (t) => {
  t.equal(looksLikeTls(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])), true);
  t.equal(looksLikeTls(bytes([0x16, 0x03, 0x01])), true, 'a 3-byte prefix is enough');
  t.equal(looksLikeTls(bytes([0x16, 0x03])), false);
  t.equal(looksLikeTls(bytes([0x16, 0x03, 0x01, 0x00, 0x00])), false, 'empty handshake record');
  t.equal(looksLikeTls(bytes([0x16, 0x03, 0x05, 0x00, 0x10])), false);
  t.equal(looksLikeTls(bytes([0x16, 0xfe, 0xfd, 0x00, 0x10])), false, 'DTLS is not TLS over TCP');
  t.equal(looksLikeTls(bytes([0x17, 0x03, 0x03, 0x00, 0x10])), false, 'application data does not start a flow');
  t.equal(looksLikeTls(new TextEncoder().encode('GET / HTTP/1.1\r\n')), false);
  t.equal(looksLikeTls(new Uint8Array(0)), false);
  t.equal(analyzeTls(new TextEncoder().encode('GET / HTTP/1.1\r\n'), new Uint8Array(0)), null);
});

t.test('TLS 1.3 (node <-> node)', async (t) => {
  const [plain] = await node({ ALPNProtocols: ['h2'] }, { ALPNProtocols: ['h2', 'http/1.1'] });
  const [withCert] = await node(askCert, { ...ecCert });
  const [withRsa] = await node(askCert, { ...rsaCert });
  const [askedNone] = await node(askCert, {});

  t.test('no client certificate', async (t) => {
    t.equal(plain.protocol, 'TLSv1.3');
    const a = analyze(plain);
    t.equal(a.clientHello, true);
    t.equal(a.serverHello, true);
    t.equal(a.serverNotTls, false);
    t.equal(a.details.version, '1.3');
    t.equal(a.details.cipher, plain.cipher);
    t.equal(a.details.sni, 'api.example');
    t.same(a.details.alpn, ['h2', 'http/1.1']);
    t.equal(a.details.alpnSelected, undefined, 'TLS 1.3 selects ALPN in encrypted EncryptedExtensions');
    t.match(a.details.ja4, /^t13d\d{4}h2_[0-9a-f]{12}_[0-9a-f]{12}$/);
    t.equal(a.details.clientCertificate, 'none');
    t.equal(a.details.resumed, false);
    t.equal(a.alert, undefined);
    t.match(a.evidence, /^TLS 1\.3 handshake: ClientHello SNI api\.example ALPN h2,http\/1\.1, ServerHello TLS_/);
    t.match(a.evidence, /= Finished (53|69) B: no client certificate/);
  });

  t.test('client certificate (EC, RSA) inferred from the second flight size', async (t) => {
    for (const c of [withCert, withRsa]) {
      const a = analyze(c);
      t.equal(a.details.clientCertificate, 'inferred');
      t.match(a.evidence, /TLS 1\.3 client second flight \d+ B( in \d records)? > Finished (53|69) B: client certificate inferred/);
    }
  });

  t.test('server asked, client had none: empty Certificate + Finished', async (t) => {
    const a = analyze(askedNone);
    t.equal(a.details.clientCertificate, 'none');
    t.match(a.evidence, /empty Certificate 25 B \+ Finished (53|69) B: server asked, client sent no certificate/);
  });

  t.test('each TLS 1.3 suite sizes Finished from its own hash', async (t) => {
    for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
      const [none, cert] = await node({ ...askCert, ciphers: suite }, { ciphers: suite }, { ciphers: suite, ...ecCert });
      const an = analyze(none);
      const ac = analyze(cert);
      t.equal(an.details.cipher, suite);
      t.equal(an.details.clientCertificate, 'none', `${suite} without certificate`);
      t.equal(ac.details.clientCertificate, 'inferred', `${suite} with certificate`);
    }
  });

  t.test('client stream ending before the second flight: unknown', async (t) => {
    const records = walkRecords(withCert.client).records;
    const firstCcs = records.findIndex((r) => r.type === 20);
    const cut = withCert.client.subarray(0, records[firstCcs].offset + records[firstCcs].length);
    const a = analyzeTls(cut, withCert.server, { clientTruncated: true })!;
    t.equal(a.details.clientCertificate, 'unknown');
    t.match(a.evidence, /client stream ends before its TLS 1\.3 second flight/);
    t.match(a.evidence, /client capture truncated/);
  });

  t.test('only the ClientHello seen', async (t) => {
    const a = analyzeTls(plain.client, new Uint8Array(0))!;
    t.equal(a.clientHello, true);
    t.equal(a.serverHello, false);
    t.equal(a.serverNotTls, false);
    t.equal(a.details.version, undefined, 'no version is claimed without a ServerHello');
    t.equal(a.details.sni, 'api.example');
    t.ok(a.details.ja4);
    t.equal(a.details.clientCertificate, 'unknown');
    t.match(a.evidence, /^TLS ClientHello offering up to TLS 1\.3: SNI api\.example ALPN h2,http\/1\.1; no server response captured/);
  });

  t.test('the same hello split over many records and segments gives the same answer', async (t) => {
    for (const size of [7, 64, 100]) {
      const split = (s: Uint8Array): Uint8Array => {
        const recs = walkRecords(s).records;
        const first = recs[0];
        const hs = s.subarray(first.offset, first.offset + first.length);
        return concat(reframe(hs, size, 22, first.version), s.subarray(first.offset + first.length));
      };
      const orig = analyze(withCert);
      const a = analyze({ client: split(withCert.client), server: split(withCert.server) });
      t.same(a.details, orig.details, `records of ${size} bytes`);
    }
  });

  t.test('truncated ClientHello: partial facts, no JA4', async (t) => {
    const recs = walkRecords(plain.client).records;
    const cut = plain.client.subarray(0, recs[0].offset + recs[0].length - 30);
    const a = analyzeTls(cut, new Uint8Array(0), { clientTruncated: true })!;
    t.equal(a.clientHello, true);
    t.equal(a.details.ja4, undefined);
    t.match(a.evidence, /truncated/);
  });

  t.test('truncated ServerHello hides the version', async (t) => {
    const recs = walkRecords(plain.server).records;
    // handshake header 4 + fixed ServerHello part 70 + extensions length 2 + first extension header 4:
    // OpenSSL puts supported_versions first, so its 2-byte value is cut off.
    const cut = plain.server.subarray(0, recs[0].offset + 80);
    const a = analyzeTls(plain.client, cut, { serverTruncated: true })!;
    t.equal(a.serverHello, true);
    t.not(a.details.version, '1.2', 'a cut TLS 1.3 ServerHello must not read as 1.2');
  });
});

t.test('HelloRetryRequest (server only accepts P-384, client key-shares X25519 first)', async (t) => {
  const [none, cert] = await node({ ...askCert, ecdhCurve: 'P-384' }, { ecdhCurve: 'X25519:P-384' }, { ecdhCurve: 'X25519:P-384', ...rsaCert });
  const a = analyze(none);
  t.equal(a.details.helloRetryRequest, true);
  t.equal(a.details.version, '1.3');
  t.equal(a.serverHello, true);
  t.match(a.evidence, /HelloRetryRequest for secp384r1, then second ClientHello\/ServerHello/);
  t.equal(a.details.clientCertificate, 'none');
  const b = analyze(cert);
  t.equal(b.details.helloRetryRequest, true);
  t.equal(b.details.clientCertificate, 'inferred');

  t.test('HRR alone (second ServerHello not captured)', async (t) => {
    const recs = walkRecords(none.server).records;
    const cut = none.server.subarray(0, recs[0].offset + recs[0].length);
    const x = analyzeTls(none.client, cut)!;
    t.equal(x.details.helloRetryRequest, true);
    t.equal(x.details.version, '1.3');
    t.equal(x.details.clientCertificate, 'unknown');
    t.match(x.evidence, /second ServerHello not captured/);
  });
});

t.test('TLS 1.2 (node <-> node)', async (t) => {
  const v12: tls.TlsOptions = { maxVersion: 'TLSv1.2' };
  const [plain] = await node({ ...v12, ALPNProtocols: ['h2'] }, { ALPNProtocols: ['h2', 'http/1.1'] });
  const [withCert] = await node({ ...v12, ...askCert }, { ...rsaCert });
  const [askedNone] = await node({ ...v12, ...askCert }, {});

  t.test('no CertificateRequest: none; server-selected ALPN visible', async (t) => {
    const a = analyze(plain);
    t.equal(a.details.version, '1.2');
    t.equal(a.details.cipher, plain.cipher);
    t.equal(a.details.alpnSelected, 'h2');
    t.equal(a.details.clientCertificate, 'none');
    t.match(a.evidence, /TLS 1\.2 handshake: .*ServerHello TLS_\w+ ALPN h2; full handshake without CertificateRequest/);
    t.match(a.details.ja4, /^t13d/, 'JA4 fingerprints the client offer (up to 1.3), not the result');
  });

  t.test('client Certificate observed', async (t) => {
    const a = analyze(withCert);
    t.equal(a.details.clientCertificate, 'observed');
    t.match(a.evidence, /client Certificate message \d+ B/);
  });

  t.test('CertificateRequest answered with an empty Certificate: none', async (t) => {
    const a = analyze(askedNone);
    t.equal(a.details.clientCertificate, 'none');
    t.match(a.evidence, /server requested a client certificate, client sent an empty Certificate/);
  });

  t.test("CertificateRequest seen, client's reply not captured: unknown (asked is not answered)", async (t) => {
    const recs = walkRecords(withCert.client).records;
    const cut = withCert.client.subarray(0, recs[0].offset + recs[0].length);
    const a = analyzeTls(cut, withCert.server)!;
    t.equal(a.details.clientCertificate, 'unknown');
    t.match(a.evidence, /CertificateRequest/);
  });

  t.test('server flight cut before ServerHelloDone: unknown', async (t) => {
    const recs = walkRecords(plain.server).records;
    const cut = plain.server.subarray(0, recs[1].offset + recs[1].length); // ServerHello + Certificate
    const a = analyzeTls(plain.client.subarray(0, walkRecords(plain.client).records[0].length + 5), cut)!;
    t.equal(a.details.clientCertificate, 'unknown');
  });
});

t.test('resumption', async (t) => {
  t.test('TLS 1.3 PSK: resumed, client certificate unknown', async (t) => {
    const [first, second] = await node(askCert, { ...ecCert, waitSession: true }, (prev) => ({ ...ecCert, session: prev[0].session }));
    t.equal(second.reused, true, 'node resumed');
    t.equal(analyze(first).details.resumed, false);
    const a = analyze(second);
    t.equal(a.details.resumed, true);
    t.equal(a.details.clientCertificate, 'unknown');
    t.match(a.evidence, /session resumed \(PSK\)/);
  });

  t.test('TLS 1.2 session ticket: abbreviated handshake', async (t) => {
    const [, second] = await node({ maxVersion: 'TLSv1.2' }, { waitSession: true }, (prev) => ({ session: prev[0].session }));
    t.equal(second.reused, true, 'node resumed');
    const a = analyze(second);
    t.equal(a.details.version, '1.2');
    t.equal(a.details.resumed, true);
    t.equal(a.details.clientCertificate, 'unknown');
  });

  t.test('TLS 1.2 session id (no tickets, server session cache)', async (t) => {
    const cache = new Map<string, Buffer>();
    // Session-ID resumption needs the server's session cache events: build this server by hand.
    const server = tlsCreateServer({ ...serverBase, maxVersion: 'TLSv1.2', secureOptions: cryptoConstants.SSL_OP_NO_TICKET }, (s) => {
      s.on('data', (d) => s.write(d));
      s.on('end', () => s.end());
      s.on('error', () => undefined);
    });
    server.on('newSession', (id: Buffer, data: Buffer, cb: () => void) => {
      cache.set(id.toString('hex'), data);
      cb();
    });
    server.on('resumeSession', (id: Buffer, cb: (err: Error | null, data: Buffer | null) => void) => cb(null, cache.get(id.toString('hex')) ?? null));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const relay = await Relay.start((server.address() as net.AddressInfo).port);
    const first = await nodeClient(relay, { ...clientBase, waitSession: true });
    const second = await nodeClient(relay, { ...clientBase, session: first.session });
    await relay.close();
    await new Promise((res) => server.close(res));
    t.equal(second.reused, true, 'node resumed');
    const a = analyze(second);
    t.equal(a.details.resumed, true);
    t.match(a.evidence, /session resumed \(session ID\)/);
  });
});

t.test('older versions', async (t) => {
  for (const v of ['TLSv1', 'TLSv1.1'] as const) {
    const opts = { minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' };
    const [r] = await node(opts, opts);
    const refused = r.protocol !== v ? `this OpenSSL build refuses ${v} (${r.clientError ?? r.protocol})` : false;
    t.test(v, { skip: refused }, async (t) => {
      const a = analyze(r);
      t.equal(a.details.version, v === 'TLSv1' ? '1.0' : '1.1');
      t.equal(a.details.clientCertificate, 'none');
    });
  }
});

t.test('alerts and refusals', async (t) => {
  t.test('server rejects the version: protocol_version alert instead of ServerHello', async (t) => {
    const [r] = await node({ minVersion: 'TLSv1.3' }, { maxVersion: 'TLSv1.2' });
    const a = analyze(r);
    t.equal(a.serverHello, false);
    t.equal(a.alert, 'protocol_version');
    t.match(a.evidence, /server sent alert protocol_version instead of ServerHello/);
    t.equal(a.details.clientCertificate, 'unknown');
  });

  t.test('server answers with plaintext: serverNotTls', async (t) => {
    const plainServer = net.createServer((s) => {
      s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
      s.on('error', () => undefined);
    });
    await new Promise<void>((res) => plainServer.listen(0, '127.0.0.1', res));
    const relay = await Relay.start((plainServer.address() as net.AddressInfo).port);
    const r = await nodeClient(relay, clientBase);
    await relay.close();
    await new Promise((res) => plainServer.close(res));
    const a = analyze(r);
    t.equal(a.clientHello, true);
    t.equal(a.serverNotTls, true);
    t.equal(a.serverHello, false);
    t.match(a.evidence, /server answered with non-TLS bytes/);
  });

  t.test('TLS 1.2 client rejects the server certificate: client alert', async (t) => {
    const srv = await nodeServer({ ...serverBase, maxVersion: 'TLSv1.2' });
    const relay = await Relay.start(srv.port);
    // No -CAfile: the test CA is unknown to s_client, which aborts in the handshake.
    const r = await opensslClient(relay, ['-servername', 'api.example', '-tls1_2', '-verify_return_error']);
    await relay.close();
    await srv.close();
    const a = analyze(r);
    t.equal(a.serverHello, true);
    t.match(a.alert ?? '', /unknown_ca|bad_certificate|certificate_unknown/);
    t.match(a.evidence, /client sent alert/);
    t.equal(a.details.clientCertificate, 'none', 'the server flight was complete and asked for no certificate');
  });
});

t.test('hand-made: SSLv2-format ClientHello answered by TLS 1.0', async (t) => {
  const specs = [0x00, 0x00, 0x2f, 0x00, 0x00, 0x35];
  const body = [1, 0x03, 0x01, ...u16(specs.length), ...u16(0), ...u16(16), ...specs, ...new Array(16).fill(0x42)];
  const client = concat(bytes([0x80, body.length], body), record(22, handshake(16, [0, 2, 1, 2]), 0x0301), record(20, [1], 0x0301));
  const server = record(22, concat(handshake(2, serverHelloBody({ version: 0x0301, cipher: 0x002f })), handshake(11, u24(0)), handshake(14, [])), 0x0301);
  t.equal(looksLikeTls(client), true);
  const a = analyzeTls(client, server)!;
  t.equal(a.clientHello, true);
  t.equal(a.details.version, '1.0');
  t.equal(a.details.cipher, 'TLS_RSA_WITH_AES_128_CBC_SHA');
  t.match(a.details.ja4, /^t10i0200/);
  t.match(a.evidence, /SSLv2-format ClientHello/);
  t.equal(a.details.clientCertificate, 'none');
});

t.test('hand-made: SSL 3.0 with CertificateRequest', async (t) => {
  const ch = record(22, handshake(1, clientHelloBody({ version: 0x0300, ciphers: [0x000a], noExtensions: true })), 0x0300);
  const server = record(
    22,
    concat(handshake(2, serverHelloBody({ version: 0x0300, cipher: 0x000a })), handshake(11, [0, 0, 0]), handshake(13, [1, 1, 0, 0]), handshake(14, [])),
    0x0300,
  );
  const noCert = concat(ch, record(21, [1, 41], 0x0300), record(22, handshake(16, [1, 2]), 0x0300), record(20, [1], 0x0300));
  const a = analyzeTls(noCert, server)!;
  t.equal(a.details.version, 'ssl3');
  t.equal(a.details.clientCertificate, 'none');
  t.match(a.evidence, /^SSL3 handshake/);
  t.match(a.evidence, /no_certificate/);
  const withCert = concat(ch, record(22, concat(handshake(11, [0, 0, 7, 0, 0, 4, 1, 2, 3, 4]), handshake(16, [1, 2]), handshake(15, [0, 0])), 0x0300), record(20, [1], 0x0300));
  t.equal(analyzeTls(withCert, server)!.details.clientCertificate, 'observed');
});

t.test('hand-made TLS 1.3 edge cases', async (t) => {
  const ch = (extra: number[][] = []): Uint8Array =>
    record(22, handshake(1, clientHelloBody({ sessionId: new Array(32).fill(1), extensions: [sniExt('x.example'), supportedVersionsExt([0x0304]), ...extra] })), 0x0301);
  const sh = (cipher = 0x1301, extra: number[][] = []): Uint8Array =>
    record(22, handshake(2, serverHelloBody({ cipher, sessionId: new Array(32).fill(1), extensions: [ext(0x002b, u16(0x0304)), ...extra] })));
  const ccs = record(20, [1]);
  const enc = (n: number): Uint8Array => record(23, new Uint8Array(n));

  t.test('0-RTT offered: the first encrypted records may be early data', async (t) => {
    const client = concat(ch([ext(0x002a, []), ext(0x0029, [0, 0])]), ccs, enc(53), enc(900), enc(53));
    const a = analyzeTls(client, concat(sh(), ccs, enc(100)))!;
    t.equal(a.details.clientCertificate, 'unknown');
    t.match(a.evidence, /0-RTT/);
  });

  t.test('no middlebox-compat ChangeCipherSpec', async (t) => {
    t.equal(analyzeTls(concat(ch(), enc(53)), concat(sh(), enc(100)))!.details.clientCertificate, 'none');
    t.equal(analyzeTls(concat(ch(), enc(700), enc(80), enc(53)), concat(sh(), enc(100)))!.details.clientCertificate, 'inferred');
  });

  t.test('coalesced Certificate+CertificateVerify+Finished in one record', async (t) => {
    const a = analyzeTls(concat(ch(), ccs, enc(1403), enc(40)), concat(sh(), ccs, enc(100)))!;
    t.equal(a.details.clientCertificate, 'inferred');
    t.match(a.evidence, /TLS 1\.3 client second flight 1403 B > Finished 53 B: client certificate inferred/);
  });

  t.test('SHA-384 suite: Finished is 69 B', async (t) => {
    t.equal(analyzeTls(concat(ch(), ccs, enc(69)), concat(sh(0x1302), ccs))!.details.clientCertificate, 'none');
    t.equal(analyzeTls(concat(ch(), ccs, enc(25), enc(69)), concat(sh(0x1302), ccs))!.details.clientCertificate, 'none');
    t.equal(analyzeTls(concat(ch(), ccs, enc(53)), concat(sh(0x1302), ccs))!.details.clientCertificate, 'unknown', '53 < 69: not a Finished for SHA-384');
  });

  t.test('CCM_8 suite: 8-byte tag', async (t) => {
    t.equal(analyzeTls(concat(ch(), ccs, enc(45)), concat(sh(0x1305), ccs))!.details.clientCertificate, 'none');
    t.equal(analyzeTls(concat(ch(), ccs, enc(17), enc(45)), concat(sh(0x1305), ccs))!.details.clientCertificate, 'none');
  });

  t.test('empty Certificate not followed by Finished: unknown', async (t) => {
    t.equal(analyzeTls(concat(ch(), ccs, enc(25)), concat(sh(), ccs))!.details.clientCertificate, 'unknown');
  });

  t.test('small first record (encrypted alert): unknown', async (t) => {
    t.equal(analyzeTls(concat(ch(), ccs, enc(19)), concat(sh(), ccs))!.details.clientCertificate, 'unknown');
  });

  t.test('unknown TLS 1.3 suite: unknown', async (t) => {
    const a = analyzeTls(concat(ch(), ccs, enc(53)), concat(sh(0x13ff), ccs))!;
    t.equal(a.details.cipher, '0x13FF');
    t.equal(a.details.clientCertificate, 'unknown');
  });

  t.test('HRR built by hand: version from the HRR when the second ServerHello is missing', async (t) => {
    const hrr = record(22, handshake(2, serverHelloBody({ random: [...HELLO_RETRY_REQUEST_RANDOM], cipher: 0x1302, extensions: [ext(0x002b, u16(0x0304)), ext(0x0033, u16(0x001d))] })));
    const a = analyzeTls(ch(), hrr)!;
    t.equal(a.details.helloRetryRequest, true);
    t.equal(a.details.version, '1.3');
    t.equal(a.details.cipher, 'TLS_AES_256_GCM_SHA384');
    t.match(a.evidence, /HelloRetryRequest for x25519/);
  });

  t.test('TLS 1.2 ServerHello with ALPN, session id echoed: resumed', async (t) => {
    const client = record(22, handshake(1, clientHelloBody({ sessionId: [5, 5, 5, 5], extensions: [alpnExt(['http/1.1'])] })), 0x0301);
    const server = concat(record(22, handshake(2, serverHelloBody({ cipher: 0xc02f, sessionId: [5, 5, 5, 5], extensions: [alpnExt(['http/1.1'])] }))), ccs, record(22, new Uint8Array(40)));
    const a = analyzeTls(client, server)!;
    t.equal(a.details.resumed, true);
    t.equal(a.details.alpnSelected, 'http/1.1');
    t.equal(a.details.clientCertificate, 'unknown');
  });
});

t.test('hand-made: SSL 2.0 SERVER-HELLO', async (t) => {
  const specs = [0x01, 0x00, 0x80];
  const chBody = [1, 0x00, 0x02, ...u16(specs.length), ...u16(0), ...u16(16), ...specs, ...new Array(16).fill(0x42)];
  const client = bytes([0x80, chBody.length], chBody);
  const cert = new Array(40).fill(0x30);
  const shBody = [4, 0, 1, 0x00, 0x02, ...u16(cert.length), ...u16(specs.length), ...u16(16), ...cert, ...specs, ...new Array(16).fill(7)];
  const server = bytes([0x80, shBody.length], shBody);
  const a = analyzeTls(client, server)!;
  t.equal(a.serverHello, true);
  t.equal(a.details.version, 'ssl2');
  t.match(a.details.ja4, /^ts2i00/);
  t.match(a.evidence, /^SSL2 handshake: SSLv2-format ClientHello, ServerHello/);
  const junk = Uint8Array.from(server);
  junk[4] = 2; // certificate type not X.509
  t.equal(analyzeTls(client, junk)!.serverNotTls, true, 'a binary reply with the high bit is not taken for SSL 2.0');
});

t.test('garbage after a TLS header', async (t) => {
  const a = analyzeTls(bytes([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]), new TextEncoder().encode('junk'))!;
  t.equal(a.clientHello, false);
  t.equal(a.serverNotTls, true);
  t.match(a.evidence, /^TLS handshake record without a parsable ClientHello; server answered with non-TLS bytes/);
});

t.test('server TLS records without a ServerHello', async (t) => {
  const client = record(22, handshake(1, clientHelloBody()), 0x0301);
  const a = analyzeTls(client, record(22, handshake(11, [0, 0, 0])))!;
  t.equal(a.serverHello, false);
  t.equal(a.serverNotTls, false);
  t.match(a.evidence, /server sent TLS records but no ServerHello/);
});

t.test('the client hello is the first message (record walk sanity)', async (t) => {
  const [r] = await node({}, {});
  const m = readHandshakeMessages(r.client, walkRecords(r.client).records);
  t.equal(m[0].type, 1);
});
