// The cluster flow store: one entry per connection, both ends joined, bounded.
//
// Flows are kept in creation order (a Map keeps insertion order and entries are never
// re-inserted), which gives ListFlows a stable order for paging and makes "oldest first"
// eviction a walk from the front. Retention (last seen older than the window) is swept
// periodically; past maxFlows the oldest are evicted at once. Both are counted.

import type { TlsDetails__Output } from '../../../proto/gen/types/plainsight/v1/TlsDetails.js';
import type { Identity, IdentityResolver } from '../identity/index.js';
import { mostCautious, type Dir, type Mesh, type Transport, type Verdict } from '../model.js';

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
}

/** One agent's view of a flow: its own running totals. */
export interface Observation {
  agentId: string;
  node: string;
  flowId: string;
  verdict: Verdict | undefined;
  packets: Dir;
  bytes: Dir;
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
  /** Metric labels fixed when the flow was first counted (its series for bytes too). */
  seriesKey: string | undefined;
  /** The plainsight_active_flows group it is counted in, while active. */
  activeKey: string | undefined;
}

/** One plainsight_active_flows group. */
export interface ActiveGroup {
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

export class FlowStore {
  private readonly flows = new Map<number, StoredFlow>();
  /** `${agentId}|${flowId}` → flow. */
  private readonly byObservation = new Map<string, StoredFlow>();
  /** transport|client|server → newest flow with that 5-tuple (the join candidate). */
  private readonly byTuple = new Map<string, StoredFlow>();
  private nextSeq = 1;
  /**
   * Per verdict, the seqs of flows that have (or had) it, ascending: a query for one
   * verdict walks only those (plaintext is usually the rare one). Entries go stale when a
   * flow changes verdict or is evicted; readers skip them and sweep() compacts.
   */
  private readonly byVerdict = new Map<Verdict, number[]>();
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
    const obsKey = `${agentId}|${s.flowId}`;
    let flow = this.byObservation.get(obsKey);
    let created = false;
    let obs: Observation | undefined;
    if (flow) {
      obs = flow.observations.find((o) => o.agentId === agentId && o.flowId === s.flowId);
    } else {
      const tuple = `${s.transport}|${s.client.ip}|${s.client.port}|${s.server.ip}|${s.server.port}`;
      const cand = this.byTuple.get(tuple);
      if (cand && this.joinable(cand, agentId, s)) flow = cand;
      else {
        flow = this.create(s);
        created = true;
        this.byTuple.set(tuple, flow);
      }
      this.byObservation.set(obsKey, flow);
    }
    if (!obs) {
      obs = { agentId, node, flowId: s.flowId, verdict: undefined, packets: { toServer: 0, toClient: 0 }, bytes: { toServer: 0, toClient: 0 }, final: false };
      flow.observations.push(obs);
    }
    obs.packets.toServer += s.packets.toServer;
    obs.packets.toClient += s.packets.toClient;
    obs.bytes.toServer += s.bytes.toServer;
    obs.bytes.toClient += s.bytes.toClient;
    if (s.final) obs.final = true;
    if (s.verdict !== undefined) obs.verdict = s.verdict;

    const before = flow.bytes.toServer + flow.bytes.toClient;
    if (obs.packets.toServer > flow.packets.toServer) flow.packets.toServer = obs.packets.toServer;
    if (obs.packets.toClient > flow.packets.toClient) flow.packets.toClient = obs.packets.toClient;
    if (obs.bytes.toServer > flow.bytes.toServer) flow.bytes.toServer = obs.bytes.toServer;
    if (obs.bytes.toClient > flow.bytes.toClient) flow.bytes.toClient = obs.bytes.toClient;
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
      flow.verdict = verdict;
      flow.protocol = s.protocol;
      flow.upgradedFrom = s.upgradedFrom;
      flow.tls = s.tls;
      flow.mesh = s.mesh;
      flow.evidence = s.evidence;
    } else if (verdict !== undefined) flow.verdict = verdict;
    if (flow.verdict !== verdictBefore) this.indexVerdict(flow);
    this.reresolve(flow);
    this.setActive(flow, !flow.ended);

    for (const fn of this.listeners) fn(flow);
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
      } else if (f.activeKey !== undefined && f.lastSeenMs < quiet) this.setActive(f, false);
    }
    for (const [v, seqs] of this.byVerdict) {
      let prev = -1;
      this.byVerdict.set(
        v,
        seqs.filter((q) => {
          const keep = q !== prev && this.flows.get(q)?.verdict === v;
          prev = q;
          return keep;
        }),
      );
    }
    if (n > 0) {
      this.evicted.retention += n;
      this.onEvict('retention', n);
    }
    return n;
  }

  private create(s: SummaryIn): StoredFlow {
    const f: StoredFlow = {
      seq: this.nextSeq++,
      transport: s.transport,
      client: s.client,
      server: s.server,
      clientId: this.identity.resolve(s.client.ip),
      serverId: this.identity.resolve(s.server.ip, s.tls?.sni),
      verdict: s.verdict ?? 'unknown',
      protocol: s.protocol,
      upgradedFrom: s.upgradedFrom,
      tls: s.tls,
      mesh: s.mesh,
      evidence: s.evidence,
      packets: { toServer: 0, toClient: 0 },
      bytes: { toServer: 0, toClient: 0 },
      firstSeenMs: s.firstSeenMs,
      lastSeenMs: s.lastSeenMs,
      observations: [],
      disagreement: false,
      ended: false,
      seriesKey: undefined,
      activeKey: undefined,
    };
    this.flows.set(f.seq, f);
    this.indexVerdict(f);
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

  /** An inventory may arrive after the first summary: re-resolve ends still `external`. */
  reresolve(f: StoredFlow): void {
    if (f.clientId.namespace === 'external') f.clientId = this.identity.resolve(f.client.ip);
    if (f.serverId.namespace === 'external') f.serverId = this.identity.resolve(f.server.ip, f.tls?.sni);
  }

  /** The other end of a connection, or port reuse? Join within the window, never after the same agent ended it. */
  private joinable(cand: StoredFlow, agentId: string, s: SummaryIn): boolean {
    if (cand.observations.some((o) => o.agentId === agentId && o.final)) return false;
    const window = this.opts.joinWindowMs ?? DEFAULT_JOIN_WINDOW_MS;
    return s.firstSeenMs === 0 || cand.firstSeenMs === 0 || Math.abs(cand.firstSeenMs - s.firstSeenMs) <= window;
  }

  /** Flows with verdict `v` and seq > afterSeq, in seq order. */
  *withVerdict(v: Verdict, afterSeq = 0): IterableIterator<StoredFlow> {
    const seqs = this.byVerdict.get(v);
    if (!seqs) return;
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs[mid]! <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    let prev = -1;
    for (let i = lo; i < seqs.length; i++) {
      const q = seqs[i]!;
      if (q === prev) continue;
      prev = q;
      const f = this.flows.get(q);
      if (f && f.verdict === v) yield f;
    }
  }

  private indexVerdict(f: StoredFlow): void {
    let seqs = this.byVerdict.get(f.verdict);
    if (!seqs) this.byVerdict.set(f.verdict, (seqs = []));
    if (seqs.length === 0 || seqs[seqs.length - 1]! < f.seq) {
      seqs.push(f.seq);
      return;
    }
    // An older flow changed verdict: insert in order (rare).
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs[mid]! < f.seq) lo = mid + 1;
      else hi = mid;
    }
    if (seqs[lo] !== f.seq) seqs.splice(lo, 0, f.seq);
  }

  private setActive(f: StoredFlow, active: boolean): void {
    const cur = f.activeKey === undefined ? undefined : this.active.get(f.activeKey);
    // The common case (an update that changes nothing here) allocates nothing.
    if (active && cur && cur.srcNamespace === f.clientId.namespace && cur.dstNamespace === f.serverId.namespace && cur.verdict === f.verdict) return;
    if (!active && f.activeKey === undefined) return;
    if (cur && --cur.count === 0) this.active.delete(f.activeKey!);
    f.activeKey = undefined;
    if (!active) return;
    const key = `${f.clientId.namespace}|${f.serverId.namespace}|${f.verdict}`;
    f.activeKey = key;
    const g = this.active.get(key);
    if (g) g.count++;
    else this.active.set(key, { srcNamespace: f.clientId.namespace, dstNamespace: f.serverId.namespace, verdict: f.verdict, count: 1 });
  }

  private remove(f: StoredFlow): void {
    this.setActive(f, false);
    this.flows.delete(f.seq);
    for (const o of f.observations) {
      const k = `${o.agentId}|${o.flowId}`;
      if (this.byObservation.get(k) === f) this.byObservation.delete(k);
    }
    const tuple = `${f.transport}|${f.client.ip}|${f.client.port}|${f.server.ip}|${f.server.port}`;
    if (this.byTuple.get(tuple) === f) this.byTuple.delete(tuple);
  }
}
