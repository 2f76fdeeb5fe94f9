// HTTP/1.x (and the same request-line grammar for RTSP and SIP), h2c and gRPC over h2c.
//
// Evidence names the method, the status code and the version only: never the target,
// a header or a body.

import type { Match } from '../plaintext.js';
import {
  CR,
  LF,
  SP,
  ascii,
  contentEnd,
  digitRun,
  hasAscii,
  hasAsciiCI,
  indexOfAsciiCI,
  indexOfBytes,
  isPrefixOfAscii,
  isVisible,
  lineEnd,
} from '../text.js';

/** Methods we name in evidence; any other RFC 9110 token method needs a complete request line. */
const KNOWN_METHODS = new Set([
  // HTTP (RFC 9110, 5789) and WebDAV/CalDAV
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH', 'MKCALENDAR', 'PURGE',
  // SSDP over HTTPU
  'M-SEARCH', 'NOTIFY',
  // RTSP (RFC 2326)
  'DESCRIBE', 'SETUP', 'PLAY', 'PAUSE', 'TEARDOWN', 'ANNOUNCE', 'RECORD', 'GET_PARAMETER', 'SET_PARAMETER', 'REDIRECT',
  // SIP (RFC 3261 and extensions)
  'INVITE', 'ACK', 'BYE', 'CANCEL', 'REGISTER', 'SUBSCRIBE', 'MESSAGE', 'INFO', 'PRACK', 'UPDATE', 'REFER', 'PUBLISH',
]);

const METHOD_MAX = 24;
/** Longest request line we follow; a longer target is treated as cut by the prefix limit. */
const REQUEST_LINE_MAX = 16384;
/** Header block bound: servers reject larger heads anyway (nginx 8 KB, node 16 KB by default). */
const HEAD_MAX = 32768;
const HEADER_LINES_MAX = 128;

const H2_PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
const H2_PREFACE_LENGTH = 24;
/** A preface cut by the prefix limit still proves h2c once this much of it is visible. */
const H2_PREFACE_MIN_VISIBLE = 14; // "PRI * HTTP/2.0"
const H2_FRAME_HEADER = 9;
const H2_FRAME_HEADERS = 0x1;
const H2_FRAME_SETTINGS = 0x4;
const H2_FRAME_CONTINUATION = 0x9;
/** The first HEADERS frame comes within the first few frames (SETTINGS, WINDOW_UPDATE, PRIORITY…). */
const H2_FRAMES_MAX = 16;

/**
 * gRPC is h2c whose HEADERS carry content-type application/grpc. HPACK encodes the value
 * as a string literal, either raw or Huffman-coded (RFC 7541 §5.2); nghttp2 (node),
 * grpc-go and most others Huffman-code it because it is shorter. "application/grpc"
 * is exactly 88 bits in the static Huffman code, so the 11 bytes below are what any
 * encoder emits for it, whatever follows ("+proto", "-web"). Both forms are searched.
 * A value indexed from the dynamic table (only in later requests) is not recognised.
 */
const GRPC_LITERAL = ascii('application/grpc');
const GRPC_HUFFMAN = huffmanEncode('application/grpc');

/** The RFC 7541 Appendix B codes of the characters of "application/grpc": [code, bits]. */
function huffmanEncode(s: string): Uint8Array {
  const codes: Record<string, [number, number]> = {
    '/': [0x18, 6], a: [0x3, 5], c: [0x4, 5], g: [0x26, 6], i: [0x6, 5], l: [0x28, 6],
    n: [0x2a, 6], o: [0x7, 5], p: [0x2b, 6], r: [0x2c, 6], t: [0x9, 5],
  };
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const ch of s) {
    const [code, len] = codes[ch];
    acc = (acc << len) | code;
    bits += len;
    while (bits >= 8) {
      out.push((acc >>> (bits - 8)) & 0xff);
      bits -= 8;
      acc &= (1 << bits) - 1;
    }
  }
  return Uint8Array.from(out); // whole bytes only: the partial last byte depends on what follows
}

export type StartLineProtocol = 'HTTP/1.0' | 'HTTP/1.1' | 'RTSP' | 'SIP' | 'HTTP';

export interface RequestLine {
  method: string;
  /** Named method (one of KNOWN_METHODS) — otherwise evidence says "extension method". */
  known: boolean;
  /** 'HTTP' when the version was cut off by the prefix limit. */
  protocol: StartLineProtocol;
  /** Index just past the request line, or -1 when truncated. */
  end: number;
}

/** METHOD SP target SP (HTTP|RTSP)/d.d | SIP/2.0 CRLF at b[off]; null when the bytes are not one. */
export function parseRequestLine(b: Uint8Array, off: number): RequestLine | null {
  let i = off;
  const methodLimit = Math.min(b.length, off + METHOD_MAX);
  while (i < methodLimit && ((b[i] >= 0x41 && b[i] <= 0x5a) || b[i] === 0x2d || b[i] === 0x5f)) i++;
  if (i - off < 3 || i >= b.length || b[i] !== SP) return null;
  let method = '';
  for (let k = off; k < i; k++) method += String.fromCharCode(b[k]);
  const known = KNOWN_METHODS.has(method);
  // request target: visible ASCII or raw UTF-8, no controls, no spaces
  const t0 = i + 1;
  let j = t0;
  const targetLimit = Math.min(b.length, off + REQUEST_LINE_MAX);
  while (j < targetLimit && (isVisible(b[j]) || b[j] >= 0x80)) j++;
  if (j === t0) return null;
  const first = b[t0];
  const plausibleTarget = first === 0x2f /* / */ || first === 0x2a /* * */ || (first >= 0x41 && first <= 0x7a);
  if (j >= b.length) {
    // cut inside the target by the prefix limit: accept only a named method and a plausible target
    return known && plausibleTarget ? { method, known, protocol: 'HTTP', end: -1 } : null;
  }
  if (b[j] !== SP) return null;
  const v = j + 1;
  let protocol: StartLineProtocol;
  let vEnd: number;
  if (hasAscii(b, v, 'HTTP/1.1')) [protocol, vEnd] = ['HTTP/1.1', v + 8];
  else if (hasAscii(b, v, 'HTTP/1.0')) [protocol, vEnd] = ['HTTP/1.0', v + 8];
  else if (hasAscii(b, v, 'RTSP/1.0') || hasAscii(b, v, 'RTSP/2.0')) [protocol, vEnd] = ['RTSP', v + 8];
  else if (hasAscii(b, v, 'SIP/2.0')) [protocol, vEnd] = ['SIP', v + 7];
  else {
    // cut inside the version
    const cut = v + 8 > b.length && (isPrefixOfAscii(b, v, 'HTTP/1.1') || isPrefixOfAscii(b, v, 'HTTP/1.0'));
    return cut && (known || b.length - v >= 5) ? { method, known, protocol: 'HTTP', end: -1 } : null;
  }
  if (vEnd === b.length) return known ? { method, known, protocol, end: -1 } : null;
  if (b[vEnd] === LF) return { method, known, protocol, end: vEnd + 1 };
  if (b[vEnd] !== CR) return null;
  if (vEnd + 1 === b.length) return known ? { method, known, protocol, end: -1 } : null;
  return b[vEnd + 1] === LF ? { method, known, protocol, end: vEnd + 2 } : null;
}

export interface StatusLine {
  protocol: 'HTTP/1.0' | 'HTTP/1.1' | 'RTSP' | 'SIP';
  code: number;
  /** Index just past the status line, or -1 when cut. */
  end: number;
}

/** HTTP/1.x SP 3DIGIT (SP reason) CRLF — or the RTSP/SIP equivalents — at b[off]. */
export function parseStatusLine(b: Uint8Array, off: number): StatusLine | null {
  let protocol: StatusLine['protocol'];
  let i: number;
  if (hasAscii(b, off, 'HTTP/1.1 ')) [protocol, i] = ['HTTP/1.1', off + 9];
  else if (hasAscii(b, off, 'HTTP/1.0 ')) [protocol, i] = ['HTTP/1.0', off + 9];
  else if (hasAscii(b, off, 'RTSP/1.0 ')) [protocol, i] = ['RTSP', off + 9];
  else if (hasAscii(b, off, 'SIP/2.0 ')) [protocol, i] = ['SIP', off + 8];
  else return null;
  if (digitRun(b, i, 4) !== 3) return null;
  const code = (b[i] - 0x30) * 100 + (b[i + 1] - 0x30) * 10 + (b[i + 2] - 0x30);
  if (code < 100 || code > 699) return null;
  const after = i + 3;
  if (after >= b.length) return { protocol, code, end: -1 };
  const x = b[after];
  if (x !== SP && x !== CR && x !== LF) return null;
  return { protocol, code, end: lineEnd(b, i, REQUEST_LINE_MAX) };
}

export interface HeadInfo {
  /** Index just past the empty line ending the head, or -1 when not within the bytes. */
  end: number;
  upgradeH2c: boolean;
  upgradeWebsocket: boolean;
  grpc: boolean;
}

/** Walk the header fields from `off` (just past the start line). Reads only what it needs. */
export function scanHead(b: Uint8Array, off: number): HeadInfo {
  const info: HeadInfo = { end: -1, upgradeH2c: false, upgradeWebsocket: false, grpc: false };
  if (off < 0) return info;
  const limit = Math.min(b.length, off + HEAD_MAX);
  let i = off;
  for (let lines = 0; lines < HEADER_LINES_MAX && i < limit; lines++) {
    if (b[i] === LF) return { ...info, end: i + 1 };
    if (b[i] === CR) {
      if (i + 1 < b.length && b[i + 1] === LF) return { ...info, end: i + 2 };
      return info;
    }
    const e = lineEnd(b, i, limit - i);
    if (e < 0) return info;
    const ce = contentEnd(b, i, e);
    if (hasAsciiCI(b, i, 'UPGRADE:')) {
      if (indexOfAsciiCI(b, 'H2C', i + 8, ce) >= 0) info.upgradeH2c = true;
      if (indexOfAsciiCI(b, 'WEBSOCKET', i + 8, ce) >= 0) info.upgradeWebsocket = true;
    } else if (hasAsciiCI(b, i, 'CONTENT-TYPE:')) {
      if (indexOfAsciiCI(b, 'APPLICATION/GRPC', i + 13, ce) >= 0) info.grpc = true;
    }
    i = e;
  }
  return info;
}

/** The client's h2c preface at b[off], allowing a preface cut by the prefix limit. */
export function hasH2Preface(b: Uint8Array, off: number): boolean {
  const visible = b.length - off;
  if (visible >= H2_PREFACE_LENGTH) return hasAscii(b, off, H2_PREFACE);
  return visible >= H2_PREFACE_MIN_VISIBLE && isPrefixOfAscii(b, off, H2_PREFACE);
}

/**
 * Walk HTTP/2 frames from `off` and report whether a HEADERS/CONTINUATION block carries
 * content-type application/grpc (raw or Huffman-coded literal, see GRPC_HUFFMAN).
 */
export function h2FramesSayGrpc(b: Uint8Array, off: number): boolean {
  let i = off;
  for (let n = 0; n < H2_FRAMES_MAX && i >= 0 && i + H2_FRAME_HEADER <= b.length; n++) {
    const length = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    const type = b[i + 3];
    const start = i + H2_FRAME_HEADER;
    const end = Math.min(b.length, start + length);
    if (type === H2_FRAME_HEADERS || type === H2_FRAME_CONTINUATION) {
      if (indexOfBytes(b, GRPC_HUFFMAN, start, end) >= 0 || indexOfBytes(b, GRPC_LITERAL, start, end) >= 0) return true;
    }
    i = start + length;
  }
  return false;
}

/** A server's first HTTP/2 frame is SETTINGS on stream 0 with a payload of 6-byte entries. */
function startsWithH2Settings(b: Uint8Array, off: number): boolean {
  if (off < 0 || off + H2_FRAME_HEADER > b.length) return false;
  const length = (b[off] << 16) | (b[off + 1] << 8) | b[off + 2];
  const stream = ((b[off + 5] & 0x7f) << 24) | (b[off + 6] << 16) | (b[off + 7] << 8) | b[off + 8];
  return b[off + 3] === H2_FRAME_SETTINGS && length % 6 === 0 && stream === 0;
}

function versionName(p: StartLineProtocol | StatusLine['protocol']): string {
  switch (p) {
    case 'HTTP/1.0':
      return 'http/1.0';
    case 'RTSP':
      return 'rtsp';
    case 'SIP':
      return 'sip';
    default:
      return 'http/1.1';
  }
}

function versionLabel(p: StartLineProtocol | StatusLine['protocol']): string {
  return p === 'RTSP' ? 'RTSP' : p === 'SIP' ? 'SIP/2.0' : p;
}

/** HTTP/1.x, RTSP, SIP, h2c and gRPC from the first bytes of a TCP flow (client first). */
export function detectHttp(client: Uint8Array, server: Uint8Array, cOff: number): Match | null {
  if (hasH2Preface(client, cOff)) {
    const grpc = h2FramesSayGrpc(client, cOff + H2_PREFACE_LENGTH) || h2FramesSayGrpc(server, 0);
    return grpc
      ? { protocol: 'grpc', evidence: 'h2c connection preface; HEADERS content-type application/grpc' }
      : { protocol: 'h2c', evidence: 'h2c connection preface (PRI * HTTP/2.0)' };
  }
  const req = parseRequestLine(client, cOff);
  const status = parseStatusLine(server, 0);
  if (req) {
    const what = req.known ? req.method : 'extension method';
    const head = req.end >= 0 ? scanHead(client, req.end) : null;
    const protocol = req.protocol === 'HTTP' && status && status.protocol.startsWith('HTTP') ? status.protocol : req.protocol;
    if (head?.upgradeH2c && protocol.startsWith('HTTP')) {
      const switched = status?.code === 101;
      const serverFrames = switched && status.end >= 0 ? scanHead(server, status.end).end : -1;
      const prefaceAfter = head.end >= 0 && hasH2Preface(client, head.end);
      if (switched || (!status && prefaceAfter)) {
        const grpc = head.grpc || (serverFrames >= 0 && startsWithH2Settings(server, serverFrames) && h2FramesSayGrpc(server, serverFrames));
        return grpc
          ? { protocol: 'grpc', evidence: `HTTP/1.1 Upgrade: h2c (${switched ? '101 Switching Protocols' : 'preface follows'}); content-type application/grpc` }
          : { protocol: 'h2c', evidence: `HTTP/1.1 Upgrade: h2c (${switched ? '101 Switching Protocols' : 'preface follows'})` };
      }
    }
    let evidence = `${versionLabel(protocol)} request ${what}`;
    if (protocol === 'HTTP') evidence += ' (request line cut by the capture)';
    if (status) evidence += `, response ${status.code}`;
    if (head?.upgradeWebsocket && status?.code === 101) evidence += ' (upgraded to WebSocket)';
    return { protocol: versionName(protocol), evidence };
  }
  if (client.length - cOff === 0 && status) {
    // one-sided capture: only the response direction was seen
    return { protocol: versionName(status.protocol), evidence: `${versionLabel(status.protocol)} response ${status.code}` };
  }
  return null;
}
