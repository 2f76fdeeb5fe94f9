// Property tests for the encrypted-other detectors: any bytes are handled without throwing
// and in bounded time; random bytes and mutated plaintext are (almost) never called
// encrypted. The rates are measured on a seeded PRNG so a failure can be reproduced
// (PLAINSIGHT_FUZZ_SEED overrides the seed).

import fc from 'fast-check';
import t from 'tap';
import { detectEncryptedTcp, detectEncryptedUdp } from '../../agent/src/classify/encrypted-other.js';
import { INTERESTING_PORTS, PLAINTEXT_STARTS, Prng, mutate } from '../lab/wire-fuzz.js';

const SEED = Number(process.env.PLAINSIGHT_FUZZ_SEED ?? 20240611);
const RUNS = 20000;

const port = fc.oneof(fc.constantFrom(...INTERESTING_PORTS), fc.integer({ min: 0, max: 65535 }));
/** Random bytes that sometimes start like one of the encrypted protocols, to reach deep paths. */
const prefixes = [
  [0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0], // DTLS record, epoch 0
  [0xc3, 0, 0, 0, 1, 8], // QUIC v1 Initial
  [0xd3, 0x6b, 0x33, 0x43, 0xcf, 8], // QUIC v2 Initial
  [1, 0, 0, 0],
  [2, 0, 0, 0],
  [4, 0, 0, 0], // WireGuard
  [0x38],
  [0x50],
  [0x40], // OpenVPN resets
  [0, 0, 0, 0], // non-ESP marker
  [...Buffer.from('SSH-2.0-x\r\n')],
  [0, 14, 0x38],
];
const datagram = fc.oneof(
  fc.uint8Array({ maxLength: 1500 }),
  fc.tuple(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 400 })).map(([p, r]) => Uint8Array.from([...p, ...r])),
);

t.test('never throws, on any bytes and ports', async (t) => {
  fc.assert(
    fc.property(datagram, datagram, port, port, (c, s, cp, sp) => {
      detectEncryptedTcp(c, s, cp, sp);
      detectEncryptedUdp([c], [s], cp, sp);
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.array(datagram, { maxLength: 10 }), fc.array(datagram, { maxLength: 10 }), port, port, (c, s, cp, sp) => {
      detectEncryptedUdp(c, s, cp, sp);
    }),
    { numRuns: 2000 },
  );
  t.pass('no exception');
});

t.test('bounded time: large and pathological inputs', async (t) => {
  const r = new Prng(SEED);
  const big = r.bytes(1 << 20);
  const lines = new Uint8Array(1 << 20).fill(0x0a); // a million empty lines
  const banner = new Uint8Array(1 << 20).fill(0x41);
  banner.set(Buffer.from('SSH-2.0-'), 0);
  for (const b of [big, lines, banner]) {
    const t0 = process.hrtime.bigint();
    detectEncryptedTcp(b, b, 1, 22);
    detectEncryptedUdp([b, b, b, b, b, b, b, b, b, b], [b], 4500, 500);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    t.ok(ms < 50, `1 MiB input handled in ${ms.toFixed(2)} ms (work is bounded, not proportional to input)`);
  }
});

/**
 * Random bytes: every encrypted detector needs structure that random bytes match with
 * probability far below 1e-6 per flow (QUIC: an exact 32-bit version; DTLS: type + 16-bit
 * version + 40 zero bits of epoch/sequence; WireGuard: 32 exact header bits; OpenVPN: an
 * opcode byte plus ≥24 zero bits of packet id; SSH: "SSH-" and a KEXINIT). The exception is
 * ESP on UDP 4500, which is *defined* as indistinguishable from random once its SPI is
 * valid — so the random-port rate is bounded here and the 4500 behaviour asserted apart.
 * Over 20,000 flows the expected count is < 0.02; allowing 2 (a rate of 1e-4) keeps the
 * test from flaking (P[X ≥ 3] < 2e-6) while catching any detector that is merely loose.
 */
t.test('false-positive rate on random bytes', async (t) => {
  const r = new Prng(SEED);
  let tcpHits = 0;
  let udpHits = 0;
  const examples: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const c = r.bytes(r.int(1500));
    const s = r.bytes(r.int(1500));
    // random ports, except NAT-T's 4500 (measured apart below)
    let cp = 1024 + r.int(64000);
    let sp = 1024 + r.int(64000);
    if (cp === 4500) cp++;
    if (sp === 4500) sp++;
    const a = detectEncryptedTcp(c, s, cp, sp);
    const u = detectEncryptedUdp([c, r.bytes(r.int(300))], [s], cp, sp);
    if (a) tcpHits++;
    if (u) udpHits++;
    if ((a || u) && examples.length < 3) examples.push(`${(a ?? u)?.protocol}: ${(a ?? u)?.evidence}`);
  }
  t.comment(`random bytes, random ports: TCP ${tcpHits}/${RUNS}, UDP ${udpHits}/${RUNS} called encrypted ${examples.join('; ')}`);
  t.ok(tcpHits <= 2, `TCP false-positive rate ${tcpHits / RUNS} <= 1e-4`);
  t.ok(udpHits <= 2, `UDP false-positive rate ${udpHits / RUNS} <= 1e-4`);

  // the well-known ports of the encrypted protocols change nothing except NAT-T ESP
  let portHits = 0;
  for (let i = 0; i < RUNS; i++) {
    const sp = [22, 443, 500, 1194, 51820][i % 5];
    if (detectEncryptedUdp([r.bytes(r.int(1500))], [], 40000, sp) || detectEncryptedTcp(r.bytes(r.int(1500)), r.bytes(r.int(200)), 40000, sp)) portHits++;
  }
  t.comment(`random bytes on 22/443/500/1194/51820: ${portHits}/${RUNS}`);
  t.ok(portHits <= 2, 'a port is never evidence');

  // ESP is random-looking by definition: on 4500 what separates it from noise is the
  // sequence number (a lone packet: < 2^28, so 1/16 of random datagrams) or a series
  let espHits = 0;
  let espSeries = 0;
  for (let i = 0; i < 1000; i++) {
    if (detectEncryptedUdp([r.bytes(64 + r.int(1400))], [], 40000, 4500)?.protocol === 'ipsec') espHits++;
    const a = r.bytes(64 + r.int(1400));
    const b = r.bytes(64 + r.int(1400));
    b.set(a.subarray(0, 4), 0);
    a.set([0, 0, 0, 7], 4);
    b.set([0, 0, 0, 8], 4);
    if (detectEncryptedUdp([a, b], [], 40000, 4500)?.protocol === 'ipsec') espSeries++;
  }
  t.comment(`UDP 4500: random lone datagrams read as ESP ${espHits}/1000 (expected ~1/16); SPI+sequence series ${espSeries}/1000`);
  t.ok(espHits < 120, 'a lone random datagram needs a plausible sequence number');
  t.ok(espSeries > 990, 'a series with one SPI and increasing sequence numbers is ESP');
});

t.test('mutated plaintext is never called encrypted', async (t) => {
  const r = new Prng(SEED + 1);
  let hits = 0;
  const examples: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const base = PLAINTEXT_STARTS[i % PLAINTEXT_STARTS.length];
    const c = mutate(r, base);
    const s = mutate(r, PLAINTEXT_STARTS[r.int(PLAINTEXT_STARTS.length)]);
    const sp = INTERESTING_PORTS[r.int(INTERESTING_PORTS.length)];
    const m = detectEncryptedTcp(c, s, 40000, sp) ?? detectEncryptedUdp([c], [s], 40000, sp);
    if (m) {
      hits++;
      if (examples.length < 3) examples.push(`${m.protocol}: ${m.evidence} <- ${Buffer.from(c.subarray(0, 24)).toString('hex')}`);
    }
  }
  t.comment(`mutated plaintext called encrypted: ${hits}/${RUNS} ${examples.join('; ')}`);
  t.equal(hits, 0, 'no mutated plaintext start reads as SSH, QUIC, DTLS, WireGuard, IPsec or OpenVPN');
});
