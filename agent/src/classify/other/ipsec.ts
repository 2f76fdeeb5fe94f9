// IPsec over UDP: IKE on port 500, and on 4500 (RFC 3948 NAT traversal) either IKE behind
// the 4-byte non-ESP marker or ESP itself (SPI, sequence number, ciphertext). The port is
// part of the definition of NAT-T encapsulation, never evidence by itself: every packet
// must also have the right structure, and ESP's body must look like ciphertext.

import { be32 } from '../text.js';
import { looksRandom } from './random.js';

const IKE_PORT = 500;
const NAT_T_PORT = 4500;
/** RFC 3948 §2.2: a 4-byte zero marker precedes IKE on port 4500. */
const NON_ESP_MARKER = 4;
/** RFC 3948 §2.3: NAT-keepalive is the single byte 0xFF. */
const NAT_KEEPALIVE = 0xff;
const IKE_HEADER = 28;
const IKE_LENGTH_MAX = 65535;
const IKE_V1 = 0x10;
const IKE_V2 = 0x20;
/** Exchange types: RFC 7296 §3.1 (+ RFC 9242, RFC 9370) and RFC 2408 §3.1 / 2409. */
const IKE_V2_EXCHANGES: Record<number, string> = {
  34: 'IKE_SA_INIT', 35: 'IKE_AUTH', 36: 'CREATE_CHILD_SA', 37: 'INFORMATIONAL', 43: 'IKE_INTERMEDIATE', 44: 'IKE_FOLLOWUP_KE',
};
const IKE_V1_EXCHANGES: Record<number, string> = { 2: 'Main Mode', 4: 'Aggressive Mode', 5: 'Informational', 32: 'Quick Mode' };
/** IKEv2 header flags: Initiator 0x08, Version 0x10, Response 0x20; all others must be zero. */
const IKE_V2_FLAGS = 0x38;
/** IKEv1 flags: Encryption 0x01, Commit 0x02, Authentication-only 0x04. */
const IKE_V1_FLAGS = 0x07;
/** Next-payload values: IKEv2 0 or 33..53; IKEv1 1..13 plus NAT-D/NAT-OA 20..21 (RFC 3947). */
function ikeNextPayloadOk(version: number, np: number): boolean {
  return version === IKE_V2 ? np === 0 || (np >= 33 && np <= 53) : (np >= 1 && np <= 13) || np === 20 || np === 21 || np === 130 || np === 131;
}
/** SPIs 1..255 are reserved by IANA (RFC 4303 §2.1); 0 is never an SPI. */
const ESP_SPI_MIN = 256;
/** SPI + sequence + at least an 8-byte IV/ciphertext + a 16-byte ICV. */
const ESP_MIN = 32;
/**
 * One datagram alone must be a realistic ESP packet: header (8), IV (8), an inner header
 * (≥ 20), trailer (2) and ICV (≥ 12) make 50 bytes at the least. Below that the byte
 * statistics of a short packet cannot tell ciphertext from text with a few odd bytes, so
 * shorter packets count only as a series (same SPI, increasing sequence numbers).
 */
const ESP_SINGLE_MIN = 48;
/**
 * Sequence numbers count packets from 1 per SA, and SAs are rekeyed long before 2^28
 * packets (an hour at 70k packets/s). A lone packet must carry such a count; text in
 * those four bytes reads as at least 0x20202020 (> 2^29). Packets of long-lived ESN SAs
 * with larger counts are still recognised as a series (same SPI, increasing sequence).
 */
const ESP_SINGLE_SEQ_MAX = 1 << 28;
const ESP_HEADER = 8;

/** An IKE header at d[off]: "IKEv2 IKE_AUTH" or null. The message may be cut by the capture. */
export function parseIke(d: Uint8Array, off: number): string | null {
  if (off + IKE_HEADER > d.length) return null;
  if (be32(d, off) === 0 && be32(d, off + 4) === 0) return null; // initiator SPI is never zero
  const np = d[off + 16];
  const version = d[off + 17];
  const exchange = d[off + 18];
  const flags = d[off + 19];
  const length = be32(d, off + 24);
  if (version !== IKE_V1 && version !== IKE_V2) return null;
  if (!ikeNextPayloadOk(version, np)) return null;
  const name = version === IKE_V2 ? IKE_V2_EXCHANGES[exchange] : IKE_V1_EXCHANGES[exchange];
  if (!name) return null;
  if ((flags & ~(version === IKE_V2 ? IKE_V2_FLAGS : IKE_V1_FLAGS)) !== 0) return null;
  // the IKE length covers the whole message: the datagram, or more when the capture cut it
  if (length < IKE_HEADER || length > IKE_LENGTH_MAX || length < d.length - off) return null;
  return `IKEv${version === IKE_V2 ? 2 : 1} ${name}`;
}

function isEsp(d: Uint8Array): boolean {
  return d.length >= ESP_MIN && be32(d, 0) >= ESP_SPI_MIN && be32(d, 4) !== 0 && looksRandom(d, ESP_HEADER, d.length);
}

/** A second ESP packet after `first` in the same direction: same SPI, a later sequence number. */
function continuesEsp(list: Uint8Array[], first: number, n: number): boolean {
  const spi = be32(list[first], 0);
  const seq = be32(list[first], 4);
  for (let k = first + 1; k < n; k++) {
    const d = list[k];
    if (isEsp(d) && be32(d, 0) === spi && be32(d, 4) > seq) return true;
  }
  return false;
}

const DATAGRAMS_MAX = 8;

/** IPsec over UDP 500/4500; the evidence, or null. */
export function detectIpsecDatagrams(client: Uint8Array[], server: Uint8Array[], clientPort: number, serverPort: number): string | null {
  const natT = clientPort === NAT_T_PORT || serverPort === NAT_T_PORT;
  const ike = clientPort === IKE_PORT || serverPort === IKE_PORT;
  if (!natT && !ike) return null;
  for (const list of [client, server]) {
    const n = Math.min(list.length, DATAGRAMS_MAX);
    for (let k = 0; k < n; k++) {
      const d = list[k];
      if (d.length === 1 && d[0] === NAT_KEEPALIVE) continue;
      if (natT) {
        if (d.length >= NON_ESP_MARKER && be32(d, 0) === 0) {
          const m = parseIke(d, NON_ESP_MARKER);
          if (m) return `${m} over UDP ${NAT_T_PORT} (non-ESP marker)`;
          continue;
        }
        if (isEsp(d) && ((d.length >= ESP_SINGLE_MIN && be32(d, 4) < ESP_SINGLE_SEQ_MAX) || continuesEsp(list, k, n))) {
          return `ESP in UDP ${NAT_T_PORT} (NAT-T): SPI, sequence number, ciphertext`;
        }
      } else {
        const m = parseIke(d, 0);
        if (m) return `${m} over UDP ${IKE_PORT}`;
      }
    }
  }
  return null;
}
