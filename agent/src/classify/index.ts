// The one classifier: first bytes of each direction in, verdict + evidence out.
// Used by the live agent and by `plainsight classify` alike.
//
// Order matters because the dangerous error is calling plaintext encrypted:
//   TLS (strict record structure) → in-band upgrades to TLS → named plaintext protocols
//   → other encryption (structural evidence only) → generic text → unknown.
// A port is never evidence of encryption.

import { detectEncryptedTcp, detectEncryptedUdp } from './encrypted-other.js';
import { detectMesh } from './mesh.js';
import { detectPlaintextTcp, detectPlaintextUdp, looksLikeText } from './plaintext.js';
import { analyzeTls, looksLikeTls, type TlsAnalysis } from './tls/analyze.js';
import { isNullEncryptionSuiteName } from './tls/suites.js';
import type { Classification, FlowBytes, TlsDetails } from './types.js';
import { findUpgrade } from './upgrade.js';

export type { Classification, FlowBytes } from './types.js';
export { flowBytes } from './types.js';

/** How often the last-resort guard in classify() fired; exported as a metric, asserted 0 by the fuzz tests. */
export const classifierFaults = { count: 0 };

/** Never throws: a bug in a parser must not take the agent down or lose the flow. */
export function classify(flow: FlowBytes): Classification {
  try {
    return classifyStrict(flow);
  } catch {
    classifierFaults.count++;
    return unknown('unknown', 'classifier could not parse these bytes (internal fault, counted)');
  }
}

/** classify() without the guard, for tests and fuzzing: any exception here is a bug. */
export function classifyStrict(flow: FlowBytes): Classification {
  switch (flow.transport) {
    case 'tcp':
      return classifyTcp(flow);
    case 'udp':
      return classifyUdp(flow);
    case 'esp':
      return {
        verdict: 'encrypted-other',
        protocol: 'ipsec',
        mesh: 'none',
        evidence: 'IPsec ESP (IP protocol 50)',
      };
    case 'ah':
      // AH authenticates but leaves the payload readable: integrity is not confidentiality.
      return {
        verdict: 'plaintext',
        protocol: 'ipsec-ah',
        mesh: 'none',
        evidence: 'IPsec AH (IP protocol 51) authenticates but does not encrypt',
      };
    default:
      return unknown('unknown', 'IP protocol not classified');
  }
}

function classifyTcp(flow: FlowBytes): Classification {
  const { client, server, clientPort, serverPort } = flow;
  if (client.length === 0 && server.length === 0) return unknown('unknown', 'no payload seen');

  if (looksLikeTls(client)) {
    const tls = analyzeTls(client, server, {
      clientTruncated: flow.clientTruncated,
      serverTruncated: flow.serverTruncated,
    });
    if (tls) return fromTls(tls, flow, server);
  }

  const upgrade = findUpgrade(client, server, clientPort, serverPort);
  if (upgrade && !('refused' in upgrade)) {
    const tls = analyzeTls(client.subarray(upgrade.clientOffset), server.subarray(upgrade.serverOffset), {
      clientTruncated: flow.clientTruncated,
      serverTruncated: flow.serverTruncated,
    });
    if (tls) {
      const c = fromTls(tls, flow, server.subarray(upgrade.serverOffset));
      if (c.verdict === 'tls' || c.verdict === 'mtls') {
        return { ...c, upgradedFrom: upgrade.from, evidence: `${upgrade.evidence}; ${c.evidence}` };
      }
    }
  }

  const plain = detectPlaintextTcp(client, server, clientPort, serverPort);
  if (plain) {
    const refused = upgrade && 'refused' in upgrade ? `; ${upgrade.evidence}` : '';
    return { verdict: 'plaintext', protocol: plain.protocol, mesh: 'none', evidence: plain.evidence + refused };
  }
  if (upgrade && 'refused' in upgrade) {
    return { verdict: 'plaintext', protocol: upgrade.from, mesh: 'none', evidence: upgrade.evidence };
  }

  const enc = detectEncryptedTcp(client, server, clientPort, serverPort);
  if (enc) return { verdict: 'encrypted-other', protocol: enc.protocol, mesh: 'none', evidence: enc.evidence };

  if (client.length === 0 && isServerHelloRecord(server)) {
    // Seen from one side only (asymmetric capture): the server's half of a TLS handshake.
    return {
      verdict: 'tls',
      protocol: 'tls',
      mesh: 'none',
      tls: { clientCertificate: 'unknown' },
      evidence: 'ServerHello seen; the client direction was not captured',
    };
  }

  if (looksLikeText(client) || looksLikeText(server)) {
    return {
      verdict: 'plaintext',
      protocol: 'text',
      mesh: 'none',
      evidence: `readable text ${looksLikeText(client) ? 'from the client' : 'from the server'}`,
    };
  }
  return unknown('unknown', 'payload not recognised');
}

function classifyUdp(flow: FlowBytes): Classification {
  const { clientDatagrams, serverDatagrams, clientPort, serverPort } = flow;
  if (clientDatagrams.length === 0 && serverDatagrams.length === 0) return unknown('unknown', 'no payload seen');

  const plain = detectPlaintextUdp(clientDatagrams, serverDatagrams, clientPort, serverPort);
  if (plain) return { verdict: 'plaintext', protocol: plain.protocol, mesh: 'none', evidence: plain.evidence };

  const enc = detectEncryptedUdp(clientDatagrams, serverDatagrams, clientPort, serverPort);
  if (enc) {
    const out: Classification = { verdict: 'encrypted-other', protocol: enc.protocol, mesh: 'none', evidence: enc.evidence };
    if (enc.sni !== undefined || enc.alpn !== undefined) {
      // QUIC always carries TLS 1.3; DTLS's version is not known from the ClientHello alone.
      out.tls = enc.protocol === 'quic' ? { version: '1.3', clientCertificate: 'unknown' } : { clientCertificate: 'unknown' };
      if (enc.sni !== undefined) out.tls.sni = enc.sni;
      if (enc.alpn !== undefined) out.tls.alpn = enc.alpn;
    }
    return out;
  }

  const first = clientDatagrams[0] ?? serverDatagrams[0];
  if (first && looksLikeText(first)) {
    return { verdict: 'plaintext', protocol: 'text', mesh: 'none', evidence: 'readable text datagrams' };
  }
  return unknown('unknown', 'datagrams not recognised');
}

function fromTls(tls: TlsAnalysis, flow: FlowBytes, server: Uint8Array): Classification {
  if (tls.serverNotTls) {
    // A ClientHello answered in the clear (e.g. an HTTP error page from a plaintext port):
    // the bytes on the wire are readable, so this must never count as encrypted.
    const plain = detectPlaintextTcp(new Uint8Array(0), server, flow.clientPort, flow.serverPort);
    if (plain || looksLikeText(server)) {
      return {
        verdict: 'plaintext',
        protocol: plain?.protocol ?? 'text',
        mesh: 'none',
        evidence: 'client sent a TLS ClientHello but the server answered in plaintext',
      };
    }
    return unknown('tls', 'client sent a TLS ClientHello but the server answered with non-TLS bytes');
  }
  const details: TlsDetails = tls.details;
  if (details.cipher !== undefined && isNullEncryptionSuiteName(details.cipher)) {
    // A TLS handshake that negotiated an integrity-only suite: records travel readable.
    return {
      verdict: 'plaintext',
      protocol: 'tls',
      tls: details,
      mesh: 'none',
      evidence: `${tls.evidence}; ${details.cipher} does not encrypt`,
    };
  }
  const mesh = detectMesh(details, flow.serverPort);
  const clientAuth = details.clientCertificate === 'observed' || details.clientCertificate === 'inferred';
  const meshed = mesh.mesh !== 'none';
  // A mesh signature implies mTLS (meshes always present a workload certificate) unless
  // the handshake itself proves no client certificate was sent: ALPN, SNI and ports can
  // be copied, and counting a look-alike as mTLS would inflate coverage.
  const disproved = meshed && details.clientCertificate === 'none';
  let evidence = tls.evidence;
  if (meshed) evidence += `; mesh ${mesh.mesh}: ${mesh.evidence ?? 'signature'}`;
  if (disproved) evidence += '; but no client certificate: not counted as mTLS';
  return {
    verdict: clientAuth || (meshed && !disproved) ? 'mtls' : 'tls',
    protocol: 'tls',
    tls: details,
    mesh: mesh.mesh,
    evidence,
  };
}

const TLS_HANDSHAKE = 0x16;
const TLS_SERVER_HELLO = 2;

function isServerHelloRecord(b: Uint8Array): boolean {
  return b.length >= 6 && b[0] === TLS_HANDSHAKE && b[1] === 3 && b[2]! <= 4 && b[5] === TLS_SERVER_HELLO;
}

function unknown(protocol: string, evidence: string): Classification {
  return { verdict: 'unknown', protocol, mesh: 'none', evidence };
}
