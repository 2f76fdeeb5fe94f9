// Encrypted, not TLS: SSH and OpenVPN over TCP; QUIC, DTLS, WireGuard, IPsec (IKE and
// NAT-T ESP) and OpenVPN over UDP.
//
// Calling plaintext encrypted is the dangerous error, so every detector here needs
// structural evidence — exact magic values, lengths that agree with each other, zero
// bytes where a layout has zeros, random-looking bytes where it has keys — and a port
// never suffices. Each protocol lives in other/*.ts.

import type { Match } from './plaintext.js';
import { parseProxyHeader } from './plaintext/proxy.js';
import { parseDtlsHello } from './other/dtls.js';
import { detectIpsecDatagrams } from './other/ipsec.js';
import { detectOpenvpnDatagrams, detectOpenvpnStream } from './other/openvpn.js';
import { parseQuicInitial } from './other/quic.js';
import { decryptClientHello } from './other/quic-initial.js';
import { detectSsh } from './other/ssh.js';
import { parseClientHello } from './tls/hello.js';
import { detectWireguardDatagrams } from './other/wireguard.js';

export type EncryptedUdpMatch = Match & { quicVersion?: string; sni?: string; alpn?: string[] };

/** SSH (identification + KEXINIT) and OpenVPN's TCP framing. */
export function detectEncryptedTcp(client: Uint8Array, server: Uint8Array, _clientPort: number, _serverPort: number): Match | null {
  const proxy = parseProxyHeader(client);
  const c = proxy ? client.subarray(proxy.end) : client;
  const ssh = detectSsh(c, server);
  if (ssh) return ssh;
  const ovpn = detectOpenvpnStream(c, server);
  if (ovpn) return { protocol: 'openvpn', evidence: ovpn };
  return null;
}

/** How many datagrams per direction the hello-type detectors look at (WebRTC sends STUN first). */
const HELLO_DATAGRAMS_MAX = 8;

export function detectEncryptedUdp(client: Uint8Array[], server: Uint8Array[], clientPort: number, serverPort: number): EncryptedUdpMatch | null {
  return detectQuic(client, server) ?? detectDtls(client, server) ?? detectOther(client, server, clientPort, serverPort);
}

function detectQuic(client: Uint8Array[], server: Uint8Array[]): EncryptedUdpMatch | null {
  for (const [list, fromClient] of [[client, true], [server, false]] as const) {
    const n = Math.min(list.length, HELLO_DATAGRAMS_MAX);
    for (let k = 0; k < n; k++) {
      const d = list[k];
      const ini = parseQuicInitial(d, fromClient);
      if (!ini) continue;
      const padded = fromClient && d.length >= 1200 ? `, datagram padded to ${d.length} bytes` : '';
      const name = ini.versionName === '1' || ini.versionName === '2' ? `v${ini.versionName}` : ini.versionName;
      const out: EncryptedUdpMatch = {
        protocol: 'quic',
        quicVersion: ini.versionName,
        evidence: `QUIC ${name} ${fromClient ? 'client' : 'server'} Initial (long header${padded})`,
      };
      // the first client Initial is readable by design: its ClientHello gives SNI and ALPN
      const hello = fromClient ? decryptClientHello(d, ini) : null;
      if (hello) {
        if (hello.sni !== undefined) out.sni = hello.sni;
        if (hello.alpn !== undefined) out.alpn = hello.alpn;
        out.evidence += hello.authenticated ? '; ClientHello decrypted with the Initial keys' : '; ClientHello read from a cut datagram (not authenticated)';
      }
      return out;
    }
  }
  return null;
}

function detectDtls(client: Uint8Array[], server: Uint8Array[]): EncryptedUdpMatch | null {
  for (const [list, fromClient] of [[client, true], [server, false]] as const) {
    const n = Math.min(list.length, HELLO_DATAGRAMS_MAX);
    for (let k = 0; k < n; k++) {
      const d = list[k];
      const h = parseDtlsHello(d, 0, fromClient);
      if (!h) continue;
      const out: EncryptedUdpMatch = { protocol: 'dtls', evidence: `DTLS ${h.version} ${h.kind} (epoch 0 handshake record)` };
      if (h.kind === 'ClientHello') {
        // SNI and ALPN are handshake metadata; the body may be cut by the capture
        const body = d.subarray(h.bodyStart, Math.min(d.length, h.bodyStart + h.bodyLength));
        const hello = parseClientHello(body, { dtls: true, partial: !h.complete });
        if (hello?.sni !== undefined) out.sni = hello.sni;
        if (hello && hello.alpn.length > 0) out.alpn = hello.alpn;
      }
      return out;
    }
  }
  return null;
}

function detectOther(client: Uint8Array[], server: Uint8Array[], clientPort: number, serverPort: number): EncryptedUdpMatch | null {
  const wg = detectWireguardDatagrams(client, server);
  if (wg) return { protocol: 'wireguard', evidence: wg };
  const ipsec = detectIpsecDatagrams(client, server, clientPort, serverPort);
  if (ipsec) return { protocol: 'ipsec', evidence: ipsec };
  const ovpn = detectOpenvpnDatagrams(client, server);
  if (ovpn) return { protocol: 'openvpn', evidence: ovpn };
  return null;
}
