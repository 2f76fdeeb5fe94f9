// Cipher suite code -> IANA name for the suites seen in practice
// (https://www.iana.org/assignments/tls-parameters, "TLS Cipher Suites").

import { hex4 } from './bytes.js';

const SUITES: ReadonlyMap<number, string> = new Map([
  // TLS 1.3 (RFC 8446, RFC 8998, RFC 9150)
  [0x1301, 'TLS_AES_128_GCM_SHA256'],
  [0x1302, 'TLS_AES_256_GCM_SHA384'],
  [0x1303, 'TLS_CHACHA20_POLY1305_SHA256'],
  [0x1304, 'TLS_AES_128_CCM_SHA256'],
  [0x1305, 'TLS_AES_128_CCM_8_SHA256'],
  [0x00c6, 'TLS_SM4_GCM_SM3'],
  [0x00c7, 'TLS_SM4_CCM_SM3'],
  [0xc0b4, 'TLS_SHA256_SHA256'],
  [0xc0b5, 'TLS_SHA384_SHA384'],
  // ECDHE-ECDSA
  [0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'],
  [0xc02c, 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384'],
  [0xcca9, 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256'],
  [0xc023, 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256'],
  [0xc024, 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384'],
  [0xc009, 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA'],
  [0xc00a, 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA'],
  [0xc0ac, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM'],
  [0xc0ad, 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM'],
  [0xc0ae, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8'],
  [0xc0af, 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8'],
  [0xc008, 'TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA'],
  [0xc007, 'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA'],
  [0xc006, 'TLS_ECDHE_ECDSA_WITH_NULL_SHA'],
  // ECDHE-RSA
  [0xc02f, 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'],
  [0xc030, 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384'],
  [0xcca8, 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256'],
  [0xc027, 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256'],
  [0xc028, 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384'],
  [0xc013, 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA'],
  [0xc014, 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA'],
  [0xc012, 'TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA'],
  [0xc011, 'TLS_ECDHE_RSA_WITH_RC4_128_SHA'],
  [0xc010, 'TLS_ECDHE_RSA_WITH_NULL_SHA'],
  // DHE
  [0x009e, 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256'],
  [0x009f, 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384'],
  [0xccaa, 'TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256'],
  [0x0067, 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA256'],
  [0x006b, 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA256'],
  [0x0033, 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA'],
  [0x0039, 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA'],
  [0x0016, 'TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA'],
  [0xc09e, 'TLS_DHE_RSA_WITH_AES_128_CCM'],
  [0xc09f, 'TLS_DHE_RSA_WITH_AES_256_CCM'],
  [0x00a2, 'TLS_DHE_DSS_WITH_AES_128_GCM_SHA256'],
  [0x00a3, 'TLS_DHE_DSS_WITH_AES_256_GCM_SHA384'],
  [0x0032, 'TLS_DHE_DSS_WITH_AES_128_CBC_SHA'],
  [0x0038, 'TLS_DHE_DSS_WITH_AES_256_CBC_SHA'],
  // RSA key exchange
  [0x009c, 'TLS_RSA_WITH_AES_128_GCM_SHA256'],
  [0x009d, 'TLS_RSA_WITH_AES_256_GCM_SHA384'],
  [0x003c, 'TLS_RSA_WITH_AES_128_CBC_SHA256'],
  [0x003d, 'TLS_RSA_WITH_AES_256_CBC_SHA256'],
  [0x002f, 'TLS_RSA_WITH_AES_128_CBC_SHA'],
  [0x0035, 'TLS_RSA_WITH_AES_256_CBC_SHA'],
  [0xc09c, 'TLS_RSA_WITH_AES_128_CCM'],
  [0xc09d, 'TLS_RSA_WITH_AES_256_CCM'],
  [0x0041, 'TLS_RSA_WITH_CAMELLIA_128_CBC_SHA'],
  [0x0084, 'TLS_RSA_WITH_CAMELLIA_256_CBC_SHA'],
  [0x000a, 'TLS_RSA_WITH_3DES_EDE_CBC_SHA'],
  [0x0005, 'TLS_RSA_WITH_RC4_128_SHA'],
  [0x0004, 'TLS_RSA_WITH_RC4_128_MD5'],
  [0x0000, 'TLS_NULL_WITH_NULL_NULL'],
  [0x0001, 'TLS_RSA_WITH_NULL_MD5'],
  [0x0002, 'TLS_RSA_WITH_NULL_SHA'],
  [0x003b, 'TLS_RSA_WITH_NULL_SHA256'],
  // PSK
  [0x00a8, 'TLS_PSK_WITH_AES_128_GCM_SHA256'],
  [0x00a9, 'TLS_PSK_WITH_AES_256_GCM_SHA384'],
  [0x008c, 'TLS_PSK_WITH_AES_128_CBC_SHA'],
  [0x008d, 'TLS_PSK_WITH_AES_256_CBC_SHA'],
  [0xccab, 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256'],
  [0xccac, 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256'],
  [0xc035, 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA'],
  [0xd001, 'TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256'],
  [0x002c, 'TLS_PSK_WITH_NULL_SHA'],
  // signalling values (RFC 5746, RFC 7507)
  [0x00ff, 'TLS_EMPTY_RENEGOTIATION_INFO_SCSV'],
  [0x5600, 'TLS_FALLBACK_SCSV'],
]);

/** IANA name of a suite, or "0xC02F" style hex when unknown. */
export function cipherSuiteName(code: number): string {
  return SUITES.get(code) ?? '0x' + hex4(code).toUpperCase();
}

/**
 * Suites that authenticate but do not encrypt (…_WITH_NULL_…, RFC 9150 integrity-only
 * TLS 1.3): the payload is readable on the wire even though the handshake is TLS.
 */
export function isNullEncryptionSuite(code: number): boolean {
  const name = SUITES.get(code);
  return name !== undefined && isNullEncryptionSuiteName(name);
}

/** By IANA name, as carried in TlsDetails.cipher: integrity-only suites leave the payload readable. */
export function isNullEncryptionSuiteName(name: string): boolean {
  return name.includes('_WITH_NULL_') || name === 'TLS_NULL_WITH_NULL_NULL' || name === 'TLS_SHA256_SHA256' || name === 'TLS_SHA384_SHA384';
}

export interface Tls13SuiteSizes {
  /** Transcript hash output length: Finished.verify_data has this size. */
  hashLength: number;
  /** AEAD expansion (tag) per record. */
  tagLength: number;
}

/** TLS 1.3 suites' hash and tag sizes, for sizing encrypted handshake records. */
const TLS13_SIZES: ReadonlyMap<number, Tls13SuiteSizes> = new Map([
  [0x1301, { hashLength: 32, tagLength: 16 }],
  [0x1302, { hashLength: 48, tagLength: 16 }],
  [0x1303, { hashLength: 32, tagLength: 16 }],
  [0x1304, { hashLength: 32, tagLength: 16 }],
  [0x1305, { hashLength: 32, tagLength: 8 }],
  [0x00c6, { hashLength: 32, tagLength: 16 }],
  [0x00c7, { hashLength: 32, tagLength: 16 }],
  // RFC 9150: the "tag" is an HMAC of the hash's size.
  [0xc0b4, { hashLength: 32, tagLength: 32 }],
  [0xc0b5, { hashLength: 48, tagLength: 48 }],
]);

export function tls13SuiteSizes(code: number): Tls13SuiteSizes | undefined {
  return TLS13_SIZES.get(code);
}

const GROUP_NAMES: ReadonlyMap<number, string> = new Map([
  [0x0017, 'secp256r1'],
  [0x0018, 'secp384r1'],
  [0x0019, 'secp521r1'],
  [0x001d, 'x25519'],
  [0x001e, 'x448'],
  [0x0100, 'ffdhe2048'],
  [0x0101, 'ffdhe3072'],
  [0x11ec, 'X25519MLKEM768'],
  [0x6399, 'X25519Kyber768Draft00'],
]);

export function groupName(code: number): string {
  return GROUP_NAMES.get(code) ?? '0x' + hex4(code).toUpperCase();
}

/** "1.3", "1.2", …, "ssl3", "ssl2" for a protocol version, undefined when unknown. */
export function versionName(v: number): string | undefined {
  switch (v) {
    case 0x0304:
      return '1.3';
    case 0x0303:
      return '1.2';
    case 0x0302:
      return '1.1';
    case 0x0301:
      return '1.0';
    case 0x0300:
      return 'ssl3';
    case 0x0002:
    case 0x0200:
      return 'ssl2';
    default:
      // TLS 1.3 drafts (0x7F0E..0x7F1C) behave as 1.3 on the wire.
      return v >> 8 === 0x7f ? '1.3' : undefined;
  }
}
