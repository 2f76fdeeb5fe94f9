// Key-value stores: Redis (RESP2/RESP3 and inline commands) and memcached (text, meta
// and binary protocols).
//
// Evidence: the command name only — never a key, a value or an argument.

import type { Match } from '../plaintext.js';
import { CR, LF, SP, be16, be32, contentEnd, digitRun, hasAscii, hasAsciiCI, isAlpha, isAlnum, isVisible, lineEnd, parseDecimal } from '../text.js';

// ---- Redis (https://redis.io/docs/latest/develop/reference/protocol-spec/)

const RESP_ARRAY = 0x2a; // '*'
const RESP_BULK = 0x24; // '$'
/** proto-max-multibulk-len default is 1024*1024 elements (7 digits). */
const RESP_ARRAY_MAX = 1024 * 1024;
/** Longest command name (e.g. "CLIENT", "XAUTOCLAIM", "FUNCTION") with room to spare. */
const RESP_NAME_MAX = 32;
const REDIS_PORTS = new Set([6379, 26379]);
/** RESP reply type bytes (RESP2: + - : $ *, RESP3 adds _ , # ! = ( % ~ > |). */
const RESP_REPLY_TYPES = new Set([0x2b, 0x2d, 0x3a, 0x24, 0x2a, 0x5f, 0x2c, 0x23, 0x21, 0x3d, 0x28, 0x25, 0x7e, 0x3e, 0x7c]);

function isCommandNameChar(x: number): boolean {
  return isAlnum(x) || x === 0x5f || x === 0x2d || x === 0x2e || x === 0x7c;
}

/** CRLF at b[i] (RESP requires CRLF, not bare LF). */
function crlfAt(b: Uint8Array, i: number): boolean {
  return b[i] === CR && b[i + 1] === LF;
}

/** Parse *N\r\n$len\r\nNAME\r\n at b[off]; the command name (upper-cased) or null. */
function parseRespCommand(b: Uint8Array, off: number): string | null {
  if (b[off] !== RESP_ARRAY) return null;
  let i = off + 1;
  const nd = digitRun(b, i, 8);
  const n = parseDecimal(b, i, i + nd);
  if (n < 1 || n > RESP_ARRAY_MAX) return null;
  i += nd;
  if (!crlfAt(b, i)) return null;
  i += 2;
  if (b[i] !== RESP_BULK) return null;
  i++;
  const ld = digitRun(b, i, 3);
  const len = parseDecimal(b, i, i + ld);
  if (len < 1 || len > RESP_NAME_MAX) return null;
  i += ld;
  if (!crlfAt(b, i)) return null;
  i += 2;
  if (i + len > b.length || !isAlpha(b[i])) return null;
  let name = '';
  for (let k = i; k < i + len; k++) {
    if (!isCommandNameChar(b[k])) return null;
    name += String.fromCharCode(b[k] >= 0x61 && b[k] <= 0x7a ? b[k] - 0x20 : b[k]);
  }
  // the CRLF after the name, when captured
  if (i + len + 2 <= b.length && !crlfAt(b, i + len)) return null;
  return name;
}

export function detectRedis(client: Uint8Array, server: Uint8Array, cOff: number, serverPort: number): Match | null {
  const name = parseRespCommand(client, cOff);
  const replied = server.length > 0 && RESP_REPLY_TYPES.has(server[0]);
  if (name) return { protocol: 'redis', evidence: `RESP command ${name}${replied ? ', RESP reply' : ''}` };
  // inline PING (redis-cli --no-raw, health checks with `printf 'PING\r\n' | nc`)
  if (hasAsciiCI(client, cOff, 'PING') && (crlfAt(client, cOff + 4) || client[cOff + 4] === LF)) {
    if (server.length === 0 || hasAscii(server, 0, '+PONG\r\n') || server[0] === 0x2d) {
      return { protocol: 'redis', evidence: `inline command PING${server.length ? ', RESP reply' : ''}` };
    }
  }
  // one-sided capture of the reply direction on the Redis port
  if (client.length === cOff && REDIS_PORTS.has(serverPort)) {
    if (hasAscii(server, 0, '+PONG\r\n')) return { protocol: 'redis', evidence: 'RESP reply PONG on the Redis port' };
    if (hasAscii(server, 0, '-NOAUTH ')) return { protocol: 'redis', evidence: 'RESP error NOAUTH on the Redis port' };
  }
  return null;
}

// ---- memcached (https://github.com/memcached/memcached/blob/master/doc/protocol.txt)

const MEMCACHED_KEY_MAX = 250;
const MEMCACHED_LINE_MAX = 2048;
/** Text commands and how their arguments look. */
const enum Args {
  /** get/gets/delete/mg/… : at least one key */
  Keys,
  /** set/add/replace/append/prepend: key flags exptime bytes [noreply] */
  Storage,
  /** cas: key flags exptime bytes cas-unique [noreply] */
  Cas,
  /** incr/decr/touch: key number */
  KeyNumber,
  /** gat/gats: exptime key+ */
  NumberKeys,
  /** stats/version/quit/flush_all/verbosity/mn: anything or nothing */
  Any,
}
const TEXT_COMMANDS = new Map<string, Args>([
  ['get', Args.Keys], ['gets', Args.Keys], ['delete', Args.Keys],
  ['set', Args.Storage], ['add', Args.Storage], ['replace', Args.Storage], ['append', Args.Storage], ['prepend', Args.Storage],
  ['cas', Args.Cas],
  ['incr', Args.KeyNumber], ['decr', Args.KeyNumber], ['touch', Args.KeyNumber],
  ['gat', Args.NumberKeys], ['gats', Args.NumberKeys],
  ['stats', Args.Any], ['version', Args.Any], ['quit', Args.Any], ['flush_all', Args.Any], ['verbosity', Args.Any],
  // meta commands (1.6+)
  ['mg', Args.Keys], ['ms', Args.Keys], ['md', Args.Keys], ['ma', Args.Keys], ['me', Args.Keys], ['mn', Args.Any],
]);

/** The words of b[from, to) separated by single spaces: returns the count and checks each is visible. */
function words(b: Uint8Array, from: number, to: number, bounds: number[]): number {
  let n = 0;
  let i = from;
  while (i < to && n < bounds.length / 2) {
    if (b[i] === SP) {
      i++;
      continue;
    }
    const w0 = i;
    while (i < to && b[i] !== SP) {
      if (!isVisible(b[i])) return -1;
      i++;
    }
    bounds[2 * n] = w0;
    bounds[2 * n + 1] = i;
    n++;
  }
  return i < to ? n + 1 : n; // more words than we track: still valid
}

const scratchWords = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

function isNumberWord(b: Uint8Array, bounds: number[], k: number): boolean {
  const from = bounds[2 * k];
  const to = bounds[2 * k + 1];
  if (b[from] === 0x2d) return to - from > 1 && parseDecimal(b, from + 1, to) >= 0; // negative exptime
  return to - from <= 20 && digitRun(b, from, 20) === to - from && to > from;
}

function isKeyWord(bounds: number[], k: number): boolean {
  const len = bounds[2 * k + 1] - bounds[2 * k];
  return len >= 1 && len <= MEMCACHED_KEY_MAX;
}

/** A complete memcached text command line at b[off]; its name, or null. */
export function parseMemcachedText(b: Uint8Array, off: number): string | null {
  const e = lineEnd(b, off, MEMCACHED_LINE_MAX);
  if (e < 0) return null;
  const ce = contentEnd(b, off, e);
  let i = off;
  while (i < ce && ((b[i] >= 0x61 && b[i] <= 0x7a) || b[i] === 0x5f)) i++;
  if (i === off || i - off > 9 || (i < ce && b[i] !== SP)) return null;
  let name = '';
  for (let k = off; k < i; k++) name += String.fromCharCode(b[k]);
  const kind = TEXT_COMMANDS.get(name);
  if (kind === undefined) return null;
  const w = scratchWords;
  const n = words(b, i, ce, w);
  if (n < 0) return null;
  switch (kind) {
    case Args.Keys:
      return n >= 1 && isKeyWord(w, 0) ? name : null;
    case Args.Storage:
      return (n === 4 || n === 5) && isKeyWord(w, 0) && isNumberWord(b, w, 1) && isNumberWord(b, w, 2) && isNumberWord(b, w, 3) ? name : null;
    case Args.Cas:
      return (n === 5 || n === 6) && isKeyWord(w, 0) && isNumberWord(b, w, 1) && isNumberWord(b, w, 2) && isNumberWord(b, w, 3) && isNumberWord(b, w, 4) ? name : null;
    case Args.KeyNumber:
      return (n === 2 || n === 3) && isKeyWord(w, 0) && isNumberWord(b, w, 1) ? name : null;
    case Args.NumberKeys:
      return n >= 2 && isNumberWord(b, w, 0) && isKeyWord(w, 1) ? name : null;
    case Args.Any:
      return name;
  }
}

/** Binary protocol request header (https://github.com/memcached/memcached/wiki/BinaryProtocolRevamped). */
const MEMCACHED_BINARY_REQUEST = 0x80;
const MEMCACHED_BINARY_HEADER = 24;
const MEMCACHED_BODY_MAX = 1 << 24;
/** Per opcode: allowed extras lengths and whether a key is required (1), forbidden (0) or optional (2). */
const BINARY_OPCODES: ReadonlyMap<number, [number[], 0 | 1 | 2, string]> = new Map([
  [0x00, [[0], 1, 'Get']], [0x09, [[0], 1, 'GetQ']], [0x0c, [[0], 1, 'GetK']], [0x0d, [[0], 1, 'GetKQ']],
  [0x01, [[8], 1, 'Set']], [0x02, [[8], 1, 'Add']], [0x03, [[8], 1, 'Replace']],
  [0x11, [[8], 1, 'SetQ']], [0x12, [[8], 1, 'AddQ']], [0x13, [[8], 1, 'ReplaceQ']],
  [0x04, [[0], 1, 'Delete']], [0x14, [[0], 1, 'DeleteQ']],
  [0x05, [[20], 1, 'Increment']], [0x06, [[20], 1, 'Decrement']], [0x15, [[20], 1, 'IncrementQ']], [0x16, [[20], 1, 'DecrementQ']],
  [0x07, [[0], 0, 'Quit']], [0x17, [[0], 0, 'QuitQ']], [0x08, [[0, 4], 0, 'Flush']], [0x18, [[0, 4], 0, 'FlushQ']],
  [0x0a, [[0], 0, 'No-op']], [0x0b, [[0], 0, 'Version']],
  [0x0e, [[0], 1, 'Append']], [0x0f, [[0], 1, 'Prepend']], [0x19, [[0], 1, 'AppendQ']], [0x1a, [[0], 1, 'PrependQ']],
  [0x10, [[0], 2, 'Stat']],
  [0x1c, [[4], 1, 'Touch']], [0x1d, [[4], 1, 'GAT']], [0x1e, [[4], 1, 'GATQ']],
  [0x20, [[0], 0, 'SASL list mechs']], [0x21, [[0], 1, 'SASL auth']], [0x22, [[0], 1, 'SASL step']],
]);

export function parseMemcachedBinary(b: Uint8Array, off: number): string | null {
  if (off + MEMCACHED_BINARY_HEADER > b.length || b[off] !== MEMCACHED_BINARY_REQUEST) return null;
  const spec = BINARY_OPCODES.get(b[off + 1]);
  if (!spec) return null;
  const [extrasAllowed, keyRule, name] = spec;
  const keyLen = be16(b, off + 2);
  const extras = b[off + 4];
  const dataType = b[off + 5];
  const body = be32(b, off + 8);
  if (dataType !== 0 || keyLen > MEMCACHED_KEY_MAX || body > MEMCACHED_BODY_MAX) return null;
  if (!extrasAllowed.includes(extras) || body < keyLen + extras) return null;
  if ((keyRule === 1 && keyLen === 0) || (keyRule === 0 && keyLen !== 0)) return null;
  if (keyRule === 0 && body !== extras) return null; // no key, no value
  return name;
}

export function detectMemcached(client: Uint8Array, cOff: number): Match | null {
  const text = parseMemcachedText(client, cOff);
  if (text) return { protocol: 'memcached', evidence: `text command ${text}` };
  const bin = parseMemcachedBinary(client, cOff);
  if (bin) return { protocol: 'memcached', evidence: `binary request ${bin}` };
  return null;
}
