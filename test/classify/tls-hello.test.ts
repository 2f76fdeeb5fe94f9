import t from 'tap';
import { readHandshakeMessages } from '../../agent/src/classify/tls/handshake.js';
import {
  HELLO_RETRY_REQUEST_RANDOM,
  looksLikeSslv2ClientHello,
  parseClientHello,
  parseServerHello,
  parseSslv2ClientHello,
} from '../../agent/src/classify/tls/hello.js';
import { analyzeTls } from '../../agent/src/classify/tls/analyze.js';
import { walkRecords } from '../../agent/src/classify/tls/records.js';
import { cipherSuiteName, isNullEncryptionSuite, tls13SuiteSizes, versionName } from '../../agent/src/classify/tls/suites.js';
import { alpnExt, bytes, clientHelloBody, ext, serverHelloBody, sniExt, u16, vec8 } from '../lab/tls-build.js';
import { Relay, makePki, nodeClient, nodeServer } from '../lab/tls-lab.js';

t.test('real ClientHello from node (OpenSSL)', async (t) => {
  const pki = makePki();
  t.teardown(pki.cleanup);
  const srv = await nodeServer({ key: pki.pem(pki.serverKey), cert: pki.pem(pki.serverCert), ALPNProtocols: ['h2'] });
  const relay = await Relay.start(srv.port);
  t.teardown(async () => {
    await relay.close();
    await srv.close();
  });
  const r = await nodeClient(relay, { ca: pki.pem(pki.caCert), servername: 'api.example', ALPNProtocols: ['h2', 'http/1.1'] });
  const msgs = readHandshakeMessages(r.client, walkRecords(r.client).records);
  t.equal(msgs[0].type, 1);
  const ch = parseClientHello(msgs[0].body);
  t.ok(ch);
  t.equal(ch!.sni, 'api.example');
  t.same(ch!.alpn, ['h2', 'http/1.1']);
  t.ok(ch!.supportedVersions.includes(0x0304));
  t.ok(ch!.cipherSuites.includes(0x1301));
  t.ok(ch!.signatureAlgorithms.length > 0);
  t.ok(ch!.keyShareGroups.length > 0);
  t.equal(ch!.truncated, false);

  t.test('a cut body parses partially only when asked', async (t) => {
    const cut = msgs[0].body.subarray(0, msgs[0].body.length - 40);
    t.equal(parseClientHello(cut), null);
    const partial = parseClientHello(cut, { partial: true });
    t.ok(partial);
    t.equal(partial!.truncated, true);
    t.ok(partial!.cipherSuites.includes(0x1301));
    t.equal(parseClientHello(msgs[0].body.subarray(0, 20), { partial: true }), null, 'no cipher suites: not enough to call it a hello');
  });

  const sh = parseServerHello(readHandshakeMessages(r.server, walkRecords(r.server).records)[0].body);
  t.ok(sh);
  t.equal(sh!.selectedVersion, 0x0304);
  t.equal(sh!.helloRetryRequest, false);
  t.equal(sh!.alpn, undefined, 'TLS 1.3 sends ALPN in EncryptedExtensions, not the ServerHello');
});

t.test('a real ClientHello bigger than the kernel sample, cut at 512 bytes', async (t) => {
  // The agent's live path sees at most sampleBytes (512) of a payload packet: a ClientHello
  // with many/long ALPN names arrives as a 512-byte prefix. SNI and ALPN lie inside it.
  const SAMPLE = 512;
  const pki = makePki();
  t.teardown(pki.cleanup);
  const srv = await nodeServer({ key: pki.pem(pki.serverKey), cert: pki.pem(pki.serverCert), ALPNProtocols: ['h2'] });
  const relay = await Relay.start(srv.port);
  t.teardown(async () => {
    await relay.close();
    await srv.close();
  });
  const alpn = ['h2', 'http/1.1', ...Array.from({ length: 6 }, (_, i) => `plainsight-long-protocol-name-${i}`)];
  const sni = 'big-hello.plainsight.example';
  const r = await nodeClient(relay, { ca: pki.pem(pki.caCert), servername: sni, ALPNProtocols: alpn });
  const whole = readHandshakeMessages(r.client, walkRecords(r.client).records)[0];
  const full = parseClientHello(whole.body);
  t.ok(full, 'the whole hello parses');
  t.ok(whole.length + 9 > SAMPLE, `the record is bigger than the sample: ${whole.length + 9} bytes`);
  t.same(full!.alpn, alpn);

  const cut = r.client.subarray(0, SAMPLE);
  const msg = readHandshakeMessages(cut, walkRecords(cut).records)[0];
  t.equal(msg.complete, false);
  const partial = parseClientHello(msg.body, { partial: true });
  t.ok(partial, 'a prefix of a hello is still a hello');
  t.equal(partial!.truncated, true);
  t.equal(partial!.sni, sni, 'SNI from the captured part');
  t.same(partial!.alpn, alpn, 'ALPN from the captured part');
  t.same(partial!.cipherSuites, full!.cipherSuites);
  t.ok(partial!.extensions.length < full!.extensions.length, `the cut extension and the ones after it are left out (${partial!.extensions.length} of ${full!.extensions.length})`);
  t.same(partial!.extensions, full!.extensions.slice(0, partial!.extensions.length), 'the ones read are the first ones, in order');
  t.equal(parseClientHello(msg.body), null, 'strict mode still rejects the prefix');

  const a = analyzeTls(cut, r.server, { clientTruncated: true });
  t.equal(a?.details.sni, sni);
  t.same(a?.details.alpn, alpn);
  t.equal(a?.details.ja4, undefined, 'no JA4 from an incomplete hello (it counts and hashes every extension)');
  t.equal(a?.details.version, '1.3', 'the server side is complete');
  t.match(a?.evidence, /\(truncated\)/);

  t.test('every cut point: never throws, facts only from complete extensions', async (t) => {
    let withSni = 0;
    for (let n = 1; n <= whole.body.length; n++) {
      const p = parseClientHello(whole.body.subarray(0, n), { partial: n < whole.body.length });
      if (p === null) continue;
      if (p.sni !== undefined) {
        withSni++;
        if (p.sni !== sni) t.fail(`cut at ${n}: sni ${p.sni}`);
      }
      if (p.alpn.length > 0 && p.alpn.length !== alpn.length) t.fail(`cut at ${n}: ${p.alpn.length} ALPN names`);
    }
    t.ok(withSni > 0);
  });
});

t.test('hand-made ClientHellos', async (t) => {
  t.test('no extensions block (SSL 3.0 / TLS 1.0 style)', async (t) => {
    const ch = parseClientHello(clientHelloBody({ version: 0x0300, ciphers: [0x000a, 0x002f], noExtensions: true }));
    t.same(ch?.cipherSuites, [0x000a, 0x002f]);
    t.same(ch?.extensions, []);
  });

  t.test('session id kept (resumption compares it)', async (t) => {
    const ch = parseClientHello(clientHelloBody({ sessionId: [1, 2, 3, 4] }));
    t.equal(ch?.sessionIdLength, 4);
    t.same([...ch!.sessionId], [1, 2, 3, 4]);
  });

  t.test('non-printable SNI and ALPN bytes are escaped', async (t) => {
    const ch = parseClientHello(clientHelloBody({ extensions: [sniExt('a\nb\\c'), alpnExt([[0x00, 0x41]])] }));
    t.equal(ch?.sni, 'a\\x0ab\\x5cc');
    t.same(ch?.alpn, ['\\x00A']);
    t.same([...ch!.alpnFirst!], [0x00, 0x41]);
  });

  t.test('flags from extensions', async (t) => {
    const ch = parseClientHello(
      clientHelloBody({ extensions: [ext(0x0023, [1, 2, 3]), ext(0x002a, []), ext(0x0029, [0, 0]), ext(0xfe0d, [0])] }),
    );
    t.equal(ch?.hasSessionTicket, true);
    t.equal(ch?.hasEarlyData, true);
    t.equal(ch?.hasPreSharedKey, true);
    t.equal(ch?.hasEncryptedClientHello, true);
    t.equal(parseClientHello(clientHelloBody({ extensions: [ext(0x0023, [])] }))?.hasSessionTicket, false, 'empty ticket: support only');
  });

  t.test('malformed framing is rejected', async (t) => {
    const good = clientHelloBody({ extensions: [sniExt('x.example')] });
    t.equal(parseClientHello(good.subarray(0, good.length - 1)), null, 'extension block longer than the body');
    t.equal(parseClientHello(bytes(good, [0])), null, 'trailing byte');
    const badSid = Uint8Array.from(good);
    badSid[34] = 33;
    t.equal(parseClientHello(badSid), null, 'session id > 32');
    const odd = clientHelloBody({ ciphers: [] });
    const oddSuites = bytes(odd.subarray(0, 35), u16(3), [0, 1, 2], odd.subarray(37));
    t.equal(parseClientHello(oddSuites), null, 'odd cipher suite length');
    t.equal(parseClientHello(new Uint8Array(0)), null);
    t.equal(parseClientHello(Uint8Array.from([3, 3])), null);
  });

  t.test('DTLS hello has a cookie', async (t) => {
    const body = bytes(u16(0xfefd), new Array(32).fill(1), vec8([]), vec8([9, 9, 9]), u16(4), u16(0xc02b), u16(0xc02f), vec8([0]), u16(0));
    const ch = parseClientHello(body, { dtls: true });
    t.same(ch?.cipherSuites, [0xc02b, 0xc02f]);
    t.equal(parseClientHello(body), null, 'without the dtls flag the layout does not add up');
  });
});

t.test('SSLv2-compatible ClientHello', async (t) => {
  // header 0x80 len, msg 1, version 3.1, 3 cipher specs, no session id, 16-byte challenge
  const specs = [0x00, 0x00, 0x2f, 0x00, 0x00, 0x35, 0x01, 0x00, 0x80];
  const body = [1, 0x03, 0x01, ...u16(specs.length), ...u16(0), ...u16(16), ...specs, ...new Array(16).fill(0x42)];
  const v2 = bytes([0x80, body.length], body);
  t.equal(looksLikeSslv2ClientHello(v2), true);
  const ch = parseSslv2ClientHello(v2);
  t.equal(ch?.sslv2, true);
  t.equal(ch?.legacyVersion, 0x0301);
  t.same(ch?.cipherSuites, [0x002f, 0x0035], 'the SSL 2.0-only kind 0x010080 has no 2-byte code');
  const wrongLen = Uint8Array.from(v2);
  wrongLen[1] += 1;
  t.equal(looksLikeSslv2ClientHello(wrongLen), false);
  t.equal(looksLikeSslv2ClientHello(new TextEncoder().encode('GET / HTTP/1.1')), false);
});

t.test('ServerHello', async (t) => {
  t.test('HelloRetryRequest random', async (t) => {
    const hrr = parseServerHello(
      serverHelloBody({ random: [...HELLO_RETRY_REQUEST_RANDOM], extensions: [ext(0x002b, u16(0x0304)), ext(0x0033, u16(0x0018))] }),
    );
    t.equal(hrr?.helloRetryRequest, true);
    t.equal(hrr?.keyShareGroup, 0x0018);
  });

  t.test('TLS 1.2 ServerHello with ALPN and no extensions', async (t) => {
    const sh = parseServerHello(serverHelloBody({ cipher: 0xc02f, extensions: [alpnExt(['h2'])] }));
    t.equal(sh?.alpn, 'h2');
    t.equal(sh?.selectedVersion, undefined);
    const bare = parseServerHello(serverHelloBody({ version: 0x0300, cipher: 0x000a }));
    t.equal(bare?.legacyVersion, 0x0300);
    t.same(bare?.extensions, []);
  });

  t.test('pre_shared_key means PSK accepted', async (t) => {
    const sh = parseServerHello(serverHelloBody({ extensions: [ext(0x002b, u16(0x0304)), ext(0x0029, [0, 0])] }));
    t.equal(sh?.selectedVersion, 0x0304);
    t.equal(sh?.hasPreSharedKey, true);
  });
});

t.test('suites and versions', async (t) => {
  t.equal(cipherSuiteName(0x1301), 'TLS_AES_128_GCM_SHA256');
  t.equal(cipherSuiteName(0xc02f), 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256');
  t.equal(cipherSuiteName(0xc0ff), '0xC0FF');
  t.equal(isNullEncryptionSuite(0x0002), true);
  t.equal(isNullEncryptionSuite(0xc0b4), true);
  t.equal(isNullEncryptionSuite(0x1301), false);
  t.same(tls13SuiteSizes(0x1302), { hashLength: 48, tagLength: 16 });
  t.equal(versionName(0x0304), '1.3');
  t.equal(versionName(0x0300), 'ssl3');
  t.equal(versionName(0x0002), 'ssl2');
  t.equal(versionName(0x9999), undefined);
});
