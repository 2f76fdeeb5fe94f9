// Prometheus metrics from one Registry the aggregator owns. The plainsight_* names and
// labels are INTERFACE.md's, exactly; plainsight_aggregator_* is the aggregator's own
// health. Gauges are computed at scrape time (collect()). Label sets of the two flow
// counters are capped (maxSeries): a new label set past the cap is not created, and
// plainsight_aggregator_series_overflow_total counts what was left out.
//
// Intra-pod flows (a pod's loopback: app ↔ sidecar, plaintext by design) are not on the
// wire: they never count in plainsight_flows_total / plainsight_bytes_total (alerts and
// coverage rules read those) but in plainsight_intra_pod_flows_total / _bytes_total, by
// pod workload, capped the same way (their own maxSeries label sets).

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ActiveGroup, StoredFlow } from '../store/index.js';

export const FLOW_LABELS = [
  'src_namespace',
  'src_workload',
  'dst_namespace',
  'dst_workload',
  'dst_port',
  'verdict',
  'protocol',
  'mesh',
  'tls_version',
] as const;
export type FlowLabel = (typeof FLOW_LABELS)[number];
export const ACTIVE_LABELS = ['src_namespace', 'dst_namespace', 'verdict'] as const;
export const INTRA_POD_LABELS = ['namespace', 'workload', 'dst_port', 'verdict', 'protocol'] as const;
export type IntraPodLabel = (typeof INTRA_POD_LABELS)[number];

/** One label set's running totals (flows, bytes), copied into the counters at scrape time. */
interface Series<L extends string> {
  key: string;
  labels: Record<L, string>;
  flows: number;
  bytes: number;
}

export interface MetricsSources {
  /** plainsight_active_flows groups (not ended, seen recently), kept up to date by the store. */
  activeGroups(): Iterable<ActiveGroup>;
  agentsConnected(): number;
  storedFlows(): number;
  /** Open connections per listener (grpc, http). */
  openConnections?(): Record<'grpc' | 'http', number>;
  /** Bytes of the ingest log on disk (--data-dir); absent: no log. */
  walBytes?(): number;
}

export class AggregatorMetrics {
  readonly registry = new Registry();
  readonly flowsTotal: Counter<FlowLabel>;
  readonly bytesTotal: Counter<FlowLabel>;
  readonly intraPodFlowsTotal: Counter<IntraPodLabel>;
  readonly intraPodBytesTotal: Counter<IntraPodLabel>;
  readonly lostSamples: Counter<'node'>;
  readonly batches: Counter<'result'>;
  readonly summaries: Counter;
  readonly droppedBatches: Counter<'node'>;
  readonly seriesOverflow: Counter<'metric'>;
  readonly evictions: Counter<'reason'>;
  readonly disagreements: Counter;
  readonly throttledSeconds: Counter<'node'>;
  readonly rateLimitedBatches: Counter<'node'>;
  readonly streamsClosed: Counter<'reason'>;
  readonly connectionsClosed: Counter<'reason'>;
  readonly walSegmentsDeleted: Counter<'reason'>;
  /**
   * Label-set key → running totals of the two flow counters. Ingest adds to plain numbers
   * here (no label hashing per summary); the counters copy them at scrape time (collect()).
   */
  private readonly series = new Map<string, Series<FlowLabel>>();
  /** The same for the two intra-pod counters. */
  private readonly intraPodSeries = new Map<string, Series<IntraPodLabel>>();

  constructor(
    sources: MetricsSources,
    private readonly maxSeries = 10_000,
  ) {
    const registers = [this.registry];
    const series = this.series;
    const intraPodSeries = this.intraPodSeries;
    this.flowsTotal = new Counter({
      name: 'plainsight_flows_total',
      help: 'Connections seen, by edge and verdict.',
      labelNames: FLOW_LABELS,
      registers,
      collect() {
        this.reset();
        for (const s of series.values()) this.inc(s.labels, s.flows);
      },
    });
    this.bytesTotal = new Counter({
      name: 'plainsight_bytes_total',
      help: 'Payload bytes (both directions), by edge and verdict.',
      labelNames: FLOW_LABELS,
      registers,
      collect() {
        this.reset();
        for (const s of series.values()) this.inc(s.labels, s.bytes);
      },
    });
    this.intraPodFlowsTotal = new Counter({
      name: 'plainsight_intra_pod_flows_total',
      help: "Connections inside one pod (its loopback: app <-> sidecar), not on the wire; not in plainsight_flows_total.",
      labelNames: INTRA_POD_LABELS,
      registers,
      collect() {
        this.reset();
        for (const s of intraPodSeries.values()) this.inc(s.labels, s.flows);
      },
    });
    this.intraPodBytesTotal = new Counter({
      name: 'plainsight_intra_pod_bytes_total',
      help: 'Payload bytes (both directions) of connections inside one pod; not in plainsight_bytes_total.',
      labelNames: INTRA_POD_LABELS,
      registers,
      collect() {
        this.reset();
        for (const s of intraPodSeries.values()) this.inc(s.labels, s.bytes);
      },
    });
    new Gauge({
      name: 'plainsight_active_flows',
      help: 'Connections open now (not ended, seen within the last 2 minutes).',
      labelNames: ACTIVE_LABELS,
      registers,
      collect() {
        this.reset();
        for (const g of sources.activeGroups()) this.set({ src_namespace: g.srcNamespace, dst_namespace: g.dstNamespace, verdict: g.verdict }, g.count);
      },
    });
    new Gauge({
      name: 'plainsight_agents_connected',
      help: 'Agents with an open ingest stream.',
      registers,
      collect() {
        this.set(sources.agentsConnected());
      },
    });
    this.lostSamples = new Counter({ name: 'plainsight_agent_lost_samples_total', help: 'Handshake samples agents could not read (kernel ring buffer full).', labelNames: ['node'] as const, registers });
    this.batches = new Counter({ name: 'plainsight_aggregator_ingest_batches_total', help: 'Agent batches received, by result (accepted, duplicate, invalid, refused: the ingest log could not be written, the agent resends it).', labelNames: ['result'] as const, registers });
    this.summaries = new Counter({ name: 'plainsight_aggregator_ingest_summaries_total', help: 'Flow summaries accepted (rate: the ingest rate).', registers });
    this.droppedBatches = new Counter({ name: 'plainsight_aggregator_agent_dropped_batches_total', help: 'Batches agents dropped because their buffer was full (reported in-band).', labelNames: ['node'] as const, registers });
    this.seriesOverflow = new Counter({ name: 'plainsight_aggregator_series_overflow_total', help: 'Increments not recorded because the label-set cap was reached.', labelNames: ['metric'] as const, registers });
    this.evictions = new Counter({ name: 'plainsight_aggregator_flows_evicted_total', help: 'Stored flows evicted, by reason (retention, capacity).', labelNames: ['reason'] as const, registers });
    this.disagreements = new Counter({ name: 'plainsight_aggregator_verdict_disagreements_total', help: 'Flows whose two ends reported different verdicts.', registers });
    this.throttledSeconds = new Counter({
      name: 'plainsight_aggregator_throttled_seconds_total',
      help: "Time agents' Report streams were held back by the per-agent rate limit (--agent-rate-limit).",
      labelNames: ['node'] as const,
      registers,
    });
    this.rateLimitedBatches = new Counter({
      name: 'plainsight_aggregator_rate_limited_batches_total',
      help: 'Agent batches delayed by the per-agent rate limit (never dropped).',
      labelNames: ['node'] as const,
      registers,
    });
    this.streamsClosed = new Counter({
      name: 'plainsight_aggregator_ingest_streams_closed_total',
      help: 'Report streams the aggregator closed: replaced (a newer stream from the same agent), idle (no batch within --ingest-idle-timeout).',
      labelNames: ['reason'] as const,
      registers,
    });
    for (const reason of ['replaced', 'idle']) this.streamsClosed.inc({ reason }, 0);
    this.connectionsClosed = new Counter({
      name: 'plainsight_aggregator_connections_closed_total',
      help: 'gRPC connections or calls the aggregator cut: handshake_timeout (no call started in time), request_timeout (a request never arrived), connection_limit (refused at accept: --max-connections).',
      labelNames: ['reason'] as const,
      registers,
    });
    for (const reason of ['handshake_timeout', 'request_timeout', 'connection_limit']) this.connectionsClosed.inc({ reason }, 0);
    this.walSegmentsDeleted = new Counter({
      name: 'plainsight_aggregator_wal_segments_deleted_total',
      help: 'Ingest log segments deleted: retention (every batch older than --retention), size (the log reached --wal-max-bytes; acknowledged history lost).',
      labelNames: ['reason'] as const,
      registers,
    });
    for (const reason of ['retention', 'size']) this.walSegmentsDeleted.inc({ reason }, 0);
    new Gauge({
      name: 'plainsight_aggregator_wal_bytes',
      help: 'Bytes of the ingest log (--data-dir) on disk; bounded by --wal-max-bytes.',
      registers,
      collect() {
        this.set(sources.walBytes?.() ?? 0);
      },
    });
    new Gauge({
      name: 'plainsight_aggregator_stored_flows',
      help: 'Flows held in the store.',
      registers,
      collect() {
        this.set(sources.storedFlows());
      },
    });
    new Gauge({
      name: 'plainsight_aggregator_open_connections',
      help: 'Open connections by listener (grpc, http); each is capped by --max-connections.',
      labelNames: ['listener'] as const,
      registers,
      collect() {
        for (const [listener, n] of Object.entries(sources.openConnections?.() ?? { grpc: 0, http: 0 })) this.set({ listener }, n);
      },
    });
    new Gauge({
      name: 'plainsight_aggregator_series',
      help: 'Label sets of plainsight_flows_total / plainsight_bytes_total in use.',
      registers,
      collect: () => undefined,
    }).set(0);
    collectDefaultMetrics({ register: this.registry, prefix: 'plainsight_aggregator_' });
  }

  get seriesCount(): number {
    return this.series.size;
  }

  /** Counts a new flow; fixes its series (labels) for later byte increments. */
  countFlow(f: StoredFlow): void {
    if (f.intraPod) {
      this.countIntraPod(f);
      return;
    }
    // The key straight from the flow (the same values flowLabels() gives); the labels object only for a new series.
    const key = `${f.clientId.namespace}\u0000${f.clientId.workload}\u0000${f.serverId.namespace}\u0000${f.serverId.workload}\u0000${f.server.port}\u0000${f.verdict}\u0000${f.protocol || 'unknown'}\u0000${f.mesh}\u0000${f.tls?.version || 'none'}`;
    let s = this.series.get(key);
    if (!s) {
      const labels = flowLabels(f);
      if (this.series.size >= this.maxSeries) {
        this.seriesOverflow.inc({ metric: 'plainsight_flows_total' });
        return;
      }
      this.series.set(key, (s = { key, labels, flows: 0, bytes: 0 }));
      (this.registry.getSingleMetric('plainsight_aggregator_series') as Gauge).set(this.series.size);
    }
    // The series' own key string: one copy per label set, not one per flow.
    f.seriesKey = s.key;
    s.flows++;
  }

  addBytes(f: StoredFlow, n: number): void {
    if (n <= 0) return;
    const s = f.seriesKey === undefined ? undefined : (f.intraPod ? this.intraPodSeries : this.series).get(f.seriesKey);
    if (!s) {
      this.seriesOverflow.inc({ metric: f.intraPod ? 'plainsight_intra_pod_bytes_total' : 'plainsight_bytes_total' });
      return;
    }
    s.bytes += n;
  }

  /** plainsight_intra_pod_flows_total: the pod (both ends are it), server port, verdict, protocol. */
  private countIntraPod(f: StoredFlow): void {
    const key = `${f.serverId.namespace}\u0000${f.serverId.workload}\u0000${f.server.port}\u0000${f.verdict}\u0000${f.protocol || 'unknown'}`;
    let s = this.intraPodSeries.get(key);
    if (!s) {
      if (this.intraPodSeries.size >= this.maxSeries) {
        this.seriesOverflow.inc({ metric: 'plainsight_intra_pod_flows_total' });
        return;
      }
      const labels: Record<IntraPodLabel, string> = {
        namespace: f.serverId.namespace,
        workload: f.serverId.workload,
        dst_port: String(f.server.port),
        verdict: f.verdict,
        protocol: f.protocol || 'unknown',
      };
      this.intraPodSeries.set(key, (s = { key, labels, flows: 0, bytes: 0 }));
    }
    f.seriesKey = s.key;
    s.flows++;
  }
}

export function flowLabels(f: StoredFlow): Record<FlowLabel, string> {
  return {
    src_namespace: f.clientId.namespace,
    src_workload: f.clientId.workload,
    dst_namespace: f.serverId.namespace,
    dst_workload: f.serverId.workload,
    dst_port: String(f.server.port),
    verdict: f.verdict,
    protocol: f.protocol || 'unknown',
    mesh: f.mesh,
    tls_version: f.tls?.version || 'none',
  };
}
