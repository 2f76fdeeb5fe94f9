// The CI slice of the fuzzer (bench/fuzz/run.mjs runs the long one with the same engine):
// every wire parser — TLS, QUIC, DTLS, SSH, WireGuard, OpenVPN, IPsec, each plaintext
// detector, upgrades, classify() both ways, pcap/pcapng, packet decode per link type,
// offline flows, the capture assembler — gets a few hundred mutated real seeds and random
// inputs from a fixed seed. No exception, no contract violation, no input near a hang; and
// the corpus is real: mutated seeds still give their recorded answer some of the time.
// PLAINSIGHT_FUZZ_SEED / PLAINSIGHT_FUZZ_PER_TARGET change the slice.

import t from 'tap';
import { inputAt, quantileUs, runInputs, type Crash, type Target } from '../lab/fuzz-engine.js';
import { fuzzSetup } from '../lab/fuzz-setup.js';
import type { FuzzContext } from '../lab/fuzz-targets.js';

const SEED = Number(process.env.PLAINSIGHT_FUZZ_SEED ?? 20240611);
const PER_TARGET = Number(process.env.PLAINSIGHT_FUZZ_PER_TARGET ?? 2000);
/** Only catches a runaway loop: the CPU is shared, so no tight bound. */
const HANG_MS = 2000;

const { targets, ctx } = fuzzSetup();

t.test('the engine finds a crash, and input i is the same bytes every time', async (t) => {
  // A planted bug: the "parser" throws on inputs starting 0x16 0x03 (every TLS seed does).
  const planted: Target<FuzzContext> = {
    ...targets.find((x) => x.name === 'tls-records')!,
    name: 'planted',
    run: (b) => {
      if (b[0] === 0x16 && b[1] === 3) throw new RangeError('planted');
      return 'ok';
    },
  };
  const crashes: Crash[] = [];
  const stats = runInputs({ targets: [planted], ctx, seed: SEED, from: 0, to: 200, onCrash: (c) => crashes.push(c) });
  t.ok(crashes.length > 0, `planted bug found (${crashes.length}/200 inputs)`);
  t.equal(stats.get('planted')!.crashes, crashes.length);
  t.match(crashes[0]!.error, /RangeError: planted/);
  const again = inputAt([planted], ctx, SEED, crashes[0]!.index).gen.bytes;
  t.same(again, crashes[0]!.bytes, 'the crashing input regenerates from its index');
});

t.test(`${targets.length} targets × ${PER_TARGET} inputs, seed ${SEED}`, async (t) => {
  const crashes: Crash[] = [];
  const t0 = Date.now();
  const stats = runInputs({ targets, ctx, seed: SEED, from: 0, to: targets.length * PER_TARGET, onCrash: (c) => crashes.push(c) });
  const seconds = (Date.now() - t0) / 1000;
  const total = [...stats.values()].reduce((a, s) => a + s.inputs, 0);
  t.comment(`${total} inputs in ${seconds.toFixed(1)} s (${Math.round(total / seconds)}/s)`);

  for (const c of crashes.slice(0, 10)) {
    t.comment(`CRASH ${c.target} input ${c.index}: ${c.error.split('\n')[0]}\n  reproduce and save: node bench/fuzz/run.mjs --seed ${SEED} --start ${c.index} --inputs 1 --workers 1`);
  }
  t.equal(crashes.length, 0, 'no exception and no contract violation in any target');

  for (const tg of targets) {
    const s = stats.get(tg.name)!;
    t.ok(s.inputs > 0, `${tg.name}: ran ${s.inputs} inputs`);
    if (tg.realSeeds) t.ok(s.hits > 0, `${tg.name}: mutated real seeds still parse as recorded ${s.hits}/${s.expected} times`);
    t.ok(s.maxNs / 1e6 < HANG_MS, `${tg.name}: slowest input ${(s.maxNs / 1e6).toFixed(2)} ms (p50 ${quantileUs(s, 0.5).toFixed(1)} µs, p99 ${quantileUs(s, 0.99).toFixed(1)} µs)`);
  }
});
