#!/usr/bin/env node
// Records the fuzz seed corpus (test/fixtures/fuzz/corpus/): real handshakes and loopback
// captures. Needs root (tcpdump, dumpcap on lo), openssl, ssh. Run again only to refresh
// the corpus; fuzz runs and CI read the stored files. --nasty (re)writes the hand-picked
// hostile inputs (test/lab/fuzz-nasty.ts) into test/fixtures/fuzz/crashes/ instead.
//
//   node bench/fuzz/make-corpus.mjs [--nasty]
import { ensureTypeScript } from './ts.mjs';

ensureTypeScript();
if (process.argv.includes('--nasty')) {
  const { loadCorpus } = await import('../../test/lab/fuzz-corpus.ts');
  const { nastyInputs } = await import('../../test/lab/fuzz-nasty.ts');
  const { saveCrash } = await import('../../test/lab/fuzz-engine.ts');
  for (const n of nastyInputs(loadCorpus())) console.log(`${saveCrash(n.target, n.bytes).pathname}: ${n.why}`);
} else {
  const { makeCorpus } = await import('../../test/lab/fuzz-corpus.ts');
  for (const line of await makeCorpus()) console.log(line);
}
