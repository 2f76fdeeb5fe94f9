import t from 'tap';
import { parseClientHello, type ClientHello } from '../../agent/src/classify/tls/hello.js';
import { ja4 } from '../../agent/src/classify/tls/ja4.js';
import { alpnExt, clientHelloBody, ext, sigAlgsExt, sniExt, supportedVersionsExt } from '../lab/tls-build.js';

// The worked example of FoxIO's JA4 spec (technical_details/JA4.md): its cipher,
// extension and signature-algorithm lists, with GREASE added where browsers put it.
const SPEC_CIPHERS = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035];
const SPEC_EXTENSIONS = [0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015];
const SPEC_SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];

function specHello(sigalgs = SPEC_SIGALGS): Uint8Array {
  const exts: number[][] = [ext(0x2a2a, [])];
  for (const e of SPEC_EXTENSIONS) {
    if (e === 0x0000) exts.push(sniExt('example.com'));
    else if (e === 0x0010) exts.push(alpnExt(['h2', 'http/1.1']));
    else if (e === 0x002b) exts.push(supportedVersionsExt([0x7a7a, 0x0304, 0x0303]));
    else if (e === 0x000d) exts.push(sigAlgsExt(sigalgs));
    else exts.push(ext(e, []));
  }
  exts.push(ext(0xdada, [0]));
  return clientHelloBody({ ciphers: [0x0a0a, ...SPEC_CIPHERS], extensions: exts });
}

function hello(over: Partial<ClientHello>): ClientHello {
  return {
    legacyVersion: 0x0303,
    cipherSuites: [0x1301],
    extensions: [0x000a],
    alpn: [],
    supportedVersions: [],
    signatureAlgorithms: [],
    supportedGroups: [],
    keyShareGroups: [],
    sessionIdLength: 0,
    sessionId: new Uint8Array(0),
    hasSessionTicket: false,
    hasPreSharedKey: false,
    hasEarlyData: false,
    hasEncryptedClientHello: false,
    sslv2: false,
    truncated: false,
    ...over,
  };
}

t.test('spec example: t13d1516h2_8daaf6152771_e5627efa2ab1', async (t) => {
  const ch = parseClientHello(specHello());
  t.ok(ch);
  t.equal(ja4(ch!, 't'), 't13d1516h2_8daaf6152771_e5627efa2ab1');
  t.equal(ja4(ch!, 'q'), 'q13d1516h2_8daaf6152771_e5627efa2ab1');
});

t.test('spec example without signature algorithms hashes the extensions alone (6d807ffa2a79)', async (t) => {
  const ch = parseClientHello(specHello([]));
  t.equal(ja4(ch!, 't'), 't13d1516h2_8daaf6152771_6d807ffa2a79');
});

t.test('GREASE in signature algorithms is ignored', async (t) => {
  const ch = parseClientHello(specHello([0x1a1a, ...SPEC_SIGALGS]));
  t.equal(ja4(ch!, 't'), 't13d1516h2_8daaf6152771_e5627efa2ab1');
});

t.test('ALPN characters', async (t) => {
  const cases: [number[] | undefined, string][] = [
    [undefined, '00'],
    [[], '00'],
    [[...Buffer.from('h2')], 'h2'],
    [[...Buffer.from('http/1.1')], 'h1'],
    [[...Buffer.from('h')], 'hh'],
    [[0xab], 'ab'],
    [[0xab, 0xcd], 'ad'],
    [[0x30, 0xab], '3b'],
    [[0x30, 0x31, 0xab, 0xcd], '3d'],
    [[0x30, 0xab, 0xcd, 0x31], '01'],
    [[...Buffer.from('istio-peer-exchange')], 'ie'],
  ];
  for (const [first, want] of cases) {
    const h = hello({ alpnFirst: first === undefined ? undefined : Uint8Array.from(first) });
    t.equal(ja4(h, 't').slice(8, 10), want, JSON.stringify(first));
  }
});

t.test('version', async (t) => {
  const v = (over: Partial<ClientHello>, transport: 't' | 'q' | 'd' = 't'): string => ja4(hello(over), transport).slice(0, 3);
  t.equal(v({ legacyVersion: 0x0303 }), 't12');
  t.equal(v({ legacyVersion: 0x0301 }), 't10');
  t.equal(v({ legacyVersion: 0x0302 }), 't11');
  t.equal(v({ legacyVersion: 0x0300 }), 'ts3');
  t.equal(v({ legacyVersion: 0x0002 }), 'ts2');
  t.equal(v({ legacyVersion: 0x0305 }), 't00');
  t.equal(v({ legacyVersion: 0x0303, supportedVersions: [0x0a0a, 0x0303, 0x0304] }), 't13', 'highest, not first');
  t.equal(v({ legacyVersion: 0x0303, supportedVersions: [0x0a0a] }), 't12', 'only GREASE: legacy version');
  t.equal(v({ legacyVersion: 0xfefd }, 'd'), 'dd2');
  t.equal(v({ legacyVersion: 0xfefd, supportedVersions: [0xfefc, 0xfefd] }, 'd'), 'dd3', 'DTLS 1.3 is the newest though numerically lower');
  t.equal(v({ legacyVersion: 0xfeff }, 'd'), 'dd1');
});

t.test('SNI, counts, empty lists', async (t) => {
  t.equal(ja4(hello({ extensions: [0x0000, 0x000a] }), 't')[3], 'd');
  t.equal(ja4(hello({ extensions: [0x000a] }), 't')[3], 'i');
  const many = Array.from({ length: 150 }, (_, i) => 0x0100 + i);
  t.equal(ja4(hello({ cipherSuites: many, extensions: many }), 't').slice(4, 8), '9999');
  t.equal(ja4(hello({ cipherSuites: [0x0a0a, 0x1301], extensions: [0x1a1a, 0x000a] }), 't').slice(4, 8), '0101', 'GREASE not counted');
  t.equal(ja4(hello({ cipherSuites: [], extensions: [] }), 't'), 't12i000000_000000000000_000000000000');
  t.match(ja4(hello({ cipherSuites: [0x1301], extensions: [0x0000, 0x0010] }), 't'), /^t12d0102\d\d_[0-9a-f]{12}_000000000000$/, 'only SNI+ALPN: nothing left to hash');
});
