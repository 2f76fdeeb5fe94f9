// The aggregator's vocabulary: INTERFACE.md's value names ↔ the proto enums, and the
// conversions every module shares. Times inside the aggregator are milliseconds (float,
// microsecond precision); on the wire they are *_unix_ns int64s, numbers once decoded
// (longs: Number, see scripts/gen-proto.mjs).

import type { Verdict as VerdictEnum } from '../../proto/gen/types/plainsight/v1/Verdict.js';
import type { Mesh as MeshEnum } from '../../proto/gen/types/plainsight/v1/Mesh.js';
import type { Transport as TransportEnum } from '../../proto/gen/types/plainsight/v1/Transport.js';
import { enumValues, type LongLike } from './ingest/decode.js';

export type Verdict = 'plaintext' | 'tls' | 'mtls' | 'encrypted-other' | 'unknown';
export type Mesh = 'istio' | 'istio-ambient' | 'linkerd' | 'consul' | 'none';
export type Transport = 'tcp' | 'udp' | 'esp' | 'ah' | 'other';

export const VERDICTS: readonly Verdict[] = ['plaintext', 'tls', 'mtls', 'encrypted-other', 'unknown'];
export const MESHES: readonly Mesh[] = ['istio', 'istio-ambient', 'linkerd', 'consul', 'none'];

/** 'encrypted-other' ↔ 'VERDICT_ENCRYPTED_OTHER'. */
const toEnum = (prefix: string, v: string): string => `${prefix}_${v.toUpperCase().replace(/-/g, '_')}`;

export function verdictToProto(v: Verdict): VerdictEnum & string {
  return toEnum('VERDICT', v) as VerdictEnum & string;
}

// Decoding runs per summary on the ingest path: table lookups, no string building. Each
// table answers both the enum's name (proto-loader's objects) and its number (the ingest
// decoder's messages, see ingest/decode.ts).
function table<T extends string>(enumName: string, prefix: string, values: readonly T[]): Map<unknown, T> {
  const numbers = enumValues(enumName);
  const m = new Map<unknown, T>();
  for (const v of values) {
    const name = toEnum(prefix, v);
    m.set(name, v);
    if (numbers[name] !== undefined) m.set(numbers[name], v);
  }
  return m;
}
const VERDICT_OF = table('Verdict', 'VERDICT', VERDICTS);
const MESH_OF = table('Mesh', 'MESH', MESHES);
const TRANSPORT_OF = table('Transport', 'TRANSPORT', ['tcp', 'udp', 'esp', 'ah', 'other'] as const);

/** undefined for VERDICT_UNSPECIFIED or a value this build does not know. */
export function verdictFromProto(e: string | number | undefined): Verdict | undefined {
  return VERDICT_OF.get(e);
}

export function meshToProto(m: Mesh): MeshEnum & string {
  return toEnum('MESH', m) as MeshEnum & string;
}

export function meshFromProto(e: string | number | undefined): Mesh {
  return MESH_OF.get(e) ?? 'none';
}

export function transportToProto(t: Transport): TransportEnum & string {
  return toEnum('TRANSPORT', t) as TransportEnum & string;
}

export function transportFromProto(e: string | number | undefined): Transport {
  return TRANSPORT_OF.get(e) ?? 'other';
}

const CLIENT_CERTIFICATE_NAMES = new Map<number, string>(Object.entries(enumValues('ClientCertificate')).map(([name, n]) => [n, name]));

/** TlsDetails.client_certificate as its name whichever way it was decoded (number or name). */
export function clientCertificateName(v: string | number): string {
  return typeof v === 'number' ? (CLIENT_CERTIFICATE_NAMES.get(v) ?? 'CLIENT_CERTIFICATE_UNSPECIFIED') : v;
}

export function isEncrypted(v: Verdict): boolean {
  return v === 'tls' || v === 'mtls' || v === 'encrypted-other';
}

/**
 * When two ends disagree, the flow takes the less encrypted claim: calling plaintext
 * encrypted is the dangerous error. Lower rank wins.
 */
const CAUTION: Record<Verdict, number> = { plaintext: 0, unknown: 1, tls: 2, 'encrypted-other': 3, mtls: 4 };

export function mostCautious(a: Verdict, b: Verdict): Verdict {
  return CAUTION[a] <= CAUTION[b] ? a : b;
}

/** ns (number, Long, or a decimal string) → ms; 0 / '' → 0. */
export function nsToMs(ns: string | number | LongLike | undefined | null): number {
  if (ns === undefined || ns === null || ns === '' || ns === '0' || ns === 0) return 0;
  if (typeof ns === 'number') return ns / 1e6;
  // A Long: the same double proto-loader's longs: Number would have made.
  if (typeof ns === 'object') return ns.toNumber() / 1e6;
  const n = BigInt(ns);
  return Number(n / 1000n) / 1000;
}

/** ms → ns as a number (a double: exact to 256 ns at today's dates). */
export function msToNs(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.round(ms * 1000) * 1000;
}

/** uint64 counters (numbers or Longs once decoded; strings accepted too); below 2^53 in practice. */
export function num(v: string | number | LongLike | undefined | null): number {
  if (v === undefined || v === null || v === '') return 0;
  const n = typeof v === 'number' ? v : typeof v === 'object' ? v.toNumber() : Number(v);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

export interface Dir {
  toServer: number;
  toClient: number;
}
