// The client's first QUIC Initial, decrypted (RFC 9001 §5, RFC 9369 §3.3): Initial keys
// derive from a public salt and the client's Destination Connection ID, so anyone on the
// path can read the ClientHello — the same metadata TLS over TCP shows in clear (SNI,
// ALPN). Only that is extracted; nothing else of the payload is kept.
//
// A datagram cut by the capture cannot be authenticated (the AEAD tag is at its end): its
// captured part is then decrypted as AES-CTR — GCM's keystream — and what parses as a
// ClientHello prefix is used, flagged as unauthenticated.

import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { parseClientHello } from '../tls/hello.js';
import { readVarint, type QuicInitial } from './quic.js';

const SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex'); // RFC 9001 §5.2, drafts 33-34
const SALT_V2 = Buffer.from('0dede3def700a6db819381be6e269dcbf9bd2ed9', 'hex'); // RFC 9369 §3.3.1
const SALT_DRAFT_29 = Buffer.from('afbfec289993d24c9e9786f19c6111e04390a899', 'hex'); // drafts 29-32
const SALT_DRAFT_23 = Buffer.from('c3eef712c72ebb5a11a7d2432bb46365bef9f502', 'hex'); // drafts 23-28
const QUIC_V2 = 0x6b3343cf;
const KEY_LENGTH = 16;
const IV_LENGTH = 12;
const HP_LENGTH = 16;
const SECRET_LENGTH = 32;
const TAG_LENGTH = 16;
const SAMPLE_LENGTH = 16;
/** Long header: the low 4 bits of the first byte are protected (reserved bits + pn length). */
const LONG_HEADER_PROTECTED_BITS = 0x0f;
const FRAME_PADDING = 0x00;
const FRAME_PING = 0x01;
const FRAME_ACK = 0x02;
const FRAME_ACK_ECN = 0x03;
const FRAME_CRYPTO = 0x06;
/** Frames we walk in one packet before giving up (Chrome splits the hello into a few dozen). */
const FRAMES_MAX = 256;
/** The ClientHello prefix we reassemble: enough for SNI and ALPN in any real hello. */
const CRYPTO_BUFFER_MAX = 4096;
const HS_CLIENT_HELLO = 1;

function saltFor(version: number): Buffer {
  if (version === QUIC_V2) return SALT_V2;
  if ((version & 0xffffff00) >>> 0 === 0xff000000) {
    const draft = version & 0xff;
    if (draft <= 28) return SALT_DRAFT_23;
    if (draft <= 32) return SALT_DRAFT_29;
  }
  return SALT_V1;
}

/** HKDF-Expand-Label (RFC 8446 §7.1) for outputs of at most one SHA-256 block. */
function expandLabel(secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.alloc(2 + 1 + full.length + 1 + 1);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  full.copy(info, 3);
  info[3 + full.length] = 0; // empty context
  info[4 + full.length] = 1; // HKDF-Expand block counter T(1)
  return createHmac('sha256', secret).update(info).digest().subarray(0, length);
}

interface InitialKeys {
  key: Buffer;
  iv: Buffer;
  hp: Buffer;
}

/** The client's Initial keys for this version and Destination Connection ID. */
export function clientInitialKeys(version: number, dcid: Uint8Array): InitialKeys {
  const initialSecret = createHmac('sha256', saltFor(version)).update(dcid).digest(); // HKDF-Extract
  const clientSecret = expandLabel(initialSecret, 'client in', SECRET_LENGTH);
  const prefix = version === QUIC_V2 ? 'quicv2 ' : 'quic ';
  return {
    key: expandLabel(clientSecret, `${prefix}key`, KEY_LENGTH),
    iv: expandLabel(clientSecret, `${prefix}iv`, IV_LENGTH),
    hp: expandLabel(clientSecret, `${prefix}hp`, HP_LENGTH),
  };
}

export interface QuicHello {
  sni?: string;
  alpn?: string[];
  /** False when the datagram was cut and the AEAD tag could not be checked. */
  authenticated: boolean;
}

/**
 * Remove header protection and decrypt the first client Initial in datagram d, then
 * read SNI/ALPN from the ClientHello in its CRYPTO frames. null when anything fails.
 */
export function decryptClientHello(d: Uint8Array, ini: QuicInitial): QuicHello | null {
  try {
    return decrypt(d, ini);
  } catch {
    // node:crypto reports a failed tag check (or a key of the wrong size) by throwing
    return null;
  }
}

function decrypt(d: Uint8Array, ini: QuicInitial): QuicHello | null {
  const sampleAt = ini.pnOffset + 4;
  if (sampleAt + SAMPLE_LENGTH > d.length) return null;
  const keys = clientInitialKeys(ini.version, d.subarray(ini.dcidStart, ini.dcidStart + ini.dcidLength));
  const hp = createCipheriv('aes-128-ecb', keys.hp, null);
  hp.setAutoPadding(false);
  const mask = hp.update(d.subarray(sampleAt, sampleAt + SAMPLE_LENGTH));
  const first = d[0] ^ (mask[0] & LONG_HEADER_PROTECTED_BITS);
  const pnLength = (first & 0x03) + 1;
  const header = Buffer.from(d.subarray(0, ini.pnOffset + pnLength));
  header[0] = first;
  let pn = 0;
  for (let k = 0; k < pnLength; k++) {
    header[ini.pnOffset + k] ^= mask[1 + k];
    pn = pn * 256 + header[ini.pnOffset + k];
  }
  const nonce = Buffer.from(keys.iv);
  for (let k = 0; k < 4; k++) nonce[IV_LENGTH - 1 - k] ^= (pn >>> (8 * k)) & 0xff;
  const payloadStart = ini.pnOffset + pnLength;
  const packetEnd = ini.pnOffset + ini.length;
  let plain: Buffer;
  let authenticated: boolean;
  if (packetEnd <= d.length) {
    if (packetEnd - TAG_LENGTH <= payloadStart) return null;
    const gcm = createDecipheriv('aes-128-gcm', keys.key, nonce);
    gcm.setAAD(header);
    gcm.setAuthTag(d.subarray(packetEnd - TAG_LENGTH, packetEnd));
    plain = Buffer.concat([gcm.update(d.subarray(payloadStart, packetEnd - TAG_LENGTH)), gcm.final()]);
    authenticated = true;
  } else {
    // GCM encrypts with AES-CTR from counter block nonce || 2 (NIST SP 800-38D §7.1)
    const counter = Buffer.alloc(16);
    nonce.copy(counter, 0);
    counter.writeUInt32BE(2, 12);
    const ctr = createDecipheriv('aes-128-ctr', keys.key, counter);
    plain = ctr.update(d.subarray(payloadStart));
    authenticated = false;
  }
  const hello = clientHelloFromFrames(plain);
  if (!hello) return null;
  const out: QuicHello = { authenticated };
  if (hello.sni !== undefined) out.sni = hello.sni;
  if (hello.alpn.length > 0) out.alpn = hello.alpn;
  return out;
}

/** Reassemble the CRYPTO stream from offset 0 and parse the ClientHello it starts with. */
function clientHelloFromFrames(p: Uint8Array): ReturnType<typeof parseClientHello> {
  const stream = new Uint8Array(CRYPTO_BUFFER_MAX);
  // coverage of the stream buffer, as a byte map: the prefix from 0 is what we can parse
  const have = new Uint8Array(CRYPTO_BUFFER_MAX);
  let i = 0;
  for (let n = 0; n < FRAMES_MAX && i < p.length; n++) {
    const type = p[i];
    if (type === FRAME_PADDING || type === FRAME_PING) {
      i++;
      continue;
    }
    if (type === FRAME_ACK || type === FRAME_ACK_ECN) {
      i = skipAck(p, i + 1, type === FRAME_ACK_ECN);
      if (i < 0) break;
      continue;
    }
    if (type !== FRAME_CRYPTO) break;
    const off = readVarint(p, i + 1);
    if (!off) break;
    const len = readVarint(p, i + 1 + off[1]);
    if (!len) break;
    const data = i + 1 + off[1] + len[1];
    const end = Math.min(p.length, data + len[0]);
    for (let k = data; k < end; k++) {
      const at = off[0] + (k - data);
      if (at >= CRYPTO_BUFFER_MAX) break;
      stream[at] = p[k];
      have[at] = 1;
    }
    i = data + len[0];
  }
  let contiguous = 0;
  while (contiguous < CRYPTO_BUFFER_MAX && have[contiguous]) contiguous++;
  if (contiguous < 4 || stream[0] !== HS_CLIENT_HELLO) return null;
  const bodyLength = (stream[1] << 16) | (stream[2] << 8) | stream[3];
  const available = Math.min(bodyLength, contiguous - 4);
  const body = stream.subarray(4, 4 + available);
  return parseClientHello(body, { partial: available < bodyLength });
}

/** Skip an ACK frame's fields (RFC 9000 §19.3); index after it, or -1. */
function skipAck(p: Uint8Array, i: number, ecn: boolean): number {
  let at = i;
  const fields = (n: number): boolean => {
    for (let k = 0; k < n; k++) {
      const v = readVarint(p, at);
      if (!v) return false;
      at += v[1];
    }
    return true;
  };
  if (!fields(2)) return -1; // largest acknowledged, ack delay
  const count = readVarint(p, at);
  if (!count || count[0] > FRAMES_MAX) return -1;
  at += count[1];
  if (!fields(1 + 2 * count[0])) return -1; // first range, then gap/length pairs
  if (ecn && !fields(3)) return -1;
  return at;
}
