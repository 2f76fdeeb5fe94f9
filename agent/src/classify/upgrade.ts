// In-band upgrades to TLS, followed to the end: where in each stream the TLS records
// begin, so the caller can run the TLS analysis from there. An upgrade is returned only
// when the bytes at an offset really start a TLS record; an upgrade that was asked for
// and answered "no" (or not followed by TLS) is `refused`, and the flow stays plaintext.
//
// Evidence: commands, reply codes and request names only — never a host, a user or
// anything the plaintext part carried.

import { AMQP_HEADER_LENGTH, AMQP_TLS_HEADER, parseLdapExtendedResponse, parseLdapRequest } from './plaintext/binary.js';
import { parseRequestLine, parseStatusLine, scanHead } from './plaintext/http.js';
import { LINE_MAX, commandVerb, imapTaggedCommand, readCodedReply } from './plaintext/mail.js';
import { parseProxyHeader } from './plaintext/proxy.js';
import { parseMysqlGreeting, parseMysqlResponse, pgNegotiation } from './plaintext/sql.js';
import { CR, LF, SP, contentEnd, hasAscii, hasAsciiCI, lineEnd, tlsRecordAt } from './text.js';

export interface Upgrade {
  from: string;
  clientOffset: number;
  serverOffset: number;
  evidence: string;
}

export interface RefusedUpgrade {
  from: string;
  refused: true;
  evidence: string;
}

export type UpgradeResult = Upgrade | RefusedUpgrade | null;

/** Commands we follow before the upgrade command; sessions upgrade within the first few. */
const COMMANDS_MAX = 32;
/** Server lines (untagged IMAP responses, POP3 multi-line bodies) we walk before giving up. */
const SERVER_LINES_MAX = 256;
/** IMAP literal sizes we skip over ({n} CRLF then n bytes). */
const IMAP_LITERAL_MAX = 65536;

const TLS_HANDSHAKE = 0x16;
const TLS_MAJOR = 0x03;

/** What the bytes at an offset are: a TLS record, something else, or nothing captured. */
function tlsState(b: Uint8Array, off: number): 'tls' | 'not' | 'none' {
  if (off >= b.length) return 'none';
  if (tlsRecordAt(b, off)) return 'tls';
  // fewer than 3 bytes: only a contradiction counts
  const avail = b.length - off;
  if (avail < 3 && b[off] === TLS_HANDSHAKE && (avail < 2 || b[off + 1] === TLS_MAJOR)) return 'none';
  return 'not';
}

/** Turn "TLS should start here" into an Upgrade, a refusal, or nothing (neither side captured). */
function settle(from: string, client: Uint8Array, cOffset: number, server: Uint8Array, sOffset: number, evidence: string): UpgradeResult {
  // a message cut by the capture may declare an end past the captured bytes
  const cOff = Math.min(Math.max(0, cOffset), client.length);
  const sOff = Math.min(Math.max(0, sOffset), server.length);
  const c = tlsState(client, cOff);
  const s = tlsState(server, sOff);
  if (c === 'not' || s === 'not') return { from, refused: true, evidence: `${evidence}, but no TLS followed` };
  if (c === 'tls' || s === 'tls') return { from, clientOffset: cOff, serverOffset: sOff, evidence };
  return null;
}

function refused(from: string, evidence: string): RefusedUpgrade {
  return { from, refused: true, evidence };
}

/**
 * When a plaintext start is followed by TLS: the offsets in each stream where the TLS
 * records begin. `refused` when the upgrade was asked for and refused (the flow stays
 * plaintext). null when no upgrade is seen.
 */
export function findUpgrade(client: Uint8Array, server: Uint8Array, _clientPort: number, _serverPort: number): UpgradeResult {
  const proxy = parseProxyHeader(client);
  if (!proxy) return findDirect(client, server);
  const c = client.subarray(proxy.end);
  const header = `PROXY protocol v${proxy.version} header`;
  if (tlsRecordAt(c, 0)) {
    const s = tlsState(server, 0);
    return s === 'not' ? null : { from: 'proxy-protocol', clientOffset: proxy.end, serverOffset: 0, evidence: `${header} then TLS` };
  }
  const inner = findDirect(c, server);
  if (!inner) return null;
  if ('refused' in inner) return { ...inner, evidence: `${header}; ${inner.evidence}` };
  return { ...inner, clientOffset: inner.clientOffset + proxy.end, evidence: `${header}; ${inner.evidence}` };
}

function findDirect(client: Uint8Array, server: Uint8Array): UpgradeResult {
  return (
    postgres(client, server) ??
    httpConnect(client, server) ??
    amqp(client, server) ??
    ldap(client, server) ??
    mysql(client, server) ??
    swapped(mysql, client, server) ??
    lineProtocols(client, server) ??
    swapped(lineProtocols, client, server)
  );
}

/** Server-first protocols seen with the directions swapped (no SYN captured): swap back the offsets. */
function swapped(f: (c: Uint8Array, s: Uint8Array) => UpgradeResult, client: Uint8Array, server: Uint8Array): UpgradeResult {
  if (client.length === 0 || server.length === 0) return null;
  const r = f(server, client);
  if (!r || 'refused' in r) return r;
  return { ...r, clientOffset: r.serverOffset, serverOffset: r.clientOffset };
}

// ---- PostgreSQL: SSLRequest answered 'S' (GSSENCRequest 'N' may come first)

function postgres(client: Uint8Array, server: Uint8Array): UpgradeResult {
  const neg = pgNegotiation(client, server);
  if (!neg) return null;
  const what = neg.asked === 'ssl' ? 'SSLRequest' : 'GSSENCRequest';
  switch (neg.outcome) {
    case 'tls':
      return settle('postgresql', client, neg.clientOff, server, neg.serverOff, server.length > 0 ? "SSLRequest answered 'S'" : 'SSLRequest then TLS');
    case 'refused':
      return refused('postgresql', `${what} refused`);
    default:
      return null; // GSSAPI encryption (not TLS), or the answer was not captured
  }
}

// ---- HTTP CONNECT: request head, 2xx response head, then TLS from both sides

function httpConnect(client: Uint8Array, server: Uint8Array): UpgradeResult {
  const req = parseRequestLine(client, 0);
  if (!req || req.method !== 'CONNECT' || req.end < 0 || !req.protocol.startsWith('HTTP/1')) return null;
  const cEnd = scanHead(client, req.end).end;
  if (cEnd < 0) return null;
  if (server.length === 0) return settle('http-connect', client, cEnd, server, 0, 'HTTP CONNECT');
  const st = parseStatusLine(server, 0);
  if (!st || st.end < 0) return null;
  if (st.code < 200 || st.code > 299) return refused('http-connect', `HTTP CONNECT answered ${st.code}`);
  const sEnd = scanHead(server, st.end).end;
  if (sEnd < 0) return settle('http-connect', client, cEnd, server, server.length, `HTTP CONNECT answered ${st.code}`);
  return settle('http-connect', client, cEnd, server, sEnd, `HTTP CONNECT answered ${st.code}`);
}

// ---- AMQP 1.0: the TLS protocol header (id 2), echoed by the server, then TLS

function amqp(client: Uint8Array, server: Uint8Array): UpgradeResult {
  if (!hasAscii(client, 0, AMQP_TLS_HEADER)) return null;
  if (server.length >= AMQP_HEADER_LENGTH && !hasAscii(server, 0, AMQP_TLS_HEADER)) return refused('amqp', 'AMQP TLS header answered with another protocol header');
  return settle('amqp', client, AMQP_HEADER_LENGTH, server, Math.min(server.length, AMQP_HEADER_LENGTH), 'AMQP 1.0 TLS protocol header');
}

// ---- LDAP: extendedRequest StartTLS, extendedResponse success, then TLS

function ldap(client: Uint8Array, server: Uint8Array): UpgradeResult {
  const m = parseLdapRequest(client, 0);
  if (!m?.startTls) return null;
  const answer = parseLdapExtendedResponse(server, 0);
  if (!answer) return server.length === 0 ? settle('ldap', client, m.end, server, 0, 'LDAP StartTLS') : null;
  if (answer.resultCode !== 0) return refused('ldap', `LDAP StartTLS refused (resultCode ${answer.resultCode})`);
  return settle('ldap', client, m.end, server, answer.end, 'LDAP StartTLS accepted');
}

// ---- MySQL: greeting with CLIENT_SSL, the client's 32-byte SSLRequest, then TLS

function mysql(client: Uint8Array, server: Uint8Array): UpgradeResult {
  const g = parseMysqlGreeting(server);
  const r = parseMysqlResponse(client, 0);
  if (g) {
    if (r?.ssl) return settle('mysql', client, r.end, server, g.end, 'MySQL SSLRequest (CLIENT_SSL)');
    if (!r && client.length === 0 && tlsRecordAt(server, g.end)) return settle('mysql', client, 0, server, g.end, 'MySQL greeting then TLS');
    return null;
  }
  if (server.length === 0 && r?.ssl) return settle('mysql', client, r.end, server, 0, 'MySQL SSLRequest (CLIENT_SSL)');
  return null;
}

// ---- SMTP, FTP, POP3, IMAP: walk commands and replies up to the upgrade command

interface LineUpgrade {
  from: string;
  /** Index of the upgrade command among the client's command lines. */
  index: number;
  /** Offset just past the upgrade command line. */
  end: number;
  verb: string;
  tag?: string;
}

/** Find the client's upgrade command line: STARTTLS, STLS, AUTH TLS/SSL, or TAG STARTTLS. */
function findUpgradeCommand(client: Uint8Array, banner: 'coded' | 'pop3' | 'imap' | 'none'): LineUpgrade | null {
  let i = 0;
  for (let n = 0; n < COMMANDS_MAX && i < client.length; n++) {
    const e = lineEnd(client, i, LINE_MAX);
    if (e < 0) return null;
    const ce = contentEnd(client, i, e);
    const verb = commandVerb(client, i);
    if ((banner === 'coded' || banner === 'none') && verb === 'STARTTLS' && ce === i + 8) return { from: 'smtp', index: n, end: e, verb };
    if ((banner === 'coded' || banner === 'none') && verb === 'AUTH' && ce - i >= 8) {
      if (hasAsciiCI(client, i + 5, 'TLS') || hasAsciiCI(client, i + 5, 'SSL')) return { from: 'ftp', index: n, end: e, verb: 'AUTH TLS' };
    }
    if ((banner === 'pop3' || banner === 'none') && verb === 'STLS' && ce === i + 4) return { from: 'pop3', index: n, end: e, verb };
    if (banner === 'imap' || banner === 'none') {
      const t = imapTaggedCommand(client, i);
      if (t && t.command === 'STARTTLS' && ce === t.tagEnd + 9) {
        let tag = '';
        for (let k = i; k < t.tagEnd; k++) tag += String.fromCharCode(client[k]);
        return { from: 'imap', index: n, end: e, verb: 'STARTTLS', tag };
      }
    }
    i = e;
  }
  return null;
}

function lineProtocols(client: Uint8Array, server: Uint8Array): UpgradeResult {
  let banner: 'coded' | 'pop3' | 'imap' | 'none';
  if (server.length === 0) banner = 'none';
  else if (readCodedReply(server, 0)?.code === 220) banner = 'coded';
  else if (hasAscii(server, 0, '+OK')) banner = 'pop3';
  else if (hasAscii(server, 0, '* OK') || hasAscii(server, 0, '* PREAUTH')) banner = 'imap';
  else return null;
  const cmd = findUpgradeCommand(client, banner);
  if (!cmd) return null;
  if (banner === 'none') return settle(cmd.from, client, cmd.end, server, 0, `${cmd.verb} then TLS`);
  if (cmd.from === 'imap') return imapAnswer(client, server, cmd);
  if (cmd.from === 'pop3') return pop3Answer(client, server, cmd);
  return codedAnswer(client, server, cmd);
}

/** SMTP/FTP: the banner, then one reply per command line (pipelined or not). */
function codedAnswer(client: Uint8Array, server: Uint8Array, cmd: LineUpgrade): UpgradeResult {
  const banner = readCodedReply(server, 0);
  if (!banner) return null;
  let s = banner.end;
  for (let n = 0; n < cmd.index; n++) {
    const r = readCodedReply(server, s);
    if (!r) return settle(cmd.from, client, cmd.end, server, server.length, `${cmd.verb}`);
    s = r.end;
  }
  const answer = readCodedReply(server, s);
  if (!answer) return settle(cmd.from, client, cmd.end, server, server.length, `${cmd.verb}`);
  // 220 (SMTP, RFC 3207), 234 (FTP, RFC 4217), 334 (FTP AUTH SSL on old servers)
  const ok = cmd.from === 'smtp' ? answer.code === 220 : answer.code === 234 || answer.code === 334;
  if (!ok) return refused(cmd.from, `${cmd.verb} refused (${answer.code})`);
  return settle(cmd.from, client, cmd.end, server, answer.end, `${cmd.verb} answered ${answer.code}`);
}

/** POP3 commands whose +OK answer is a multi-line body ending in ".": CAPA, LIST/UIDL without argument, RETR, TOP. */
function pop3MultiLine(client: Uint8Array, lineStart: number): boolean {
  const verb = commandVerb(client, lineStart);
  if (verb === 'CAPA' || verb === 'RETR' || verb === 'TOP') return true;
  if (verb === 'LIST' || verb === 'UIDL') {
    const x = client[lineStart + 4];
    return x === CR || x === LF;
  }
  return false;
}

function pop3Answer(client: Uint8Array, server: Uint8Array, cmd: LineUpgrade): UpgradeResult {
  let s = lineEnd(server, 0, LINE_MAX); // greeting
  let c = 0;
  if (s < 0) return null;
  for (let n = 0; n <= cmd.index; n++) {
    const ce = lineEnd(client, c, LINE_MAX);
    const e = lineEnd(server, s, LINE_MAX);
    if (ce < 0) return null;
    if (e < 0) return n === cmd.index ? settle('pop3', client, cmd.end, server, server.length, 'STLS') : null;
    const ok = hasAscii(server, s, '+OK');
    if (n === cmd.index) {
      if (!ok) return refused('pop3', 'STLS refused (-ERR)');
      return settle('pop3', client, cmd.end, server, e, 'STLS answered +OK');
    }
    s = e;
    if (ok && pop3MultiLine(client, c)) {
      // body lines up to the terminating "."
      let done = false;
      for (let k = 0; k < SERVER_LINES_MAX && !done; k++) {
        const le = lineEnd(server, s, LINE_MAX);
        if (le < 0) return null;
        done = server[s] === 0x2e && contentEnd(server, s, le) === s + 1;
        s = le;
      }
      if (!done) return null;
    }
    c = ce;
  }
  return null;
}

/**
 * IMAP: untagged ("* …") and continuation ("+ …") lines, and one tagged completion per
 * command, in order. Clients may reuse a tag (openssl uses "." throughout), so the answer
 * to STARTTLS is found by counting completions, then checked to carry its tag.
 */
function imapAnswer(client: Uint8Array, server: Uint8Array, cmd: LineUpgrade): UpgradeResult {
  const tag = cmd.tag ?? '';
  let s = 0;
  let completions = 0;
  let continuesLiteral = false; // the bytes after a literal continue the same response line
  for (let n = 0; n < SERVER_LINES_MAX && s < server.length; n++) {
    const e = lineEnd(server, s, LINE_MAX);
    if (e < 0) return settle('imap', client, cmd.end, server, server.length, 'STARTTLS');
    const untagged = continuesLiteral || ((server[s] === 0x2a || server[s] === 0x2b) && server[s + 1] === SP);
    continuesLiteral = false;
    if (!untagged && completions++ === cmd.index) {
      if (!hasAscii(server, s, tag) || server[s + tag.length] !== SP) return null;
      const st = s + tag.length + 1;
      if (hasAsciiCI(server, st, 'OK')) return settle('imap', client, cmd.end, server, e, 'STARTTLS answered OK');
      return refused('imap', `STARTTLS refused (${hasAsciiCI(server, st, 'NO') ? 'NO' : 'BAD'})`);
    }
    // a line ending in a literal {n}: skip its n bytes
    const ce = contentEnd(server, s, e);
    let next = e;
    if (ce > s && server[ce - 1] === 0x7d /* } */) {
      let k = ce - 2;
      let v = 0;
      let mult = 1;
      while (k > s && server[k] >= 0x30 && server[k] <= 0x39 && mult <= IMAP_LITERAL_MAX) {
        v += (server[k] - 0x30) * mult;
        mult *= 10;
        k--;
      }
      if (server[k] === 0x7b /* { */ && mult > 1 && v <= IMAP_LITERAL_MAX) {
        next = e + v;
        continuesLiteral = true;
      }
    }
    s = next;
  }
  return null;
}
