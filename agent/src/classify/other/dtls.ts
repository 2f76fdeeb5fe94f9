// DTLS (RFC 6347 §4.1, RFC 9147): a handshake record in epoch 0 carrying a ClientHello
// (or, from the server, HelloVerifyRequest / ServerHello). Record and handshake headers
// must agree with each other; a record longer than the captured bytes is accepted (the
// capture may keep only the start of a datagram).

import { be16 } from '../text.js';

const DTLS_RECORD_HEADER = 13;
const DTLS_HANDSHAKE_HEADER = 12;
const CONTENT_HANDSHAKE = 22;
/** Record versions: DTLS 1.0 (0xfeff), 1.2 (0xfefd), 1.3's 0xfefc where an implementation uses it. */
const DTLS_VERSIONS: Record<number, string> = { 0xfeff: '1.0', 0xfefd: '1.2', 0xfefc: '1.3' };
const HS_CLIENT_HELLO = 1;
const HS_SERVER_HELLO = 2;
const HS_HELLO_VERIFY_REQUEST = 3;
/** The first flight is sent with small record sequence numbers (retransmissions included). */
const FIRST_FLIGHT_SEQ_MAX = 0xffff;
/** DTLSPlaintext.length is at most 2^14 (RFC 6347 §4.1 via RFC 5246 §6.2.1). */
const RECORD_MAX = 16384;

export interface DtlsHello {
  kind: 'ClientHello' | 'ServerHello' | 'HelloVerifyRequest';
  /** From the hello's own version field (ClientHello.client_version / server_version). */
  version: string;
  /** Offset and length of the handshake message body within the datagram (for parseClientHello). */
  bodyStart: number;
  bodyLength: number;
  /** True when the whole message is in this record and was captured. */
  complete: boolean;
}

/** A DTLS handshake record at d[off] carrying the first message of a flight, or null. */
export function parseDtlsHello(d: Uint8Array, off: number, fromClient: boolean): DtlsHello | null {
  if (off + DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER + 2 > d.length) return null;
  if (d[off] !== CONTENT_HANDSHAKE) return null;
  if (!DTLS_VERSIONS[be16(d, off + 1)]) return null;
  // epoch 0 (no keys yet) and a small 48-bit sequence number
  if (be16(d, off + 3) !== 0 || be16(d, off + 5) !== 0 || be16(d, off + 7) !== 0 || be16(d, off + 9) > FIRST_FLIGHT_SEQ_MAX) return null;
  const recordLength = be16(d, off + 11);
  if (recordLength < DTLS_HANDSHAKE_HEADER + 2 || recordLength > RECORD_MAX) return null;
  const h = off + DTLS_RECORD_HEADER;
  const type = d[h];
  const expected = fromClient ? [HS_CLIENT_HELLO] : [HS_SERVER_HELLO, HS_HELLO_VERIFY_REQUEST];
  if (!expected.includes(type)) return null;
  const msgLength = (d[h + 1] << 16) | (d[h + 2] << 8) | d[h + 3];
  const fragOffset = (d[h + 6] << 16) | (d[h + 7] << 8) | d[h + 8];
  const fragLength = (d[h + 9] << 16) | (d[h + 10] << 8) | d[h + 11];
  // the first fragment of the message, and it fills this record (one message per record)
  if (fragOffset !== 0 || fragLength > msgLength || fragLength + DTLS_HANDSHAKE_HEADER > recordLength) return null;
  if (fragLength === 0 || msgLength > RECORD_MAX * 4) return null;
  const body = h + DTLS_HANDSHAKE_HEADER;
  const helloVersion = DTLS_VERSIONS[be16(d, body)];
  if (!helloVersion) return null;
  const kind = type === HS_CLIENT_HELLO ? 'ClientHello' : type === HS_SERVER_HELLO ? 'ServerHello' : 'HelloVerifyRequest';
  return { kind, version: helloVersion, bodyStart: body, bodyLength: fragLength, complete: fragLength === msgLength && body + fragLength <= d.length };
}
