// JA4 TLS client fingerprint, as specified by FoxIO
// (https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md):
//   <t|q|d><version 2><d|i><ciphers 2><extensions 2><alpn 2>_<sha256(sorted ciphers)[:12]>_<sha256(sorted exts minus SNI/ALPN "_" sigalgs)[:12]>
// GREASE values are ignored everywhere.

import * as nodeCrypto from 'node:crypto';
import { hex2, isGrease } from './bytes.js';
import { EXT_ALPN, EXT_SERVER_NAME, type ClientHello } from './hello.js';

const MAX_COUNT = 99;
const EMPTY_HASH = '000000000000';
const HASH_CHARS = 12;
const DTLS_VERSION_MIN = 0xfe00; // DTLS versions count down: 0xFEFF = 1.0, 0xFEFD = 1.2, 0xFEFC = 1.3

const VERSION_CODES: ReadonlyMap<number, string> = new Map([
  [0x0304, '13'],
  [0x0303, '12'],
  [0x0302, '11'],
  [0x0301, '10'],
  [0x0300, 's3'],
  [0x0002, 's2'],
  [0x0200, 's2'],
  [0xfeff, 'd1'],
  [0xfefd, 'd2'],
  [0xfefc, 'd3'],
]);

export function ja4(hello: ClientHello, transport: 't' | 'q' | 'd'): string {
  // Clients repeat the same hello parameters connection after connection: remember the
  // fingerprint of recent parameter sets instead of hashing them again.
  const h = inputHash(hello, transport);
  const bucket = cache.get(h);
  if (bucket !== undefined) {
    for (const e of bucket) if (sameInput(e, hello, transport)) return e.ja4;
  }
  const fp = computeJa4(hello, transport);
  remember(h, hello, transport, fp);
  return fp;
}

function remember(h: number, hello: ClientHello, transport: string, fp: string): void {
  const values =
    hello.supportedVersions.length + hello.cipherSuites.length + hello.extensions.length + hello.signatureAlgorithms.length;
  if (values > MAX_CACHED_VALUES) return; // no real client sends that much: don't let odd hellos fill memory
  if (cacheSize >= MAX_CACHED) {
    cache.clear();
    cacheSize = 0;
  }
  const entry: CachedJa4 = {
    transport,
    legacyVersion: hello.legacyVersion,
    supportedVersions: hello.supportedVersions.slice(),
    cipherSuites: hello.cipherSuites.slice(),
    extensions: hello.extensions.slice(),
    signatureAlgorithms: hello.signatureAlgorithms.slice(),
    // A copy (Buffer#slice would be a view): the hello's bytes are the caller's and get reused.
    alpnFirst: hello.alpnFirst === undefined ? undefined : new Uint8Array(hello.alpnFirst),
    ja4: fp,
  };
  const bucket = cache.get(h);
  if (bucket !== undefined) bucket.push(entry);
  else cache.set(h, [entry]);
  cacheSize++;
}

/** Everything computeJa4 reads, copied, and its result. */
interface CachedJa4 {
  transport: string;
  legacyVersion: number;
  supportedVersions: number[];
  cipherSuites: number[];
  extensions: number[];
  signatureAlgorithms: number[];
  alpnFirst: Uint8Array | undefined;
  ja4: string;
}

/** Distinct hello parameter sets remembered; the cache starts over when full. */
const MAX_CACHED = 512;
/** List entries of a hello worth remembering (real clients send ~60): bounds the cache to ~1 MB. */
const MAX_CACHED_VALUES = 256;
const cache = new Map<number, CachedJa4[]>();
let cacheSize = 0;

function mix(h: number, v: number): number {
  return Math.imul(h ^ v, 0x5bd1e995) ^ (h >>> 15);
}

function mixList(h: number, list: readonly number[]): number {
  h = mix(h, list.length);
  for (let i = 0; i < list.length; i++) h = mix(h, list[i]);
  return h;
}

function inputHash(hello: ClientHello, transport: string): number {
  let h = mix(0x9747b28c, transport.charCodeAt(0));
  h = mix(h, hello.legacyVersion);
  h = mixList(h, hello.supportedVersions);
  h = mixList(h, hello.cipherSuites);
  h = mixList(h, hello.extensions);
  h = mixList(h, hello.signatureAlgorithms);
  const alpn = hello.alpnFirst;
  if (alpn === undefined) h = mix(h, -1);
  else {
    h = mix(h, alpn.length);
    for (let i = 0; i < alpn.length; i++) h = mix(h, alpn[i]);
  }
  return h >>> 0;
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameInput(e: CachedJa4, hello: ClientHello, transport: string): boolean {
  if (e.transport !== transport || e.legacyVersion !== hello.legacyVersion) return false;
  const a = e.alpnFirst;
  const b = hello.alpnFirst;
  if (a === undefined || b === undefined) {
    if (a !== b) return false;
  } else {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  }
  return (
    sameList(e.cipherSuites, hello.cipherSuites) &&
    sameList(e.extensions, hello.extensions) &&
    sameList(e.signatureAlgorithms, hello.signatureAlgorithms) &&
    sameList(e.supportedVersions, hello.supportedVersions)
  );
}

function computeJa4(hello: ClientHello, transport: 't' | 'q' | 'd'): string {
  const ciphers = withoutGrease(hello.cipherSuites);
  const extensions = withoutGrease(hello.extensions);
  const sni = extensions.includes(EXT_SERVER_NAME) ? 'd' : 'i';
  const a = transport + ja4Version(hello) + sni + count2(ciphers.length) + count2(extensions.length) + alpnChars(hello.alpnFirst);

  let b = EMPTY_HASH;
  if (ciphers.length > 0) {
    const w = new HexWriter(ciphers.length);
    w.list(Uint16Array.from(ciphers).sort());
    b = w.hash12();
  }

  const hashedExts = extensions.filter((v) => v !== EXT_SERVER_NAME && v !== EXT_ALPN);
  let c = EMPTY_HASH;
  if (hashedExts.length > 0) {
    const sigalgs = withoutGrease(hello.signatureAlgorithms);
    const w = new HexWriter(hashedExts.length + sigalgs.length);
    w.list(Uint16Array.from(hashedExts).sort());
    if (sigalgs.length > 0) {
      w.char(UNDERSCORE);
      w.list(sigalgs); // original order
    }
    c = w.hash12();
  }
  return `${a}_${b}_${c}`;
}

function withoutGrease(values: number[]): number[] {
  const out: number[] = [];
  for (const v of values) if (!isGrease(v)) out.push(v);
  return out;
}

/** Highest supported_versions entry (GREASE ignored), else the legacy version. */
function ja4Version(hello: ClientHello): string {
  let best = -1;
  for (const v of hello.supportedVersions) {
    if (isGrease(v)) continue;
    if (best < 0 || newer(v, best)) best = v;
  }
  if (best < 0) best = hello.legacyVersion;
  return VERSION_CODES.get(best) ?? '00';
}

function newer(a: number, b: number): boolean {
  const aDtls = a >= DTLS_VERSION_MIN;
  const bDtls = b >= DTLS_VERSION_MIN;
  if (aDtls && bDtls) return a < b;
  return a > b;
}

function count2(n: number): string {
  const c = Math.min(n, MAX_COUNT);
  return c < 10 ? '0' + c : String(c);
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * First and last character of the first ALPN value; "00" when absent or empty. When
 * either end byte is not alphanumeric, the first and last characters of the value's hex
 * form: the high nibble of the first byte and the low nibble of the last.
 */
function alpnChars(first: Uint8Array | undefined): string {
  if (first === undefined || first.length === 0) return '00';
  const f = first[0];
  const l = first[first.length - 1];
  if (isAlnum(f) && isAlnum(l)) return String.fromCharCode(f, l);
  return hex2(f)[0] + hex2(l)[1];
}

const HEX_DIGITS = new TextEncoder().encode('0123456789abcdef');
const COMMA = 0x2c;
const UNDERSCORE = 0x5f;
const CHARS_PER_VALUE = 5; // 4 hex digits + separator

/**
 * Writes the comma-separated lowercase hex lists JA4 hashes straight into bytes, so a
 * fingerprint costs two small buffers instead of dozens of short strings.
 */
class HexWriter {
  private readonly buf: Uint8Array;
  private pos = 0;

  constructor(values: number) {
    this.buf = new Uint8Array(values * CHARS_PER_VALUE + 1);
  }

  char(c: number): void {
    this.buf[this.pos++] = c;
  }

  list(values: ArrayLike<number>): void {
    for (let i = 0; i < values.length; i++) {
      if (i > 0) this.buf[this.pos++] = COMMA;
      const v = values[i];
      this.buf[this.pos++] = HEX_DIGITS[(v >> 12) & 15];
      this.buf[this.pos++] = HEX_DIGITS[(v >> 8) & 15];
      this.buf[this.pos++] = HEX_DIGITS[(v >> 4) & 15];
      this.buf[this.pos++] = HEX_DIGITS[v & 15];
    }
  }

  hash12(): string {
    const data = this.buf.subarray(0, this.pos);
    const hex = oneShot !== undefined ? oneShot('sha256', data, 'hex') : nodeCrypto.createHash('sha256').update(data).digest('hex');
    return hex.slice(0, HASH_CHARS);
  }
}

// crypto.hash (one-shot, ~3x faster than createHash) exists from Node 20.12.
const oneShot = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'hex') => string }).hash;
