// The classifier's contract: the first payload bytes of each direction of one flow in,
// a verdict with evidence out. Shared by the live agent and `plainsight classify`.
// Value sets are fixed by ../shared/INTERFACE.md: extend, never rename.

export type Transport = 'tcp' | 'udp' | 'esp' | 'ah' | 'other';

export type Verdict = 'plaintext' | 'tls' | 'mtls' | 'encrypted-other' | 'unknown';

export type Mesh = 'istio' | 'istio-ambient' | 'linkerd' | 'consul' | 'none';

/**
 * observed: a client Certificate message was seen (TLS <= 1.2, or DTLS).
 * inferred: TLS 1.3, deduced from the sizes of the client's second flight.
 * none: the handshake shows no client certificate.
 * unknown: the handshake does not tell (truncated, resumed, not enough bytes).
 */
export type ClientCertificate = 'observed' | 'inferred' | 'none' | 'unknown';

export interface TlsDetails {
  /** "1.3", "1.2", "1.1", "1.0", "ssl3", "ssl2"; the negotiated version when a ServerHello was seen. */
  version?: string;
  sni?: string;
  alpn?: string[];
  /** IANA name of the negotiated suite, or "0xC02F" when the name is not known. */
  cipher?: string;
  ja4?: string;
  clientCertificate: ClientCertificate;
  /** ALPN protocol the server selected. */
  alpnSelected?: string;
  resumed?: boolean;
  helloRetryRequest?: boolean;
}

export interface Classification {
  verdict: Verdict;
  /** http/1.1, h2c, grpc, postgresql, …, tls, quic, dtls, ssh, wireguard, ipsec, openvpn, … */
  protocol: string;
  /** Only when a plaintext start upgraded to TLS: smtp, imap, pop3, ftp, postgresql, mysql, http-connect, proxy-protocol. */
  upgradedFrom?: string;
  tls?: TlsDetails;
  mesh: Mesh;
  /** Short human-readable reason for the verdict. Never contains payload beyond handshake metadata. */
  evidence: string;
}

/**
 * What the capture layer hands the classifier for one flow.
 *
 * TCP: `client`/`server` are the first bytes of each direction in sequence order,
 * contiguous from the first payload byte (a gap ends the prefix). UDP: `clientDatagrams`/
 * `serverDatagrams` are the first datagrams of each direction, in arrival order.
 * `client` is the side that sent the SYN (or spoke first).
 */
export interface FlowBytes {
  transport: Transport;
  clientPort: number;
  serverPort: number;
  client: Uint8Array;
  server: Uint8Array;
  clientDatagrams: Uint8Array[];
  serverDatagrams: Uint8Array[];
  /** True when the capture layer stopped collecting before the direction ended (prefix limit). */
  clientTruncated?: boolean;
  serverTruncated?: boolean;
}

export const EMPTY = new Uint8Array(0);

/** Convenience for callers and tests: fill the fields a transport does not use. */
export function flowBytes(p: Partial<FlowBytes> & Pick<FlowBytes, 'transport'>): FlowBytes {
  return {
    clientPort: 0,
    serverPort: 0,
    client: EMPTY,
    server: EMPTY,
    clientDatagrams: [],
    serverDatagrams: [],
    ...p,
  };
}
