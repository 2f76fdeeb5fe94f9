// Every input in test/fixtures/fuzz/crashes/ — crashes the fuzzer found (kept after the fix)
// and hand-picked hostile inputs (test/lab/fuzz-nasty.ts) — replayed through its target;
// plus each real seed cut at every byte, the shape a capture's snap length or a prefix
// limit produces. None may throw or break the contract.

import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { CRASH_DIR, runOne, targetOfCrashFile, type Target } from '../lab/fuzz-engine.js';
import { fuzzSetup } from '../lab/fuzz-setup.js';
import { encodeFlow, type FuzzContext } from '../lab/fuzz-targets.js';
import { classify } from '../../agent/src/classify/index.js';
import { readFlowsFromBytes } from '../../agent/src/offline/flows.js';
import { toFlowJson } from '../../agent/src/offline/report.js';

const { targets, ctx } = fuzzSetup();
const byName = new Map(targets.map((x) => [x.name, x]));
const target = (name: string): Target<FuzzContext> => byName.get(name)!;

t.test('crash files replay without a crash', async (t) => {
  const files = readdirSync(CRASH_DIR).filter((f) => f.endsWith('.bin'));
  t.ok(files.length >= 10, `${files.length} files to replay`);
  for (const f of files) {
    const name = targetOfCrashFile(f);
    const tg = name === undefined ? undefined : byName.get(name);
    t.ok(tg, `${f}: names a target`);
    if (!tg) continue;
    const r = runOne(tg, new Uint8Array(readFileSync(new URL(f, CRASH_DIR))));
    t.equal(r.error, undefined, `${f}: ${r.label ?? 'crashed'} in ${(r.ns / 1e6).toFixed(2)} ms`);
  }
});

t.test('found: a pcapng whose if_tsresol makes packet times overflow Date no longer fails the report', async (t) => {
  // pcapng-flows crash (RangeError: Invalid time value in isoTime), fixed in offline/report.ts.
  const bytes = new Uint8Array(readFileSync(new URL('pcapng-flows-bdaafec5274c3b2cfd56c9045fd2a3f758303829.bin', CRASH_DIR)));
  const { flows } = readFlowsFromBytes(bytes, 'tsresol.pcapng');
  const wild = flows.filter((f) => !(Math.abs(f.firstSeenMs) <= 8.64e15));
  t.ok(wild.length > 0, `${wild.length} flows with times beyond what a Date holds (the input still has its point)`);
  for (const f of wild) {
    const out = toFlowJson(f, classify(f.bytesForClassifier));
    t.equal(out.firstSeen, undefined, 'an unrepresentable time is left out');
    t.ok(out.verdict, 'the flow is still reported');
  }
});

/** Runs every prefix of `b` (every `step`-th length) through a target; returns the first crash. */
function everyPrefix(tg: Target<FuzzContext>, b: Uint8Array, wrap: (p: Uint8Array) => Uint8Array, step = 1): string | undefined {
  for (let n = 0; n <= b.length; n += step) {
    const r = runOne(tg, wrap(b.subarray(0, n)));
    if (r.error !== undefined) return `cut at ${n}: ${r.error}`;
  }
  return undefined;
}

const same = (p: Uint8Array): Uint8Array => p;

t.test('real seeds cut at every byte', async (t) => {
  for (const s of ctx.tcpSeeds) {
    const f = s.flow;
    t.equal(
      everyPrefix(target('classify-tcp'), f.client, (p) => encodeFlow({ ...f, client: p, clientTruncated: true })),
      undefined,
      `${s.name}: client direction`,
    );
    t.equal(
      everyPrefix(target('classify-tcp'), f.server, (p) => encodeFlow({ ...f, server: p, serverTruncated: true })),
      undefined,
      `${s.name}: server direction`,
    );
  }
  for (const s of ctx.udpSeeds) {
    const d = s.flow.clientDatagrams[0];
    if (!d) continue;
    t.equal(everyPrefix(target('classify-udp'), d, (p) => encodeFlow({ ...s.flow, clientDatagrams: [p] })), undefined, `${s.name}: first datagram`);
  }
  for (const h of ctx.clientHellos) t.equal(everyPrefix(target('tls-ja4'), h, same), undefined, 'ClientHello body → JA4');
  for (const h of ctx.serverHellos) t.equal(everyPrefix(target('tls-server-hello-partial'), h, same), undefined, 'ServerHello body');
  t.equal(everyPrefix(target('pcap-read'), ctx.corpus.pcap, same), undefined, 'pcap file');
  t.equal(everyPrefix(target('pcapng-read'), ctx.corpus.pcapng, same), undefined, 'pcapng file');
  // The full offline path is slower: every 7th length still lands inside every record and block header.
  t.equal(everyPrefix(target('pcap-flows'), ctx.corpus.pcap, same, 7), undefined, 'pcap file → flows → classify');
  t.equal(everyPrefix(target('pcapng-flows'), ctx.corpus.pcapng, same, 7), undefined, 'pcapng file → flows → classify');
});
