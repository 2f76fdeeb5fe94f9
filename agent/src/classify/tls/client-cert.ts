// Was a client certificate sent? TLS <= 1.2 shows it in plaintext; TLS 1.3 encrypts it,
// so the answer comes from the sizes of the client's second flight.

import type { ClientCertificate } from '../types.js';
import {
  HANDSHAKE_CERTIFICATE,
  HANDSHAKE_CERTIFICATE_REQUEST,
  HANDSHAKE_CLIENT_HELLO,
  HANDSHAKE_CLIENT_KEY_EXCHANGE,
  HANDSHAKE_HEADER_LENGTH,
  HANDSHAKE_SERVER_HELLO_DONE,
  findMessage,
  type HandshakeMessage,
} from './handshake.js';
import {
  ALERT_NO_CERTIFICATE,
  CONTENT_ALERT,
  CONTENT_APPLICATION_DATA,
  CONTENT_CHANGE_CIPHER_SPEC,
  alertName,
  type PlainAlert,
  type TlsRecord,
} from './records.js';
import { tls13SuiteSizes } from './suites.js';

export interface ClientCertVerdict {
  clientCertificate: ClientCertificate;
  evidence: string;
}

/** TLS 1.2 Certificate body: a 3-byte certificate_list length; 3 bytes means an empty list. */
const TLS12_EMPTY_CERTIFICATE_BODY = 3;
/** TLS 1.3 Certificate body: certificate_request_context<0..255> (empty: 1 byte) + certificate_list<0..2^24-1> (empty: 3 bytes). */
const TLS13_EMPTY_CERTIFICATE_BODY = 1 + 3;
/** TLSInnerPlaintext appends one content-type byte before encryption (RFC 8446 §5.2). */
const INNER_CONTENT_TYPE_LENGTH = 1;
/** How many encrypted records after the first we look through for the Finished. */
const MAX_FLIGHT_RECORDS = 8;
/**
 * RFC 8446 §5.4 record padding (e.g. OpenSSL's SSL_CTX_set_block_padding) rounds the
 * inner plaintext up to a block, which inflates a lone Finished past its size. A first
 * record whose inner length is a multiple of this block, with no Finished-sized record
 * after it, is taken as padded. Coarse on purpose: an unpadded flight lands on it by
 * chance only 1 time in 256, and then we say "unknown", never a wrong "none".
 */
const PADDING_BLOCK = 256;

export interface Tls12Input {
  serverMessages: HandshakeMessage[]; // plaintext server messages (before its ChangeCipherSpec)
  clientMessages: HandshakeMessage[]; // plaintext client messages (before its ChangeCipherSpec)
  clientAlert?: PlainAlert;
  resumed: boolean;
}

/** TLS 1.2 and older (SSL 3.0 included): CertificateRequest and the client's Certificate are plaintext. */
export function tls12ClientCertificate(x: Tls12Input): ClientCertVerdict {
  if (x.resumed) {
    return { clientCertificate: 'unknown', evidence: 'resumed session: a client certificate from the original handshake is not resent' };
  }
  const requested = findMessage(x.serverMessages, HANDSHAKE_CERTIFICATE_REQUEST) >= 0;
  // The client's own messages after its ClientHello (for an SSLv2 hello, from the first).
  const firstHello = findMessage(x.clientMessages, HANDSHAKE_CLIENT_HELLO);
  const cert = findMessage(x.clientMessages, HANDSHAKE_CERTIFICATE, firstHello + 1);
  if (cert >= 0) {
    const length = x.clientMessages[cert].length;
    if (length > TLS12_EMPTY_CERTIFICATE_BODY) {
      return { clientCertificate: 'observed', evidence: `client Certificate message ${length + HANDSHAKE_HEADER_LENGTH} B` };
    }
    return {
      clientCertificate: 'none',
      evidence: requested ? 'server requested a client certificate, client sent an empty Certificate' : 'client sent an empty Certificate',
    };
  }
  if (requested) {
    if (x.clientAlert?.description === ALERT_NO_CERTIFICATE) {
      return { clientCertificate: 'none', evidence: 'server requested a client certificate, client answered no_certificate' };
    }
    if (findMessage(x.clientMessages, HANDSHAKE_CLIENT_KEY_EXCHANGE, firstHello + 1) >= 0) {
      return { clientCertificate: 'none', evidence: 'server requested a client certificate, client sent none' };
    }
    if (x.clientAlert !== undefined) {
      return {
        clientCertificate: 'unknown',
        evidence: `server requested a client certificate, client aborted with alert ${alertName(x.clientAlert.description)}`,
      };
    }
    // Asked is not answered: without the client's reply no certificate was seen, and
    // overclaiming mTLS is the dangerous direction.
    return { clientCertificate: 'unknown', evidence: "server requested a client certificate (CertificateRequest); client's reply not captured" };
  }
  if (findMessage(x.serverMessages, HANDSHAKE_SERVER_HELLO_DONE) >= 0) {
    return { clientCertificate: 'none', evidence: 'full handshake without CertificateRequest' };
  }
  return { clientCertificate: 'unknown', evidence: 'server flight incomplete: CertificateRequest not ruled out' };
}

export interface Tls13Input {
  clientRecords: TlsRecord[];
  /** Index of the first client record after its last plaintext ClientHello. */
  afterHelloRecord: number;
  cipherSuite: number;
  resumed: boolean;
  /** ClientHello offered early_data and no HelloRetryRequest discarded it. */
  earlyDataOffered: boolean;
}

/**
 * TLS 1.3: the client's second flight is [ChangeCipherSpec] then encrypted records. A
 * Finished alone encrypts to 4 + hash + 1 + tag bytes (53 for SHA-256 suites, 69 for
 * SHA-384); an empty Certificate (asked, none) to 4 + 4 + 1 + tag (25) as its own
 * record. Anything larger than Finished in the first record carries Certificate (+
 * CertificateVerify), possibly coalesced with Finished.
 */
export function tls13ClientCertificate(x: Tls13Input): ClientCertVerdict {
  if (x.resumed) {
    return { clientCertificate: 'unknown', evidence: 'TLS 1.3 PSK resumption: no client certificate is sent in this handshake' };
  }
  if (x.earlyDataOffered) {
    return { clientCertificate: 'unknown', evidence: 'client offered 0-RTT early data: its first encrypted records cannot be sized as handshake' };
  }
  const sizes = tls13SuiteSizes(x.cipherSuite);
  if (sizes === undefined) {
    return { clientCertificate: 'unknown', evidence: 'TLS 1.3 suite with unknown sizes' };
  }
  const finished = HANDSHAKE_HEADER_LENGTH + sizes.hashLength + INNER_CONTENT_TYPE_LENGTH + sizes.tagLength;
  const emptyCertificate = HANDSHAKE_HEADER_LENGTH + TLS13_EMPTY_CERTIFICATE_BODY + INNER_CONTENT_TYPE_LENGTH + sizes.tagLength;

  const encrypted: number[] = []; // lengths of the first encrypted client records
  const records = x.clientRecords;
  for (let i = Math.max(0, x.afterHelloRecord); i < records.length && encrypted.length <= MAX_FLIGHT_RECORDS; i++) {
    const r = records[i];
    if (r.type === CONTENT_CHANGE_CIPHER_SPEC && encrypted.length === 0) continue; // middlebox-compatibility CCS
    if (r.type === CONTENT_APPLICATION_DATA) {
      encrypted.push(r.length);
      continue;
    }
    if (r.type === CONTENT_ALERT && encrypted.length === 0) {
      return { clientCertificate: 'unknown', evidence: 'client sent an alert instead of its second flight' };
    }
    break;
  }
  if (encrypted.length === 0) {
    return { clientCertificate: 'unknown', evidence: 'client stream ends before its TLS 1.3 second flight' };
  }
  const first = encrypted[0];
  if (first === finished) {
    return { clientCertificate: 'none', evidence: `TLS 1.3 client second flight ${first} B = Finished ${finished} B: no client certificate` };
  }
  if (first === emptyCertificate) {
    if (encrypted.length > 1 && encrypted[1] === finished) {
      return {
        clientCertificate: 'none',
        evidence: `TLS 1.3 client second flight: empty Certificate ${first} B + Finished ${finished} B: server asked, client sent no certificate`,
      };
    }
    return { clientCertificate: 'unknown', evidence: `TLS 1.3 client first encrypted record ${first} B (empty Certificate?) not followed by Finished ${finished} B` };
  }
  if (first > finished) {
    // A later Finished-sized record: Certificate, CertificateVerify and Finished came as
    // separate records (OpenSSL, GnuTLS). None: they were coalesced, or padded.
    const fin = encrypted.indexOf(finished, 1);
    if (fin < 0 && (first - sizes.tagLength) % PADDING_BLOCK === 0) {
      return {
        clientCertificate: 'unknown',
        evidence: `TLS 1.3 client first encrypted record ${first} B looks padded (${PADDING_BLOCK} B blocks): sizes do not tell`,
      };
    }
    // Report the whole flight: the records up to and including the Finished.
    const count = fin > 0 ? fin + 1 : 1;
    let flight = 0;
    for (let k = 0; k < count; k++) flight += encrypted[k];
    const recs = count > 1 ? ` in ${count} records` : '';
    return {
      clientCertificate: 'inferred',
      evidence: `TLS 1.3 client second flight ${flight} B${recs} > Finished ${finished} B: client certificate inferred`,
    };
  }
  return {
    clientCertificate: 'unknown',
    evidence: `TLS 1.3 client first encrypted record ${first} B is smaller than Finished ${finished} B (alert?)`,
  };
}
