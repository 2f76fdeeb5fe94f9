// Plaintext protocol detectors: the first payload bytes of a flow in, the named protocol
// and a short, payload-free reason out. Pure functions, never throw, bounded work.
//
// Each protocol family lives in plaintext/*.ts; this file fixes the order in which they
// are tried. Order matters only where two grammars could both accept the same bytes
// (a PostgreSQL StartupMessage also parses as a Kafka header; a Redis "+OK" reply looks
// like a POP3 greeting), so the more specific detector comes first.

import { detectAmqp, detectKafka, detectLdap, detectMongo, detectMqtt } from './plaintext/binary.js';
import { detectDnsTcp, detectUdp } from './plaintext/dns.js';
import { detectHttp } from './plaintext/http.js';
import { detectMemcached, detectRedis } from './plaintext/kv.js';
import { detectMail } from './plaintext/mail.js';
import { parseProxyHeader } from './plaintext/proxy.js';
import { detectMysql, detectPostgres } from './plaintext/sql.js';
import { tlsRecordAt } from './text.js';

export { looksLikeText } from './text.js';

export interface Match {
  protocol: string;
  evidence: string;
}

/**
 * TCP: `client`/`server` are contiguous stream prefixes (client = SYN sender, or the first
 * speaker when the SYN was not seen). Returns the named protocol when the bytes prove it;
 * ports only break ties between protocols whose bytes are already consistent.
 */
export function detectPlaintextTcp(client: Uint8Array, server: Uint8Array, clientPort: number, serverPort: number): Match | null {
  // a load balancer's PROXY header: look at the proxied stream behind it
  const proxy = parseProxyHeader(client);
  const c = proxy ? client.subarray(proxy.end) : client;
  // TLS from the first byte is never plaintext (the TLS analysis owns it)
  if (tlsRecordAt(c, 0) || (c.length === 0 && tlsRecordAt(server, 0))) return null;
  const m = detectTcp(c, server, clientPort, serverPort);
  if (m && proxy) return { protocol: m.protocol, evidence: `${m.evidence} (behind a PROXY protocol v${proxy.version} header)` };
  return m;
}

function detectTcp(c: Uint8Array, s: Uint8Array, clientPort: number, serverPort: number): Match | null {
  return (
    detectHttp(c, s, 0) ??
    detectPostgres(c, s, 0) ??
    detectMysql(c, s) ??
    detectRedis(c, s, 0, serverPort) ??
    detectMemcached(c, 0) ??
    detectMqtt(c, 0) ??
    detectAmqp(c, 0) ??
    detectLdap(c, s, 0) ??
    detectMongo(c, 0) ??
    detectDnsTcp(c, s, 0) ??
    detectKafka(c, 0) ??
    detectMail(c, s, clientPort, serverPort)
  );
}

/**
 * UDP: the first datagrams of each direction. DNS (and mDNS/LLMNR), SNMP v1/v2c, NTP (on
 * port 123 only), SIP, SSDP and memcached over UDP.
 */
export function detectPlaintextUdp(client: Uint8Array[], server: Uint8Array[], clientPort: number, serverPort: number): Match | null {
  return detectUdp(client, server, clientPort, serverPort);
}
