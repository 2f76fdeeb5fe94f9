// The query side of the store: filters, pages, coverage. Pure functions over FlowStore,
// shared by the gRPC handlers and the benchmark.

import type { Flow } from '../../../proto/gen/types/plainsight/v1/Flow.js';
import type { FlowFilter__Output } from '../../../proto/gen/types/plainsight/v1/FlowFilter.js';
import type { CoverageRow } from '../../../proto/gen/types/plainsight/v1/CoverageRow.js';
import { isEncrypted, meshFromProto, meshToProto, msToNs, transportToProto, verdictFromProto, verdictToProto, type Mesh, type Verdict } from '../model.js';
import type { FlowStore, StoredFlow } from '../store/index.js';

export interface Filter {
  namespaces?: Set<string>;
  workloads?: Set<string>;
  verdicts?: Set<Verdict>;
  protocols?: Set<string>;
  meshes?: Set<Mesh>;
  sinceMs?: number;
  untilMs?: number;
}

export function filterFromProto(f: FlowFilter__Output | null | undefined, sinceMs = 0, untilMs = 0): Filter {
  const set = <T>(xs: T[] | undefined): Set<T> | undefined => (xs && xs.length > 0 ? new Set(xs) : undefined);
  const out: Filter = {};
  if (f) {
    const ns = set(f.namespace);
    const wl = set(f.workload);
    const vs = set(f.verdict.map((v) => verdictFromProto(v)).filter((v): v is Verdict => v !== undefined));
    const ps = set(f.protocol);
    const ms = set(f.mesh.map((m) => meshFromProto(m)));
    if (ns) out.namespaces = ns;
    if (wl) out.workloads = wl;
    if (vs) out.verdicts = vs;
    else if (f.verdict.length > 0) out.verdicts = new Set(); // only unknown enum values: matches nothing
    if (ps) out.protocols = ps;
    if (ms) out.meshes = ms;
  }
  if (sinceMs > 0) out.sinceMs = sinceMs;
  if (untilMs > 0) out.untilMs = untilMs;
  return out;
}

export function matches(f: StoredFlow, q: Filter): boolean {
  if (q.verdicts && !q.verdicts.has(f.verdict)) return false;
  if (q.sinceMs !== undefined && f.lastSeenMs < q.sinceMs) return false;
  if (q.untilMs !== undefined && f.firstSeenMs > q.untilMs) return false;
  if (q.namespaces && !q.namespaces.has(f.clientId.namespace) && !q.namespaces.has(f.serverId.namespace)) return false;
  if (q.workloads && !q.workloads.has(f.clientId.workload) && !q.workloads.has(f.serverId.workload)) return false;
  if (q.protocols && !q.protocols.has(f.protocol)) return false;
  if (q.meshes && !q.meshes.has(f.mesh)) return false;
  return true;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 10_000;

export class BadPageToken extends Error {
  override name = 'BadPageToken';
}

/** page_token: the last returned flow's sequence, base-36, prefixed (opaque to clients). */
export function listFlows(store: FlowStore, q: Filter, pageSize: number, pageToken: string): { flows: StoredFlow[]; next: string } {
  const size = Math.min(MAX_PAGE_SIZE, pageSize > 0 ? pageSize : DEFAULT_PAGE_SIZE);
  let after = 0;
  if (pageToken) {
    const m = /^p([0-9a-z]+)$/.exec(pageToken);
    if (!m) throw new BadPageToken(`page_token "${pageToken.slice(0, 40)}" is not one this aggregator issued`);
    after = parseInt(m[1]!, 36);
  }
  const flows: StoredFlow[] = [];
  let more = false;
  // One verdict or one namespace asked for (the usual "show me plaintext", "…in my
  // namespace"): walk that index only, the smaller one when both are.
  const verdict = q.verdicts?.size === 1 ? [...q.verdicts][0]! : undefined;
  const ns = q.namespaces?.size === 1 ? [...q.namespaces][0]! : undefined;
  let candidates: Iterable<StoredFlow> = store.iterate();
  if (verdict !== undefined && (ns === undefined || store.verdictCandidates(verdict) <= store.namespaceCandidates(ns))) candidates = store.withVerdict(verdict, after);
  else if (ns !== undefined) candidates = store.inNamespace(ns, after);
  for (const f of candidates) {
    if (f.seq <= after || !matches(f, q)) continue;
    if (flows.length === size) {
      more = true;
      break;
    }
    flows.push(f);
  }
  return { flows, next: more ? `p${flows[flows.length - 1]!.seq.toString(36)}` : '' };
}

export type Grouping = 'namespace' | 'workload' | 'edge';

export interface CoverageAcc {
  namespace: string;
  workload: string;
  dstNamespace: string;
  dstWorkload: string;
  encryptedBytes: number;
  plaintextBytes: number;
  unknownBytes: number;
  encryptedConnections: number;
  plaintextConnections: number;
  unknownConnections: number;
}

export function coverage(store: FlowStore, q: Filter, by: Grouping): { rows: CoverageAcc[]; total: CoverageAcc } {
  const rows = new Map<string, CoverageAcc>();
  const total = acc('', '', '', '');
  const add = (a: CoverageAcc, f: StoredFlow, bytes: number): void => {
    if (isEncrypted(f.verdict)) {
      a.encryptedBytes += bytes;
      a.encryptedConnections++;
    } else if (f.verdict === 'plaintext') {
      a.plaintextBytes += bytes;
      a.plaintextConnections++;
    } else {
      a.unknownBytes += bytes;
      a.unknownConnections++;
    }
  };
  const row = (k: string, ns: string, wl: string, dns: string, dwl: string): CoverageAcc => {
    let r = rows.get(k);
    if (!r) rows.set(k, (r = acc(ns, wl, dns, dwl)));
    return r;
  };
  for (const f of store.iterate()) {
    // Coverage is about the wire: a pod's loopback (app ↔ sidecar) is not.
    if (f.intraPod || !matches(f, q)) continue;
    const bytes = f.bytes.toServer + f.bytes.toClient;
    add(total, f, bytes);
    const c = f.clientId;
    const s = f.serverId;
    if (by === 'edge') {
      add(row(`${c.namespace}/${c.workload}>${s.namespace}/${s.workload}`, c.namespace, c.workload, s.namespace, s.workload), f, bytes);
    } else if (by === 'workload') {
      const kc = `${c.namespace}/${c.workload}`;
      const ks = `${s.namespace}/${s.workload}`;
      add(row(kc, c.namespace, c.workload, '', ''), f, bytes);
      if (ks !== kc) add(row(ks, s.namespace, s.workload, '', ''), f, bytes);
    } else {
      add(row(c.namespace, c.namespace, '', '', ''), f, bytes);
      if (s.namespace !== c.namespace) add(row(s.namespace, s.namespace, '', '', ''), f, bytes);
    }
  }
  const sorted = [...rows.values()].sort((a, b) =>
    `${a.namespace}/${a.workload}>${a.dstNamespace}/${a.dstWorkload}`.localeCompare(`${b.namespace}/${b.workload}>${b.dstNamespace}/${b.dstWorkload}`),
  );
  return { rows: sorted, total };
}

function acc(namespace: string, workload: string, dstNamespace: string, dstWorkload: string): CoverageAcc {
  return { namespace, workload, dstNamespace, dstWorkload, encryptedBytes: 0, plaintextBytes: 0, unknownBytes: 0, encryptedConnections: 0, plaintextConnections: 0, unknownConnections: 0 };
}

export function coverageRowToProto(a: CoverageAcc): CoverageRow {
  const bytes = a.encryptedBytes + a.plaintextBytes + a.unknownBytes;
  const conns = a.encryptedConnections + a.plaintextConnections + a.unknownConnections;
  return {
    namespace: a.namespace,
    workload: a.workload,
    dstNamespace: a.dstNamespace,
    dstWorkload: a.dstWorkload,
    encryptedBytes: a.encryptedBytes,
    plaintextBytes: a.plaintextBytes,
    unknownBytes: a.unknownBytes,
    encryptedConnections: a.encryptedConnections,
    plaintextConnections: a.plaintextConnections,
    unknownConnections: a.unknownConnections,
    ratio: bytes === 0 ? 0 : a.encryptedBytes / bytes,
    connectionRatio: conns === 0 ? 0 : a.encryptedConnections / conns,
  };
}

export function flowToProto(f: StoredFlow): Flow {
  return {
    id: `f${f.seq}`,
    transport: transportToProto(f.transport),
    client: { ip: f.client.ip, port: f.client.port, namespace: f.clientId.namespace, workload: f.clientId.workload, pod: f.clientId.pod, nodeName: f.clientId.node },
    server: { ip: f.server.ip, port: f.server.port, namespace: f.serverId.namespace, workload: f.serverId.workload, pod: f.serverId.pod, nodeName: f.serverId.node },
    verdict: verdictToProto(f.verdict),
    protocol: f.protocol,
    upgradedFrom: f.upgradedFrom,
    tls: f.tls,
    mesh: meshToProto(f.mesh),
    packets: { toServer: f.packets.toServer, toClient: f.packets.toClient },
    bytes: { toServer: f.bytes.toServer, toClient: f.bytes.toClient },
    firstSeenUnixNs: msToNs(f.firstSeenMs),
    lastSeenUnixNs: msToNs(f.lastSeenMs),
    evidence: f.evidence,
    observedBy: f.observations.map((o) => o.node),
    verdictDisagreement: f.disagreement,
    observedVerdicts: f.observations.map((o) => verdictToProto(o.verdict ?? 'unknown')),
    ended: f.ended,
    intraPod: f.intraPod,
  };
}
