// TLS record layer over a captured stream prefix (RFC 8446 §5.1, RFC 5246 §6.2).
// Walks record headers only; payloads stay views into the caller's buffer.

export const CONTENT_CHANGE_CIPHER_SPEC = 20;
export const CONTENT_ALERT = 21;
export const CONTENT_HANDSHAKE = 22;
export const CONTENT_APPLICATION_DATA = 23;
export const CONTENT_HEARTBEAT = 24;

export const RECORD_HEADER_LENGTH = 5;
/** TLSCiphertext.length may reach 2^14 + 2048 (RFC 5246 §6.2.3); anything larger is not TLS. */
export const MAX_RECORD_LENGTH = 16384 + 2048;
/** Records walked per direction: a handshake needs a handful; this bounds work on junk. */
export const MAX_RECORDS = 256;

const SSL3_MAJOR = 3;
const MAX_MINOR = 4; // 0x0304 = TLS 1.3

export interface TlsRecord {
  type: number;
  /** Record-layer version (0x0301, 0x0303, ...): not the negotiated version. */
  version: number;
  /** Offset of the payload in the stream. */
  offset: number;
  /** Payload length declared in the header (what the sender wrote). */
  length: number;
  /** Payload bytes actually present in the captured prefix (< length when truncated). */
  available: number;
}

export interface RecordWalk {
  records: TlsRecord[];
  /** Bytes that follow the last record do not form a TLS record header. */
  malformed: boolean;
  /** The stream ends inside a record (header or payload). */
  truncated: boolean;
  /** More records were present than MAX_RECORDS. */
  capped: boolean;
}

export function isContentType(t: number): boolean {
  return t >= CONTENT_CHANGE_CIPHER_SPEC && t <= CONTENT_HEARTBEAT;
}

/**
 * True when the bytes at `o` can start a TLS record header. Only the bytes present are
 * checked, so a prefix shorter than 5 bytes can still qualify.
 */
export function plausibleRecordHeader(b: Uint8Array, o: number): boolean {
  const n = b.length - o;
  if (n <= 0) return false;
  if (!isContentType(b[o])) return false;
  if (n >= 2 && b[o + 1] !== SSL3_MAJOR) return false;
  if (n >= 3 && b[o + 2] > MAX_MINOR) return false;
  if (n >= 5) {
    const len = (b[o + 3] << 8) | b[o + 4];
    if (len > MAX_RECORD_LENGTH) return false;
  }
  return true;
}

/** Walks TLS records from `start` until the stream ends, a header is invalid, or the cap. */
export function walkRecords(stream: Uint8Array, start = 0, maxRecords = MAX_RECORDS): RecordWalk {
  const records: TlsRecord[] = [];
  let o = start;
  let malformed = false;
  let truncated = false;
  let capped = false;
  while (o < stream.length) {
    if (records.length >= maxRecords) {
      capped = true;
      break;
    }
    if (!plausibleRecordHeader(stream, o)) {
      malformed = true;
      break;
    }
    if (o + RECORD_HEADER_LENGTH > stream.length) {
      truncated = true;
      break;
    }
    const length = (stream[o + 3] << 8) | stream[o + 4];
    const offset = o + RECORD_HEADER_LENGTH;
    const available = Math.min(length, stream.length - offset);
    records.push({ type: stream[o], version: (stream[o + 1] << 8) | stream[o + 2], offset, length, available });
    if (available < length) {
      truncated = true;
      break;
    }
    o = offset + length;
  }
  return { records, malformed, truncated, capped };
}

/** Index of the first record of `type` at or after `from`, or -1. */
export function findRecord(records: TlsRecord[], type: number, from = 0): number {
  for (let i = from; i < records.length; i++) if (records[i].type === type) return i;
  return -1;
}

// --- alerts (RFC 8446 §6, RFC 5246 §7.2) ---

const ALERT_NAMES: Record<number, string> = {
  0: 'close_notify',
  10: 'unexpected_message',
  20: 'bad_record_mac',
  21: 'decryption_failed',
  22: 'record_overflow',
  30: 'decompression_failure',
  40: 'handshake_failure',
  41: 'no_certificate',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  49: 'access_denied',
  50: 'decode_error',
  51: 'decrypt_error',
  60: 'export_restriction',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  86: 'inappropriate_fallback',
  90: 'user_canceled',
  100: 'no_renegotiation',
  109: 'missing_extension',
  110: 'unsupported_extension',
  111: 'certificate_unobtainable',
  112: 'unrecognized_name',
  113: 'bad_certificate_status_response',
  114: 'bad_certificate_hash_value',
  115: 'unknown_psk_identity',
  116: 'certificate_required',
  120: 'no_application_protocol',
  121: 'ech_required',
};

export const ALERT_NO_CERTIFICATE = 41; // SSL 3.0: a client without a certificate says so with this warning

export function alertName(description: number): string {
  return ALERT_NAMES[description] ?? `alert_${description}`;
}

/** A plaintext alert record is exactly level + description; encrypted ones carry a MAC/tag. */
const PLAINTEXT_ALERT_LENGTH = 2;

export interface PlainAlert {
  level: number;
  description: number;
  record: number;
}

/** The first plaintext alert among records [from, to), or undefined. */
export function firstPlainAlert(stream: Uint8Array, records: TlsRecord[], from = 0, to = records.length): PlainAlert | undefined {
  for (let i = from; i < Math.min(to, records.length); i++) {
    const r = records[i];
    if (r.type === CONTENT_ALERT && r.length === PLAINTEXT_ALERT_LENGTH && r.available === PLAINTEXT_ALERT_LENGTH) {
      return { level: stream[r.offset], description: stream[r.offset + 1], record: i };
    }
  }
  return undefined;
}
