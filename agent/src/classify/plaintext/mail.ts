// Line-oriented, server-first protocols: SMTP, FTP (both "220" banners), POP3 ("+OK") and
// IMAP ("* OK", tagged commands). Also the reply/command walkers the STARTTLS-style
// upgrades need.
//
// Evidence: reply codes and command verbs only — never a banner's text, a host name, a
// user or a mailbox.

import type { Match } from '../plaintext.js';
import { CR, LF, SP, contentEnd, digitRun, hasAscii, hasAsciiCI, indexOfAsciiCI, isAlnum, isAlpha, isPrintableRun, lineEnd, upper } from '../text.js';

/** RFC 5321 §4.5.3.1.4: 512 bytes per command line; replies may be longer in practice. */
export const LINE_MAX = 2048;
/** Multi-line replies (EHLO, FEAT, CAPA) rarely exceed a few dozen lines. */
const REPLY_LINES_MAX = 128;
/** A banner cut by the prefix limit still counts when this much printable text is visible. */
const CUT_BANNER_MIN = 16;

const SMTP_PORTS = new Set([25, 465, 587, 2525]);
const FTP_PORTS = new Set([21, 990]);
const POP3_PORTS = new Set([110]);

/** Commands that only an SMTP client sends first. */
const SMTP_FIRST = ['EHLO', 'HELO'];
/** Commands that only an FTP client sends (an FTP session starts with one of these). */
const FTP_ONLY = ['FEAT', 'SYST', 'OPTS', 'PASV', 'EPSV', 'TYPE', 'HOST', 'CLNT', 'PBSZ', 'PROT', 'PWD'];
/** POP3-only commands. */
const POP3_ONLY = ['CAPA', 'STLS', 'APOP', 'UIDL'];
/** Commands shared by FTP and POP3 (and SMTP for AUTH): decided by the banner or the port. */
const SHARED = ['USER', 'AUTH', 'QUIT', 'NOOP'];
/** IMAP commands a session starts with (RFC 9051 §6). */
const IMAP_FIRST = ['CAPABILITY', 'LOGIN', 'AUTHENTICATE', 'STARTTLS', 'ID', 'NOOP', 'LOGOUT', 'ENABLE', 'SELECT', 'EXAMINE', 'LIST', 'NAMESPACE', 'COMPRESS'];

export interface Reply {
  code: number;
  /** Index just past the reply's last line. */
  end: number;
}

/**
 * An SMTP/FTP reply at b[off]: "ddd text CRLF", or a multi-line "ddd-…" ending with the
 * line "ddd …". null when malformed or cut by the capture.
 */
export function readCodedReply(b: Uint8Array, off: number): Reply | null {
  if (digitRun(b, off, 4) !== 3) return null;
  const code = (b[off] - 0x30) * 100 + (b[off + 1] - 0x30) * 10 + (b[off + 2] - 0x30);
  if (code < 100 || code > 599) return null;
  let i = off;
  for (let n = 0; n < REPLY_LINES_MAX; n++) {
    const e = lineEnd(b, i, LINE_MAX);
    if (e < 0) return null;
    // a line "ddd " (or "ddd" CRLF) with the same code ends the reply
    if (digitRun(b, i, 4) === 3 && b[i] === b[off] && b[i + 1] === b[off + 1] && b[i + 2] === b[off + 2]) {
      const sep = b[i + 3];
      if (sep === SP || sep === CR || sep === LF) return { code, end: e };
      if (sep !== 0x2d /* - */) return null;
    } else if (n === 0) return null;
    i = e;
  }
  return null;
}

/** The first line of b from off is a complete printable line, or printable up to the end of a cut capture. */
function bannerLine(b: Uint8Array, off: number): number {
  const e = lineEnd(b, off, LINE_MAX);
  if (e >= 0) return contentEnd(b, off, e);
  if (b.length - off >= CUT_BANNER_MIN && b.length - off < LINE_MAX && isPrintableRun(b, off, b.length)) return b.length;
  return -1;
}

/** The verb of a command line at b[off] (upper-cased letters, 2..12 long), or '' when none. */
export function commandVerb(b: Uint8Array, off: number): string {
  let i = off;
  const end = Math.min(b.length, off + 12);
  while (i < end && isAlpha(b[i])) i++;
  if (i - off < 2 || i >= b.length) return '';
  const x = b[i];
  if (x !== SP && x !== CR && x !== LF) return '';
  if (lineEnd(b, off, LINE_MAX) < 0) return '';
  let v = '';
  for (let k = off; k < i; k++) v += String.fromCharCode(upper(b[k]));
  return v;
}

/** An IMAP tag (astring chars but '+', RFC 9051 §9) then SP then a known command; returns the command. */
export function imapTaggedCommand(b: Uint8Array, off: number): { tagEnd: number; command: string } | null {
  let i = off;
  const end = Math.min(b.length, off + 32);
  while (i < end && (isAlnum(b[i]) || b[i] === 0x2e || b[i] === 0x5f || b[i] === 0x2d)) i++;
  if (i === off || i >= end || b[i] !== SP) return null;
  const command = commandVerb(b, i + 1);
  return command && IMAP_FIRST.includes(command) ? { tagEnd: i, command } : null;
}

function isImapGreeting(b: Uint8Array): boolean {
  return (hasAscii(b, 0, '* OK') || hasAscii(b, 0, '* PREAUTH')) && bannerLine(b, 0) > 0;
}

function isPop3Greeting(b: Uint8Array): boolean {
  return hasAscii(b, 0, '+OK') && (b[3] === SP || b[3] === CR) && bannerLine(b, 0) > 0;
}

function is220Banner(b: Uint8Array): boolean {
  return hasAscii(b, 0, '220') && (b[3] === SP || b[3] === 0x2d || b[3] === CR) && bannerLine(b, 0) > 0;
}

function portIn(set: Set<number>, a: number, b: number): boolean {
  return set.has(a) || set.has(b);
}

function classifyBannered(banner: Uint8Array, peer: Uint8Array, p1: number, p2: number): Match | null {
  const verb = commandVerb(peer, 0);
  if (is220Banner(banner)) {
    if (SMTP_FIRST.includes(verb)) return { protocol: 'smtp', evidence: `220 banner; client ${verb}` };
    if (FTP_ONLY.includes(verb) || verb === 'USER') return { protocol: 'ftp', evidence: `220 banner; client ${verb}` };
    if (verb === 'AUTH' && (hasAsciiCI(peer, 5, 'TLS') || hasAsciiCI(peer, 5, 'SSL'))) return { protocol: 'ftp', evidence: '220 banner; client AUTH TLS' };
    // no decisive command: the banner's own words, then the port
    const le = bannerLine(banner, 0);
    if (indexOfAsciiCI(banner, 'SMTP', 4, le) >= 0 || (verb === '' && portIn(SMTP_PORTS, p1, p2))) return { protocol: 'smtp', evidence: '220 SMTP banner' };
    if (indexOfAsciiCI(banner, 'FTP', 4, le) >= 0 || (verb === '' && portIn(FTP_PORTS, p1, p2))) return { protocol: 'ftp', evidence: '220 FTP banner' };
    return null;
  }
  if (isPop3Greeting(banner)) {
    if (POP3_ONLY.includes(verb) || SHARED.includes(verb)) return { protocol: 'pop3', evidence: `+OK greeting; client ${verb}` };
    if (verb === '' && (indexOfAsciiCI(banner, 'POP', 3, bannerLine(banner, 0)) >= 0 || portIn(POP3_PORTS, p1, p2))) return { protocol: 'pop3', evidence: '+OK greeting' };
    return null;
  }
  if (isImapGreeting(banner)) {
    const tagged = imapTaggedCommand(peer, 0);
    return { protocol: 'imap', evidence: tagged ? `* OK greeting; client ${tagged.command}` : '* OK greeting' };
  }
  return null;
}

/** SMTP, FTP, POP3, IMAP: a server greeting (either direction), or the client's first command alone. */
export function detectMail(client: Uint8Array, server: Uint8Array, clientPort: number, serverPort: number): Match | null {
  const m = classifyBannered(server, client, clientPort, serverPort) ?? classifyBannered(client, server, clientPort, serverPort);
  if (m || server.length > 0) return m;
  // one-sided capture of the client direction
  const verb = commandVerb(client, 0);
  if (SMTP_FIRST.includes(verb) && client[4] === SP) return { protocol: 'smtp', evidence: `client ${verb}` };
  const tagged = imapTaggedCommand(client, 0);
  if (tagged) return { protocol: 'imap', evidence: `client tagged ${tagged.command}` };
  if (POP3_ONLY.includes(verb)) return { protocol: 'pop3', evidence: `client ${verb}` };
  if (FTP_ONLY.includes(verb)) return { protocol: 'ftp', evidence: `client ${verb}` };
  if (SHARED.includes(verb)) {
    if (portIn(POP3_PORTS, clientPort, serverPort)) return { protocol: 'pop3', evidence: `client ${verb} on the POP3 port` };
    if (portIn(FTP_PORTS, clientPort, serverPort)) return { protocol: 'ftp', evidence: `client ${verb} on the FTP port` };
  }
  return null;
}
