// ClientHello / ServerHello bodies (RFC 8446 §4.1.2-4.1.4, RFC 5246 §7.4.1, DTLS RFC 6347
// §4.2.1) and the SSLv2-compatible ClientHello (RFC 5246 Appendix E.2).
// Input is the handshake body after its header; nothing here throws on any bytes.

import { Cursor, wireText } from './bytes.js';

export const EXT_SERVER_NAME = 0x0000;
export const EXT_SUPPORTED_GROUPS = 0x000a;
export const EXT_SIGNATURE_ALGORITHMS = 0x000d;
export const EXT_ALPN = 0x0010;
export const EXT_SESSION_TICKET = 0x0023;
export const EXT_PRE_SHARED_KEY = 0x0029;
export const EXT_EARLY_DATA = 0x002a;
export const EXT_SUPPORTED_VERSIONS = 0x002b;
export const EXT_KEY_SHARE = 0x0033;
export const EXT_ENCRYPTED_CLIENT_HELLO = 0xfe0d;

const SERVER_NAME_TYPE_HOST_NAME = 0;
const RANDOM_LENGTH = 32;
const MAX_SESSION_ID_LENGTH = 32;
/** Kept per list: far above any real hello, bounds what a hostile one can make us store. */
const MAX_LIST_ENTRIES = 512;
const MAX_ALPN_ENTRIES = 32;

/**
 * ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest"), RFC 8446 §4.1.3.
 */
export const HELLO_RETRY_REQUEST_RANDOM = Uint8Array.from(
  Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex'),
);

export interface ClientHello {
  legacyVersion: number;
  cipherSuites: number[];
  /** Extension types in wire order, GREASE included (JA4 filters it). */
  extensions: number[];
  sni?: string;
  /** Offered ALPN protocols, as text (non-printable bytes as \xHH). */
  alpn: string[];
  /** Raw bytes of the first ALPN protocol (JA4 needs the bytes, not the text). */
  alpnFirst?: Uint8Array;
  supportedVersions: number[];
  signatureAlgorithms: number[];
  supportedGroups: number[];
  /** Groups of the key_share entries offered. */
  keyShareGroups: number[];
  sessionIdLength: number;
  /** Copy of the legacy session id (<= 32 bytes): TLS 1.2 resumption compares it with the ServerHello's. */
  sessionId: Uint8Array;
  /** session_ticket extension carrying a ticket (non-empty): the client tries ticket resumption. */
  hasSessionTicket: boolean;
  hasPreSharedKey: boolean;
  hasEarlyData: boolean;
  hasEncryptedClientHello: boolean;
  /** SSLv2-compatible hello (RFC 5246 E.2): no extensions exist. */
  sslv2: boolean;
  /** The body ended early (only with opts.partial): the lists may be incomplete. */
  truncated: boolean;
}

export interface ServerHello {
  legacyVersion: number;
  /** supported_versions selected_version (TLS 1.3), when present. */
  selectedVersion?: number;
  cipherSuite: number;
  compressionMethod: number;
  sessionId: Uint8Array;
  extensions: number[];
  helloRetryRequest: boolean;
  alpn?: string;
  /** pre_shared_key in a ServerHello: the server accepted a PSK (TLS 1.3 resumption). */
  hasPreSharedKey: boolean;
  /** key_share group (selected group in a HelloRetryRequest). */
  keyShareGroup?: number;
  truncated: boolean;
}

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b); // a plain Uint8Array copy; much cheaper than Uint8Array.from's iteration
}

function newClientHello(legacyVersion: number): ClientHello {
  return {
    legacyVersion,
    cipherSuites: [],
    extensions: [],
    alpn: [],
    supportedVersions: [],
    signatureAlgorithms: [],
    supportedGroups: [],
    keyShareGroups: [],
    sessionIdLength: 0,
    sessionId: new Uint8Array(0),
    hasSessionTicket: false,
    hasPreSharedKey: false,
    hasEarlyData: false,
    hasEncryptedClientHello: false,
    sslv2: false,
    truncated: false,
  };
}

function readU16List(c: Cursor, out: number[]): void {
  while (c.remaining() >= 2 && out.length < MAX_LIST_ENTRIES) out.push(c.u16());
}

/**
 * Parses a ClientHello body. Returns null when the fixed part is malformed. With
 * opts.partial (the stream ended inside the message) a short body yields what could be
 * read, with `truncated` set: every extension complete inside the bytes is read (SNI and
 * ALPN usually come early), a cut last one is ignored. Callers must not fingerprint a
 * truncated hello (JA4 counts and hashes every extension: it stays unset). Without
 * opts.partial, any inconsistency returns null.
 */
export function parseClientHello(body: Uint8Array, opts?: { dtls?: boolean; partial?: boolean }): ClientHello | null {
  const partial = opts?.partial === true;
  const c = new Cursor(body);
  const hello = newClientHello(c.u16());
  c.skip(RANDOM_LENGTH);
  const sidLen = c.u8();
  if (sidLen > MAX_SESSION_ID_LENGTH) return null;
  hello.sessionIdLength = sidLen;
  hello.sessionId = copy(c.bytes(sidLen));
  if (opts?.dtls) c.skip(c.u8()); // DTLS cookie<0..2^8-1>
  const suitesLen = c.u16();
  if (c.ok && suitesLen % 2 !== 0) return null;
  readU16List(c.sub(suitesLen), hello.cipherSuites);
  const compLen = c.u8();
  c.skip(compLen);
  if (!c.ok) {
    // Cut inside the fixed part: keep a partial parse only if it reached the cipher suites.
    if (!partial || hello.cipherSuites.length === 0) return null;
    hello.truncated = true;
    return hello;
  }
  if (compLen === 0) return null; // RFC: at least the null method
  if (c.remaining() === 0) {
    // No extensions (SSL 3.0 / old TLS) — or, in a prefix, not captured yet.
    if (partial) hello.truncated = true;
    return hello;
  }

  const exts = extensionsBlock(c, partial);
  if (exts === null) return null;
  if (!c.ok) hello.truncated = true;
  while (exts.remaining() > 0 && hello.extensions.length < MAX_LIST_ENTRIES) {
    const type = exts.u16();
    const data = exts.sub(exts.u16());
    if (!exts.ok) {
      // The last extension runs past the bytes we have: ignored, never half-read.
      if (!partial) return null;
      hello.truncated = true;
      break;
    }
    hello.extensions.push(type);
    // The framing above is strict; a malformed extension body only loses that extension's
    // facts (the hello is still a hello).
    readClientExtension(hello, type, data);
  }
  return hello;
}

/**
 * The extensions<0..2^16-1> block at the cursor, as a cursor of its own. Strict mode:
 * null unless the block fills exactly the rest of the body. Partial mode (the body is a
 * prefix, e.g. a ClientHello bigger than the kernel's sample cut at 512 bytes): when the
 * declared length runs past the buffer, the block covers the bytes that are there — with
 * `ok` still set, so every extension complete inside them is read — and `c.ok` is cleared
 * to tell the caller the hello is truncated.
 */
function extensionsBlock(c: Cursor, partial: boolean): Cursor | null {
  const declared = c.u16();
  if (!c.ok) return partial ? new Cursor(c.buf, c.end, c.end) : null;
  if (declared <= c.remaining()) {
    const exts = c.sub(declared);
    if (c.remaining() !== 0 && !partial) return null; // trailing bytes
    return exts;
  }
  if (!partial) return null;
  const exts = new Cursor(c.buf, c.pos, c.end);
  c.skip(declared); // past the end: clears c.ok
  return exts;
}

/** Reads the extensions the classifier uses; false when one is malformed (its facts may be partial). */
function readClientExtension(hello: ClientHello, type: number, d: Cursor): boolean {
  switch (type) {
    case EXT_SERVER_NAME: {
      const list = d.sub(d.u16());
      while (list.remaining() > 0) {
        const nameType = list.u8();
        const name = list.bytes(list.u16());
        if (!list.ok) return false;
        if (nameType === SERVER_NAME_TYPE_HOST_NAME && hello.sni === undefined) hello.sni = wireText(name);
      }
      return d.ok;
    }
    case EXT_ALPN: {
      const list = d.sub(d.u16());
      while (list.remaining() > 0) {
        const proto = list.bytes(list.u8());
        if (!list.ok) return false;
        if (hello.alpn.length === 0) hello.alpnFirst = copy(proto);
        if (hello.alpn.length < MAX_ALPN_ENTRIES) hello.alpn.push(wireText(proto));
      }
      return d.ok;
    }
    case EXT_SUPPORTED_VERSIONS:
      readU16List(d.sub(d.u8()), hello.supportedVersions);
      return d.ok;
    case EXT_SIGNATURE_ALGORITHMS:
      readU16List(d.sub(d.u16()), hello.signatureAlgorithms);
      return d.ok;
    case EXT_SUPPORTED_GROUPS:
      readU16List(d.sub(d.u16()), hello.supportedGroups);
      return d.ok;
    case EXT_KEY_SHARE: {
      const list = d.sub(d.u16());
      while (list.remaining() > 0 && hello.keyShareGroups.length < MAX_LIST_ENTRIES) {
        const group = list.u16();
        list.skip(list.u16());
        if (!list.ok) return false;
        hello.keyShareGroups.push(group);
      }
      return d.ok;
    }
    case EXT_SESSION_TICKET:
      hello.hasSessionTicket = d.remaining() > 0;
      return true;
    case EXT_PRE_SHARED_KEY:
      hello.hasPreSharedKey = true;
      return true;
    case EXT_EARLY_DATA:
      hello.hasEarlyData = true;
      return true;
    case EXT_ENCRYPTED_CLIENT_HELLO:
      hello.hasEncryptedClientHello = true;
      return true;
    default:
      return true;
  }
}

/** Parses a ServerHello body (also a HelloRetryRequest, which shares its structure). */
export function parseServerHello(body: Uint8Array, opts?: { partial?: boolean }): ServerHello | null {
  const partial = opts?.partial === true;
  const c = new Cursor(body);
  const legacyVersion = c.u16();
  const random = c.bytes(RANDOM_LENGTH);
  const sidLen = c.u8();
  if (sidLen > MAX_SESSION_ID_LENGTH) return null;
  const sessionId = copy(c.bytes(sidLen));
  const cipherSuite = c.u16();
  const compressionMethod = c.u8();
  if (!c.ok) return null;
  const hello: ServerHello = {
    legacyVersion,
    cipherSuite,
    compressionMethod,
    sessionId,
    extensions: [],
    helloRetryRequest: equalBytes(random, HELLO_RETRY_REQUEST_RANDOM),
    hasPreSharedKey: false,
    truncated: false,
  };
  if (c.remaining() === 0) return hello;
  const exts = extensionsBlock(c, partial);
  if (exts === null) return null;
  if (!c.ok) hello.truncated = true;
  while (exts.remaining() > 0 && hello.extensions.length < MAX_LIST_ENTRIES) {
    const type = exts.u16();
    const d = exts.sub(exts.u16());
    if (!exts.ok) {
      if (!partial) return null;
      hello.truncated = true;
      break;
    }
    hello.extensions.push(type);
    readServerExtension(hello, type, d);
  }
  return hello;
}

function readServerExtension(hello: ServerHello, type: number, d: Cursor): boolean {
  switch (type) {
    case EXT_SUPPORTED_VERSIONS:
      hello.selectedVersion = d.u16();
      return d.ok;
    case EXT_ALPN: {
      const list = d.sub(d.u16());
      const proto = list.bytes(list.u8());
      if (!list.ok || !d.ok) return false;
      hello.alpn = wireText(proto);
      return true;
    }
    case EXT_PRE_SHARED_KEY:
      hello.hasPreSharedKey = true;
      return true;
    case EXT_KEY_SHARE:
      // HRR: just the selected group; ServerHello: group + key_exchange.
      hello.keyShareGroup = d.u16();
      return d.ok;
    default:
      return true;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// --- SSLv2-compatible ClientHello (RFC 5246 Appendix E.2; SSL 2.0 draft §2.6) ---

const SSL2_MSG_CLIENT_HELLO = 1;
const SSL2_MSG_SERVER_HELLO = 4;
const SSL2_SERVER_HELLO_FIXED = 11; // msg_type, session_id_hit, certificate_type, version(2), certificate_length(2), cipher_specs_length(2), connection_id_length(2)
const SSL2_CERTIFICATE_TYPE_X509 = 1;
const SSL2_MIN_CONNECTION_ID = 16;
const SSL2_MAX_CONNECTION_ID = 32;
const SSL2_HEADER_LENGTH = 2;
const SSL2_CLIENT_HELLO_FIXED = 9; // msg_type, version(2), cipher_spec_length(2), session_id_length(2), challenge_length(2)
const SSL2_CIPHER_SPEC_LENGTH = 3;
const SSL2_MIN_CHALLENGE = 16;
const SSL2_MAX_CHALLENGE = 32;
export const SSL2_VERSION = 0x0002;

export interface Sslv2Header {
  /** Total bytes of header + message. */
  recordLength: number;
  bodyOffset: number;
  bodyLength: number;
}

/** A 2-byte SSLv2 record header (high bit set) at the stream start, or null. */
export function sslv2Header(b: Uint8Array): Sslv2Header | null {
  if (b.length < SSL2_HEADER_LENGTH || (b[0] & 0x80) === 0) return null;
  const bodyLength = ((b[0] & 0x7f) << 8) | b[1];
  return { recordLength: SSL2_HEADER_LENGTH + bodyLength, bodyOffset: SSL2_HEADER_LENGTH, bodyLength };
}

/**
 * True when the stream starts with an SSLv2-format ClientHello: 2-byte header with the
 * high bit, msg_type 1, version SSL 2.0 or 3.x, and lengths that add up.
 */
export function looksLikeSslv2ClientHello(b: Uint8Array): boolean {
  const h = sslv2Header(b);
  if (h === null || h.bodyLength < SSL2_CLIENT_HELLO_FIXED) return false;
  if (b.length < SSL2_HEADER_LENGTH + SSL2_CLIENT_HELLO_FIXED) return false;
  const o = SSL2_HEADER_LENGTH;
  if (b[o] !== SSL2_MSG_CLIENT_HELLO) return false;
  const version = (b[o + 1] << 8) | b[o + 2];
  if (version !== SSL2_VERSION && (b[o + 1] !== 3 || b[o + 2] > 4)) return false;
  const specLen = (b[o + 3] << 8) | b[o + 4];
  const sidLen = (b[o + 5] << 8) | b[o + 6];
  const chalLen = (b[o + 7] << 8) | b[o + 8];
  if (specLen === 0 || specLen % SSL2_CIPHER_SPEC_LENGTH !== 0) return false;
  if (sidLen !== 0 && sidLen !== 16 && sidLen !== 32) return false;
  if (chalLen < SSL2_MIN_CHALLENGE || chalLen > SSL2_MAX_CHALLENGE) return false;
  return SSL2_CLIENT_HELLO_FIXED + specLen + sidLen + chalLen === h.bodyLength;
}

/**
 * True when the stream starts with an SSL 2.0 SERVER-HELLO (the server chose SSL 2.0).
 * Every field is checked so that a binary non-TLS reply cannot pass for one.
 */
export function looksLikeSslv2ServerHello(b: Uint8Array): boolean {
  const h = sslv2Header(b);
  if (h === null || h.bodyLength < SSL2_SERVER_HELLO_FIXED || b.length < SSL2_HEADER_LENGTH + SSL2_SERVER_HELLO_FIXED) return false;
  const o = SSL2_HEADER_LENGTH;
  if (b[o] !== SSL2_MSG_SERVER_HELLO || b[o + 1] > 1 || b[o + 2] !== SSL2_CERTIFICATE_TYPE_X509) return false;
  if (((b[o + 3] << 8) | b[o + 4]) !== SSL2_VERSION) return false;
  const certLen = (b[o + 5] << 8) | b[o + 6];
  const specLen = (b[o + 7] << 8) | b[o + 8];
  const connIdLen = (b[o + 9] << 8) | b[o + 10];
  if (specLen % SSL2_CIPHER_SPEC_LENGTH !== 0) return false;
  if (connIdLen < SSL2_MIN_CONNECTION_ID || connIdLen > SSL2_MAX_CONNECTION_ID) return false;
  return SSL2_SERVER_HELLO_FIXED + certLen + specLen + connIdLen === h.bodyLength;
}

/**
 * Parses an SSLv2-format ClientHello at the start of the stream. Cipher kinds whose
 * first byte is 0 are TLS suites and go to cipherSuites; SSL 2.0-only kinds are dropped
 * (they have no 2-byte code).
 */
export function parseSslv2ClientHello(b: Uint8Array): ClientHello | null {
  if (!looksLikeSslv2ClientHello(b)) return null;
  const c = new Cursor(b, SSL2_HEADER_LENGTH + 1);
  const hello = newClientHello(c.u16());
  hello.sslv2 = true;
  const specLen = c.u16();
  const sidLen = c.u16();
  c.u16(); // challenge length
  const specs = c.sub(specLen);
  while (specs.remaining() >= SSL2_CIPHER_SPEC_LENGTH && hello.cipherSuites.length < MAX_LIST_ENTRIES) {
    const kind0 = specs.u8();
    const code = specs.u16();
    if (kind0 === 0) hello.cipherSuites.push(code);
  }
  hello.sessionIdLength = sidLen;
  hello.sessionId = copy(c.bytes(sidLen));
  if (!c.ok) hello.truncated = true;
  return hello;
}
