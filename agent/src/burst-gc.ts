// A full garbage collection after a classification burst. Each flow's samples (and the
// objects built to classify it) live ~classifyAfter, long enough to be promoted to V8's
// old space, and are dropped all at once when the flow is classified: after a burst of
// 100k new flows the old space holds ~200 MiB of such garbage that default V8 collects
// only much later (bench/datapath: JS heap 258 MiB used for ~55 MiB live, RSS 371 MiB).
// One major GC when a burst is over (≥ BURST_FLOWS classified since the last one, then a
// quiet drain; at most every MIN_GAP_MS) returns it at once; a steady trickle of flows
// never triggers it. Cost: one mark-compact of the live heap (tens of ms) per burst.

import v8 from 'node:v8';
import vm from 'node:vm';

/** Flows classified since the last collection that make a burst. */
const BURST_FLOWS = 20_000;
/** A burst is over when a drain classifies fewer than this many flows. */
const QUIET_FLOWS = 2_000;
const MIN_GAP_MS = 10_000;

let gcFn: (() => void) | null | undefined;

function gc(): (() => void) | null {
  if (gcFn === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gcFn = vm.runInNewContext('gc') as () => void;
    } catch {
      gcFn = null; // not available: V8 collects on its own schedule
    }
  }
  return gcFn;
}

export class BurstGc {
  /** `collect`: a full collection (tests pass a counter); default V8's, via --expose-gc. */
  constructor(
    private readonly collect: () => (() => void) | null = gc,
    private readonly now: () => number = Date.now,
  ) {}

  private atLastGc = 0;
  private atLastDrain = 0;
  private lastAt = 0;
  runs = 0;

  /**
   * After a drain: `classified` is the running count of flows classified. Collects once a
   * burst is over (this drain classified few) — or every 5 bursts' worth under sustained load.
   */
  after(classified: number): void {
    const thisDrain = classified - this.atLastDrain;
    this.atLastDrain = classified;
    const since = classified - this.atLastGc;
    if (since < BURST_FLOWS || (thisDrain >= QUIET_FLOWS && since < 5 * BURST_FLOWS)) return;
    const now = this.now();
    if (now - this.lastAt < MIN_GAP_MS) return;
    this.atLastGc = classified;
    this.lastAt = now;
    const f = this.collect();
    if (f) {
      f();
      this.runs++;
    }
  }
}
