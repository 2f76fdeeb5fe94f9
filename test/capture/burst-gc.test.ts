import t from 'tap';
import { BurstGc } from '../../agent/src/burst-gc.js';

t.test('one collection per burst, after it, never for a trickle', async (t) => {
  let runs = 0;
  let now = 1_000_000;
  const b = new BurstGc(() => () => runs++, () => now);
  let classified = 0;
  const drain = (n: number) => {
    classified += n;
    now += 1000;
    b.after(classified);
  };
  for (let i = 0; i < 60; i++) drain(100); // a trickle: 100 flows/s for a minute
  t.equal(runs, 0, 'a trickle never collects');
  for (let i = 0; i < 5; i++) drain(20_000); // a burst of 100k flows, 20k per drain
  t.equal(runs, 1, 'a sustained burst collects every 5 bursts\u2019 worth');
  drain(20_000);
  drain(500); // quiet again
  t.equal(runs, 1, 'not twice within the minimum gap');
  for (let i = 0; i < 10; i++) drain(0);
  t.equal(runs, 2, 'the rest of that burst, once the gap has passed');
  for (let i = 0; i < 20; i++) drain(0);
  t.equal(runs, 2, 'idle: nothing to collect');
  drain(30_000);
  t.equal(runs, 2, 'not during a burst');
  drain(0);
  t.equal(runs, 3, 'the next burst collects as soon as it is over');
});

t.test('the real collector is available (or null, never a throw)', async (t) => {
  const b = new BurstGc();
  t.doesNotThrow(() => b.after(100_000));
  t.ok(b.runs <= 1);
});
