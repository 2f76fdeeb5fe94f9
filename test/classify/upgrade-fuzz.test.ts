// Property tests for findUpgrade: never throws, bounded time, and its one promise — an
// Upgrade's offsets lie within the streams and at least one of them starts a TLS record,
// and no offset lands on bytes that contradict TLS.

import fc from 'fast-check';
import t from 'tap';
import { findUpgrade } from '../../agent/src/classify/upgrade.js';
import { PLAINTEXT_STARTS, Prng, mutate } from '../lab/wire-fuzz.js';

const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const HELLO = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00];
const SERVER_HELLO = [0x16, 0x03, 0x03, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00];

/** Plaintext openings of every upgrade we follow (client, server). */
const OPENINGS: [Uint8Array, Uint8Array][] = [
  [enc('EHLO x\r\nSTARTTLS\r\n'), enc('220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n')],
  [enc('a STARTTLS\r\n'), enc('* OK hi\r\na OK go\r\n')],
  [enc('STLS\r\n'), enc('+OK hi\r\n+OK go\r\n')],
  [enc('AUTH TLS\r\n'), enc('220 ftp\r\n234 go\r\n')],
  [enc('\x00\x00\x00\x08\x04\xd2\x16\x2f'), enc('S')],
  [enc('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n'), enc('HTTP/1.1 200 OK\r\n\r\n')],
  [enc('PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n'), enc('')],
  [enc('AMQP\x02\x01\x00\x00'), enc('AMQP\x02\x01\x00\x00')],
  [enc('\x30\x1d\x02\x01\x01\x77\x18\x80\x161.3.6.1.4.1.1466.20037'), enc('\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00')],
];

function tlsAt(b: Uint8Array, off: number): boolean {
  return off + 3 <= b.length && b[off] === 0x16 && b[off + 1] === 0x03 && b[off + 2] <= 4;
}

function checkInvariant(c: Uint8Array, s: Uint8Array): string | null {
  const u = findUpgrade(c, s, 40000, 40001);
  if (!u || 'refused' in u) return null;
  if (u.clientOffset < 0 || u.clientOffset > c.length || u.serverOffset < 0 || u.serverOffset > s.length) return `offsets out of range: ${JSON.stringify(u)}`;
  if (!tlsAt(c, u.clientOffset) && !tlsAt(s, u.serverOffset)) return `neither offset starts TLS: ${JSON.stringify(u)}`;
  return null;
}

t.test('never throws; offsets always in range and on a TLS record', async (t) => {
  const opening = fc.constantFrom(...OPENINGS);
  const tail = fc.oneof(fc.constant(Uint8Array.from(HELLO)), fc.uint8Array({ maxLength: 64 }));
  fc.assert(
    fc.property(opening, tail, tail, fc.nat(), fc.nat(), (o, ct, st, cut1, cut2) => {
      const c = Uint8Array.from([...o[0], ...ct]);
      const s = Uint8Array.from([...o[1], ...(st.length ? st : SERVER_HELLO)]);
      const err = checkInvariant(c.subarray(0, cut1 % (c.length + 1)), s.subarray(0, cut2 % (s.length + 1)));
      if (err) throw new Error(err);
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1024 }), fc.uint8Array({ maxLength: 1024 }), (c, s) => {
      const err = checkInvariant(c, s);
      if (err) throw new Error(err);
    }),
    { numRuns: 5000 },
  );
  const r = new Prng(7);
  for (let i = 0; i < 5000; i++) {
    const [c0, s0] = OPENINGS[i % OPENINGS.length];
    const err = checkInvariant(mutate(r, Uint8Array.from([...c0, ...HELLO])), mutate(r, Uint8Array.from([...s0, ...SERVER_HELLO])));
    if (err) t.fail(err);
  }
  for (const p of PLAINTEXT_STARTS) t.equal(findUpgrade(p, new Uint8Array(0), 1, 2), null, 'plain starts alone are no upgrade');
});

t.test('bounded time on pathological inputs', async (t) => {
  const mk = (s: string, n: number): Uint8Array => enc(s.repeat(Math.ceil(n / s.length)).slice(0, n));
  const cases: [string, Uint8Array, Uint8Array][] = [
    ['SMTP replies', mk('EHLO x\r\n', 1 << 20), mk('250-x\r\n', 1 << 20)],
    ['IMAP literals', mk('a NOOP\r\n', 1 << 20), mk('* x {1}\r\n', 1 << 20)],
    ['POP3 bodies', mk('CAPA\r\n', 1 << 20), mk('+OK\r\nx\r\n', 1 << 20)],
    ['CONNECT headers', enc('CONNECT a:1 HTTP/1.1\r\n' + 'X: y\r\n'.repeat(200000)), mk('HTTP/1.1 200 OK\r\n', 1 << 20)],
  ];
  for (const [name, c, s] of cases) {
    const t0 = process.hrtime.bigint();
    findUpgrade(c, s, 1, 2);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    t.ok(ms < 100, `${name}: ${ms.toFixed(2)} ms`);
  }
});
