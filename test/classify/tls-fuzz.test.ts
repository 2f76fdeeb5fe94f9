// Property tests: the TLS parsers never throw and finish in bounded time on any bytes,
// including real handshakes with bytes flipped, inserted, deleted or cut.

import fc from 'fast-check';
import { performance } from 'node:perf_hooks';
import t from 'tap';
import { analyzeTls, type TlsAnalysis } from '../../agent/src/classify/tls/analyze.js';
import { readHandshakeMessages } from '../../agent/src/classify/tls/handshake.js';
import { parseClientHello, parseServerHello, parseSslv2ClientHello } from '../../agent/src/classify/tls/hello.js';
import { ja4 } from '../../agent/src/classify/tls/ja4.js';
import { walkRecords } from '../../agent/src/classify/tls/records.js';
import { detectMesh } from '../../agent/src/classify/mesh.js';
import { concat, record } from '../lab/tls-build.js';
import { Relay, makePki, nodeClient, nodeServer, type Capture } from '../lab/tls-lab.js';

/** Generous per-call bound: the point is "no runaway loop", not a benchmark. */
const MAX_MS_PER_CALL = 50;
const RUNS = Number(process.env.PLAINSIGHT_FUZZ_RUNS ?? 2000);

let slowest = 0;
function timed(client: Uint8Array, server: Uint8Array, opts?: { clientTruncated?: boolean; serverTruncated?: boolean }): TlsAnalysis | null {
  const start = performance.now();
  const a = analyzeTls(client, server, opts);
  slowest = Math.max(slowest, performance.now() - start);
  if (a !== null) {
    // Shape and hygiene of every answer.
    if (typeof a.evidence !== 'string' || a.evidence.length === 0) throw new Error('empty evidence');
    if (/[\x00-\x1f\x7f]/.test(a.evidence)) throw new Error('control characters in evidence');
    if (!['observed', 'inferred', 'none', 'unknown'].includes(a.details.clientCertificate)) throw new Error('bad clientCertificate');
    detectMesh(a.details, 15008);
  }
  return a;
}

const pki = makePki();
t.teardown(pki.cleanup);

async function capture(serverOpts: object, clientOpts: object): Promise<Capture> {
  const srv = await nodeServer({ key: pki.pem(pki.serverKey), cert: pki.pem(pki.serverCert), ca: pki.pem(pki.caCert), ...serverOpts });
  const relay = await Relay.start(srv.port);
  const r = await nodeClient(relay, { ca: pki.pem(pki.caCert), servername: 'api.example', ALPNProtocols: ['h2', 'http/1.1'], ...clientOpts });
  await relay.close();
  await srv.close();
  return r;
}

t.test('property tests', async (t) => {
  const ask = { requestCert: true, rejectUnauthorized: false };
  const cert = { cert: pki.pem(pki.clientRsaCert), key: pki.pem(pki.clientRsaKey) };
  const real: Capture[] = [
    await capture(ask, cert),
    await capture({ ...ask, maxVersion: 'TLSv1.2' }, cert),
    await capture({ ...ask, ecdhCurve: 'P-384' }, { ecdhCurve: 'X25519:P-384' }),
    await capture({ maxVersion: 'TLSv1.2', ALPNProtocols: ['h2'] }, {}),
  ];

  // Warm the JIT so the time bound measures the parser, not compilation.
  for (let k = 0; k < 500; k++) for (const c of real) analyzeTls(c.client, c.server);

  t.test('arbitrary bytes', async (t) => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.uint8Array({ maxLength: 4096 }), fc.boolean(), (c, s, trunc) => {
        timed(c, s, { clientTruncated: trunc, serverTruncated: !trunc });
      }),
      { numRuns: RUNS },
    );
    t.pass('analyzeTls never threw');
  });

  t.test('arbitrary bytes behind a TLS handshake record header', async (t) => {
    const tlsish = fc.uint8Array({ minLength: 1, maxLength: 3000 }).map((b) => concat(Uint8Array.from([0x16, 0x03, 0x01, b.length >> 8, b.length & 0xff]), b));
    fc.assert(
      fc.property(tlsish, tlsish, (c, s) => {
        timed(c, s);
      }),
      { numRuns: RUNS },
    );
    t.pass('analyzeTls never threw');
  });

  t.test('random record sequences with handshake-like payloads', async (t) => {
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      // a handshake header whose length may lie, then bytes
      fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffffff }), fc.uint8Array({ maxLength: 300 })).map(([ty, len, b]) =>
        concat(Uint8Array.from([ty, len >> 16, (len >> 8) & 0xff, len & 0xff]), b),
      ),
    );
    const rec = fc.tuple(fc.constantFrom(20, 21, 22, 23), payload).map(([ty, p]) => record(ty, p));
    const stream = fc.array(rec, { maxLength: 12 }).map((rs) => concat(Uint8Array.from([0x16, 0x03, 0x01, 0x00, 0x04, 1, 0, 0, 0]), ...rs));
    fc.assert(
      fc.property(stream, stream, (c, s) => {
        timed(c, s);
      }),
      { numRuns: RUNS },
    );
    t.pass('analyzeTls never threw');
  });

  t.test('mutated real handshakes', async (t) => {
    const op = fc.record({
      kind: fc.constantFrom('flip', 'set', 'insert', 'delete', 'cut'),
      pos: fc.nat(),
      byte: fc.integer({ min: 0, max: 255 }),
      len: fc.integer({ min: 1, max: 64 }),
    });
    const mutate = (b: Uint8Array, ops: { kind: string; pos: number; byte: number; len: number }[]): Uint8Array => {
      let out: Uint8Array = Uint8Array.from(b);
      for (const o of ops) {
        if (out.length === 0) break;
        const p = o.pos % out.length;
        if (o.kind === 'flip') out[p] ^= 1 << (o.byte % 8);
        else if (o.kind === 'set') out[p] = o.byte;
        else if (o.kind === 'insert') out = concat(out.subarray(0, p), new Uint8Array(o.len).fill(o.byte), out.subarray(p));
        else if (o.kind === 'delete') out = concat(out.subarray(0, p), out.subarray(p + o.len));
        else out = out.subarray(0, p);
      }
      return out;
    };
    fc.assert(
      fc.property(fc.nat({ max: real.length - 1 }), fc.array(op, { maxLength: 6 }), fc.array(op, { maxLength: 6 }), (i, co, so) => {
        timed(mutate(real[i].client, co), mutate(real[i].server, so));
      }),
      { numRuns: RUNS },
    );
    t.pass('analyzeTls never threw on mutated real handshakes');
  });

  t.test('hello parsers and JA4 on arbitrary and mutated bodies', async (t) => {
    const chBody = readHandshakeMessages(real[0].client, walkRecords(real[0].client).records)[0].body;
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 2000 }),
      fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat()).map(([p, b, cut]) => {
        const m = Uint8Array.from(chBody);
        m[p % m.length] = b;
        return m.subarray(0, cut % (m.length + 1));
      }),
    );
    fc.assert(
      fc.property(body, fc.boolean(), fc.boolean(), (b, dtls, partial) => {
        const ch = parseClientHello(b, { dtls, partial });
        if (ch !== null) {
          for (const tr of ['t', 'q', 'd'] as const) if (!/^[tqd][0-9a-z]{2}[di]\d{4}[0-9a-zA-Z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/.test(ja4(ch, tr))) throw new Error(`bad ja4 ${ja4(ch, tr)}`);
        }
        parseServerHello(b, { partial });
        parseSslv2ClientHello(b);
      }),
      { numRuns: RUNS },
    );
    t.pass('parsers never threw; JA4 always well-formed');
  });

  t.test('bounded time', async (t) => {
    t.comment(`slowest analyzeTls call over all property runs: ${slowest.toFixed(2)} ms`);
    t.ok(slowest < MAX_MS_PER_CALL, `every call under ${MAX_MS_PER_CALL} ms`);
  });

  t.test('throughput on real handshakes', async (t) => {
    const n = 20000;
    const start = performance.now();
    for (let k = 0; k < n; k++) {
      const c = real[k % real.length];
      analyzeTls(c.client, c.server);
    }
    const us = ((performance.now() - start) * 1000) / n;
    const bytes = real.reduce((a, c) => a + c.client.length + c.server.length, 0) / real.length;
    t.comment(`analyzeTls: ${us.toFixed(1)} µs per flow (avg ${Math.round(bytes)} B of handshake per flow)`);
    t.ok(us < 1000, 'well under a millisecond per flow');
  });
});
