// The cluster flow store: one entry per connection, both ends joined, bounded.
//
// Flows are kept in creation order (a Map keeps insertion order and entries are never
// re-inserted), which gives ListFlows a stable order for paging and makes "oldest first"
// eviction a walk from the front. Retention (last seen older than the window) is swept
// periodically; past maxFlows the oldest are evicted at once. Both are counted.
//
// Intra-pod flows (seen on a pod's loopback: app ↔ sidecar) have the reporting pod on both
// ends and join only within that pod (agent + pod name in the 5-tuple key): every pod's
// loopback has the same 127.0.0.1 addresses. They are never active flows (on the wire).

import type { TlsDetails__Output } from '../../../proto/gen/types/plainsight/v1/TlsDetails.js';
import { UNKNOWN_POD_NAMESPACE, type Identity, type IdentityResolver } from '../identity/index.js';
import { clientCertificateName, mostCautious, type Dir, type Mesh, type Transport, type Verdict } from '../model.js';

/** A flow summary after decoding (ingest has validated it). */
export interface SummaryIn {
  flowId: string;
  transport: Transport;
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  verdict: Verdict | undefined;
  protocol: string;
  upgradedFrom: string;
  tls: TlsDetails__Output | null;
  mesh: Mesh;
  evidence: string;
  packets: Dir;
  bytes: Dir;
  firstSeenMs: number;
  lastSeenMs: number;
  final: boolean;
  /** Seen on a pod's loopback (app ↔ sidecar); `pod` names that pod in the agent's inventory. */
  intraPod: boolean;
  pod: string;
}

/** One agent's view of a flow: its own running totals (flat numbers: one object per observation). */
export interface Observation {
  agentId: string;
  node: string;
  /** The observing pod ('' if none): one agent may see both ends of a connection. */
  pod: string;
  flowId: string;
  verdict: Verdict | undefined;
  packetsToServer: number;
  packetsToClient: number;
  bytesToServer: number;
  bytesToClient: number;
  final: boolean;
}

export interface StoredFlow {
  seq: number;
  transport: Transport;
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  clientId: Identity;
  serverId: Identity;
  verdict: Verdict;
  protocol: string;
  upgradedFrom: string;
  tls: TlsDetails__Output | null;
  mesh: Mesh;
  evidence: string;
  /** Max over observers, per direction (both ends count the same bytes). */
  packets: Dir;
  bytes: Dir;
  firstSeenMs: number;
  lastSeenMs: number;
  observations: Observation[];
  disagreement: boolean;
  ended: boolean;
  /** On a pod's loopback: both ends are that pod; not on the wire (own metrics, not in coverage). */
  intraPod: boolean;
  /** Intra-pod flows: agent + pod name, part of the join key ('' otherwise). */
  joinScope: string;
  /** Metric labels fixed when the flow was first counted (its series for bytes too; the series' own key string, shared). */
  seriesKey: string | undefined;
  /** The plainsight_active_flows group it is counted in, while active. */
  activeGroup: ActiveGroup | undefined;
}

/** One plainsight_active_flows group. */
export interface ActiveGroup {
  key: string;
  srcNamespace: string;
  dstNamespace: string;
  verdict: Verdict;
  count: number;
}

export interface ObserveResult {
  flow: StoredFlow;
  created: boolean;
  /** Growth of the flow's totals (what metrics add). */
  bytes: number;
  /** True when this summary made the ends disagree for the first time. */
  newDisagreement: boolean;
}

export interface StoreOptions {
  retentionMs: number;
  /** Not ended and seen within this window: active (plainsight_active_flows). Default 2 min. */
  activeWindowMs?: number;
  maxFlows: number;
  /** Two agents' first-seen times of one connection may differ by this much (clock skew, attach time). */
  joinWindowMs?: number;
}

export type EvictReason = 'retention' | 'capacity';

const DEFAULT_JOIN_WINDOW_MS = 5000;

/**
 * Strings and TLS details repeat across flows (pod IPs, protocols, evidence, the same few
 * TLS configurations) but arrive as fresh copies in every batch: a stored flow keeps one
 * shared copy instead. Bounded: past `max` entries the table starts over (sharing is lost
 * for a while, nothing else).
 */
class Interner<T> {
  private readonly m = new Map<string, T>();
  constructor(private readonly max: number) {}
  get(key: string, make: () => T): T {
    let v = this.m.get(key);
    if (v === undefined) {
      if (this.m.size >= this.max) this.m.clear();
      v = make();
      this.m.set(key, v);
    }
    return v;
  }
  str(s: string): string {
    if (s === '') return s;
    let v = this.m.get(s) as string | undefined;
    if (v === undefined) {
      if (this.m.size >= this.max) this.m.clear();
      this.m.set(s, s as T);
      v = s;
    }
    return v;
  }
}

/** Same TLS details? (`b` as decoded: a message with prototype defaults, its enum a number or a name.) */
function sameTls(a: TlsDetails__Output | null, b: TlsDetails__Output | null): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  if (a.alpn.length !== b.alpn.length) return false;
  for (let i = 0; i < a.alpn.length; i++) if (a.alpn[i] !== b.alpn[i]) return false;
  return (
    a.version === b.version &&
    a.sni === b.sni &&
    a.alpnSelected === b.alpnSelected &&
    a.cipher === b.cipher &&
    a.ja4 === b.ja4 &&
    a.clientCertificate === clientCertificateName(b.clientCertificate) &&
    a.resumed === b.resumed &&
    a.helloRetryRequest === b.helloRetryRequest
  );
}

/**
 * Ascending seqs per key (a verdict, a namespace): a query for one key walks only those.
 * Entries go stale when a flow changes key or is evicted; readers check each flow and
 * compact() drops the stale ones.
 */
class SeqIndex<K> {
  readonly lists = new Map<K, number[]>();

  add(k: K, seq: number): void {
    let seqs = this.lists.get(k);
    if (!seqs) this.lists.set(k, (seqs = []));
    if (seqs.length === 0 || seqs[seqs.length - 1]! < seq) {
      seqs.push(seq);
      return;
    }
    if (seqs[seqs.length - 1] === seq) return;
    // An older flow changed key: insert in order (rare).
    const lo = lowerBound(seqs, seq);
    if (seqs[lo] !== seq) seqs.splice(lo, 0, seq);
  }

  size(k: K): number {
    return this.lists.get(k)?.length ?? 0;
  }

  /** Seqs > afterSeq, ascending, each once (possibly stale: check the flow). */
  *seqs(k: K, afterSeq: number): IterableIterator<number> {
    const seqs = this.lists.get(k);
    if (!seqs) return;
    for (let i = lowerBound(seqs, afterSeq + 1); i < seqs.length; i++) yield seqs[i]!;
  }

  compact(keep: (k: K, seq: number) => boolean): void {
    for (const [k, seqs] of this.lists) {
      const kept = seqs.filter((q) => keep(k, q));
      if (kept.length > 0) this.lists.set(k, kept);
      else this.lists.delete(k);
    }
  }
}

/** First index whose value is ≥ x. */
function lowerBound(xs: number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class FlowStore {
  private readonly flows = new Map<number, StoredFlow>();
  /** agentId → flowId → flow (no key string built per summary). */
  private readonly byObservation = new Map<string, Map<string, StoredFlow>>();
  /** transport|client|server → newest flow with that 5-tuple (the join candidate). */
  private readonly byTuple = new Map<string, StoredFlow>();
  private nextSeq = 1;
  /** Per verdict, the seqs of flows that have (or had) it (plaintext is usually the rare one). */
  private readonly byVerdict = new SeqIndex<Verdict>();
  /** Per namespace, the seqs of flows with an end in it (or that had, before an end was resolved). */
  private readonly byNamespace = new SeqIndex<string>();
  private readonly strings = new Interner<string>(100_000);
  /** SNI → the distinct TLS details stored with it (a few at most). */
  private readonly tlsDetails = new Interner<TlsDetails__Output[]>(10_000);
  /** Active flows by (client namespace, server namespace, verdict), kept as flows change: a scrape reads it, never the store. */
  readonly active = new Map<string, ActiveGroup>();
  private readonly listeners = new Set<(f: StoredFlow) => void>();
  readonly evicted: Record<EvictReason, number> = { retention: 0, capacity: 0 };
  onEvict: (reason: EvictReason, n: number) => void = () => undefined;

  constructor(
    private readonly opts: StoreOptions,
    private readonly identity: IdentityResolver,
  ) {}

  get size(): number {
    return this.flows.size;
  }

  get retentionMs(): number {
    return this.opts.retentionMs;
  }

  /** Flows in creation order (oldest first); `seq` grows along it. A Map iterator, not a generator: this is the query hot loop. */
  iterate(): IterableIterator<StoredFlow> {
    return this.flows.values();
  }

  get(seq: number): StoredFlow | undefined {
    return this.flows.get(seq);
  }

  /** Called with every created or updated flow (WatchFlows). Returns the unsubscribe function. */
  subscribe(fn: (f: StoredFlow) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  observe(agentId: string, node: string, s: SummaryIn): ObserveResult {
    let ofAgent = this.byObservation.get(agentId);
    if (!ofAgent) this.byObservation.set(agentId, (ofAgent = new Map()));
    let flow = ofAgent.get(s.flowId);
    let created = false;
    let obs: Observation | undefined;
    if (flow) {
      for (const o of flow.observations) if (o.agentId === agentId && o.flowId === s.flowId) obs = o;
    } else {
      const scope = s.intraPod ? this.strings.str(`${agentId}\u0000${s.pod}`) : '';
      const tuple = tupleKey(scope, s.transport, s.client, s.server);
      const cand = this.byTuple.get(tuple);
      if (cand && this.joinable(cand, agentId, s)) flow = cand;
      else {
        flow = this.create(s, scope, agentId, node);
        created = true;
        this.byTuple.set(tuple, flow);
      }
      ofAgent.set(s.flowId, flow);
    }
    if (!obs) {
      obs = { agentId, node, pod: this.strings.str(s.pod), flowId: s.flowId, verdict: undefined, packetsToServer: 0, packetsToClient: 0, bytesToServer: 0, bytesToClient: 0, final: false };
      flow.observations.push(obs);
    }
    obs.packetsToServer += s.packets.toServer;
    obs.packetsToClient += s.packets.toClient;
    obs.bytesToServer += s.bytes.toServer;
    obs.bytesToClient += s.bytes.toClient;
    if (s.final) obs.final = true;
    if (s.verdict !== undefined) obs.verdict = s.verdict;

    const before = flow.bytes.toServer + flow.bytes.toClient;
    if (obs.packetsToServer > flow.packets.toServer) flow.packets.toServer = obs.packetsToServer;
    if (obs.packetsToClient > flow.packets.toClient) flow.packets.toClient = obs.packetsToClient;
    if (obs.bytesToServer > flow.bytes.toServer) flow.bytes.toServer = obs.bytesToServer;
    if (obs.bytesToClient > flow.bytes.toClient) flow.bytes.toClient = obs.bytesToClient;
    if (s.firstSeenMs > 0 && (flow.firstSeenMs === 0 || s.firstSeenMs < flow.firstSeenMs)) flow.firstSeenMs = s.firstSeenMs;
    if (s.lastSeenMs > flow.lastSeenMs) flow.lastSeenMs = s.lastSeenMs;
    let ended = true;
    for (const o of flow.observations) if (!o.final) ended = false;
    flow.ended = ended;

    // Verdict: the most cautious of the ends; details from an end that holds it.
    let verdict: Verdict | undefined;
    let distinct = 0;
    for (const o of flow.observations) {
      if (o.verdict === undefined) continue;
      if (verdict === undefined) {
        verdict = o.verdict;
        distinct = 1;
      } else if (o.verdict !== verdict) {
        distinct = 2;
        verdict = mostCautious(verdict, o.verdict);
      }
    }
    const wasDisagreement = flow.disagreement;
    const verdictBefore = flow.verdict;
    flow.disagreement = distinct > 1;
    if (verdict !== undefined && (s.verdict === verdict || created)) {
      // Usually the same details again: keep the stored (shared) copies then.
      flow.verdict = verdict;
      if (flow.protocol !== s.protocol) flow.protocol = this.strings.str(s.protocol);
      if (flow.upgradedFrom !== s.upgradedFrom) flow.upgradedFrom = this.strings.str(s.upgradedFrom);
      if (!sameTls(flow.tls, s.tls)) flow.tls = this.tls(s.tls);
      flow.mesh = s.mesh;
      if (flow.evidence !== s.evidence) flow.evidence = this.strings.str(s.evidence);
    } else if (verdict !== undefined) flow.verdict = verdict;
    if (flow.verdict !== verdictBefore) this.byVerdict.add(flow.verdict, flow.seq);
    this.reresolve(flow);
    this.setActive(flow, !flow.ended);

    // WatchFlows followers only (a Set iterator per summary otherwise).
    if (this.listeners.size > 0) for (const fn of this.listeners) fn(flow);
    return {
      flow,
      created,
      bytes: flow.bytes.toServer + flow.bytes.toClient - before,
      newDisagreement: flow.disagreement && !wasDisagreement,
    };
  }

  /** Evicts flows last seen before now - retention; flows quiet for the active window stop counting as active. Returns how many were evicted. */
  sweep(nowMs: number): number {
    const cutoff = nowMs - this.opts.retentionMs;
    const quiet = nowMs - (this.opts.activeWindowMs ?? 120_000);
    let n = 0;
    for (const f of this.flows.values()) {
      if (f.lastSeenMs < cutoff) {
        this.remove(f);
        n++;
      } else if (f.activeGroup !== undefined && f.lastSeenMs < quiet) this.setActive(f, false);
    }
    this.byVerdict.compact((v, q) => this.flows.get(q)?.verdict === v);
    this.byNamespace.compact((ns, q) => {
      const f = this.flows.get(q);
      return f !== undefined && (f.clientId.namespace === ns || f.serverId.namespace === ns);
    });
    if (n > 0) {
      this.evicted.retention += n;
      this.onEvict('retention', n);
    }
    return n;
  }

  private create(s: SummaryIn, joinScope: string, agentId: string, node: string): StoredFlow {
    // Intra-pod: the loopback addresses say nothing; the reporting agent named the pod.
    const podId = s.intraPod ? this.identity.resolvePod(agentId, s.pod, node) : undefined;
    const f: StoredFlow = {
      seq: this.nextSeq++,
      transport: s.transport,
      client: { ip: this.strings.str(s.client.ip), port: s.client.port },
      server: { ip: this.strings.str(s.server.ip), port: s.server.port },
      clientId: podId ?? this.identity.resolve(s.client.ip),
      serverId: podId ?? this.identity.resolve(s.server.ip, s.tls?.sni),
      verdict: s.verdict ?? 'unknown',
      protocol: this.strings.str(s.protocol),
      upgradedFrom: this.strings.str(s.upgradedFrom),
      tls: this.tls(s.tls),
      mesh: s.mesh,
      evidence: this.strings.str(s.evidence),
      packets: { toServer: 0, toClient: 0 },
      bytes: { toServer: 0, toClient: 0 },
      firstSeenMs: s.firstSeenMs,
      lastSeenMs: s.lastSeenMs,
      observations: [],
      disagreement: false,
      ended: false,
      intraPod: s.intraPod,
      joinScope,
      seriesKey: undefined,
      activeGroup: undefined,
    };
    this.flows.set(f.seq, f);
    this.byVerdict.add(f.verdict, f.seq);
    this.indexNamespaces(f);
    if (this.flows.size > this.opts.maxFlows) {
      let n = 0;
      for (const old of this.flows.values()) {
        if (this.flows.size <= this.opts.maxFlows) break;
        this.remove(old);
        n++;
      }
      this.evicted.capacity += n;
      this.onEvict('capacity', n);
    }
    return f;
  }

  /** An inventory may arrive after the first summary: re-resolve ends still `external` (intra-pod: a pod still unknown). */
  reresolve(f: StoredFlow): void {
    let changed = false;
    if (f.intraPod) {
      if (f.clientId.namespace !== UNKNOWN_POD_NAMESPACE) return;
      const o = f.observations[0];
      if (!o) return;
      const id = this.identity.resolvePod(o.agentId, f.clientId.pod, o.node);
      if (id === f.clientId) return;
      f.clientId = f.serverId = id;
      this.indexNamespaces(f);
      return;
    }
    if (f.clientId.namespace === 'external') {
      const id = this.identity.resolve(f.client.ip);
      if (id.namespace !== f.clientId.namespace) changed = true;
      f.clientId = id;
    }
    if (f.serverId.namespace === 'external') {
      const id = this.identity.resolve(f.server.ip, f.tls?.sni);
      if (id.namespace !== f.serverId.namespace) changed = true;
      f.serverId = id;
    }
    if (changed) this.indexNamespaces(f);
  }

  private indexNamespaces(f: StoredFlow): void {
    this.byNamespace.add(f.clientId.namespace, f.seq);
    if (f.serverId.namespace !== f.clientId.namespace) this.byNamespace.add(f.serverId.namespace, f.seq);
  }

  /** The stored copy of TLS details: one plain object per distinct configuration, shared by the flows with it. */
  private tls(t: TlsDetails__Output | null): TlsDetails__Output | null {
    if (!t) return null;
    const same = this.tlsDetails.get(t.sni, () => []);
    for (const d of same) if (sameTls(d, t)) return d;
    const str = (x: string): string => this.strings.str(x);
    const d: TlsDetails__Output = {
      version: str(t.version),
      sni: str(t.sni),
      alpn: t.alpn.map(str),
      alpnSelected: str(t.alpnSelected),
      cipher: str(t.cipher),
      ja4: str(t.ja4),
      clientCertificate: clientCertificateName(t.clientCertificate) as TlsDetails__Output['clientCertificate'],
      resumed: t.resumed,
      helloRetryRequest: t.helloRetryRequest,
    };
    // Bounded per SNI: past 16 configurations the oldest is no longer shared.
    if (same.length >= 16) same.shift();
    same.push(d);
    return d;
  }

  /**
   * The other end of a connection, or port reuse? Join within the window, never after the
   * same observer (agent and pod) ended it. The pod matters: an agent sees both ends of a
   * connection between two of its pods, and when their first summaries were lost (its
   * export buffer overflowed) the second end's final arrives after the first end's.
   */
  private joinable(cand: StoredFlow, agentId: string, s: SummaryIn): boolean {
    if (cand.observations.some((o) => o.agentId === agentId && o.pod === s.pod && o.final)) return false;
    const window = this.opts.joinWindowMs ?? DEFAULT_JOIN_WINDOW_MS;
    return s.firstSeenMs === 0 || cand.firstSeenMs === 0 || Math.abs(cand.firstSeenMs - s.firstSeenMs) <= window;
  }

  /** Flows with verdict `v` and seq > afterSeq, in seq order. */
  *withVerdict(v: Verdict, afterSeq = 0): IterableIterator<StoredFlow> {
    for (const q of this.byVerdict.seqs(v, afterSeq)) {
      const f = this.flows.get(q);
      if (f && f.verdict === v) yield f;
    }
  }

  /** Flows with an end in namespace `ns` and seq > afterSeq, in seq order. */
  *inNamespace(ns: string, afterSeq = 0): IterableIterator<StoredFlow> {
    for (const q of this.byNamespace.seqs(ns, afterSeq)) {
      const f = this.flows.get(q);
      if (f && (f.clientId.namespace === ns || f.serverId.namespace === ns)) yield f;
    }
  }

  /** How many flows withVerdict() / inNamespace() would look at (an upper bound on what they yield). */
  verdictCandidates(v: Verdict): number {
    return this.byVerdict.size(v);
  }

  namespaceCandidates(ns: string): number {
    return this.byNamespace.size(ns);
  }

  private setActive(f: StoredFlow, active: boolean): void {
    // plainsight_active_flows counts connections on the wire: never a pod's loopback.
    if (f.intraPod) return;
    const cur = f.activeGroup;
    // The common case (an update that changes nothing here) allocates nothing.
    if (active && cur && cur.srcNamespace === f.clientId.namespace && cur.dstNamespace === f.serverId.namespace && cur.verdict === f.verdict) return;
    if (!active && cur === undefined) return;
    if (cur && --cur.count === 0 && this.active.get(cur.key) === cur) this.active.delete(cur.key);
    f.activeGroup = undefined;
    if (!active) return;
    const key = `${f.clientId.namespace}|${f.serverId.namespace}|${f.verdict}`;
    let g = this.active.get(key);
    if (g) g.count++;
    else this.active.set(key, (g = { key, srcNamespace: f.clientId.namespace, dstNamespace: f.serverId.namespace, verdict: f.verdict, count: 1 }));
    f.activeGroup = g;
  }

  private remove(f: StoredFlow): void {
    this.setActive(f, false);
    this.flows.delete(f.seq);
    for (const o of f.observations) {
      const ofAgent = this.byObservation.get(o.agentId);
      if (ofAgent?.get(o.flowId) === f) {
        ofAgent.delete(o.flowId);
        if (ofAgent.size === 0) this.byObservation.delete(o.agentId);
      }
    }
    const tuple = tupleKey(f.joinScope, f.transport, f.client, f.server);
    if (this.byTuple.get(tuple) === f) this.byTuple.delete(tuple);
  }
}

/** The join key: the 5-tuple, scoped to the pod for intra-pod flows (every pod's loopback looks alike). */
function tupleKey(scope: string, transport: Transport, client: { ip: string; port: number }, server: { ip: string; port: number }): string {
  const t = `${transport}|${client.ip}|${client.port}|${server.ip}|${server.port}`;
  return scope === '' ? t : `${scope}|${t}`;
}
