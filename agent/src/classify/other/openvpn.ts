// OpenVPN control channel (openvpn src/openvpn/ssl_pkt.h, reliable.c): the first packet of
// a session is P_CONTROL_HARD_RESET_CLIENT_V2/V3 with key id 0 and a random session id,
// followed — depending on --tls-auth / --tls-crypt — by an HMAC, a replay packet id and
// a net time, then an empty ACK array and message packet id 0. Each layout is checked
// exactly: zero bytes where the layout has zeros, a small packet id, a plausible time.
// Over TCP each packet is preceded by a 2-byte length.

import { be16, be32 } from '../text.js';
import { looksRandom } from './random.js';

const OPCODE_SHIFT = 3;
const KEY_ID_MASK = 0x07;
const P_CONTROL_HARD_RESET_CLIENT_V2 = 7;
const P_CONTROL_HARD_RESET_SERVER_V2 = 8;
const P_CONTROL_HARD_RESET_CLIENT_V3 = 10;
const SESSION_ID = 8;
/** tls-auth HMAC sizes: MD5, SHA1 (default), SHA224, SHA256, SHA384, SHA512. */
const TLS_AUTH_HMAC_SIZES = [16, 20, 28, 32, 48, 64];
/** tls-crypt: packet id(4) net time(4) then a 32-byte HMAC-SHA256 tag, then ciphertext. */
const TLS_CRYPT_TAG = 32;
/** Replay packet ids start at 1; a retransmitted reset gets the next one. */
const REPLAY_ID_MAX = 0xff;
/**
 * tls-crypt-v2 clients that support early negotiation start their packet ids at
 * EARLY_NEG_START (ssl_pkt.h), so their first reset carries 0x0f000001.
 */
const EARLY_NEG_START = 0x0f000000;
/** net_time: a Unix time after 2012 (0x50000000); the field is 32 bits. */
const NET_TIME_MIN = 0x50000000;
/** Plain layout: opcode(1) session(8) ack_len(1) message packet id(4). */
const PLAIN_CLIENT_RESET = 1 + SESSION_ID + 1 + 4;
/** Control packets fit a path MTU; a reset is small. */
const CONTROL_PACKET_MAX = 1600;
const TCP_LENGTH = 2;

/**
 * A session id is 8 random bytes: at most one zero byte and at least 6 distinct values
 * (random 8 bytes fail this with probability < 1e-3; a length or counter field fails it).
 */
function randomSessionId(b: Uint8Array, off: number): boolean {
  let zeros = 0;
  let distinct = 0;
  for (let i = off; i < off + SESSION_ID; i++) {
    if (b[i] === 0) zeros++;
    let seenBefore = false;
    for (let j = off; j < i; j++) if (b[j] === b[i]) seenBefore = true;
    if (!seenBefore) distinct++;
  }
  return zeros <= 1 && distinct >= 6;
}

/** Replay packet id and net time at b[off]: the pair tls-auth and tls-crypt put before the payload. */
function replayAndTime(b: Uint8Array, off: number, end: number): boolean {
  if (off + 8 > end) return false;
  const id = be32(b, off);
  const small = id >= 1 && id <= REPLAY_ID_MAX;
  const earlyNeg = id > EARLY_NEG_START && id <= EARLY_NEG_START + REPLAY_ID_MAX;
  return (small || earlyNeg) && be32(b, off + 4) >= NET_TIME_MIN;
}

/**
 * The layout of a hard-reset packet in b[off, end): 'plain', 'tls-auth', 'tls-crypt' or null.
 * `end` is the packet's end (datagram length, or the TCP length prefix).
 */
export function hardResetLayout(b: Uint8Array, off: number, end: number, fromClient: boolean): string | null {
  if (end > b.length || end - off < PLAIN_CLIENT_RESET || end - off > CONTROL_PACKET_MAX) return null;
  const opcode = b[off] >> OPCODE_SHIFT;
  if ((b[off] & KEY_ID_MASK) !== 0) return null; // a new session uses key id 0
  const expected = fromClient ? [P_CONTROL_HARD_RESET_CLIENT_V2, P_CONTROL_HARD_RESET_CLIENT_V3] : [P_CONTROL_HARD_RESET_SERVER_V2];
  if (!expected.includes(opcode)) return null;
  const sid = off + 1;
  if (!randomSessionId(b, sid)) return null;
  const p = sid + SESSION_ID;
  // tls-crypt (-v2 for the V3 opcode): replay id and time in clear, then a random tag
  if (replayAndTime(b, p, end) && p + 8 + TLS_CRYPT_TAG + 5 <= end && looksRandom(b, p + 8, p + 8 + TLS_CRYPT_TAG)) return 'tls-crypt';
  if (opcode === P_CONTROL_HARD_RESET_CLIENT_V3) return null;
  // plain: the ACK array (client: empty; server: acks the client's packet 0 and names its session)
  const plainTail = (q: number): boolean => {
    if (fromClient) return b[q] === 0 && q + 5 <= end && be32(b, q + 1) === 0;
    return b[q] === 1 && q + 1 + 4 + SESSION_ID + 4 <= end && be32(b, q + 1) === 0 && randomSessionId(b, q + 5) && be32(b, q + 5 + SESSION_ID) === 0;
  };
  if (plainTail(p)) return 'plain';
  // tls-auth: HMAC, replay id, time, then the plain tail
  for (const h of TLS_AUTH_HMAC_SIZES) {
    if (p + h + 8 + 5 > end) break;
    if (replayAndTime(b, p + h, end) && plainTail(p + h + 8) && looksRandom(b, p, p + h)) return 'tls-auth';
  }
  return null;
}

const DATAGRAMS_MAX = 4;

export function detectOpenvpnDatagrams(client: Uint8Array[], server: Uint8Array[]): string | null {
  for (const [list, fromClient] of [[client, true], [server, false]] as const) {
    const n = Math.min(list.length, DATAGRAMS_MAX);
    for (let k = 0; k < n; k++) {
      const layout = hardResetLayout(list[k], 0, list[k].length, fromClient);
      if (layout) return `${fromClient ? 'P_CONTROL_HARD_RESET_CLIENT' : 'P_CONTROL_HARD_RESET_SERVER'} (${layout}) over UDP`;
    }
  }
  return null;
}

export function detectOpenvpnStream(client: Uint8Array, server: Uint8Array): string | null {
  for (const [b, fromClient] of [[client, true], [server, false]] as const) {
    if (b.length < TCP_LENGTH) continue;
    const len = be16(b, 0);
    const end = TCP_LENGTH + len;
    if (end > b.length) continue; // a reset is small: it is captured whole or not at all
    const layout = hardResetLayout(b, TCP_LENGTH, end, fromClient);
    if (layout) return `${fromClient ? 'P_CONTROL_HARD_RESET_CLIENT' : 'P_CONTROL_HARD_RESET_SERVER'} (${layout}) over TCP`;
  }
  return null;
}
