// "Looks like ciphertext": a cheap guard used next to structural checks, never alone.
//
// Ciphertext (and random keys, nonces, MACs) uses byte values almost uniformly. Three
// counts over the same bytes, each compared with what m uniform bytes give:
//   distinct values  expected 256·(1 − (255/256)^m); text and structures fall well short
//   text bytes       printable ASCII, TAB, CR, LF: expected 98/256; text is ~100% text
//   zero bytes       expected m/256; binary structures (lengths, padding) have many
// Each bound sits about 4 standard deviations from the uniform expectation, so real
// ciphertext fails with probability below 1e-3 (measured: 5e-5 at 16 bytes, 6e-4 at 40,
// 2e-4 at 124), while text, or a structure with zero padding, fails by a wide margin.

/** One bitmap reused by every call: no allocation on the hot path. */
const seen = new Uint32Array(8);

/** Number of distinct byte values in b[from, to). */
function distinctBytes(b: Uint8Array, from: number, to: number): number {
  seen.fill(0);
  let n = 0;
  const end = Math.min(to, b.length);
  for (let i = Math.max(0, from); i < end; i++) {
    const x = b[i];
    const w = x >>> 5;
    const bit = 1 << (x & 31);
    if ((seen[w] & bit) === 0) {
      seen[w] |= bit;
      n++;
    }
  }
  return n;
}

/** Below this many bytes the counts cannot tell ciphertext from anything else. */
const RANDOM_MIN_BYTES = 16;
/** Diversity saturates; 256 bytes are plenty to judge. */
const RANDOM_SAMPLE_MAX = 256;
/** Distinct values: accept at 80% of the expectation (16 bytes: ≥ 12 of 15.5; 128: ≥ 80 of 100.6). */
const DISTINCT_RATIO = 0.8;
const PRINTABLE_P = 98 / 256;
const ZERO_P = 1 / 256;
const SIGMAS = 4;

/** True when b[from, to) has the byte statistics of random data of that length. */
export function looksRandom(b: Uint8Array, from: number, to: number): boolean {
  const start = Math.max(0, from);
  const end = Math.min(to, b.length, start + RANDOM_SAMPLE_MAX);
  const m = end - start;
  if (m < RANDOM_MIN_BYTES) return false;
  let printable = 0;
  let zeros = 0;
  for (let i = start; i < end; i++) {
    const x = b[i];
    if ((x >= 0x20 && x < 0x7f) || x === 0x09 || x === 0x0a || x === 0x0d) printable++;
    else if (x === 0) zeros++;
  }
  const printableMax = m * PRINTABLE_P + SIGMAS * Math.sqrt(m * PRINTABLE_P * (1 - PRINTABLE_P)) + 1;
  const zerosMax = m * ZERO_P + SIGMAS * Math.sqrt(m * ZERO_P) + 1;
  if (printable > printableMax || zeros > zerosMax) return false;
  const expected = 256 * (1 - Math.pow(255 / 256, m));
  return distinctBytes(b, start, end) >= Math.floor(expected * DISTINCT_RATIO);
}
