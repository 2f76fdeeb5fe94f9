// PROXY protocol headers (HAProxy spec, v1 text and v2 binary). A load balancer prepends
// one to the client's stream; what follows is the real protocol (often TLS), so the
// detectors look behind it.

import { CR, LF, hasAscii } from '../text.js';

/** v1 header: "PROXY " ... CRLF, at most 107 bytes including CRLF (spec §2.1). */
const V1_PREFIX = 'PROXY ';
const V1_MAX_LENGTH = 107;
/** v2 signature: \r\n\r\n\0\r\nQUIT\n (spec §2.2). */
const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a] as const;
const V2_FIXED_LENGTH = 16;
/** Byte 12: version 2 in the high nibble; command LOCAL (0) or PROXY (1) in the low nibble. */
const V2_VERSION = 0x20;
const V2_CMD_LOCAL = 0x0;
const V2_CMD_PROXY = 0x1;

export interface ProxyHeader {
  version: 1 | 2;
  /** Offset just past the header: where the proxied stream begins. */
  end: number;
}

/** The PROXY header at the start of b, or null (absent, malformed, or cut by the prefix limit). */
export function parseProxyHeader(b: Uint8Array): ProxyHeader | null {
  if (hasAscii(b, 0, V1_PREFIX)) {
    if (!(hasAscii(b, 6, 'TCP4 ') || hasAscii(b, 6, 'TCP6 ') || hasAscii(b, 6, 'UNKNOWN'))) return null;
    const end = Math.min(b.length, V1_MAX_LENGTH);
    for (let i = 6; i + 1 < end; i++) {
      const x = b[i];
      if (x === CR) return b[i + 1] === LF ? { version: 1, end: i + 2 } : null;
      // addresses, ports and spaces only
      if (!((x >= 0x30 && x <= 0x3a) || x === 0x20 || x === 0x2e || (x >= 0x41 && x <= 0x5a) || (x >= 0x61 && x <= 0x66))) return null;
    }
    return null;
  }
  if (b.length < V2_FIXED_LENGTH) return null;
  for (let i = 0; i < V2_SIGNATURE.length; i++) if (b[i] !== V2_SIGNATURE[i]) return null;
  const verCmd = b[12];
  if ((verCmd & 0xf0) !== V2_VERSION) return null;
  const cmd = verCmd & 0x0f;
  if (cmd !== V2_CMD_LOCAL && cmd !== V2_CMD_PROXY) return null;
  const end = V2_FIXED_LENGTH + ((b[14] << 8) | b[15]);
  if (end > b.length) return null;
  return { version: 2, end };
}
