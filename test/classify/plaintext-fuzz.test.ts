// Property tests for the plaintext detectors and looksLikeText: never throw, bounded time,
// and what random bytes (stand-ins for ciphertext) are called — plaintext for random
// bytes is the opposite of the dangerous error, but it is still wrong, so it is measured.

import fc from 'fast-check';
import t from 'tap';
import { detectPlaintextTcp, detectPlaintextUdp, looksLikeText } from '../../agent/src/classify/plaintext.js';
import { INTERESTING_PORTS, PLAINTEXT_STARTS, Prng, mutate } from '../lab/wire-fuzz.js';

const SEED = Number(process.env.PLAINSIGHT_FUZZ_SEED ?? 20240611);
const RUNS = 20000;
const port = fc.oneof(fc.constantFrom(...INTERESTING_PORTS), fc.integer({ min: 0, max: 65535 }));
const input = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }),
  fc.tuple(fc.constantFrom(...PLAINTEXT_STARTS), fc.uint8Array({ maxLength: 64 }), fc.nat()).map(([p, r, cut]) => Uint8Array.from([...p.subarray(0, cut % (p.length + 1)), ...r])),
  fc.string({ maxLength: 400 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))),
);

t.test('never throws, on any bytes and ports', async (t) => {
  fc.assert(
    fc.property(input, input, port, port, (c, s, cp, sp) => {
      detectPlaintextTcp(c, s, cp, sp);
      detectPlaintextUdp([c], [s], cp, sp);
      looksLikeText(c);
    }),
    { numRuns: 10000 },
  );
  const r = new Prng(SEED);
  for (let i = 0; i < 5000; i++) {
    const c = mutate(r, PLAINTEXT_STARTS[i % PLAINTEXT_STARTS.length]);
    const s = mutate(r, PLAINTEXT_STARTS[r.int(PLAINTEXT_STARTS.length)]);
    detectPlaintextTcp(c, s, 40000, INTERESTING_PORTS[i % INTERESTING_PORTS.length]);
    detectPlaintextUdp([c, s], [s], 40000, INTERESTING_PORTS[i % INTERESTING_PORTS.length]);
  }
  t.pass('no exception');
});

t.test('bounded time: large and pathological inputs', async (t) => {
  const r = new Prng(SEED);
  const mk = (s: string, n: number): Uint8Array => new Uint8Array(Buffer.from(s.repeat(Math.ceil(n / s.length)).slice(0, n), 'latin1'));
  const cases: [string, Uint8Array][] = [
    ['random', r.bytes(1 << 20)],
    ['one long line', mk('a', 1 << 20)],
    ['empty lines', mk('\r\n', 1 << 20)],
    ['request line, endless target', mk('GET /' + 'x'.repeat(100), 1 << 20)],
    ['endless header block', new Uint8Array(Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n'), Buffer.from(mk('X: y\r\n', 1 << 20))]))],
    ['SMTP continuation lines', mk('250-x\r\n', 1 << 20)],
    ['IMAP literals', mk('* x {1}\r\n', 1 << 20)],
    ['RESP', mk('*1\r\n$4\r\nPING\r\n', 1 << 20)],
    ['h2 frames', new Uint8Array(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from(mk('\x00\x00\x00\x01\x00\x00\x00\x00\x01', 1 << 20))]))],
  ];
  for (const [name, b] of cases) {
    const t0 = process.hrtime.bigint();
    detectPlaintextTcp(b, b, 40000, 25);
    detectPlaintextUdp([b], [b], 40000, 53);
    looksLikeText(b);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    t.ok(ms < 100, `${name} (1 MiB): ${ms.toFixed(2)} ms`);
  }
});

t.test('throughput on typical flows', async (t) => {
  const r = new Prng(SEED);
  const flows: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i < 2000; i++) flows.push([r.int(2) ? r.bytes(r.int(1500)) : PLAINTEXT_STARTS[i % PLAINTEXT_STARTS.length], r.bytes(r.int(600))]);
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < 5; k++) for (const [c, s] of flows) detectPlaintextTcp(c, s, 40000, 40001);
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / (flows.length * 5);
  t.comment(`detectPlaintextTcp: ${us.toFixed(2)} µs per flow`);
  t.ok(us < 200, 'well under a millisecond per flow');
});

/**
 * Random bytes called plaintext: the named detectors need exact multi-byte structure
 * (a method and "HTTP/1.", a RESP header, a length that agrees with a version…), and
 * looksLikeText needs ≥ 8 bytes that are all printable (p ≤ 0.38^8 ≈ 4e-4 for 8 bytes,
 * falling geometrically). Over 20,000 random flows of 0–1500 bytes we allow 0.5%.
 */
t.test('random bytes are rarely called plaintext', async (t) => {
  const r = new Prng(SEED + 2);
  let named = 0;
  let text = 0;
  const protocols = new Map<string, number>();
  for (let i = 0; i < RUNS; i++) {
    const c = r.bytes(r.int(1500));
    const s = r.bytes(r.int(1500));
    const m = detectPlaintextTcp(c, s, 40000, INTERESTING_PORTS[i % INTERESTING_PORTS.length]) ?? detectPlaintextUdp([c], [s], 40000, INTERESTING_PORTS[i % INTERESTING_PORTS.length]);
    if (m) {
      named++;
      protocols.set(m.protocol, (protocols.get(m.protocol) ?? 0) + 1);
    }
    if (looksLikeText(c)) text++;
  }
  t.comment(`random bytes named plaintext: ${named}/${RUNS} ${JSON.stringify([...protocols])}; looksLikeText: ${text}/${RUNS}`);
  t.ok(named <= RUNS / 200, 'named plaintext protocols: <= 0.5%');
  t.ok(text <= RUNS / 200, 'looksLikeText: <= 0.5%');
});

t.test('looksLikeText', async (t) => {
  const yes = ['hello world\n', 'GET / HTTP/1.1\r\n', '{"key": "value", "n": 1}\n', 'Grüße aus Köln, ça va?\n', 'a'.repeat(40), 'tab\tseparated\tvalues\n', '日本語のテキストです。\n'];
  const no = ['', 'abc', 'short\n\x00', 'x\x00\x01\x02\x03\x04\x05\x06\x07\n', '\xff\xfe\xfd\xfcabcdefgh\n'];
  for (const s of yes) t.ok(looksLikeText(new Uint8Array(Buffer.from(s, 'utf8'))), JSON.stringify(s));
  for (const s of no) t.notOk(looksLikeText(new Uint8Array(Buffer.from(s, 'latin1'))), JSON.stringify(s));
  t.notOk(looksLikeText(new Uint8Array(Buffer.from('no newline but short', 'latin1'))), 'no line break and under 32 bytes');
  const cut = new Uint8Array(Buffer.from('text then a cut UTF-8 sequence é', 'utf8')).subarray(0, 33);
  t.ok(looksLikeText(cut), 'a multi-byte sequence cut by the capture');
  const oneBad = new Uint8Array(Buffer.from('a'.repeat(100) + '\x01' + 'b'.repeat(27) + '\n', 'latin1'));
  t.ok(looksLikeText(oneBad), 'one stray control byte in 129');
});
