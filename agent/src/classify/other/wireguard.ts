// WireGuard (whitepaper §5.4): four message types, each a 1-byte type, 3 reserved zero
// bytes and a fixed layout. "01 00 00 00" plus a length is not much on its own (a
// little-endian binary protocol could start that way), so each message must also carry
// random-looking keys/MACs where the layout puts them, and data messages are only
// accepted as a consistent series.

import { le32 } from '../text.js';
import { looksRandom } from './random.js';

const MSG_INITIATION = 1;
const MSG_RESPONSE = 2;
const MSG_COOKIE_REPLY = 3;
const MSG_TRANSPORT = 4;
const INITIATION_LENGTH = 148;
const RESPONSE_LENGTH = 92;
const COOKIE_REPLY_LENGTH = 64;
/** Transport: type(4) receiver(4) counter(8) then ciphertext padded to 16 plus a 16-byte tag. */
const TRANSPORT_HEADER = 16;
const TRANSPORT_MIN = 32;
const TRANSPORT_BLOCK = 16;
/** Initiation: sender(4) ephemeral(32) static(32+16) timestamp(12+16) mac1(16) mac2(16). */
const INITIATION_RANDOM = [8, 132] as const; // ephemeral .. mac1
/** Response: sender(4) receiver(4) ephemeral(32) empty(0+16) mac1(16) mac2(16). */
const RESPONSE_RANDOM = [12, 76] as const; // ephemeral .. mac1

function reservedZero(d: Uint8Array): boolean {
  return d[1] === 0 && d[2] === 0 && d[3] === 0;
}

export type WireguardKind = 'initiation' | 'response' | 'cookie' | 'transport';

/** The message type of datagram d when its fixed layout holds, else null. */
export function wireguardKind(d: Uint8Array): WireguardKind | null {
  if (d.length < TRANSPORT_MIN || !reservedZero(d)) return null;
  switch (d[0]) {
    case MSG_INITIATION:
      return d.length === INITIATION_LENGTH && looksRandom(d, INITIATION_RANDOM[0], INITIATION_RANDOM[1]) ? 'initiation' : null;
    case MSG_RESPONSE:
      return d.length === RESPONSE_LENGTH && looksRandom(d, RESPONSE_RANDOM[0], RESPONSE_RANDOM[1]) ? 'response' : null;
    case MSG_COOKIE_REPLY:
      return d.length === COOKIE_REPLY_LENGTH ? 'cookie' : null;
    case MSG_TRANSPORT:
      if ((d.length - TRANSPORT_HEADER) % TRANSPORT_BLOCK !== 0) return null;
      // counters start at 0 per session: the high 32 bits of the first ones are zero
      if (le32(d, 12) !== 0) return null;
      // ciphertext and tag after the header
      return looksRandom(d, TRANSPORT_HEADER, d.length) ? 'transport' : null;
    default:
      return null;
  }
}

const DATAGRAMS_MAX = 8;

/**
 * WireGuard when: a handshake initiation or response is seen; or an initiation's sender
 * index comes back as a response's receiver index; or one direction carries two data
 * messages to the same receiver index with increasing counters.
 */
export function detectWireguardDatagrams(client: Uint8Array[], server: Uint8Array[]): string | null {
  for (const list of [client, server]) {
    const n = Math.min(list.length, DATAGRAMS_MAX);
    for (let k = 0; k < n; k++) {
      const kind = wireguardKind(list[k]);
      if (kind === 'initiation') {
        const sender = le32(list[k], 4);
        const other = list === client ? server : client;
        for (let j = 0; j < Math.min(other.length, DATAGRAMS_MAX); j++) {
          if (wireguardKind(other[j]) === 'response' && le32(other[j], 8) === sender) return 'handshake initiation (148 bytes) and matching response (92 bytes)';
        }
        return 'handshake initiation (148 bytes)';
      }
      if (kind === 'response') return 'handshake response (92 bytes)';
    }
  }
  for (const list of [client, server]) {
    const n = Math.min(list.length, DATAGRAMS_MAX);
    let receiver = -1;
    let counter = -1;
    for (let k = 0; k < n; k++) {
      const d = list[k];
      if (wireguardKind(d) !== 'transport') continue;
      const r = le32(d, 4);
      const c = le32(d, 8);
      if (r === receiver && c > counter) return 'transport data messages (same receiver index, increasing counters)';
      receiver = r;
      counter = c;
    }
  }
  return null;
}
