// Printable-text and byte-matching helpers shared by the non-TLS detectors.
//
// Everything here works on the bytes in place: no decoding of whole buffers to strings,
// no allocation per byte. Strings are built only for short evidence tokens (a method
// name, a version), never for payload.

export const TAB = 0x09;
export const LF = 0x0a;
export const VT = 0x0b;
export const FF = 0x0c;
export const CR = 0x0d;
export const SP = 0x20;

/** How far looksLikeText looks: enough to judge, bounded so a 100 MB capture costs no more per flow. */
const TEXT_SCAN_LIMIT = 4096;
/** Below this a handful of printable bytes proves nothing (4 random bytes are all printable 2% of the time). */
const TEXT_MIN_BYTES = 8;
/** Without a line break we want a longer run: 32 random bytes are all printable with probability ~1e-14. */
const TEXT_MIN_BYTES_WITHOUT_NEWLINE = 32;
/** Past 64 bytes, tolerate one stray control byte per 64 (terminal escapes, a form feed in a banner). */
const TEXT_BAD_BYTE_RATIO = 64;

/** True when b[off..] starts with the ASCII string s (exact case). s is a short literal. */
export function hasAscii(b: Uint8Array, off: number, s: string): boolean {
  const n = s.length;
  if (off < 0 || off + n > b.length) return false;
  for (let i = 0; i < n; i++) if (b[off + i] !== s.charCodeAt(i)) return false;
  return true;
}

/** Like hasAscii, but ASCII letters compare case-insensitively. s is given in upper case. */
export function hasAsciiCI(b: Uint8Array, off: number, s: string): boolean {
  const n = s.length;
  if (off < 0 || off + n > b.length) return false;
  for (let i = 0; i < n; i++) if (upper(b[off + i]) !== s.charCodeAt(i)) return false;
  return true;
}

/** True when the available bytes b[off..] are a (possibly empty) prefix of s: used for truncated captures. */
export function isPrefixOfAscii(b: Uint8Array, off: number, s: string): boolean {
  const n = Math.min(s.length, b.length - off);
  if (off < 0 || n < 0) return false;
  for (let i = 0; i < n; i++) if (b[off + i] !== s.charCodeAt(i)) return false;
  return true;
}

export function upper(x: number): number {
  return x >= 0x61 && x <= 0x7a ? x - 0x20 : x;
}

export function isDigit(x: number): boolean {
  return x >= 0x30 && x <= 0x39;
}

export function isAlpha(x: number): boolean {
  return (x >= 0x41 && x <= 0x5a) || (x >= 0x61 && x <= 0x7a);
}

export function isAlnum(x: number): boolean {
  return isAlpha(x) || isDigit(x);
}

/** Visible ASCII, space excluded. */
export function isVisible(x: number): boolean {
  return x > SP && x < 0x7f;
}

/** Visible ASCII or space or tab: what a protocol line may contain between its start and CRLF. */
export function isLineChar(x: number): boolean {
  return (x >= SP && x < 0x7f) || x === TAB;
}

/** Index of the first occurrence of needle in b[from, to), or -1. Needles are short constants. */
export function indexOfBytes(b: Uint8Array, needle: Uint8Array, from: number, to: number): number {
  const n = needle.length;
  if (n === 0) return -1;
  const end = Math.min(to, b.length) - n;
  const first = needle[0];
  outer: for (let i = Math.max(0, from); i <= end; i++) {
    if (b[i] !== first) continue;
    for (let j = 1; j < n; j++) if (b[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Case-insensitive search of an upper-case ASCII literal in b[from, to), or -1. */
export function indexOfAsciiCI(b: Uint8Array, s: string, from: number, to: number): number {
  const end = Math.min(to, b.length) - s.length;
  for (let i = Math.max(0, from); i <= end; i++) if (hasAsciiCI(b, i, s)) return i;
  return -1;
}

/**
 * A protocol line starting at `from`: returns the index just past its LF, or -1 when no
 * LF occurs within `max` bytes or a byte that may not appear in a text line comes first.
 * CR before LF is optional (some implementations send bare LF).
 */
export function lineEnd(b: Uint8Array, from: number, max: number): number {
  const end = Math.min(b.length, from + max);
  for (let i = from; i < end; i++) {
    const x = b[i];
    if (x === LF) return i + 1;
    if (x === CR) return i + 1 < b.length && b[i + 1] === LF ? i + 2 : -1; // a bare CR ends nothing
    if (!isLineChar(x) && x < 0x80) return -1;
  }
  return -1;
}

/** Index of the first line break (CR or LF) of the line starting at `from` (the content end). */
export function contentEnd(b: Uint8Array, from: number, lineEndIdx: number): number {
  let e = lineEndIdx;
  if (e > from && b[e - 1] === LF) e--;
  if (e > from && b[e - 1] === CR) e--;
  return e;
}

/** True when b[from, to) is non-empty and entirely line characters (no CR/LF/controls). */
export function isPrintableRun(b: Uint8Array, from: number, to: number): boolean {
  if (to <= from || to > b.length || from < 0) return false;
  for (let i = from; i < to; i++) {
    const x = b[i];
    if (!isLineChar(x) && x < 0x80) return false;
  }
  return true;
}

/** Decimal digits b[from, to) as a number; -1 when empty, not all digits or longer than 9 digits. */
export function parseDecimal(b: Uint8Array, from: number, to: number): number {
  if (to <= from || to - from > 9 || to > b.length || from < 0) return -1;
  let v = 0;
  for (let i = from; i < to; i++) {
    const x = b[i];
    if (!isDigit(x)) return -1;
    v = v * 10 + (x - 0x30);
  }
  return v;
}

/** Number of consecutive decimal digits from `from` (at most `max`). */
export function digitRun(b: Uint8Array, from: number, max: number): number {
  const end = Math.min(b.length, from + max);
  let i = from;
  while (i < end && isDigit(b[i])) i++;
  return i - from;
}

/** Encode an ASCII literal once, at module load, for indexOfBytes. */
export function ascii(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/**
 * A short evidence token from the wire (a version, a product name): only characters in
 * [A-Za-z0-9._+~-] are kept, at most `max` of them, so nothing else can leak into evidence.
 */
export function evidenceToken(b: Uint8Array, from: number, to: number, max = 48): string {
  let s = '';
  const end = Math.min(to, b.length);
  for (let i = Math.max(0, from); i < end && s.length < max; i++) {
    const x = b[i];
    if (isAlnum(x) || x === 0x2e || x === 0x5f || x === 0x2b || x === 0x7e || x === 0x2d) s += String.fromCharCode(x);
    else break;
  }
  return s;
}

/**
 * Length of the valid UTF-8 multi-byte sequence starting at b[i] (lead byte >= 0x80),
 * 0 when invalid. A sequence cut by the end of the buffer counts as valid (truncated capture).
 */
function utf8SequenceLength(b: Uint8Array, i: number, end: number): number {
  const x = b[i];
  let need: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (x >= 0xc2 && x <= 0xdf) need = 1;
  else if (x >= 0xe0 && x <= 0xef) {
    need = 2;
    if (x === 0xe0) lo = 0xa0; // overlong
    if (x === 0xed) hi = 0x9f; // surrogates
  } else if (x >= 0xf0 && x <= 0xf4) {
    need = 3;
    if (x === 0xf0) lo = 0x90;
    if (x === 0xf4) hi = 0x8f;
  } else return 0;
  for (let k = 1; k <= need; k++) {
    if (i + k >= end) return end - i; // cut by the prefix limit
    const c = b[i + k];
    if (k === 1 ? c < lo || c > hi : c < 0x80 || c > 0xbf) return 0;
  }
  return need + 1;
}

/**
 * The generic printable-text rule, the last resort ("text"): the first bytes are printable
 * ASCII or valid UTF-8, with at most a rare stray control byte, and have line structure
 * (a line break) or are long enough that chance cannot explain them.
 */
export function looksLikeText(b: Uint8Array): boolean {
  const n = Math.min(b.length, TEXT_SCAN_LIMIT);
  if (n < TEXT_MIN_BYTES) return false;
  let bad = 0;
  let newline = false;
  const maxBad = n < TEXT_BAD_BYTE_RATIO ? 0 : Math.floor(n / TEXT_BAD_BYTE_RATIO);
  let i = 0;
  while (i < n) {
    const x = b[i];
    if (x >= SP && x < 0x7f) {
      i++;
      continue;
    }
    if (x === LF) {
      newline = true;
      i++;
      continue;
    }
    if (x === CR || x === TAB || x === FF || x === VT) {
      i++;
      continue;
    }
    if (x >= 0x80) {
      const k = utf8SequenceLength(b, i, n);
      if (k > 0) {
        i += k;
        continue;
      }
    }
    if (++bad > maxBad) return false;
    i++;
  }
  return newline || n >= TEXT_MIN_BYTES_WITHOUT_NEWLINE;
}

/** TLS record content type handshake (RFC 8446 §5.1). */
const TLS_CONTENT_HANDSHAKE = 0x16;
/** Record-layer major version 3 for SSL 3.0 … TLS 1.3 (legacy_record_version). */
const TLS_MAJOR = 0x03;
const TLS_MINOR_MAX = 0x04;
/** TLSCiphertext may carry 2^14 + 2048 bytes (RFC 5246 §6.2.3). */
const TLS_RECORD_MAX = 16384 + 2048;

/**
 * True when b[off..] starts a TLS handshake record: 0x16 0x03 0x0X, and when visible a
 * non-zero length within the record limit. Needs at least the first three bytes.
 */
export function tlsRecordAt(b: Uint8Array, off: number): boolean {
  if (off < 0 || off + 3 > b.length) return false;
  if (b[off] !== TLS_CONTENT_HANDSHAKE || b[off + 1] !== TLS_MAJOR || b[off + 2] > TLS_MINOR_MAX) return false;
  if (off + 5 > b.length) return true;
  const len = (b[off + 3] << 8) | b[off + 4];
  return len > 0 && len <= TLS_RECORD_MAX;
}

export function be16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

export function be32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

export function le32(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}
