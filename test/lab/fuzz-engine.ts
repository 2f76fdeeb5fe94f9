// The fuzz engine shared by the long runner (bench/fuzz/run.mjs, worker threads) and the
// CI test (test/fuzz/fuzz-short.test.ts): a seeded generator, a mutator, the loop that
// times every call, and crash files. The targets live in fuzz-targets.ts.
//
// Input i of a run is a pure function of (seed, i): target i % targets.length, with a
// PRNG seeded from (seed, i). Workers split the index space, and any input — including
// one that hung a worker — can be regenerated from its index alone.
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';

/** mulberry32: a fast 32-bit PRNG; plain numbers, no BigInt, so generation stays cheap next to parsing. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed | 0;
  }
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  int(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() < p * 4294967296;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      b[i] = v;
      if (i + 1 < n) b[i + 1] = v >>> 8;
      if (i + 2 < n) b[i + 2] = v >>> 16;
      if (i + 3 < n) b[i + 3] = v >>> 24;
    }
    return b;
  }
  /** A length skewed towards small values (most parsers branch early), up to max. */
  length(max: number): number {
    return this.int(1 + (this.chance(0.7) ? Math.min(max, 64) : max));
  }
}

/** The PRNG of input i: a 32-bit mix of seed and index (murmur3's finaliser). */
export function inputRng(seed: number, i: number): Rng {
  let h = (seed ^ Math.imul(i >>> 0, 0x9e3779b1) ^ Math.imul(Math.floor(i / 4294967296), 0x85ebca6b)) | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return new Rng(h ^ (h >>> 16));
}

const INTERESTING_8 = [0x00, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0d, 0x16, 0x17, 0x20, 0x30, 0x7f, 0x80, 0x81, 0xc0, 0xfe, 0xff];
const INTERESTING_16 = [0x0000, 0x0001, 0x0003, 0x00ff, 0x0100, 0x0303, 0x0304, 0x3fff, 0x4000, 0x7fff, 0x8000, 0xfefd, 0xfffe, 0xffff];
const INTERESTING_32 = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x0a0d0d0a, 0x1a2b3c4d, 0xa1b2c3d4, 0x00010000];

function insert(b: Uint8Array, at: number, ins: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length + ins.length);
  out.set(b.subarray(0, at));
  out.set(ins, at);
  out.set(b.subarray(at), at + ins.length);
  return out;
}

function remove(b: Uint8Array, at: number, n: number): Uint8Array {
  const out = new Uint8Array(b.length - n);
  out.set(b.subarray(0, at));
  out.set(b.subarray(at + n), at);
  return out;
}

function writeBE(b: Uint8Array, at: number, size: number, v: number): void {
  for (let k = size - 1; k >= 0; k--) {
    if (at + k < b.length) b[at + k] = v;
    v = Math.floor(v / 256);
  }
}

function readBE(b: Uint8Array, at: number, size: number): number {
  let v = 0;
  for (let k = 0; k < size; k++) v = v * 256 + (b[at + k] ?? 0);
  return v;
}

/**
 * A copy of src with 1–8 mutations: bit flips, interesting values (8/16/32-bit, both
 * byte orders), length fields nudged by a few or set to 0/max/the remaining length,
 * truncation, insertion, deletion, duplication, and splicing from another seed (`pool`).
 */
export function mutate(r: Rng, src: Uint8Array, pool: readonly Uint8Array[] = []): Uint8Array {
  let b: Uint8Array = Uint8Array.from(src);
  const n = 1 + (r.chance(0.5) ? 0 : r.int(8));
  for (let k = 0; k < n; k++) {
    const at = b.length ? r.int(b.length) : 0;
    switch (r.int(12)) {
      case 0:
        if (b.length) b[at] ^= 1 << r.int(8);
        break;
      case 1:
        if (b.length) b[at] = r.pick(INTERESTING_8);
        break;
      case 2: {
        const v = r.pick(INTERESTING_16);
        if (r.chance(0.5)) writeBE(b, at, 2, v);
        else writeBE(b, at, 2, ((v & 0xff) << 8) | (v >>> 8));
        break;
      }
      case 3: {
        const v = r.pick(INTERESTING_32);
        if (r.chance(0.5)) writeBE(b, at, 4, v);
        else writeBE(b, at, 4, ((v & 0xff) << 24 | ((v >>> 8) & 0xff) << 16 | ((v >>> 16) & 0xff) << 8 | (v >>> 24)) >>> 0);
        break;
      }
      case 4:
      case 5: {
        // Length fields: 1, 2, 3 (TLS handshake) or 4 bytes, big-endian.
        const size = r.pick([1, 2, 2, 3, 4]);
        const max = 2 ** (8 * size) - 1;
        const old = readBE(b, at, size);
        const choice = r.int(4);
        const v = choice === 0 ? old + r.int(9) - 4 : choice === 1 ? 0 : choice === 2 ? max : Math.max(0, b.length - at - size);
        writeBE(b, at, size, Math.min(max, Math.max(0, v)));
        break;
      }
      case 6:
        b = b.subarray(0, at);
        break;
      case 7:
        b = insert(b, at, r.chance(0.5) ? r.bytes(1 + r.int(16)) : new Uint8Array(1 + r.int(16)).fill(r.pick(INTERESTING_8)));
        break;
      case 8:
        if (b.length) b = remove(b, at, 1 + r.int(Math.min(32, b.length - at)));
        break;
      case 9: {
        if (!b.length) break;
        const from = r.int(b.length);
        const chunk = b.slice(from, from + 1 + r.int(64));
        b = insert(b, r.int(b.length + 1), chunk);
        break;
      }
      case 10: {
        if (!pool.length) break;
        const other = r.pick(pool);
        if (!other.length) break;
        const from = r.int(other.length);
        const chunk = other.subarray(from, from + 1 + r.int(256));
        if (r.chance(0.5)) b = insert(b, at, chunk);
        else {
          const out = new Uint8Array(Math.max(b.length, at + chunk.length));
          out.set(b);
          out.set(chunk, at);
          b = out;
        }
        break;
      }
      default:
        if (b.length) b[at] = r.u32();
    }
  }
  return b;
}

/** A generated input: the bytes a target reads, and the label the unmutated seed gives (if it has one). */
export interface Gen {
  bytes: Uint8Array;
  expect?: string;
}

export interface Target<C> {
  name: string;
  gen(r: Rng, ctx: C): Gen;
  /** Parses the bytes; returns a short label of the outcome. Throws only on a bug (an exception or InvariantError). */
  run(bytes: Uint8Array): string | undefined;
  /** The CI test checks that mutated real seeds still give their recorded label some of the time. */
  realSeeds?: boolean;
}

/** A result that breaks the contract (verdict outside its enum, bytes out of bounds): a crash. */
export class InvariantError extends Error {
  override name = 'InvariantError';
}

export function invariant(ok: unknown, what: string): asserts ok {
  if (!ok) throw new InvariantError(what);
}

// Latency histogram: log buckets 10% wide, mergeable across workers.
const BUCKETS = 320;
const LOG_STEP = Math.log(1.1);

function bucketOf(ns: number): number {
  return ns <= 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(ns) / LOG_STEP));
}

export interface TargetStats {
  name: string;
  inputs: number;
  crashes: number;
  /** Inputs whose seed carried an expected label / of those, inputs that gave it. */
  expected: number;
  hits: number;
  maxNs: number;
  slowestIndex: number;
  hist: number[];
}

export function emptyStats(name: string): TargetStats {
  return { name, inputs: 0, crashes: 0, expected: 0, hits: 0, maxNs: 0, slowestIndex: -1, hist: new Array<number>(BUCKETS).fill(0) };
}

export function mergeStats(into: TargetStats, s: TargetStats): void {
  into.inputs += s.inputs;
  into.crashes += s.crashes;
  into.expected += s.expected;
  into.hits += s.hits;
  if (s.maxNs > into.maxNs) {
    into.maxNs = s.maxNs;
    into.slowestIndex = s.slowestIndex;
  }
  for (let k = 0; k < BUCKETS; k++) into.hist[k] += s.hist[k];
}

/** Quantile q of a histogram, in µs (upper edge of its bucket: conservative). */
export function quantileUs(s: TargetStats, q: number): number {
  const want = Math.ceil(s.inputs * q);
  let seen = 0;
  for (let k = 0; k < BUCKETS; k++) {
    seen += s.hist[k];
    if (seen >= want && seen > 0) return Math.min(1.1 ** (k + 1), s.maxNs) / 1000;
  }
  return 0;
}

export interface Crash {
  target: string;
  index: number;
  error: string;
  bytes: Uint8Array;
  sha1: string;
}

export function sha1(b: Uint8Array): string {
  return createHash('sha1').update(b).digest('hex');
}

/** Runs one input through its target: never throws; the error text when it crashed. */
export function runOne<C>(t: Target<C>, bytes: Uint8Array): { ns: number; label?: string; error?: string } {
  const t0 = process.hrtime.bigint();
  try {
    const label = t.run(bytes);
    return { ns: Number(process.hrtime.bigint() - t0), label };
  } catch (e) {
    const ns = Number(process.hrtime.bigint() - t0);
    const err = e instanceof Error ? `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}` : String(e);
    return { ns, error: err };
  }
}

export function inputAt<C>(targets: readonly Target<C>[], ctx: C, seed: number, i: number): { target: Target<C>; gen: Gen } {
  const target = targets[i % targets.length]!;
  return { target, gen: target.gen(inputRng(seed, i), ctx) };
}

export interface RunOptions<C> {
  targets: readonly Target<C>[];
  ctx: C;
  seed: number;
  /** Inputs i = from, from + step, … while i < to. */
  from: number;
  to: number;
  step?: number;
  onCrash?: (c: Crash) => void;
  /** Checked every 1024 inputs: stop early (time limit) when it returns true. */
  stop?: () => boolean;
  /** Called every 1024 inputs with the index just done. */
  onTick?: (i: number) => void;
  /** current[0] = the index being run (shared memory: a watchdog thread reads it to find a hang). */
  current?: Float64Array;
}

/** The fuzz loop: per-target stats (by target name); crashes go to onCrash. */
export function runInputs<C>(o: RunOptions<C>): Map<string, TargetStats> {
  const stats = new Map(o.targets.map((t) => [t.name, emptyStats(t.name)]));
  const step = o.step ?? 1;
  let n = 0;
  for (let i = o.from; i < o.to; i += step) {
    if (o.current) o.current[0] = i;
    const { target, gen } = inputAt(o.targets, o.ctx, o.seed, i);
    const res = runOne(target, gen.bytes);
    const s = stats.get(target.name)!;
    s.inputs++;
    s.hist[bucketOf(res.ns)]++;
    if (res.ns > s.maxNs) {
      s.maxNs = res.ns;
      s.slowestIndex = i;
    }
    if (gen.expect !== undefined) {
      s.expected++;
      if (res.label === gen.expect) s.hits++;
    }
    if (res.error !== undefined) {
      s.crashes++;
      o.onCrash?.({ target: target.name, index: i, error: res.error, bytes: gen.bytes, sha1: sha1(gen.bytes) });
    }
    if ((++n & 1023) === 0) {
      o.onTick?.(i);
      if (o.stop?.()) break;
    }
  }
  return stats;
}

export const CRASH_DIR = new URL('../fixtures/fuzz/crashes/', import.meta.url);

/** Writes a crashing input as <target>-<sha1>.bin (once per distinct input); returns the file URL. */
export function saveCrash(target: string, bytes: Uint8Array, dir: URL = CRASH_DIR): URL {
  mkdirSync(dir, { recursive: true });
  const file = new URL(`${target}-${sha1(bytes)}.bin`, dir);
  if (!existsSync(file)) writeFileSync(file, bytes);
  return file;
}

/** The target a crash file belongs to: its name without the trailing -<sha1>.bin. */
export function targetOfCrashFile(name: string): string | undefined {
  const m = /^(.+)-[0-9a-f]{40}\.bin$/.exec(name);
  return m?.[1];
}
