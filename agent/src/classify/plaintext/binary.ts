// Length-prefixed binary protocols whose first client message has a fixed shape: Kafka,
// MongoDB, MQTT, AMQP and LDAP.
//
// Evidence: message/operation kinds and protocol versions only — never a topic, a
// collection, a client id, a DN or a credential.

import type { Match } from '../plaintext.js';
import { be16, be32, hasAscii, le32, tlsRecordAt } from '../text.js';

// ---- Kafka (https://kafka.apache.org/protocol#protocol_messages)

/** socket.request.max.bytes default (100 MiB): the broker rejects larger requests. */
const KAFKA_SIZE_MAX = 100 * 1024 * 1024;
/** Request header v1+: api_key(2) api_version(2) correlation_id(4) client_id(2+n). */
const KAFKA_HEADER_MIN = 10;
/** Api keys are allocated densely from 0 (about 90 in Kafka 4.x); leave room for new ones. */
const KAFKA_API_KEY_MAX = 127;
/** The highest request version of any API today is below 20. */
const KAFKA_API_VERSION_MAX = 31;
const KAFKA_CLIENT_ID_NULL = 0xffff;
const KAFKA_API_NAMES: Record<number, string> = {
  0: 'Produce', 1: 'Fetch', 2: 'ListOffsets', 3: 'Metadata', 8: 'OffsetCommit', 9: 'OffsetFetch', 10: 'FindCoordinator',
  11: 'JoinGroup', 12: 'Heartbeat', 17: 'SaslHandshake', 18: 'ApiVersions', 19: 'CreateTopics', 36: 'SaslAuthenticate',
};

export function detectKafka(client: Uint8Array, cOff: number): Match | null {
  const b = client;
  const o = cOff;
  if (o + 4 + KAFKA_HEADER_MIN > b.length) return null;
  const size = be32(b, o);
  if (size < KAFKA_HEADER_MIN || size > KAFKA_SIZE_MAX) return null;
  const apiKey = be16(b, o + 4);
  const apiVersion = be16(b, o + 6);
  if (apiKey > KAFKA_API_KEY_MAX || apiVersion > KAFKA_API_VERSION_MAX) return null;
  const idLen = be16(b, o + 12);
  if (idLen !== KAFKA_CLIENT_ID_NULL) {
    if (idLen > size - KAFKA_HEADER_MIN) return null;
    // client_id: printable ASCII (librdkafka "rdkafka", Java "producer-1", "adminclient-1"…)
    const end = Math.min(b.length, o + 4 + KAFKA_HEADER_MIN + idLen);
    for (let i = o + 4 + KAFKA_HEADER_MIN; i < end; i++) if (b[i] < 0x20 || b[i] > 0x7e) return null;
    // an empty client id is legal but then nothing here is distinctive beyond the numbers
    if (idLen === 0 && apiKey !== 18) return null;
  }
  const name = KAFKA_API_NAMES[apiKey];
  return { protocol: 'kafka', evidence: `request api_key ${apiKey}${name ? ` (${name})` : ''} v${apiVersion}` };
}

// ---- MongoDB wire protocol (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/)

const MONGO_HEADER = 16;
/** maxMessageSizeBytes: 48 MB. */
const MONGO_SIZE_MAX = 48_000_000;
const OP_QUERY = 2004;
const OP_COMPRESSED = 2012;
const OP_MSG = 2013;
/** OP_MSG flag bits defined so far: checksumPresent (0), moreToCome (1), exhaustAllowed (16). */
const OP_MSG_FLAGS_KNOWN = 0x00010003;
/** OP_QUERY flags: bits 1..7 (bit 0 reserved). */
const OP_QUERY_FLAGS_KNOWN = 0xfe;
const BSON_MIN = 5;
/** BSON element types (bsonspec.org): 0x01..0x13, MinKey 0xFF, MaxKey 0x7F. */
function isBsonType(t: number): boolean {
  return (t >= 0x01 && t <= 0x13) || t === 0xff || t === 0x7f;
}

/** A BSON document at b[off] within `limit`: length, and the first element's type and name when visible. */
function plausibleBson(b: Uint8Array, off: number, limit: number): boolean {
  if (off + 4 > b.length) return true; // cut by the capture
  const len = le32(b, off);
  if (len < BSON_MIN || off + len > limit) return false;
  if (off + len <= b.length && b[off + len - 1] !== 0) return false;
  if (off + 5 > b.length || len === BSON_MIN) return true;
  if (!isBsonType(b[off + 4])) return false;
  // element name: a cstring of printable characters
  const end = Math.min(b.length, off + len);
  for (let i = off + 5; i < end; i++) {
    if (b[i] === 0) return i > off + 5;
    if (b[i] < 0x20) return false;
  }
  return true;
}

export function detectMongo(client: Uint8Array, cOff: number): Match | null {
  const b = client;
  const o = cOff;
  if (o + MONGO_HEADER + 4 > b.length) return null;
  const len = le32(b, o);
  const responseTo = le32(b, o + 8);
  const opCode = le32(b, o + 12);
  if (len < MONGO_HEADER + BSON_MIN || len > MONGO_SIZE_MAX || responseTo !== 0) return null;
  const end = o + len;
  const p = o + MONGO_HEADER;
  if (opCode === OP_MSG) {
    if ((le32(b, p) & ~OP_MSG_FLAGS_KNOWN) !== 0) return null;
    if (p + 4 >= b.length) return { protocol: 'mongodb', evidence: 'OP_MSG header' };
    const kind = b[p + 4];
    if (kind === 0 && !plausibleBson(b, p + 5, end)) return null;
    if (kind !== 0 && kind !== 1) return null;
    return { protocol: 'mongodb', evidence: 'OP_MSG header' };
  }
  if (opCode === OP_QUERY) {
    if ((le32(b, p) & ~OP_QUERY_FLAGS_KNOWN) !== 0) return null;
    // fullCollectionName "db.collection": printable, with a dot
    let dot = false;
    let i = p + 4;
    const nameEnd = Math.min(b.length, end, i + 256);
    for (; i < nameEnd && b[i] !== 0; i++) {
      if (b[i] < 0x20 || b[i] > 0x7e) return null;
      if (b[i] === 0x2e) dot = true;
    }
    if (i < b.length && (b[i] !== 0 || !dot)) return null;
    if (i + 9 < b.length && !plausibleBson(b, i + 9, end)) return null;
    return { protocol: 'mongodb', evidence: 'OP_QUERY header' };
  }
  if (opCode === OP_COMPRESSED) {
    const original = le32(b, p);
    const compressor = b[p + 8];
    if ((original !== OP_MSG && original !== OP_QUERY) || compressor > 3 || p + 9 > end) return null;
    return { protocol: 'mongodb', evidence: 'OP_COMPRESSED header' };
  }
  return null;
}

// ---- MQTT (OASIS MQTT 3.1.1 §3.1, 5.0 §3.1)

const MQTT_CONNECT = 0x10;
const MQTT_REMAINING_MAX_BYTES = 4;
/** Connect flags bit 0 is reserved and must be 0. */
const MQTT_FLAG_RESERVED = 0x01;
const MQTT_FLAG_WILL = 0x04;
const MQTT_FLAG_WILL_QOS = 0x18;
const MQTT_FLAG_WILL_RETAIN = 0x20;

export function detectMqtt(client: Uint8Array, cOff: number): Match | null {
  const b = client;
  if (b[cOff] !== MQTT_CONNECT) return null;
  let i = cOff + 1;
  let remaining = 0;
  let mult = 1;
  for (let n = 0; ; n++) {
    if (n >= MQTT_REMAINING_MAX_BYTES || i >= b.length) return null;
    const x = b[i++];
    remaining += (x & 0x7f) * mult;
    mult *= 128;
    if ((x & 0x80) === 0) break;
  }
  let name: string;
  let level: number;
  if (hasAscii(b, i, '\x00\x04MQTT')) {
    name = 'MQTT';
    level = b[i + 6];
    if (level !== 4 && level !== 5) return null;
  } else if (hasAscii(b, i, '\x00\x06MQIsdp')) {
    name = 'MQIsdp';
    level = b[i + 8];
    if (level !== 3) return null;
  } else return null;
  const flagsAt = i + name.length + 3;
  if (flagsAt >= b.length || remaining < name.length + 2 + 1 + 1 + 2) return null;
  const flags = b[flagsAt];
  if (flags & MQTT_FLAG_RESERVED) return null;
  if ((flags & MQTT_FLAG_WILL) === 0 && (flags & (MQTT_FLAG_WILL_QOS | MQTT_FLAG_WILL_RETAIN)) !== 0) return null;
  if ((flags & MQTT_FLAG_WILL_QOS) === MQTT_FLAG_WILL_QOS) return null; // QoS 3 does not exist
  const version = level === 5 ? '5.0' : level === 4 ? '3.1.1' : '3.1';
  return { protocol: 'mqtt', evidence: `CONNECT protocol ${name} ${version}` };
}

// ---- AMQP (0-9-1 §4.2.2; 1.0 §2.2 and §5.2/5.3 for the TLS and SASL layers)

const AMQP_HEADERS: ReadonlyArray<[string, string]> = [
  ['AMQP\x00\x00\x09\x01', 'AMQP 0-9-1 protocol header'],
  ['AMQP\x01\x01\x00\x09', 'AMQP 0-9 protocol header'],
  ['AMQP\x01\x01\x08\x00', 'AMQP 0-8 protocol header'],
  ['AMQP\x00\x01\x00\x00', 'AMQP 1.0 protocol header'],
  ['AMQP\x03\x01\x00\x00', 'AMQP 1.0 SASL protocol header'],
];
/** AMQP 1.0 protocol id 2: TLS follows the header exchange (an upgrade, see upgrade.ts). */
export const AMQP_TLS_HEADER = 'AMQP\x02\x01\x00\x00';
export const AMQP_HEADER_LENGTH = 8;

export function detectAmqp(client: Uint8Array, cOff: number): Match | null {
  for (const [header, evidence] of AMQP_HEADERS) if (hasAscii(client, cOff, header)) return { protocol: 'amqp', evidence };
  return null;
}

// ---- LDAP (RFC 4511 §4.2, BER per X.690)

const BER_SEQUENCE = 0x30;
const BER_INTEGER = 0x02;
const BER_OCTET_STRING = 0x04;
const BER_ENUMERATED = 0x0a;
/** protocolOp application tags (RFC 4511 Appendix B). */
const LDAP_BIND_REQUEST = 0x60;
const LDAP_UNBIND_REQUEST = 0x42;
const LDAP_SEARCH_REQUEST = 0x63;
const LDAP_EXTENDED_REQUEST = 0x77;
const LDAP_EXTENDED_NAME = 0x80; // [0] requestName
const LDAP_AUTH_SIMPLE = 0x80; // [0] simple
const LDAP_AUTH_SASL = 0xa3; // [3] SaslCredentials
const LDAP_MESSAGE_MAX = 1 << 24;
const LDAP_STARTTLS_OID = '1.3.6.1.4.1.1466.20037';

/** A BER length at b[off]: [value, header bytes] or null (indefinite and >4-byte forms are not LDAP). */
function berLength(b: Uint8Array, off: number): [number, number] | null {
  if (off >= b.length) return null;
  const x = b[off];
  if (x < 0x80) return [x, 1];
  const n = x & 0x7f;
  if (n === 0 || n > 4 || off + 1 + n > b.length) return null;
  let v = 0;
  for (let k = 0; k < n; k++) v = v * 256 + b[off + 1 + k];
  return [v, 1 + n];
}

export interface LdapMessage {
  op: 'bindRequest' | 'searchRequest' | 'extendedRequest' | 'unbindRequest';
  detail: string;
  startTls: boolean;
  /** Index just past the message, possibly beyond the captured bytes. */
  end: number;
}

/** The client's first LDAPMessage at b[off], checked field by field as far as captured. */
export function parseLdapRequest(b: Uint8Array, off: number): LdapMessage | null {
  if (b[off] !== BER_SEQUENCE) return null;
  const outer = berLength(b, off + 1);
  if (!outer || outer[0] > LDAP_MESSAGE_MAX || outer[0] < 5) return null;
  const end = off + 1 + outer[1] + outer[0];
  let i = off + 1 + outer[1];
  // messageID INTEGER (1..2^31-1; 0 is reserved for unsolicited notifications)
  if (b[i] !== BER_INTEGER) return null;
  const idLen = b[i + 1];
  if (idLen < 1 || idLen > 4 || i + 2 + idLen > b.length) return null;
  let id = 0;
  for (let k = 0; k < idLen; k++) id = id * 256 + b[i + 2 + k];
  if (id === 0 || (b[i + 2] & 0x80) !== 0) return null;
  i += 2 + idLen;
  const tag = b[i];
  const opLen = berLength(b, i + 1);
  if (!opLen || i + 1 + opLen[1] + opLen[0] > end) return null;
  const p = i + 1 + opLen[1];
  switch (tag) {
    case LDAP_BIND_REQUEST: {
      // version INTEGER (3, or 2 for old clients), name LDAPDN, authentication CHOICE
      if (b[p] !== BER_INTEGER || b[p + 1] !== 1 || (b[p + 2] !== 3 && b[p + 2] !== 2)) return null;
      const version = b[p + 2];
      if (p + 3 >= b.length) return { op: 'bindRequest', detail: `v${version}`, startTls: false, end };
      if (b[p + 3] !== BER_OCTET_STRING) return null;
      const nameLen = berLength(b, p + 4);
      if (!nameLen) return p + 4 >= b.length ? { op: 'bindRequest', detail: `v${version}`, startTls: false, end } : null;
      const a = p + 4 + nameLen[1] + nameLen[0];
      if (a >= b.length) return { op: 'bindRequest', detail: `v${version}`, startTls: false, end };
      const auth = b[a] === LDAP_AUTH_SIMPLE ? 'simple' : b[a] === LDAP_AUTH_SASL ? 'SASL' : null;
      return auth ? { op: 'bindRequest', detail: `v${version} (${auth})`, startTls: false, end } : null;
    }
    case LDAP_SEARCH_REQUEST: {
      // baseObject LDAPDN, scope ENUMERATED 0..3, derefAliases ENUMERATED 0..3
      if (b[p] !== BER_OCTET_STRING) return null;
      const baseLen = berLength(b, p + 1);
      if (!baseLen) return null;
      const s = p + 1 + baseLen[1] + baseLen[0];
      if (s + 6 > b.length) return s < b.length ? null : { op: 'searchRequest', detail: '', startTls: false, end };
      if (b[s] !== BER_ENUMERATED || b[s + 1] !== 1 || b[s + 2] > 3) return null;
      if (b[s + 3] !== BER_ENUMERATED || b[s + 4] !== 1 || b[s + 5] > 3) return null;
      return { op: 'searchRequest', detail: '', startTls: false, end };
    }
    case LDAP_EXTENDED_REQUEST: {
      // requestName [0] LDAPOID: dotted digits
      if (b[p] !== LDAP_EXTENDED_NAME) return null;
      const n = b[p + 1];
      if (n < 3 || n > 0x7f || p + 2 + n > b.length) return null;
      for (let k = p + 2; k < p + 2 + n; k++) if (!((b[k] >= 0x30 && b[k] <= 0x39) || b[k] === 0x2e)) return null;
      const startTls = n === LDAP_STARTTLS_OID.length && hasAscii(b, p + 2, LDAP_STARTTLS_OID);
      return { op: 'extendedRequest', detail: startTls ? 'StartTLS' : '', startTls, end };
    }
    case LDAP_UNBIND_REQUEST:
      return opLen[0] === 0 ? { op: 'unbindRequest', detail: '', startTls: false, end } : null;
    default:
      return null;
  }
}

const LDAP_EXTENDED_RESPONSE = 0x78;

/** The resultCode of an extendedResponse at b[off] (the answer to StartTLS), with its end; null if not one. */
export function parseLdapExtendedResponse(b: Uint8Array, off: number): { resultCode: number; end: number } | null {
  if (b[off] !== BER_SEQUENCE) return null;
  const outer = berLength(b, off + 1);
  if (!outer || outer[0] > LDAP_MESSAGE_MAX) return null;
  let i = off + 1 + outer[1];
  if (b[i] !== BER_INTEGER || b[i + 1] < 1 || b[i + 1] > 4) return null;
  i += 2 + b[i + 1];
  if (b[i] !== LDAP_EXTENDED_RESPONSE) return null;
  const opLen = berLength(b, i + 1);
  if (!opLen) return null;
  const p = i + 1 + opLen[1];
  if (p + 3 > b.length || b[p] !== BER_ENUMERATED || b[p + 1] !== 1) return null;
  return { resultCode: b[p + 2], end: off + 1 + outer[1] + outer[0] };
}

export function detectLdap(client: Uint8Array, server: Uint8Array, cOff: number): Match | null {
  const m = parseLdapRequest(client, cOff);
  if (!m) return null;
  if (m.startTls) {
    // StartTLS accepted (or its outcome not captured) is an upgrade, not a plaintext verdict
    const answer = parseLdapExtendedResponse(server, 0);
    const clientMovedOn = m.end < client.length && !tlsRecordAt(client, m.end);
    if (answer && answer.resultCode !== 0) return { protocol: 'ldap', evidence: `extendedRequest StartTLS refused (resultCode ${answer.resultCode})` };
    if (!clientMovedOn) return null;
  }
  return { protocol: 'ldap', evidence: `${m.op}${m.detail ? ` ${m.detail}` : ''}` };
}
