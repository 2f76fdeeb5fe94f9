// One call for the runner, its workers and the tests: the stored corpus, its seed pools and the targets.
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

import { loadCorpus } from './fuzz-corpus.js';
import type { Target } from './fuzz-engine.js';
import { buildContext, buildTargets, type FuzzContext } from './fuzz-targets.js';

/**
 * PLAINSIGHT_FUZZ_PLANT=throw|hang adds a target with a planted bug (on TLS-looking input),
 * so a test can check that the runner reports crashes and stops hung workers.
 */
export function fuzzSetup(): { targets: Target<FuzzContext>[]; ctx: FuzzContext } {
  const targets = buildTargets();
  const plant = process.env.PLAINSIGHT_FUZZ_PLANT;
  if (plant === 'throw' || plant === 'hang') {
    const base = targets.find((t) => t.name === 'tls-records')!;
    targets.push({
      name: `planted-${plant}`,
      gen: base.gen,
      run: (b) => {
        if (b[0] === 0x16 && b[1] === 3) {
          if (plant === 'throw') throw new RangeError('planted');
          for (;;);
        }
        return 'ok';
      },
    });
  }
  return { targets, ctx: buildContext(loadCorpus()) };
}
