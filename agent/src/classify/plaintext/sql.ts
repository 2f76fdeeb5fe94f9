// PostgreSQL (frontend/backend protocol 3.x) and MySQL (client/server protocol 10).
//
// Evidence: protocol versions and the server's product version only; never a user,
// database, parameter or query.

import type { Match } from '../plaintext.js';
import { be32, evidenceToken, isDigit, tlsRecordAt } from '../text.js';

// ---- PostgreSQL (https://www.postgresql.org/docs/current/protocol-message-formats.html)

/** Request codes in the version field of an 8-byte (or 16-byte) untyped startup packet. */
const PG_SSL_REQUEST = 80877103;
const PG_GSSENC_REQUEST = 80877104;
const PG_CANCEL_REQUEST = 80877102;
const PG_NEGOTIATION_LENGTH = 8;
const PG_CANCEL_LENGTH = 16;
/** Protocol 3.0; 3.2 arrived with PostgreSQL 18 (3.1 was never used but is accepted by servers). */
const PG_PROTOCOL_MAJOR = 3;
const PG_PROTOCOL_MINOR_MAX = 2;
/** MAX_STARTUP_PACKET_LENGTH in the postmaster: larger startup packets are rejected. */
const PG_STARTUP_MAX = 10000;
/** One-byte answers to SSLRequest / GSSENCRequest. */
const PG_ANSWER_SSL = 0x53; // 'S'
const PG_ANSWER_GSS = 0x47; // 'G'
const PG_ANSWER_NO = 0x4e; // 'N'
const PG_ANSWER_ERROR = 0x45; // 'E' (servers before 7.x-era SSL support; also on overload)
/** A client asks at most GSSENC then SSL before the StartupMessage. */
const PG_NEGOTIATIONS_MAX = 2;
const PG_PARAMS_MAX = 64;

export type PgOutcome = 'refused' | 'tls' | 'gss' | 'unanswered';

export interface PgNegotiation {
  /** What the client asked for last. */
  asked: 'ssl' | 'gss';
  outcome: PgOutcome;
  /** Offsets just past the negotiation (request(s) and one-byte answer(s)). */
  clientOff: number;
  serverOff: number;
}

function pgRequestAt(b: Uint8Array, off: number): 'ssl' | 'gss' | null {
  if (off + PG_NEGOTIATION_LENGTH > b.length || be32(b, off) !== PG_NEGOTIATION_LENGTH) return null;
  const code = be32(b, off + 4);
  return code === PG_SSL_REQUEST ? 'ssl' : code === PG_GSSENC_REQUEST ? 'gss' : null;
}

/**
 * Follow SSLRequest / GSSENCRequest and their one-byte answers. null when the client does
 * not start with one. When the server direction was not captured, the client's next bytes
 * tell the outcome (a StartupMessage means 'N', a TLS record means 'S').
 */
export function pgNegotiation(client: Uint8Array, server: Uint8Array): PgNegotiation | null {
  let c = 0;
  let s = 0;
  let asked: 'ssl' | 'gss' | null = null;
  for (let n = 0; n < PG_NEGOTIATIONS_MAX; n++) {
    const req = pgRequestAt(client, c);
    if (!req) break;
    asked = req;
    c += PG_NEGOTIATION_LENGTH;
    if (s >= server.length) {
      // answer not captured: infer from what the client did next
      if (pgRequestAt(client, c)) continue;
      if (req === 'ssl' && tlsRecordAt(client, c)) return { asked, outcome: 'tls', clientOff: c, serverOff: s };
      if (parsePgStartup(client, c)) return { asked, outcome: 'refused', clientOff: c, serverOff: s };
      return { asked, outcome: 'unanswered', clientOff: c, serverOff: s };
    }
    const answer = server[s];
    // an ErrorResponse: the server does not speak this negotiation; the connection ends
    if (answer === PG_ANSWER_ERROR) return { asked, outcome: 'refused', clientOff: c, serverOff: s };
    if (answer === PG_ANSWER_NO) {
      s += 1;
      continue;
    }
    if (answer === PG_ANSWER_SSL && req === 'ssl') return { asked, outcome: 'tls', clientOff: c, serverOff: s + 1 };
    if (answer === PG_ANSWER_GSS && req === 'gss') return { asked, outcome: 'gss', clientOff: c, serverOff: s + 1 };
    return null; // an answer that is not in the protocol: not PostgreSQL negotiation after all
  }
  return asked ? { asked, outcome: 'refused', clientOff: c, serverOff: s } : null;
}

export interface PgStartup {
  kind: 'startup' | 'cancel';
  major: number;
  minor: number;
}

function isParamNameChar(x: number): boolean {
  return (x >= 0x30 && x <= 0x39) || (x >= 0x41 && x <= 0x5a) || (x >= 0x61 && x <= 0x7a) || x === 0x5f || x === 0x2e || x === 0x2d;
}

/** StartupMessage (length, protocol 3.x, name\0value\0 … \0) or CancelRequest at b[off]. */
export function parsePgStartup(b: Uint8Array, off: number): PgStartup | null {
  if (off + 8 > b.length) return null;
  const len = be32(b, off);
  const code = be32(b, off + 4);
  if (code === PG_CANCEL_REQUEST) return len === PG_CANCEL_LENGTH ? { kind: 'cancel', major: 0, minor: 0 } : null;
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== PG_PROTOCOL_MAJOR || minor > PG_PROTOCOL_MINOR_MAX) return null;
  if (len < 9 || len > PG_STARTUP_MAX) return null;
  // parameters: name\0value\0 pairs, then a final \0 at exactly off+len-1
  const end = Math.min(b.length, off + len);
  let i = off + 8;
  for (let p = 0; p < PG_PARAMS_MAX && i < end; p++) {
    if (b[i] === 0) return i === off + len - 1 ? { kind: 'startup', major, minor } : null;
    // name
    const n0 = i;
    while (i < end && isParamNameChar(b[i])) i++;
    if (i >= end) return end < off + len ? { kind: 'startup', major, minor } : null; // cut by the capture
    if (b[i] !== 0 || i === n0) return null;
    i++;
    // value: any text, no control bytes
    while (i < end && b[i] !== 0 && (b[i] >= 0x20 || b[i] === 0x09)) i++;
    if (i >= end) return end < off + len ? { kind: 'startup', major, minor } : null;
    if (b[i] !== 0) return null;
    i++;
  }
  return i >= end && end < off + len ? { kind: 'startup', major, minor } : null;
}

export function detectPostgres(client: Uint8Array, server: Uint8Array, cOff: number): Match | null {
  if (cOff === 0) {
    const neg = pgNegotiation(client, server);
    if (neg) {
      const what = neg.asked === 'ssl' ? 'SSLRequest' : 'GSSENCRequest';
      // TLS or GSSAPI encryption follows, or the outcome is unknown: not a plaintext verdict
      if (neg.outcome !== 'refused') return null;
      const st = parsePgStartup(client, neg.clientOff);
      const tail = st ? `; ${startupEvidence(st)}` : '';
      return { protocol: 'postgresql', evidence: `${what} refused ('N')${tail}` };
    }
  }
  const st = parsePgStartup(client, cOff);
  return st ? { protocol: 'postgresql', evidence: startupEvidence(st) } : null;
}

function startupEvidence(st: PgStartup): string {
  return st.kind === 'cancel' ? 'CancelRequest' : `StartupMessage protocol ${st.major}.${st.minor}`;
}

// ---- MySQL / MariaDB (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html)

const MYSQL_HEADER = 4;
const MYSQL_PROTOCOL_10 = 0x0a;
/** A Protocol::HandshakeV10 payload: version string, 4+8+1+2 fixed bytes, then optional tail. */
const MYSQL_GREETING_MIN = 1 + 2 + 4 + 8 + 1 + 2;
const MYSQL_GREETING_MAX = 1024;
const MYSQL_VERSION_MAX = 64;
/** Capability flags (include/mysql_com.h). */
export const CLIENT_SSL = 0x0800;
const CLIENT_PROTOCOL_41 = 0x0200;
/** HandshakeResponse41 / SSLRequest: caps(4) max_packet(4) charset(1) filler(23 zero bytes). */
const MYSQL_RESPONSE_FIXED = 32;
const MYSQL_RESPONSE_FILLER = 23;
/** The greeting's 10 reserved bytes: MariaDB reuses the last 4 for extended capabilities. */
const MYSQL_RESERVED_ZERO = 6;

function le24(b: Uint8Array, off: number): number {
  return b[off] | (b[off + 1] << 8) | (b[off + 2] << 16);
}

export interface MysqlGreeting {
  version: string;
  capabilities: number;
  /** Index just past the greeting packet. */
  end: number;
}

/** Protocol::HandshakeV10 at the start of b (sequence id 0). */
export function parseMysqlGreeting(b: Uint8Array): MysqlGreeting | null {
  if (b.length < MYSQL_HEADER + MYSQL_GREETING_MIN) return null;
  const len = le24(b, 0);
  if (b[3] !== 0 || b[4] !== MYSQL_PROTOCOL_10 || len < MYSQL_GREETING_MIN || len > MYSQL_GREETING_MAX) return null;
  const v0 = 5;
  if (!isDigit(b[v0])) return null;
  let i = v0;
  const vLimit = Math.min(b.length, v0 + MYSQL_VERSION_MAX);
  while (i < vLimit && b[i] >= 0x20 && b[i] < 0x7f) i++;
  if (i >= vLimit || b[i] !== 0) return null;
  const version = evidenceToken(b, v0, i);
  const fixed = i + 1; // connection id (4), auth-plugin-data-part-1 (8), filler (1), capability_flags_1 (2)
  if (fixed + 15 > b.length || fixed + 15 > MYSQL_HEADER + len) return null;
  if (b[fixed + 12] !== 0) return null; // filler
  let capabilities = b[fixed + 13] | (b[fixed + 14] << 8);
  const tail = fixed + 15; // charset (1), status (2), capability_flags_2 (2), auth data len (1), reserved (10)
  if (tail < MYSQL_HEADER + len) {
    if (tail + 6 + MYSQL_RESERVED_ZERO <= b.length) {
      for (let k = 0; k < MYSQL_RESERVED_ZERO; k++) if (b[tail + 6 + k] !== 0) return null;
    }
    if (tail + 5 <= b.length) capabilities |= (b[tail + 3] | (b[tail + 4] << 8)) << 16;
  }
  return { version, capabilities: capabilities >>> 0, end: MYSQL_HEADER + len };
}

export interface MysqlResponse {
  ssl: boolean;
  end: number;
}

/** The client's HandshakeResponse41 or SSLRequest (sequence id 1) at b[off]. */
export function parseMysqlResponse(b: Uint8Array, off: number): MysqlResponse | null {
  const p = off + MYSQL_HEADER;
  if (p + MYSQL_RESPONSE_FIXED > b.length) return null;
  const len = le24(b, off);
  if (b[off + 3] !== 1 || len < MYSQL_RESPONSE_FIXED || len > 1 << 16) return null;
  const caps = b[p] | (b[p + 1] << 8);
  if ((caps & CLIENT_PROTOCOL_41) === 0) return null;
  if (b[p + 8] === 0) return null; // character set
  for (let k = 0; k < MYSQL_RESPONSE_FILLER; k++) if (b[p + 9 + k] !== 0) return null;
  return { ssl: len === MYSQL_RESPONSE_FIXED && (caps & CLIENT_SSL) !== 0, end: p + len };
}

/** MySQL is server-first: the greeting may sit in either array when the capture missed the SYN. */
export function detectMysql(client: Uint8Array, server: Uint8Array): Match | null {
  for (const [greeter, responder] of [[server, client], [client, server]] as const) {
    const g = parseMysqlGreeting(greeter);
    if (!g) continue;
    if (tlsRecordAt(greeter, g.end)) return null; // the server's half of a TLS upgrade
    const r = parseMysqlResponse(responder, 0);
    const product = g.version ? ` (server ${g.version})` : '';
    if (r?.ssl) {
      if (r.end >= responder.length || tlsRecordAt(responder, r.end)) return null; // TLS follows (or unknown)
      return { protocol: 'mysql', evidence: `server greeting protocol 10${product}; SSLRequest not followed by TLS` };
    }
    if (r) return { protocol: 'mysql', evidence: `server greeting protocol 10${product}; HandshakeResponse41 without CLIENT_SSL` };
    return { protocol: 'mysql', evidence: `server greeting protocol 10${product}` };
  }
  const r = parseMysqlResponse(client, 0);
  if (r && !r.ssl) return { protocol: 'mysql', evidence: 'HandshakeResponse41 without CLIENT_SSL' };
  return null;
}
