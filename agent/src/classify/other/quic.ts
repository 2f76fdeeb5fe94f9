// QUIC (RFC 9000 §17.2, RFC 9369 for v2): the long-header Initial packet. The version
// field (four exact bytes) is the strong evidence; the rest of the header must parse.
//
// The capture layer may keep only the first few hundred bytes of a datagram, so a Length
// field pointing past the captured bytes is accepted; everything before it is checked.

import { be32 } from '../text.js';

const HEADER_FORM_LONG = 0x80;
/** The fixed bit must be 1 in an Initial (RFC 9287 greasing needs prior negotiation). */
const FIXED_BIT = 0x40;
const LONG_TYPE_SHIFT = 4;
const QUIC_V1 = 0x00000001;
const QUIC_V2 = 0x6b3343cf;
/** Drafts: 0xff0000NN. 23..34 share the v1 Initial layout. */
const QUIC_DRAFT_PREFIX = 0xff000000;
const QUIC_DRAFT_MIN = 23;
const QUIC_DRAFT_MAX = 34;
/** Long packet type of Initial: 0 in v1 and drafts, 1 in v2 (RFC 9369 §3.2). */
const INITIAL_TYPE_V1 = 0;
const INITIAL_TYPE_V2 = 1;
const CID_MAX = 20;
/** RFC 9000 §7.2: a client's first Destination Connection ID is at least 8 bytes. */
const CLIENT_FIRST_DCID_MIN = 8;
/** Packet number (1..4) + 16-byte AEAD tag; header protection samples 16 bytes at pn+4. */
const INITIAL_PAYLOAD_MIN = 20;
/** A UDP payload is at most 65527 bytes. */
const DATAGRAM_MAX = 65527;

export interface QuicInitial {
  version: number;
  /** "1", "2", "draft-29". */
  versionName: string;
  dcidStart: number;
  dcidLength: number;
  /** Offset of the (protected) packet number. */
  pnOffset: number;
  /** The Length field: packet number + payload. */
  length: number;
}

/** QUIC variable-length integer at b[off]: [value, size] or null. */
export function readVarint(b: Uint8Array, off: number): [number, number] | null {
  if (off >= b.length) return null;
  const size = 1 << (b[off] >> 6);
  if (off + size > b.length) return null;
  let v = b[off] & 0x3f;
  for (let k = 1; k < size; k++) v = v * 256 + b[off + k];
  return [v, size];
}

export function quicVersionName(version: number): string | null {
  if (version === QUIC_V1) return '1';
  if (version === QUIC_V2) return '2';
  if ((version & 0xffffff00) >>> 0 === QUIC_DRAFT_PREFIX) {
    const n = version & 0xff;
    if (n >= QUIC_DRAFT_MIN && n <= QUIC_DRAFT_MAX) return `draft-${n}`;
  }
  return null;
}

/** A long-header Initial packet at the start of datagram d, or null. */
export function parseQuicInitial(d: Uint8Array, fromClient: boolean): QuicInitial | null {
  if (d.length < 7) return null;
  const first = d[0];
  if ((first & HEADER_FORM_LONG) === 0 || (first & FIXED_BIT) === 0) return null;
  const version = be32(d, 1);
  const versionName = quicVersionName(version);
  if (!versionName) return null;
  const initialType = version === QUIC_V2 ? INITIAL_TYPE_V2 : INITIAL_TYPE_V1;
  if (((first >> LONG_TYPE_SHIFT) & 0x03) !== initialType) return null;
  const dcidLength = d[5];
  if (dcidLength > CID_MAX || (fromClient && dcidLength < CLIENT_FIRST_DCID_MIN)) return null;
  let i = 6 + dcidLength;
  if (i >= d.length) return null;
  const scidLength = d[i];
  if (scidLength > CID_MAX) return null;
  i += 1 + scidLength;
  const token = readVarint(d, i);
  if (!token) return null;
  // only a client's Initial carries a token (from Retry or NEW_TOKEN); a server's must be empty
  if (fromClient ? token[0] > DATAGRAM_MAX : token[0] !== 0) return null;
  i += token[1] + token[0];
  const length = readVarint(d, i);
  if (!length || length[0] < INITIAL_PAYLOAD_MIN || length[0] > DATAGRAM_MAX) return null;
  const pnOffset = i + length[1];
  return { version, versionName, dcidStart: 6, dcidLength, pnOffset, length: length[0] };
}
