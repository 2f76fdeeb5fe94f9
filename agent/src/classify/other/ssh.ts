// SSH (RFC 4253): the identification string "SSH-protoversion-softwareversion" and the
// first binary packet, SSH_MSG_KEXINIT. The banner's protocol and software version are
// handshake metadata; its comments part (after a space) is left out of the evidence.

import type { Match } from '../plaintext.js';
import { CR, LF, SP, be32, evidenceToken, hasAscii, isDigit, lineEnd } from '../text.js';

/** RFC 4253 §4.2: the identification string is at most 255 bytes including CR LF. */
const SSH_IDENT_MAX = 255;
/** A server may send other lines first (§4.2); a client never does. Bound how many we skip. */
const SSH_PRE_IDENT_LINES_MAX = 16;
const SSH_PRE_IDENT_LINE_MAX = 1024;
const SSH_MSG_KEXINIT = 20;
/** §6.1: implementations must handle packets of 35000 bytes; KEXINIT is far smaller. */
const SSH_PACKET_MAX = 35000;
const SSH_PADDING_MIN = 4;
/** Before keys are agreed the block size is 8: packet_length + 4 is a multiple of 8 (§6). */
const SSH_CLEAR_BLOCK = 8;
const SSH_KEXINIT_COOKIE = 16;
/** cookie, 10 name-lists (4-byte length each), first_kex_packet_follows, reserved uint32. */
const SSH_KEXINIT_MIN_PAYLOAD = 1 + SSH_KEXINIT_COOKIE + 10 * 4 + 1 + 4;

export interface SshIdent {
  /** "SSH-2.0-OpenSSH_9.2p1": protocol and software version, no comments. */
  ident: string;
  /** Index just past the identification line. */
  end: number;
}

/** The SSH identification line in b (after any pre-identification lines), or null. */
export function findSshIdent(b: Uint8Array): SshIdent | null {
  let i = 0;
  for (let n = 0; n <= SSH_PRE_IDENT_LINES_MAX && i < b.length; n++) {
    if (hasAscii(b, i, 'SSH-')) return parseIdent(b, i);
    const e = lineEnd(b, i, SSH_PRE_IDENT_LINE_MAX);
    if (e < 0) return null;
    i = e;
  }
  return null;
}

function parseIdent(b: Uint8Array, off: number): SshIdent | null {
  // protoversion: "2.0", "1.99" (compatibility), "1.5"
  let i = off + 4;
  if (!isDigit(b[i]) || b[i + 1] !== 0x2e) return null;
  i += 2;
  const minorStart = i;
  while (i < b.length && i - minorStart < 3 && isDigit(b[i])) i++;
  if (i === minorStart || b[i] !== 0x2d /* - */) return null;
  const major = b[off + 4] - 0x30;
  if (major !== 1 && major !== 2) return null;
  const protoEnd = i;
  const swStart = i + 1;
  // softwareversion: printable US-ASCII, no whitespace; then optional SP comments; then CR LF
  let j = swStart;
  const limit = Math.min(b.length, off + SSH_IDENT_MAX);
  while (j < limit && b[j] > SP && b[j] < 0x7f) j++;
  if (j === swStart || j >= limit) return null;
  if (b[j] === SP) {
    while (j < limit && b[j] >= SP && b[j] < 0x7f) j++;
    if (j >= limit) return null;
  }
  let end: number;
  if (b[j] === CR && b[j + 1] === LF) end = j + 2;
  else if (b[j] === LF) end = j + 1; // some old implementations omit CR
  else return null;
  const proto = major === 2 ? '2.0' : evidenceToken(b, off + 4, protoEnd, 5);
  const software = evidenceToken(b, swStart, j, 64);
  return { ident: `SSH-${proto}-${software}`, end };
}

/** 'yes' when b[off] starts an SSH_MSG_KEXINIT packet, 'cut' when too few bytes to tell, 'no' otherwise. */
export function kexinitAt(b: Uint8Array, off: number): 'yes' | 'no' | 'cut' {
  if (off + 6 > b.length) return 'cut';
  const len = be32(b, off);
  const pad = b[off + 4];
  if (b[off + 5] !== SSH_MSG_KEXINIT) return 'no';
  if (len > SSH_PACKET_MAX || pad < SSH_PADDING_MIN || len < 1 + pad + SSH_KEXINIT_MIN_PAYLOAD) return 'no';
  if ((len + 4) % SSH_CLEAR_BLOCK !== 0) return 'no';
  // the first name-list (kex_algorithms) after the cookie: a length within the packet, then lower-case names
  const nl = off + 6 + SSH_KEXINIT_COOKIE;
  if (nl + 4 > b.length) return 'yes';
  const nameLen = be32(b, nl);
  if (nameLen === 0 || nameLen > len) return 'no';
  const end = Math.min(b.length, nl + 4 + nameLen);
  for (let k = nl + 4; k < end; k++) {
    const x = b[k];
    const ok = (x >= 0x61 && x <= 0x7a) || (x >= 0x30 && x <= 0x39) || x === 0x2d || x === 0x40 || x === 0x2e || x === 0x2c || x === 0x5f || (x >= 0x41 && x <= 0x5a);
    if (!ok) return 'no';
  }
  return 'yes';
}

/**
 * SSH needs an identification line and more: a KEXINIT after it, or identification lines
 * from both sides. A single banner with nothing after it proves no encryption.
 */
export function detectSsh(client: Uint8Array, server: Uint8Array): Match | null {
  const c = findSshIdent(client);
  const s = findSshIdent(server);
  if (!c && !s) return null;
  const ck = c ? kexinitAt(client, c.end) : 'cut';
  const sk = s ? kexinitAt(server, s.end) : 'cut';
  // bytes after an identification line that are not a KEXINIT: not SSH as we know it
  if (ck === 'no' || sk === 'no') return null;
  const kex = ck === 'yes' || sk === 'yes';
  if (!kex && !(c && s)) return null;
  const parts: string[] = [];
  if (s) parts.push(`server ${s.ident}`);
  if (c) parts.push(`client ${c.ident}`);
  return { protocol: 'ssh', evidence: `${parts.join(', ')}${kex ? '; KEXINIT' : '; identification exchanged, KEXINIT not captured'}` };
}
