// Ingest: agent batches in, acknowledgements out. Idempotent by (agent_id, sequence):
// each agent's accepted sequences are remembered down to the lowest one it may still
// resend (oldest_pending_sequence, sent in-band), so a retried or replayed batch is
// acknowledged again and counted never twice.

import type { Logger } from 'pino';
import type { ReportRequest__Output } from '../../../proto/gen/types/plainsight/v1/ReportRequest.js';
import type { FlowSummary__Output } from '../../../proto/gen/types/plainsight/v1/FlowSummary.js';
import { EXTERNAL, UNKNOWN_POD_NAMESPACE, type IdentityResolver } from '../identity/index.js';
import type { AggregatorMetrics } from '../metrics/index.js';
import { meshFromProto, nsToMs, num, transportFromProto, verdictFromProto, type Dir } from '../model.js';
import type { Directional__Output } from '../../../proto/gen/types/plainsight/v1/Directional.js';
import type { FlowStore, StoredFlow, SummaryIn } from '../store/index.js';
import type { Wal } from './wal.js';

export interface AgentState {
  agentId: string;
  node: string;
  /** Accepted sequences ≥ floor. */
  seen: Set<number>;
  floor: number;
  droppedBatches: number;
  droppedFlows: number;
  streams: number;
  lastBatchMs: number;
  accepted: number;
}

export class InvalidBatch extends Error {
  override name = 'InvalidBatch';
}

/**
 * A new flow whose end is not (yet) a known pod waits this long before it is counted in
 * the metrics: the other node's inventory may still be on its way (agents starting), and
 * a counter's labels cannot be changed once incremented.
 */
export const IDENTITY_GRACE_MS = 2000;

/** An agent silent this long loses its inventory (IP → pod). */
export const INVENTORY_TTL_MS = 10 * 60_000;

/** More than this many remembered sequences per agent: the oldest are forgotten (treated as accepted). */
const MAX_SEEN = 65_536;

export class Ingest {
  readonly agents = new Map<string, AgentState>();
  /** Flows not yet counted (an end unresolved, within the grace) → bytes to add when they are. */
  private readonly pending = new Map<StoredFlow, { bytes: number; sinceMs: number }>();
  wal: Wal | undefined;
  /** Encodes a batch for the WAL (the runtime's own serializer). */
  encode: ((req: ReportRequest__Output) => Buffer) | undefined;
  /** Batches refused since the WAL became unwritable (0: it is writable). */
  private walRefused = 0;

  constructor(
    private readonly store: FlowStore,
    private readonly identity: IdentityResolver,
    private readonly metrics: AggregatorMetrics,
    private readonly log: Logger,
  ) {}

  get connectedAgents(): number {
    let n = 0;
    for (const a of this.agents.values()) if (a.streams > 0) n++;
    return n;
  }

  streamOpened(agentId: string, node: string): void {
    const a = this.agent(agentId, node);
    a.streams++;
    if (a.streams === 1) this.log.info({ agent: agentId, node }, 'agent connected');
  }

  streamClosed(agentId: string): void {
    const a = this.agents.get(agentId);
    if (!a) return;
    a.streams = Math.max(0, a.streams - 1);
    if (a.streams === 0) this.log.info({ agent: agentId, node: a.node, accepted: a.accepted }, 'agent disconnected');
  }

  /**
   * Forgets the inventory of agents silent (no stream, no batch) for `silentMs`: their pods
   * may be gone. Their dedup state stays (a late replay must still be recognised).
   */
  expireInventories(nowMs: number, silentMs = INVENTORY_TTL_MS): void {
    for (const a of this.agents.values()) {
      if (a.streams === 0 && a.lastBatchMs > 0 && a.lastBatchMs < nowMs - silentMs && this.identity.removeAgent(a.agentId)) {
        this.log.info({ agent: a.agentId, node: a.node }, 'agent silent: its inventory forgotten');
      }
    }
  }

  countInvalid(): void {
    this.metrics.batches.inc({ result: 'invalid' });
  }

  /** Applies one batch; `replay`: from the WAL at start (not logged again). */
  apply(req: ReportRequest__Output, replay = false): { duplicate: boolean } {
    if (!req.agentId) throw new InvalidBatch('agent_id is empty');
    const seq = num(req.sequence);
    if (!Number.isSafeInteger(seq) || seq < 1) throw new InvalidBatch(`sequence must be 1 or more, not ${req.sequence}`);
    const a = this.agent(req.agentId, req.nodeName);
    if (seq < a.floor || a.seen.has(seq)) {
      this.metrics.batches.inc({ result: 'duplicate' });
      return { duplicate: true };
    }
    const flows = req.flows.map(decodeSummary);
    if (!replay && this.wal && this.encode) this.appendWal(this.wal, this.encode(req), req.agentId);

    a.seen.add(seq);
    a.accepted++;
    a.lastBatchMs = Date.now();
    const pending = num(req.oldestPendingSequence);
    if (pending > a.floor) {
      a.floor = pending;
      for (const s of a.seen) if (s < pending) a.seen.delete(s);
    }
    if (a.seen.size > MAX_SEEN) {
      const sorted = [...a.seen].sort((x, y) => x - y);
      a.floor = sorted[sorted.length - MAX_SEEN]!;
      for (const s of sorted) if (s < a.floor) a.seen.delete(s);
    }

    const node = req.nodeName || a.node;
    if (req.inventory) {
      this.identity.setInventory(
        req.agentId,
        req.inventory.pods.map((p) => ({ name: p.name, namespace: p.namespace, workload: p.workload, ips: p.ips, node })),
      );
    }
    const dropped = num(req.droppedBatches);
    if (dropped > a.droppedBatches) {
      this.metrics.droppedBatches.inc({ node }, dropped - a.droppedBatches);
      a.droppedBatches = dropped;
    }
    a.droppedFlows = Math.max(a.droppedFlows, num(req.droppedFlows));
    const lost = num(req.lostSamplesDelta);
    if (lost > 0) this.metrics.lostSamples.inc({ node }, lost);
    else this.metrics.lostSamples.inc({ node }, 0);

    const now = Date.now();
    for (const s of flows) {
      const r = this.store.observe(req.agentId, node, s);
      const p = this.pending.size > 0 ? this.pending.get(r.flow) : undefined;
      if (p) p.bytes += r.bytes;
      else if (r.created) {
        if (resolved(r.flow)) {
          this.metrics.countFlow(r.flow);
          this.metrics.addBytes(r.flow, r.bytes);
        } else this.pending.set(r.flow, { bytes: r.bytes, sinceMs: now });
      } else this.metrics.addBytes(r.flow, r.bytes);
      if (r.newDisagreement) this.metrics.disagreements.inc();
    }
    if (this.pending.size > 0 && req.inventory) this.flushPending(now);
    this.metrics.summaries.inc(flows.length);
    this.metrics.batches.inc({ result: 'accepted' });
    return { duplicate: false };
  }

  /**
   * Counts the waiting flows whose ends are now resolved, or whose grace ended before
   * `nowMs` (Infinity: all of them). Called on a timer and before each scrape.
   */
  flushPending(nowMs = Date.now()): void {
    for (const [f, p] of this.pending) {
      this.store.reresolve(f);
      if (!resolved(f) && p.sinceMs + IDENTITY_GRACE_MS > nowMs) continue;
      this.pending.delete(f);
      this.metrics.countFlow(f);
      this.metrics.addBytes(f, p.bytes);
    }
  }

  /**
   * Before the ack: a batch the log cannot hold is refused (the error reaches the agent,
   * which resends it), never acknowledged unlogged. Logged when the state changes only.
   */
  private appendWal(wal: Wal, record: Buffer, agentId: string): void {
    try {
      wal.append(record);
    } catch (err) {
      this.metrics.batches.inc({ result: 'refused' });
      if (this.walRefused++ === 0) this.log.error({ err, code: (err as { code?: string }).code, agent: agentId }, 'ingest log not writable: batches are refused until it is');
      throw err;
    }
    if (this.walRefused > 0) {
      this.log.info({ refused: this.walRefused }, 'ingest log writable again');
      this.walRefused = 0;
    }
  }

  private agent(agentId: string, node: string): AgentState {
    let a = this.agents.get(agentId);
    if (!a) {
      a = { agentId, node, seen: new Set(), floor: 0, droppedBatches: 0, droppedFlows: 0, streams: 0, lastBatchMs: 0, accepted: 0 };
      this.agents.set(agentId, a);
    }
    if (node && !a.node) a.node = node;
    return a;
  }
}

/** Intra-pod flows: resolved once the agent's inventory holds the pod (both ends are it). */
const resolved = (f: StoredFlow): boolean =>
  f.intraPod ? f.clientId.namespace !== UNKNOWN_POD_NAMESPACE : f.clientId.namespace !== EXTERNAL && f.serverId.namespace !== EXTERNAL;

const ZERO: Dir = Object.freeze({ toServer: 0, toClient: 0 });

/** Counters as decoded (numbers, longs: Number) are used as they are; anything else normalised. */
function directional(d: Directional__Output | null): Dir {
  if (!d) return ZERO;
  if (typeof d.toServer === 'number' && typeof d.toClient === 'number' && d.toServer >= 0 && d.toClient >= 0) return d as Dir;
  return { toServer: num(d.toServer), toClient: num(d.toClient) };
}

function decodeSummary(s: FlowSummary__Output): SummaryIn {
  const k = s.key;
  if (!k || !k.client || !k.server) throw new InvalidBatch(`flow ${s.flowId || '(no id)'} has no key`);
  if (!s.flowId) throw new InvalidBatch('a flow summary has no flow_id');
  return {
    flowId: s.flowId,
    transport: transportFromProto(k.transport),
    // The decoded objects are ours (fresh per message); the store copies what it keeps.
    client: k.client,
    server: k.server,
    verdict: verdictFromProto(s.verdict),
    protocol: s.protocol,
    upgradedFrom: s.upgradedFrom,
    tls: s.tls,
    mesh: meshFromProto(s.mesh),
    evidence: s.evidence,
    packets: directional(s.packetsDelta),
    bytes: directional(s.bytesDelta),
    firstSeenMs: nsToMs(s.firstSeenUnixNs),
    lastSeenMs: nsToMs(s.lastSeenUnixNs),
    final: s.final,
    intraPod: s.intraPod,
    pod: s.pod,
  };
}
