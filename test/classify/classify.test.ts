// The composition: which detector wins, and the rules only index.ts owns. Real handshakes
// are covered per module and end to end in test/integration; hand-made bytes here pin
// the edge cases.
import fc from 'fast-check';
import t from 'tap';
import { classify, classifierFaults, classifyStrict, flowBytes } from '../../agent/src/classify/index.js';
import type { Transport } from '../../agent/src/classify/types.js';
import {
  bytes,
  clientHelloBody,
  concat,
  handshake,
  record,
  serverHelloBody,
  sniExt,
} from '../lab/tls-build.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
const CLIENT_HELLO = 1;
const SERVER_HELLO = 2;
const HANDSHAKE = 22;

function tls12(cipher: number): { client: Uint8Array; server: Uint8Array } {
  const ch = record(HANDSHAKE, handshake(CLIENT_HELLO, clientHelloBody({ ciphers: [cipher], extensions: [sniExt('a.example')] })));
  const sh = record(HANDSHAKE, handshake(SERVER_HELLO, serverHelloBody({ cipher, extensions: [] })));
  return { client: ch, server: sh };
}

t.test('IPsec: ESP is encrypted, AH is integrity only', async (t) => {
  t.match(classify(flowBytes({ transport: 'esp' })), { verdict: 'encrypted-other', protocol: 'ipsec' });
  const ah = classify(flowBytes({ transport: 'ah' }));
  t.equal(ah.verdict, 'plaintext', 'AH must never count as encryption');
  t.equal(ah.protocol, 'ipsec-ah');
});

t.test('no payload is unknown, never encrypted', async (t) => {
  t.match(classify(flowBytes({ transport: 'tcp', serverPort: 443 })), { verdict: 'unknown' });
  t.match(classify(flowBytes({ transport: 'udp', serverPort: 443 })), { verdict: 'unknown' });
  t.match(classify(flowBytes({ transport: 'other' })), { verdict: 'unknown' });
});

t.test('a port is never evidence of TLS', async (t) => {
  const rnd = new Uint8Array(300).map((_, i) => (i * 7919 + 13) & 0xff);
  for (const port of [443, 8443, 15008, 4143]) {
    t.not(classify(flowBytes({ transport: 'tcp', serverPort: port, client: rnd, server: rnd })).verdict, 'tls', `port ${port}`);
  }
});

t.test('TLS handshake that negotiated a NULL cipher is plaintext', async (t) => {
  const TLS_RSA_WITH_NULL_SHA256 = 0x003b;
  const c = classify(flowBytes({ transport: 'tcp', serverPort: 443, ...tls12(TLS_RSA_WITH_NULL_SHA256) }));
  t.equal(c.verdict, 'plaintext');
  t.equal(c.protocol, 'tls');
  t.match(c.evidence, /does not encrypt/);
  const gcm = classify(flowBytes({ transport: 'tcp', serverPort: 443, ...tls12(0xc02f) }));
  t.equal(gcm.verdict, 'tls', 'the same handshake with an AEAD suite is tls');
});

t.test('server half of a TLS handshake only (asymmetric capture)', async (t) => {
  const sh = record(HANDSHAKE, handshake(SERVER_HELLO, serverHelloBody({ cipher: 0xc02f, extensions: [] })));
  const c = classify(flowBytes({ transport: 'tcp', serverPort: 443, server: sh }));
  t.equal(c.verdict, 'tls');
  t.match(c.evidence, /client direction was not captured/);
});

t.test('ClientHello answered in plaintext is not encrypted', async (t) => {
  const ch = record(HANDSHAKE, handshake(CLIENT_HELLO, clientHelloBody({ extensions: [sniExt('a.example')] })));
  const c = classify(
    flowBytes({ transport: 'tcp', serverPort: 80, client: ch, server: ascii('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n') }),
  );
  t.equal(c.verdict, 'plaintext');
  t.match(c.evidence, /answered in plaintext/);
});

t.test('an upgrade is followed to the TLS that comes after it', async (t) => {
  const SSL_REQUEST = bytes([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  const { client, server } = tls12(0xc02f);
  const c = classify(
    flowBytes({ transport: 'tcp', serverPort: 5432, client: concat(SSL_REQUEST, client), server: concat(ascii('S'), server) }),
  );
  t.equal(c.verdict, 'tls');
  t.equal(c.upgradedFrom, 'postgresql');
  const refused = classify(flowBytes({ transport: 'tcp', serverPort: 5432, client: SSL_REQUEST, server: ascii('N') }));
  t.equal(refused.verdict, 'plaintext', 'an SSLRequest answered N stays plaintext');
});

t.test('plaintext protocols and generic text', async (t) => {
  t.match(classify(flowBytes({ transport: 'tcp', serverPort: 8080, client: ascii('GET / HTTP/1.1\r\nHost: x\r\n\r\n') })), {
    verdict: 'plaintext',
    protocol: 'http/1.1',
  });
  t.match(classify(flowBytes({ transport: 'tcp', serverPort: 7000, client: ascii('hello there, this is a line of text\n') })), {
    verdict: 'plaintext',
  });
});

t.test('evidence never carries payload beyond handshake metadata', async (t) => {
  const secret = 'topsecret-token-4242';
  const c = classify(
    flowBytes({
      transport: 'tcp',
      serverPort: 8080,
      client: ascii(`POST /login?password=${secret} HTTP/1.1\r\nAuthorization: Bearer ${secret}\r\n\r\n{"pw":"${secret}"}`),
      server: ascii(`HTTP/1.1 200 OK\r\nSet-Cookie: s=${secret}\r\n\r\n${secret}`),
    }),
  );
  t.equal(c.verdict, 'plaintext');
  t.notMatch(JSON.stringify(c), secret);
  t.notMatch(JSON.stringify(c), '/login');
});

t.test('fuzz: classifyStrict never throws, bounded time, guard never fires', async (t) => {
  const before = classifierFaults.count;
  const transports: Transport[] = ['tcp', 'udp', 'esp', 'ah', 'other'];
  let slowest = 0;
  fc.assert(
    fc.property(
      fc.constantFrom(...transports),
      fc.uint8Array({ maxLength: 2048 }),
      fc.uint8Array({ maxLength: 2048 }),
      fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 4 }),
      fc.integer({ min: 0, max: 65535 }),
      (transport, client, server, datagrams, port) => {
        const start = performance.now();
        classifyStrict(
          flowBytes({ transport, client, server, clientDatagrams: datagrams, serverDatagrams: datagrams.slice(1), serverPort: port, clientPort: 40000 }),
        );
        slowest = Math.max(slowest, performance.now() - start);
      },
    ),
    { numRuns: 3000, seed: 20261121 },
  );
  t.equal(classifierFaults.count, before, 'the last-resort guard did not fire');
  t.ok(slowest < 250, `slowest input ${slowest.toFixed(1)} ms`);
});

t.test('fuzz: TLS-looking prefixes followed by garbage', async (t) => {
  const { client, server } = tls12(0xc02f);
  fc.assert(
    fc.property(fc.nat(client.length), fc.nat(server.length), fc.uint8Array({ maxLength: 512 }), (cc, sc, tail) => {
      const c = classifyStrict(
        flowBytes({ transport: 'tcp', serverPort: 443, client: concat(client.subarray(0, cc), tail), server: server.subarray(0, sc) }),
      );
      return typeof c.verdict === 'string';
    }),
    { numRuns: 2000, seed: 7 },
  );
  t.pass('no exception');
});
