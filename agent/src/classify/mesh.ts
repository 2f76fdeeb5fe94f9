// Which service mesh originated a TLS connection, from the handshake's ALPN / SNI
// conventions and the mesh's well-known ports. Only called when TLS was seen: a port on
// its own is never evidence of encryption.

import type { Mesh, TlsDetails } from './types.js';

/** ALPN values Istio sidecars (Envoy) add to upstream mTLS connections. */
const ISTIO_ALPN = new Set(['istio-peer-exchange', 'istio', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2']);
/** Istio's upstream SNI: outbound_.<port>_.<subset>_.<service FQDN>. */
const ISTIO_SNI = /^outbound_\.\d+_\.[^.]*_\..+/;
/** Istio ambient HBONE: HTTP/2 CONNECT over mTLS to ztunnel/waypoints on this port. */
const HBONE_PORT = 15008;
const HBONE_ALPN = 'h2';

const LINKERD_ALPN = 'transport.l5d.io/v1';
/** Linkerd proxy identity as SNI: <sa>.<ns>.serviceaccount.identity.linkerd.<trust domain>. */
const LINKERD_SNI = /^[^.]+\.[^.]+\.serviceaccount\.identity\.linkerd\.[^.]+(\.[^.]+)*$/;
/** Linkerd proxy inbound port. */
const LINKERD_INBOUND_PORT = 4143;

/**
 * Consul service mesh upstream SNI (agent/connect/sni.go):
 *   [subset.]service.namespace.datacenter.internal.<trust domain>          (default partition)
 *   [subset.]service.namespace.partition.datacenter.internal-v1.<trust domain>
 *   service.default.datacenter.query.<trust domain>                         (prepared query)
 * where the trust domain is "<cluster id>.consul".
 */
const CONSUL_SNI = [
  /^([^.]+\.){3,4}internal\.[^.]+\.consul$/,
  /^([^.]+\.){4,5}internal-v1\.[^.]+\.consul$/,
  /^[^.]+\.default\.[^.]+\.query\.[^.]+\.consul$/,
];

export function detectMesh(tls: TlsDetails | undefined, serverPort: number): { mesh: Mesh; evidence?: string } {
  if (tls === undefined) return { mesh: 'none' };
  const alpn = tls.alpn ?? [];
  const sni = tls.sni?.toLowerCase();

  if (serverPort === HBONE_PORT && (alpn.includes(HBONE_ALPN) || tls.alpnSelected === HBONE_ALPN)) {
    return { mesh: 'istio-ambient', evidence: `TLS with ALPN ${HBONE_ALPN} on HBONE port ${HBONE_PORT}` };
  }
  const istioAlpn = alpn.find((a) => ISTIO_ALPN.has(a));
  if (istioAlpn !== undefined) return { mesh: 'istio', evidence: `ALPN ${istioAlpn}` };
  if (sni !== undefined && ISTIO_SNI.test(sni)) return { mesh: 'istio', evidence: `SNI ${tls.sni}` };

  if (alpn.includes(LINKERD_ALPN)) return { mesh: 'linkerd', evidence: `ALPN ${LINKERD_ALPN}` };
  if (sni !== undefined && LINKERD_SNI.test(sni)) return { mesh: 'linkerd', evidence: `SNI ${tls.sni}` };

  if (sni !== undefined && CONSUL_SNI.some((re) => re.test(sni))) return { mesh: 'consul', evidence: `SNI ${tls.sni}` };

  if (serverPort === HBONE_PORT) return { mesh: 'istio-ambient', evidence: `TLS on HBONE port ${HBONE_PORT}` };
  if (serverPort === LINKERD_INBOUND_PORT) return { mesh: 'linkerd', evidence: `TLS on Linkerd inbound port ${LINKERD_INBOUND_PORT}` };
  return { mesh: 'none' };
}
