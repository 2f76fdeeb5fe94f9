// The agent's self-metrics (one prom-client Registry we own) and its HTTP endpoint:
// GET /metrics (Prometheus text), GET /healthz (200 "ok" while the agent runs).
// Gauges read their value at scrape time (collect), counters are bumped by the agent.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PlainsightError } from './errors.js';
import type { ExporterStats } from './export/index.js';

export interface GaugeSources {
  flowsTracked(): number;
  mapFillRatio(): number;
  attachments(): { tcx: number; clsact: number; socket: number };
  pods(): number;
  /** The exporter's counters, when the agent reports to an aggregator. */
  exporter?(): ExporterStats | undefined;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly loopDelay: IntervalHistogram;
  readonly lostSamples: Counter;
  readonly samplesDropped: Counter;
  readonly samples: Counter;
  readonly attachFailures: Counter<'kind'>;
  readonly evictions: Counter;
  readonly mapInsertFailures: Counter;
  readonly ringBudgetExhausted: Counter;
  readonly flowsReported: Counter<'verdict' | 'final'>;
  readonly classifySeconds: Histogram;
  readonly drainSeconds: Histogram;

  constructor(src: GaugeSources) {
    const registers = [this.registry];
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    const loop = this.loopDelay;
    new Gauge({
      name: 'plainsight_agent_flows_tracked',
      help: 'Flows the agent holds (kernel map entries joined with samples, not yet final).',
      registers,
      collect() {
        this.set(src.flowsTracked());
      },
    });
    new Gauge({
      name: 'plainsight_agent_map_fill_ratio',
      help: 'Kernel flow map entries / capacity at the last drain (1 means LRU evictions).',
      registers,
      collect() {
        this.set(src.mapFillRatio());
      },
    });
    new Gauge({
      name: 'plainsight_agent_attachments',
      help: 'Attached hooks by kind (tcx, clsact, socket).',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        for (const [kind, n] of Object.entries(src.attachments())) this.set({ kind }, n);
      },
    });
    new Gauge({
      name: 'plainsight_agent_pods',
      help: 'Pods (network namespaces in local mode) being observed.',
      registers,
      collect() {
        this.set(src.pods());
      },
    });
    // One histogram window per scrape: p99 and max are read together, then it restarts
    // (prom-client collects in registration order, so the max gauge sees this window).
    let lagMaxNs = 0;
    new Gauge({
      name: 'plainsight_agent_event_loop_lag_seconds',
      help: 'Event loop delay of the agent, p99 over the last scrape interval.',
      registers,
      collect() {
        this.set(loop.percentile(99) / 1e9);
        lagMaxNs = loop.max;
        loop.reset();
      },
    });
    new Gauge({
      name: 'plainsight_agent_event_loop_lag_max_seconds',
      help: 'Event loop delay of the agent, maximum over the last scrape interval.',
      registers,
      collect() {
        this.set(lagMaxNs / 1e9);
      },
    });
    new Gauge({
      name: 'plainsight_agent_memory_bytes',
      help: 'Agent memory: rss, heap_used (JS objects), external (memory outside the JS heap V8 knows of: Buffers, ArrayBuffers).',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        const m = process.memoryUsage();
        this.set({ kind: 'rss' }, m.rss);
        this.set({ kind: 'heap_used' }, m.heapUsed);
        this.set({ kind: 'heap_total' }, m.heapTotal);
        this.set({ kind: 'external' }, m.external);
      },
    });
    // The exporter keeps its own counts; these copy them at scrape time.
    const exp = (pick: (s: ExporterStats) => number) =>
      function collect(this: Gauge | Counter): void {
        const s = src.exporter?.();
        if (!s) return;
        this.reset();
        if (this instanceof Gauge) this.set(pick(s));
        else this.inc(pick(s));
      };
    new Counter({ name: 'plainsight_agent_export_reconnects_total', help: 'Times the aggregator stream was lost (error, end, or no acknowledgement in time) and reopened.', registers, collect: exp((s) => s.reconnects) });
    new Counter({ name: 'plainsight_agent_export_dropped_batches_total', help: 'Batches dropped because the export buffer was full (the aggregator is away or throttling).', registers, collect: exp((s) => s.droppedBatches) });
    new Gauge({ name: 'plainsight_agent_export_queued_batches', help: 'Batches waiting for an acknowledgement.', registers, collect: exp((s) => s.queued) });
    new Gauge({ name: 'plainsight_agent_export_connected', help: '1 while the aggregator stream is open.', registers, collect: exp((s) => (s.connected ? 1 : 0)) });
    this.lostSamples = new Counter({
      name: 'plainsight_agent_lost_samples_total',
      help: 'Handshake samples the kernel could not queue (ring buffer full).',
      registers,
    });
    this.samplesDropped = new Counter({
      name: 'plainsight_agent_samples_dropped_total',
      help: 'Handshake samples read but dropped: the flow table was full (--max-flows) because the agent fell behind.',
      registers,
    });
    this.samples = new Counter({ name: 'plainsight_agent_samples_total', help: 'Handshake samples read from the ring buffer.', registers });
    this.attachFailures = new Counter({
      name: 'plainsight_agent_attach_failures_total',
      help: 'Hooks that could not be attached (or a namespace that could not be inspected).',
      labelNames: ['kind'] as const,
      registers,
    });
    for (const kind of ['tcx', 'socket']) this.attachFailures.inc({ kind }, 0);
    this.evictions = new Counter({
      name: 'plainsight_agent_evictions_total',
      help: 'Flows that left the kernel map without the agent expiring them (LRU eviction under map pressure).',
      registers,
    });
    this.mapInsertFailures = new Counter({
      name: 'plainsight_agent_map_insert_failures_total',
      help: 'Packets of flows the kernel could not insert into the flow map (not counted anywhere else).',
      registers,
    });
    this.ringBudgetExhausted = new Counter({
      name: 'plainsight_agent_ring_budget_exhausted_total',
      help: 'Ring buffer reads that hit their per-tick budget with records left (the reader is falling behind).',
      registers,
    });
    this.flowsReported = new Counter({
      name: 'plainsight_agent_flows_reported_total',
      help: 'Flow summaries reported, by verdict; final="true" for end-of-flow totals.',
      labelNames: ['verdict', 'final'] as const,
      registers,
    });
    this.classifySeconds = new Histogram({
      name: 'plainsight_agent_classify_seconds',
      help: 'Time to classify one flow from its samples.',
      buckets: [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2],
      registers,
    });
    this.drainSeconds = new Histogram({
      name: 'plainsight_agent_drain_seconds',
      help: 'Time of one drain tick (kernel counters read, joined, classified, expired).',
      buckets: [1e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1],
      registers,
    });
  }

  close(): void {
    this.loopDelay.disable();
  }
}

/** "HOST:PORT", ":PORT" or "PORT" → listen options. */
export function parseListenAddr(addr: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))?:?(\d+)$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `bad listen address "${addr}"`, { hint: 'use HOST:PORT or :PORT, e.g. --metrics-addr :9101' });
  }
  const host = m[1] ?? (m[2] || undefined);
  return { host, port };
}

export class MetricsServer {
  private constructor(
    private readonly server: http.Server,
    readonly address: AddressInfo,
  ) {}

  /**
   * Slowloris: request headers must arrive within `headersTimeoutMs` (default 10 s, checked
   * every second), a connection silent for twice that closes, idle keep-alive after 5 s,
   * at most `maxConnections` (default 1024) open.
   */
  static async listen(registry: Registry, addr: string, healthy: () => boolean, limits: { headersTimeoutMs?: number; maxConnections?: number } = {}): Promise<MetricsServer> {
    const { host, port } = parseListenAddr(addr);
    const t = limits.headersTimeoutMs ?? 10_000;
    const server = http.createServer({ headersTimeout: t, requestTimeout: 2 * t, keepAliveTimeout: 5000, connectionsCheckingInterval: Math.min(1000, t) }, (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405).end();
      } else if (path === '/metrics') {
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
      } else if (path === '/healthz') {
        const ok = healthy();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not ready\n');
      } else {
        res.writeHead(404).end();
      }
    });
    server.maxConnections = limits.maxConnections ?? 1024;
    server.setTimeout(2 * t, (socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new PlainsightError('PLAINSIGHT_ERR_AGENT_LISTEN', `cannot listen on ${addr} for metrics: ${err.code ?? err.message}`, { cause: err }),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    server.unref();
    return new MetricsServer(server, server.address() as AddressInfo);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
