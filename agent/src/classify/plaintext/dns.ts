// DNS (UDP and TCP), plus the other UDP plaintext protocols: SNMP v1/v2c, NTP, SIP/SSDP
// start lines and memcached over UDP.
//
// Evidence: opcode, query type, PDU kind, version — never a name, a community string or
// a key.

import type { Match } from '../plaintext.js';
import { be16 } from '../text.js';
import { parseRequestLine, parseStatusLine } from './http.js';
import { parseMemcachedBinary, parseMemcachedText } from './kv.js';

// ---- DNS (RFC 1035 §4.1, RFC 2136 UPDATE, RFC 1996 NOTIFY, RFC 6762 mDNS)

const DNS_HEADER = 12;
const DNS_NAME_MAX = 255;
const DNS_LABEL_MAX = 63;
const DNS_FLAG_QR = 0x80;
const DNS_FLAG_TC = 0x02;
const DNS_FLAG_AA = 0x04;
const DNS_FLAG_Z = 0x40;
const DNS_OPCODE_QUERY = 0;
const DNS_OPCODE_NOTIFY = 4;
const DNS_OPCODE_UPDATE = 5;
const DNS_RCODE_MAX = 10; // NOTZONE; extended rcodes live in the OPT record
/** Section counts beyond this are implausible for the first message of a flow. */
const DNS_COUNT_MAX = 512;
/** mDNS questions may carry known answers and probes authority records (RFC 6762 §7.1, §8.2). */
const MDNS_COUNT_MAX = 64;
const MDNS_PORT = 5353;
const LLMNR_PORT = 5355;
/** Classes: IN, CH, HS, NONE, ANY. mDNS uses the top bit as unicast-response / cache-flush. */
const DNS_CLASSES = new Set([1, 3, 4, 254, 255]);
const DNS_MDNS_CLASS_MASK = 0x7fff;
/** Query types that make sense for the root name ("."). */
const ROOT_QTYPES = new Set([2, 6, 48, 255]);
const DNS_TCP_LENGTH = 2;
const OPCODE_NAMES = ['QUERY', 'IQUERY', 'STATUS', '3', 'NOTIFY', 'UPDATE'];
const QTYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR',
  43: 'DS', 46: 'RRSIG', 48: 'DNSKEY', 64: 'SVCB', 65: 'HTTPS', 251: 'IXFR', 252: 'AXFR', 255: 'ANY',
};

/** An uncompressed domain name at b[off] within end: index past it, or -1. */
function skipName(b: Uint8Array, off: number, end: number): number {
  let i = off;
  let total = 0;
  for (let labels = 0; labels <= 128; labels++) {
    if (i >= end) return -1;
    const len = b[i];
    if (len === 0) return i + 1;
    if (len > DNS_LABEL_MAX) return -1; // compression pointer or reserved label type: not in a first question
    total += len + 1;
    if (total > DNS_NAME_MAX || i + 1 + len > end) return -1;
    for (let k = i + 1; k <= i + len; k++) if (b[k] < 0x20 || b[k] === 0x7f) return -1;
    i += 1 + len;
  }
  return -1;
}

export interface DnsInfo {
  response: boolean;
  opcode: number;
  qtype: number;
  mdns: boolean;
}

/**
 * A DNS message occupying b[off, declaredEnd): header sanity and the first question (or,
 * for an mDNS announcement without questions, the first resource record's owner and fixed
 * fields). Over TCP the capture may cut the message: only captured bytes are read, the
 * declared end is used for the length rules.
 */
export function parseDnsMessage(b: Uint8Array, off: number, declaredEnd: number, mdns: boolean): DnsInfo | null {
  const end = Math.min(declaredEnd, b.length);
  if (declaredEnd - off < DNS_HEADER + 5 || end - off < DNS_HEADER) return null;
  const hi = b[off + 2];
  const lo = b[off + 3];
  const response = (hi & DNS_FLAG_QR) !== 0;
  const opcode = (hi >> 3) & 0x0f;
  const rcode = lo & 0x0f;
  const qd = be16(b, off + 4);
  const an = be16(b, off + 6);
  const ns = be16(b, off + 8);
  const ar = be16(b, off + 10);
  if (opcode !== DNS_OPCODE_QUERY && opcode !== DNS_OPCODE_NOTIFY && opcode !== DNS_OPCODE_UPDATE) return null;
  if ((lo & DNS_FLAG_Z) !== 0 || rcode > DNS_RCODE_MAX) return null;
  const countMax = mdns ? MDNS_COUNT_MAX : DNS_COUNT_MAX;
  if (an > countMax || ns > countMax || ar > countMax) return null;
  if (!response) {
    if (rcode !== 0 || (hi & DNS_FLAG_AA) !== 0) return null;
    if ((hi & DNS_FLAG_TC) !== 0 && !mdns) return null;
    if (opcode === DNS_OPCODE_QUERY) {
      if (mdns ? qd < 1 || qd > MDNS_COUNT_MAX : qd !== 1 || an !== 0 || ns > 1 || ar > 2) return null;
    } else if (opcode === DNS_OPCODE_NOTIFY) {
      if (qd !== 1 || an > 1 || ns !== 0 || ar > 2) return null;
    } else if (qd !== 1) return null; // UPDATE: exactly one zone
  } else if (qd !== 1 && !(mdns && qd === 0 && an > 0)) return null;

  const q = off + DNS_HEADER;
  const nameEnd = skipName(b, q, end);
  if (nameEnd < 0 || nameEnd + 4 > end) return null;
  const qtype = be16(b, nameEnd);
  const qclass = be16(b, nameEnd + 2) & (mdns ? DNS_MDNS_CLASS_MASK : 0xffff);
  if (qtype === 0 || !DNS_CLASSES.has(qclass)) return null;
  if (nameEnd === q + 1 && !ROOT_QTYPES.has(qtype) && qd !== 0) return null;
  if (qd === 0) {
    // mDNS announcement: an RR, TTL(4) and RDLENGTH(2) follow type and class
    if (nameEnd + 10 > end || nameEnd + 10 + be16(b, nameEnd + 8) > declaredEnd) return null;
  }
  // a plain query with nothing but its question must end right there
  if (!response && opcode === DNS_OPCODE_QUERY && qd === 1 && an === 0 && ns === 0 && ar === 0 && nameEnd + 4 !== declaredEnd) return null;
  return { response, opcode, qtype, mdns };
}

function dnsEvidence(d: DnsInfo, transport: string): string {
  const kind = d.mdns ? 'mDNS' : 'DNS';
  const what = d.response ? 'response' : 'query';
  const op = OPCODE_NAMES[d.opcode] ?? String(d.opcode);
  const type = QTYPE_NAMES[d.qtype] ?? `TYPE${d.qtype}`;
  return `${kind} ${what} over ${transport} (opcode ${op}, type ${type})`;
}

function isMdnsPort(a: number, b: number): boolean {
  return a === MDNS_PORT || b === MDNS_PORT || a === LLMNR_PORT || b === LLMNR_PORT;
}

/** DNS over TCP: a 2-byte length then the message (RFC 1035 §4.2.2, RFC 7766). */
export function detectDnsTcp(client: Uint8Array, server: Uint8Array, cOff: number): Match | null {
  for (const [b, off, fromServer] of [[client, cOff, false], [server, 0, true]] as const) {
    if (off + DNS_TCP_LENGTH > b.length) continue;
    const start = off + DNS_TCP_LENGTH;
    const d = parseDnsMessage(b, start, start + be16(b, off), false);
    if (d && d.response === fromServer) return { protocol: 'dns', evidence: dnsEvidence(d, 'TCP') };
  }
  return null;
}

// ---- SNMP v1 / v2c (RFC 1157, RFC 3416): SEQUENCE { version, community, PDU }

const BER_SEQUENCE = 0x30;
const BER_INTEGER = 0x02;
const BER_OCTET_STRING = 0x04;
const SNMP_VERSIONS = ['SNMPv1', 'SNMPv2c'];
const SNMP_PDUS = ['GetRequest', 'GetNextRequest', 'Response', 'SetRequest', 'Trap', 'GetBulkRequest', 'InformRequest', 'SNMPv2-Trap', 'Report'];
const SNMP_PDU_BASE = 0xa0;
const SNMP_COMMUNITY_MAX = 64;

function detectSnmp(d: Uint8Array): Match | null {
  if (d.length < 12 || d[0] !== BER_SEQUENCE) return null;
  // definite length, short or 1-2 byte long form
  let len = d[1];
  let i = 2;
  if (len === 0x81) [len, i] = [d[2], 3];
  else if (len === 0x82) [len, i] = [be16(d, 2), 4];
  else if (len >= 0x80) return null;
  if (i + len !== d.length) return null; // one message per datagram, exactly
  if (d[i] !== BER_INTEGER || d[i + 1] !== 1 || d[i + 2] > 1) return null;
  const version = d[i + 2];
  i += 3;
  if (d[i] !== BER_OCTET_STRING) return null;
  const cl = d[i + 1];
  if (cl > SNMP_COMMUNITY_MAX || i + 2 + cl >= d.length) return null;
  for (let k = i + 2; k < i + 2 + cl; k++) if (d[k] < 0x20 || d[k] > 0x7e) return null;
  i += 2 + cl;
  const pdu = d[i] - SNMP_PDU_BASE;
  if (pdu < 0 || pdu >= SNMP_PDUS.length) return null;
  // the community string is a credential: never in evidence
  return { protocol: 'snmp', evidence: `${SNMP_VERSIONS[version]} ${SNMP_PDUS[pdu]}` };
}

// ---- NTP (RFC 5905 §7.3): a 48-byte header, only on port 123 (the header is short on
// magic). Besides version and mode: stratum ≤ 16, poll ≤ 17, precision a small negative
// power of two (or 0, as SNTP clients send), root delay and dispersion under 256 s.

const NTP_PORT = 123;
const NTP_HEADER = 48;
const NTP_MODES = ['', 'symmetric active', 'symmetric passive', 'client', 'server', 'broadcast'];
const NTP_STRATUM_MAX = 16;
const NTP_POLL_MAX = 17;
const NTP_PRECISION_MIN = 0xe0; // -32 as int8

function detectNtp(d: Uint8Array, clientPort: number, serverPort: number): Match | null {
  if (clientPort !== NTP_PORT && serverPort !== NTP_PORT) return null;
  if (d.length < NTP_HEADER || (d.length - NTP_HEADER) % 4 !== 0) return null;
  const version = (d[0] >> 3) & 0x07;
  const mode = d[0] & 0x07;
  if (version < 1 || version > 4 || mode < 1 || mode > 5) return null;
  if (d[1] > NTP_STRATUM_MAX || d[2] > NTP_POLL_MAX || (d[3] !== 0 && d[3] < NTP_PRECISION_MIN)) return null;
  if (d[4] !== 0 || d[8] !== 0) return null; // root delay / root dispersion: 16.16 seconds, < 256 s
  return { protocol: 'ntp', evidence: `NTPv${version} ${NTP_MODES[mode]} packet` };
}

// ---- memcached over UDP: an 8-byte frame header (request id, sequence 0, total, reserved 0)

const MEMCACHED_UDP_HEADER = 8;

function detectMemcachedUdp(d: Uint8Array): Match | null {
  if (d.length <= MEMCACHED_UDP_HEADER || be16(d, 2) !== 0 || be16(d, 4) < 1 || be16(d, 6) !== 0) return null;
  const text = parseMemcachedText(d, MEMCACHED_UDP_HEADER);
  if (text) return { protocol: 'memcached', evidence: `text command ${text} over UDP` };
  const bin = parseMemcachedBinary(d, MEMCACHED_UDP_HEADER);
  return bin ? { protocol: 'memcached', evidence: `binary request ${bin} over UDP` } : null;
}

/** SIP and SSDP (HTTPU) start lines in a datagram. */
function detectStartLine(d: Uint8Array, fromServer: boolean): Match | null {
  const req = fromServer ? null : parseRequestLine(d, 0);
  if (req && req.end > 0) {
    if (req.protocol === 'SIP') return { protocol: 'sip', evidence: `SIP/2.0 request ${req.known ? req.method : 'extension method'} over UDP` };
    if (req.protocol === 'HTTP/1.1' || req.protocol === 'HTTP/1.0') {
      return { protocol: req.protocol.toLowerCase(), evidence: `${req.protocol} request ${req.known ? req.method : 'extension method'} over UDP (HTTPU/SSDP)` };
    }
  }
  const st = parseStatusLine(d, 0);
  if (st && st.end > 0 && st.protocol === 'SIP') return { protocol: 'sip', evidence: `SIP/2.0 response ${st.code} over UDP` };
  return null;
}

/** How many datagrams per direction the UDP detectors look at. */
const UDP_DATAGRAMS_MAX = 4;

export function detectUdp(client: Uint8Array[], server: Uint8Array[], clientPort: number, serverPort: number): Match | null {
  const mdns = isMdnsPort(clientPort, serverPort);
  for (const [list, fromServer] of [[client, false], [server, true]] as const) {
    const n = Math.min(list.length, UDP_DATAGRAMS_MAX);
    for (let k = 0; k < n; k++) {
      const d = list[k];
      const dns = parseDnsMessage(d, 0, d.length, mdns);
      // a query from the client, a response from the server (mDNS: either, multicast has no "server")
      if (dns && (mdns || dns.response === fromServer)) return { protocol: 'dns', evidence: dnsEvidence(dns, 'UDP') };
      const m = detectSnmp(d) ?? detectNtp(d, clientPort, serverPort) ?? detectMemcachedUdp(d) ?? detectStartLine(d, fromServer);
      if (m) return m;
    }
  }
  return null;
}
