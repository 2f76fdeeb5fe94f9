// TLS from the wire: both directions' stream prefixes in, version / cipher / SNI / ALPN /
// JA4 / resumption / client-certificate verdict with evidence out. Pure, bounded, and
// never throws: every read is bounds-checked and every loop has a cap.

import type { TlsDetails } from '../types.js';
import { tls12ClientCertificate, tls13ClientCertificate, type ClientCertVerdict } from './client-cert.js';
import {
  HANDSHAKE_CLIENT_HELLO,
  HANDSHAKE_CERTIFICATE,
  HANDSHAKE_SERVER_HELLO,
  HANDSHAKE_SERVER_HELLO_DONE,
  findMessage,
  readHandshakeMessages,
  type HandshakeMessage,
} from './handshake.js';
import {
  looksLikeSslv2ClientHello,
  looksLikeSslv2ServerHello,
  parseClientHello,
  parseServerHello,
  parseSslv2ClientHello,
  sslv2Header,
  type ClientHello,
  type ServerHello,
} from './hello.js';
import { ja4 } from './ja4.js';
import {
  CONTENT_CHANGE_CIPHER_SPEC,
  CONTENT_HANDSHAKE,
  alertName,
  findRecord,
  firstPlainAlert,
  plausibleRecordHeader,
  walkRecords,
  type PlainAlert,
  type RecordWalk,
} from './records.js';
import { cipherSuiteName, groupName, versionName } from './suites.js';

export interface TlsAnalysis {
  details: TlsDetails;
  /** A ClientHello was parsed from the client stream. */
  clientHello: boolean;
  /** A ServerHello (or HelloRetryRequest) was parsed from the server stream. */
  serverHello: boolean;
  /** The server answered with bytes that are not TLS (e.g. a plaintext error page): the flow must not be called tls. */
  serverNotTls: boolean;
  /** Name of the first plaintext alert seen (e.g. "handshake_failure"), when one was. */
  alert?: string;
  evidence: string;
}

const TLS13 = 0x0304;
const TLS12 = 0x0303;
const RECORD_LENGTH_OFFSET = 3;

/** True when the stream starts like TLS: a handshake record (0x16, version 3.0-3.4) or an SSLv2-compatible ClientHello. */
export function looksLikeTls(stream: Uint8Array): boolean {
  if (stream.length >= 3 && stream[0] === CONTENT_HANDSHAKE && plausibleRecordHeader(stream, 0)) {
    // A handshake record is never empty.
    return stream.length < 5 || ((stream[RECORD_LENGTH_OFFSET] << 8) | stream[RECORD_LENGTH_OFFSET + 1]) > 0;
  }
  return looksLikeSslv2ClientHello(stream);
}

interface Direction {
  walk: RecordWalk;
  /** Index of the first ChangeCipherSpec record, or -1. */
  ccs: number;
  /** Plaintext handshake messages (TLS <= 1.2: before the ChangeCipherSpec; 1.3: all handshake records). */
  messages: HandshakeMessage[];
  alert?: PlainAlert;
}

function readDirection(stream: Uint8Array, start: number): Direction {
  const walk = walkRecords(stream, start);
  const ccs = findRecord(walk.records, CONTENT_CHANGE_CIPHER_SPEC);
  const messages = readHandshakeMessages(stream, walk.records, ccs < 0 ? walk.records.length : ccs);
  return { walk, ccs, messages, alert: firstPlainAlert(stream, walk.records) };
}

/** TLS 1.3 encrypts with record type 23 only, so handshake records after a CCS are still plaintext (HRR flows). */
function rereadAsTls13(stream: Uint8Array, d: Direction): void {
  if (d.ccs >= 0) d.messages = readHandshakeMessages(stream, d.walk.records);
}

function parseHelloMessage(m: HandshakeMessage | undefined): ClientHello | null {
  if (m === undefined || m.type !== HANDSHAKE_CLIENT_HELLO || m.body.length === 0) return null;
  return parseClientHello(m.body, { partial: m.body.length < m.length });
}

function parseServerHelloMessage(m: HandshakeMessage | undefined): ServerHello | null {
  if (m === undefined || m.type !== HANDSHAKE_SERVER_HELLO || m.body.length === 0) return null;
  return parseServerHello(m.body, { partial: m.body.length < m.length });
}

/** The negotiated version from a ServerHello; undefined when a cut-off hello hides it. */
function negotiatedVersion(sh: ServerHello): number | undefined {
  if (sh.selectedVersion !== undefined) return sh.selectedVersion;
  // A truncated TLS 1.3 ServerHello says 1.2 until supported_versions is read.
  if (sh.truncated && sh.legacyVersion >= TLS12) return undefined;
  return sh.legacyVersion;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Analyses a TLS exchange. client/server are contiguous stream prefixes, each starting
 * at a TLS record boundary (the caller strips STARTTLS/PROXY preambles). Returns null
 * when the client stream is not TLS.
 */
export function analyzeTls(
  client: Uint8Array,
  server: Uint8Array,
  opts?: { clientTruncated?: boolean; serverTruncated?: boolean },
): TlsAnalysis | null {
  if (!looksLikeTls(client)) return null;

  // --- client: ClientHello (TLS record or SSLv2 format) ---
  let hello: ClientHello | null = null;
  let clientStart = 0;
  const sslv2Hello = looksLikeSslv2ClientHello(client);
  if (sslv2Hello) {
    hello = parseSslv2ClientHello(client);
    clientStart = sslv2Header(client)?.recordLength ?? client.length;
  }
  const c = readDirection(client, clientStart);
  if (!sslv2Hello) hello = parseHelloMessage(c.messages[0]);

  const details: TlsDetails = { clientCertificate: 'unknown' };
  if (hello !== null) {
    if (hello.sni !== undefined) details.sni = hello.sni;
    if (hello.alpn.length > 0) details.alpn = hello.alpn.slice();
    if (!hello.truncated) details.ja4 = ja4(hello, 't');
  }

  const result: TlsAnalysis = { details, clientHello: hello !== null, serverHello: false, serverNotTls: false, evidence: '' };
  const notes: string[] = [];

  // --- server ---
  let sh: ServerHello | null = null;
  let hrr: ServerHello | null = null;
  let version: number | undefined;
  let s: Direction | undefined;
  if (server.length === 0) {
    notes.push(opts?.serverTruncated ? 'server bytes not captured' : 'no server response captured');
  } else if (looksLikeSslv2ServerHello(server)) {
    // The server picked SSL 2.0 itself; nothing after this is worth parsing.
    result.serverHello = true;
    details.version = 'ssl2';
  } else if (!plausibleRecordHeader(server, 0)) {
    result.serverNotTls = true;
    notes.push('server answered with non-TLS bytes');
  } else {
    s = readDirection(server, 0);
    const first = parseServerHelloMessage(s.messages[0]);
    if (first !== null && first.helloRetryRequest) {
      hrr = first;
      rereadAsTls13(server, s);
      rereadAsTls13(client, c);
      sh = parseServerHelloMessage(s.messages[findMessage(s.messages, HANDSHAKE_SERVER_HELLO, 1)]);
    } else {
      sh = first;
    }
    const chosen = sh ?? hrr;
    if (chosen !== null) {
      result.serverHello = true;
      version = hrr !== null ? (sh !== null ? negotiatedVersion(sh) : TLS13) : negotiatedVersion(chosen);
      const name = version === undefined ? undefined : versionName(version);
      if (name !== undefined) details.version = name;
      details.cipher = cipherSuiteName(chosen.cipherSuite);
      if (sh?.alpn !== undefined) details.alpnSelected = sh.alpn;
    } else if (s.messages.length > 0) {
      notes.push('server sent TLS records but no ServerHello');
    } else if (s.alert === undefined) {
      notes.push('no ServerHello captured');
    }
  }

  if (hrr !== null) {
    details.helloRetryRequest = true;
    const group = hrr.keyShareGroup !== undefined ? ` for ${groupName(hrr.keyShareGroup)}` : '';
    notes.push(sh !== null ? `HelloRetryRequest${group}, then second ClientHello/ServerHello` : `HelloRetryRequest${group}, second ServerHello not captured`);
  }

  // --- resumption and client certificate ---
  let cert: ClientCertVerdict | undefined;
  const negotiated = version === undefined ? undefined : versionName(version);
  if (sh !== null && s !== undefined && negotiated !== undefined) {
    if (negotiated === '1.3') {
      details.resumed = sh.hasPreSharedKey;
      if (details.resumed) notes.push('session resumed (PSK)');
      cert = tls13ClientCertificate({
        clientRecords: c.walk.records,
        afterHelloRecord: lastHelloEnd(c.messages),
        cipherSuite: sh.cipherSuite,
        resumed: details.resumed,
        earlyDataOffered: hrr === null && hello !== null && hello.hasEarlyData,
      });
    } else if (negotiated !== 'ssl2') {
      const how = tls12Resumption(hello, sh, s);
      details.resumed = how !== undefined;
      if (how !== undefined) notes.push(`session resumed (${how})`);
      cert = tls12ClientCertificate({
        serverMessages: s.messages,
        clientMessages: c.messages,
        clientAlert: c.alert,
        resumed: details.resumed,
      });
    }
  }
  if (cert !== undefined) {
    details.clientCertificate = cert.clientCertificate;
    notes.push(cert.evidence);
  }

  // --- alerts ---
  const serverAlert = s?.alert;
  if (serverAlert !== undefined) {
    result.alert = alertName(serverAlert.description);
    notes.push(sh === null && hrr === null ? `server sent alert ${result.alert} instead of ServerHello` : `server sent alert ${result.alert}`);
  } else if (c.alert !== undefined) {
    result.alert = alertName(c.alert.description);
    notes.push(`client sent alert ${result.alert}`);
  }

  if (opts?.clientTruncated && details.clientCertificate === 'unknown' && sh !== null) notes.push('client capture truncated');
  result.evidence = headline(hello, sh ?? hrr, details) + (notes.length > 0 ? '; ' + notes.join('; ') : '');
  return result;
}

/** First record after the last plaintext ClientHello (the one after a HelloRetryRequest). */
function lastHelloEnd(messages: HandshakeMessage[]): number {
  let end = -1;
  for (const m of messages) {
    if (m.type === HANDSHAKE_CLIENT_HELLO) end = m.complete ? m.endRecord + 1 : Number.MAX_SAFE_INTEGER;
  }
  return end < 0 ? Number.MAX_SAFE_INTEGER : end;
}

/**
 * TLS <= 1.2 resumption: the server echoes the client's non-empty session id, or skips
 * straight from ServerHello to ChangeCipherSpec (abbreviated handshake, RFC 5246 §7.3 /
 * RFC 5077 §3.1) without Certificate or ServerHelloDone.
 */
function tls12Resumption(hello: ClientHello | null, sh: ServerHello, s: Direction): string | undefined {
  if (hello !== null && hello.sessionIdLength > 0 && equalBytes(hello.sessionId, sh.sessionId)) return 'session ID';
  if (s.ccs >= 0 && findMessage(s.messages, HANDSHAKE_CERTIFICATE) < 0 && findMessage(s.messages, HANDSHAKE_SERVER_HELLO_DONE) < 0) {
    return 'abbreviated handshake';
  }
  return undefined;
}

/** "TLS 1.3 handshake: ClientHello SNI x ALPN h2, ServerHello TLS_AES_128_GCM_SHA256". */
function headline(hello: ClientHello | null, sh: ServerHello | null, d: TlsDetails): string {
  if (hello === null && sh === null) return 'TLS handshake record without a parsable ClientHello';
  const kind = hello?.sslv2 ? 'SSLv2-format ClientHello' : 'ClientHello';
  const facts: string[] = [];
  if (hello?.sni !== undefined) facts.push(`SNI ${hello.sni}`);
  if (hello !== null && hello.alpn.length > 0) facts.push(`ALPN ${hello.alpn.slice(0, 4).join(',')}`);
  if (hello?.truncated) facts.push('(truncated)');
  if (hello !== null && sh === null && d.version !== 'ssl2') {
    const offered = offeredVersion(hello);
    return `TLS ${kind}${offered !== undefined ? ` offering up to ${offered}` : ''}${facts.length > 0 ? ': ' + facts.join(' ') : ''}`;
  }
  const server = ['ServerHello'];
  if (d.cipher !== undefined) server.push(d.cipher);
  if (d.alpnSelected !== undefined) server.push(`ALPN ${d.alpnSelected}`);
  const v = d.version === undefined ? 'TLS (version unknown)' : d.version.startsWith('ssl') ? d.version.toUpperCase() : `TLS ${d.version}`;
  const client = hello === null ? '' : [kind, ...facts].join(' ') + ', ';
  return `${v} handshake: ${client}${server.join(' ')}`;
}

/** The client's highest offered version, for a flow without a ServerHello. */
function offeredVersion(hello: ClientHello): string | undefined {
  let best = -1;
  for (const v of hello.supportedVersions) if (v <= TLS13 && versionName(v) !== undefined && v > best) best = v;
  if (best < 0) best = hello.legacyVersion;
  const name = versionName(best);
  return name === undefined ? undefined : name.startsWith('ssl') ? name.toUpperCase() : `TLS ${name}`;
}
