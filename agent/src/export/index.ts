// The agent side of IngestService.Report: flow summaries out, acknowledgements in.
//
//   const exporter = new Exporter({ address: 'aggregator:50051', node: 'node-1' });
//   exporter.enqueue(flowLines, pods);     // never blocks; returns the batch's sequence
// or, letting it batch per interval (default 1 s):
//   const exporter = new Exporter({ address, node, intervalMs: 1000, inventory: () => pods });
//   exporter.add(line);                     // each flow line as the tracker emits it
//   exporter.stats                          // queued, acked, dropped, reconnects, …
//   await exporter.close();                 // waits a little for acks, then closes
//
// Batches are encoded once, at enqueue, and kept until the aggregator acknowledges them:
// a bounded buffer (maxBufferBytes). Past the bound the oldest batches are dropped and
// counted, and the counts travel in-band in every later batch (dropped_batches,
// dropped_flows). The stream reconnects with exponential backoff and replays every
// unacknowledged batch in order; the aggregator is idempotent by (agent_id, sequence),
// so a replay never double counts. mTLS when certificate files are given.
//
// A hung aggregator (process stopped, TCP still open: nothing errors, nothing answers) is
// noticed two ways: no acknowledgement for ackTimeoutMs while batches are in flight
// cancels the stream and reconnects; keepalive pings unanswered close the connection.
// An aggregator that throttles (its per-agent rate limit) delays acks instead of
// refusing: keep ackTimeoutMs well above one batch's share of that limit.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { packageDefinition } from '../../../proto/gen/index.js';
import type { ReportRequest } from '../../../proto/gen/types/plainsight/v1/ReportRequest.js';
import type { ReportResponse__Output } from '../../../proto/gen/types/plainsight/v1/ReportResponse.js';
import type { FlowSummary } from '../../../proto/gen/types/plainsight/v1/FlowSummary.js';
import type { Pod } from '../../../proto/gen/types/plainsight/v1/Pod.js';
import { PlainsightError } from '../errors.js';

/**
 * One flow as the agent reports it. The agent's jsonl lines (FlowJson + flowId, pod,
 * peerPod, final, intraPod) fit as they are.
 */
export interface ExportFlow {
  /** Stable for the connection within this agent. */
  flowId: string;
  transport: 'tcp' | 'udp' | 'esp' | 'ah' | 'other';
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  verdict: 'plaintext' | 'tls' | 'mtls' | 'encrypted-other' | 'unknown';
  protocol: string;
  upgradedFrom?: string;
  tls?: {
    version?: string;
    sni?: string;
    alpn?: string[];
    alpnSelected?: string;
    cipher?: string;
    ja4?: string;
    clientCertificate?: 'observed' | 'inferred' | 'none' | 'unknown';
    resumed?: boolean;
    helloRetryRequest?: boolean;
  };
  mesh: 'istio' | 'istio-ambient' | 'linkerd' | 'consul' | 'none';
  /** Totals so far (counters: 'totals', the default) or since this flow's previous summary ('deltas'). */
  packets: { toServer: number; toClient: number };
  bytes: { toServer: number; toClient: number };
  /** ISO time (FlowJson) or epoch ms. */
  firstSeen?: string;
  lastSeen?: string;
  firstSeenMs?: number;
  lastSeenMs?: number;
  /** The connection ended: no more summaries for this flowId. */
  final?: boolean;
  evidence?: string;
  pod?: string;
  peerPod?: string;
  intraPod?: boolean;
}

/** A pod of this node: `ips` (or the local inventory's `addresses`). */
export interface ExportPod {
  name: string;
  /** Kubernetes namespace; local mode: omitted ("local"). */
  namespace?: string;
  /** Owner workload; default: the pod name (local mode: the netns name). */
  workload?: string;
  ips?: readonly string[];
  addresses?: readonly string[];
}

export interface ExporterOptions {
  /** HOST:PORT of the aggregator. */
  address: string;
  /** This node's name (labels plainsight_agent_lost_samples_total). */
  node: string;
  /** Default: `${node}/${random}` — a new sequence space per agent process. */
  agentId?: string;
  /** Unacknowledged batches kept, in encoded bytes. Default 16 MiB. */
  maxBufferBytes?: number;
  /** How enqueue()'s packets/bytes count. Default 'totals' (the agent tracker's lines); deltas are computed here. */
  counters?: 'totals' | 'deltas';
  /** PEM paths; all three turn on mTLS. */
  tls?: { cert: string; key: string; ca: string; serverName?: string };
  /** Reconnect backoff: first delay, doubled per failure up to maxMs (±20% jitter). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Batches written but not yet acknowledged, at most. Default 32. */
  maxInFlight?: number;
  /** No acknowledgement for this long while batches are in flight: the stream is given up and reopened. Default 30 s. */
  ackTimeoutMs?: number;
  /** Keepalive ping interval on the connection (dead after 10 s, or a third of it, without an answer). Default 30 s. */
  keepaliveMs?: number;
  /** With add(): one batch per interval (ms), carrying what was added. 0 (default): no timer, call enqueue() yourself. */
  intervalMs?: number;
  /** With intervalMs: the node's pods, read at each interval. */
  inventory?: () => readonly ExportPod[];
  log?: Logger;
}

export interface ExporterStats {
  agentId: string;
  connected: boolean;
  /** Last sequence enqueued. */
  sequence: number;
  /** Batches waiting for an acknowledgement, and their encoded size. */
  queued: number;
  queuedBytes: number;
  acked: number;
  /** Acknowledged as duplicates (replays the aggregator had already accepted). */
  duplicates: number;
  droppedBatches: number;
  droppedFlows: number;
  reconnects: number;
  lastError: string | undefined;
}

interface Pending {
  seq: number;
  buf: Buffer;
  flows: number;
}

const SERVICE = 'plainsight.v1.IngestService';
/** counters: 'totals' — flows whose last totals are remembered, at most (oldest forgotten first). */
const MAX_TRACKED_FLOWS = 1 << 20;
/** The inventory travels when it changes and at least every this many batches. */
const INVENTORY_EVERY = 10;

export class Exporter {
  private readonly opts: Required<Pick<ExporterOptions, 'maxBufferBytes' | 'counters' | 'maxInFlight' | 'ackTimeoutMs'>> & ExporterOptions;
  private readonly client: grpc.Client;
  private readonly queue: Pending[] = [];
  private queuedBytes = 0;
  /** Batches of `queue` written on the current stream (a prefix). */
  private written = 0;
  private call: grpc.ClientDuplexStream<Buffer, ReportResponse__Output> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  private lastInventory = '';
  private lastPods: readonly ExportPod[] | undefined;
  /** After a lost stream: the aggregator may have restarted without its state; resend the inventory. */
  private forceInventory = false;
  private inventoryAge = 0;
  private lostSamples = 0;
  private readonly totals = new Map<string, { p: [number, number]; b: [number, number] }>();
  private readonly serialize: (req: ReportRequest) => Buffer;
  private readonly deserialize: (b: Buffer) => ReportResponse__Output;
  private drainWaiters: (() => void)[] = [];
  private added: ExportFlow[] = [];
  private readonly interval: NodeJS.Timeout | undefined;
  private readonly watchdog: NodeJS.Timeout;
  /** Last acknowledgement, or when the first of the batches now in flight was written. */
  private progressMs = 0;
  /** Gives up the current stream (its `lost`). */
  private abandon: ((why: string) => void) | undefined;
  private readonly s: ExporterStats;

  constructor(options: ExporterOptions) {
    this.opts = { maxBufferBytes: 16 << 20, counters: 'totals', maxInFlight: 32, ackTimeoutMs: 30_000, ...options };
    const agentId = options.agentId ?? `${options.node}/${randomBytes(6).toString('hex')}`;
    this.s = { agentId, connected: false, sequence: 0, queued: 0, queuedBytes: 0, acked: 0, duplicates: 0, droppedBatches: 0, droppedFlows: 0, reconnects: 0, lastError: undefined };
    const def = (packageDefinition[SERVICE] as grpc.ServiceDefinition).Report!;
    this.serialize = def.requestSerialize as (req: ReportRequest) => Buffer;
    this.deserialize = def.responseDeserialize as (b: Buffer) => ReportResponse__Output;
    const Client = grpc.makeGenericClientConstructor(
      { Report: { ...def, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b } },
      'IngestService',
    );
    this.client = new Client(options.address, credentials(options.tls), {
      'grpc.keepalive_time_ms': options.keepaliveMs ?? 30_000,
      'grpc.keepalive_timeout_ms': Math.min(10_000, Math.ceil((options.keepaliveMs ?? 30_000) / 3)),
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': this.opts.backoff?.initialMs ?? 250,
      'grpc.max_reconnect_backoff_ms': this.opts.backoff?.maxMs ?? 10_000,
      ...(options.tls?.serverName ? { 'grpc.ssl_target_name_override': options.tls.serverName } : {}),
    });
    this.watchdog = setInterval(() => this.checkAcks(), Math.min(1000, Math.ceil(this.opts.ackTimeoutMs / 4)));
    this.watchdog.unref();
    this.connect();
    if (options.intervalMs && options.intervalMs > 0) {
      this.interval = setInterval(() => this.tick(), options.intervalMs);
      this.interval.unref();
    }
  }

  /** Buffers one flow line for the next interval's batch (intervalMs). Never blocks. */
  add(flow: ExportFlow): void {
    if (!this.closed) this.added.push(flow);
  }

  /** Enqueues what add() collected (and the inventory): the interval timer calls it; callable by hand. */
  tick(): number {
    const flows = this.added;
    this.added = [];
    return this.enqueue(flows, this.opts.inventory?.());
  }

  get stats(): ExporterStats {
    return { ...this.s, queued: this.queue.length, queuedBytes: this.queuedBytes };
  }

  /** Adds kernel ring-buffer losses; sent (as a delta) with the next batch. */
  addLostSamples(n: number): void {
    this.lostSamples += n;
  }

  /**
   * Queues one batch (possibly empty: it still carries inventory and loss counts) and
   * returns its sequence. Never blocks and never throws for a slow or absent aggregator.
   */
  enqueue(flows: readonly ExportFlow[], inventory?: readonly ExportPod[]): number {
    if (this.closed) return -1;
    const seq = ++this.s.sequence;
    const req: ReportRequest = {
      agentId: this.s.agentId,
      sequence: seq,
      nodeName: this.opts.node,
      flows: flows.map((f) => this.summary(f)),
      droppedBatches: this.s.droppedBatches,
      droppedFlows: this.s.droppedFlows,
      lostSamplesDelta: this.lostSamples,
      oldestPendingSequence: this.queue[0]?.seq ?? seq,
      sentUnixNs: Date.now() * 1_000_000,
    };
    this.lostSamples = 0;
    if (inventory) this.lastPods = inventory;
    if (inventory) {
      const pods: Pod[] = inventory.map((p) => ({ name: p.name, namespace: p.namespace ?? 'local', workload: p.workload ?? p.name, ips: [...(p.ips ?? p.addresses ?? [])] }));
      const text = JSON.stringify(pods);
      if (text !== this.lastInventory || this.forceInventory || ++this.inventoryAge >= INVENTORY_EVERY) {
        this.forceInventory = false;
        req.inventory = { pods };
        this.lastInventory = text;
        this.inventoryAge = 0;
      }
    }
    const buf = this.serialize(req);
    // Make room: the oldest go first (the newest say most about now).
    while (this.queue.length > 0 && this.queuedBytes + buf.length > this.opts.maxBufferBytes) this.dropOldest();
    if (buf.length > this.opts.maxBufferBytes) {
      this.s.droppedBatches++;
      this.s.droppedFlows += flows.length;
      return seq;
    }
    this.queue.push({ seq, buf, flows: flows.length });
    this.queuedBytes += buf.length;
    this.pump();
    return seq;
  }

  /** Resolves true once every queued batch is acknowledged, false after timeoutMs. */
  flushed(timeoutMs = 5000): Promise<boolean> {
    if (this.queue.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        resolve(true);
      };
      this.drainWaiters.push(done);
    });
  }

  /** Waits up to drainMs for outstanding acknowledgements, then closes the stream and channel. */
  async close(drainMs = 2000): Promise<void> {
    if (this.closed) return;
    if (this.interval) clearInterval(this.interval);
    if (this.added.length > 0) this.tick();
    if (drainMs > 0 && this.queue.length > 0 && this.call) await this.flushed(drainMs);
    this.closed = true;
    clearInterval(this.watchdog);
    if (this.timer) clearTimeout(this.timer);
    const call = this.call;
    this.call = undefined;
    if (call) {
      call.removeAllListeners();
      call.on('error', () => undefined);
      call.cancel();
    }
    this.client.close();
    for (const w of this.drainWaiters.splice(0)) w();
  }

  private summary(f: ExportFlow): FlowSummary {
    let p: [number, number] = [f.packets.toServer, f.packets.toClient];
    let b: [number, number] = [f.bytes.toServer, f.bytes.toClient];
    if (this.opts.counters === 'totals') {
      const prev = this.totals.get(f.flowId);
      if (f.final) this.totals.delete(f.flowId);
      else {
        this.totals.set(f.flowId, { p, b });
        if (this.totals.size > MAX_TRACKED_FLOWS) this.totals.delete(this.totals.keys().next().value!);
      }
      if (prev) {
        p = [Math.max(0, p[0] - prev.p[0]), Math.max(0, p[1] - prev.p[1])];
        b = [Math.max(0, b[0] - prev.b[0]), Math.max(0, b[1] - prev.b[1])];
      }
    }
    const out: FlowSummary = {
      flowId: f.flowId,
      key: { transport: `TRANSPORT_${f.transport.toUpperCase()}` as never, client: f.client, server: f.server },
      pod: f.pod ?? '',
      peerPod: f.peerPod ?? '',
      verdict: `VERDICT_${f.verdict.toUpperCase().replace(/-/g, '_')}` as never,
      protocol: f.protocol,
      upgradedFrom: f.upgradedFrom ?? '',
      mesh: `MESH_${f.mesh.toUpperCase().replace(/-/g, '_')}` as never,
      packetsDelta: { toServer: p[0], toClient: p[1] },
      bytesDelta: { toServer: b[0], toClient: b[1] },
      firstSeenUnixNs: unixNs(f.firstSeenMs, f.firstSeen),
      lastSeenUnixNs: unixNs(f.lastSeenMs, f.lastSeen),
      final: f.final ?? false,
      evidence: f.evidence ?? '',
      intraPod: f.intraPod ?? false,
    };
    if (f.tls) {
      const t = f.tls;
      out.tls = {
        version: t.version ?? '',
        sni: t.sni ?? '',
        alpn: t.alpn ?? [],
        alpnSelected: t.alpnSelected ?? '',
        cipher: t.cipher ?? '',
        ja4: t.ja4 ?? '',
        clientCertificate: t.clientCertificate ? (`CLIENT_CERTIFICATE_${t.clientCertificate.toUpperCase()}` as never) : 'CLIENT_CERTIFICATE_UNSPECIFIED',
        resumed: t.resumed ?? false,
        helloRetryRequest: t.helloRetryRequest ?? false,
      };
    }
    return out;
  }

  private dropOldest(): void {
    const d = this.queue.shift()!;
    this.queuedBytes -= d.buf.length;
    if (this.written > 0) this.written--;
    this.s.droppedBatches++;
    this.s.droppedFlows += d.flows;
  }

  private connect(): void {
    if (this.closed) return;
    this.timer = undefined;
    this.written = 0;
    const call = this.client.makeBidiStreamRequest(
      `/${SERVICE}/Report`,
      (b: Buffer) => b,
      this.deserialize,
    );
    this.call = call;
    if (this.forceInventory && this.lastPods) this.enqueue([], this.lastPods);
    let acked = false;
    call.on('data', (r: ReportResponse__Output) => {
      if (!acked) {
        acked = true;
        this.failures = 0;
        this.s.connected = true;
      }
      this.ack(Number(r.sequence), r.duplicate);
    });
    call.on('metadata', () => {
      this.s.connected = true;
    });
    const lost = (why: string): void => {
      if (this.call !== call) return;
      this.call = undefined;
      this.abandon = undefined;
      this.s.connected = false;
      if (acked) this.forceInventory = true;
      this.s.lastError = why;
      this.failures++;
      this.s.reconnects++;
      const base = Math.min(this.opts.backoff?.maxMs ?? 10_000, (this.opts.backoff?.initialMs ?? 250) * 2 ** Math.min(this.failures - 1, 16));
      const delay = Math.round(base * (0.8 + Math.random() * 0.4));
      if (this.failures === 1 || this.failures % 10 === 0) this.opts.log?.warn({ err: why, retryInMs: delay, queued: this.queue.length }, 'aggregator stream lost; reconnecting');
      this.timer = setTimeout(() => this.connect(), delay);
      this.timer.unref();
    };
    call.on('error', (e: grpc.ServiceError) => lost(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`));
    call.on('end', () => lost('the aggregator ended the stream'));
    this.abandon = (why) => {
      call.removeAllListeners();
      call.on('error', () => undefined);
      call.cancel();
      lost(why);
    };
    this.pump();
  }

  /** The watchdog: batches in flight and no acknowledgement for ackTimeoutMs → reconnect. */
  private checkAcks(): void {
    if (!this.call || this.written === 0 || Date.now() - this.progressMs <= this.opts.ackTimeoutMs) return;
    this.abandon?.(`no acknowledgement for ${Math.round((Date.now() - this.progressMs) / 1000)} s (aggregator hung?)`);
  }

  private pump(): void {
    const call = this.call;
    if (!call) return;
    if (this.written === 0 && this.queue.length > 0) this.progressMs = Date.now();
    while (this.written < this.queue.length && this.written < this.opts.maxInFlight) {
      call.write(this.queue[this.written]!.buf);
      this.written++;
    }
  }

  private ack(seq: number, duplicate: boolean): void {
    const i = this.queue.findIndex((p) => p.seq === seq);
    if (i < 0) return;
    const [p] = this.queue.splice(i, 1);
    this.queuedBytes -= p!.buf.length;
    if (i < this.written) this.written--;
    this.progressMs = Date.now();
    this.s.acked++;
    if (duplicate) this.s.duplicates++;
    this.pump();
    if (this.queue.length === 0) for (const w of this.drainWaiters.splice(0)) w();
  }
}

/** ms (or an ISO time) → ns, as a number (int64 fields take numbers; doubles: 256 ns steps). */
function unixNs(ms: number | undefined, iso: string | undefined): number {
  const v = ms ?? (iso ? Date.parse(iso) : NaN);
  if (!Number.isFinite(v) || v <= 0) return 0;
  return Math.round(v * 1000) * 1000;
}

function credentials(tls: ExporterOptions['tls']): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (what: string, p: string): Buffer => {
    try {
      return readFileSync(p);
    } catch (cause) {
      throw new PlainsightError('PLAINSIGHT_ERR_AGG_TLS', `cannot read the ${what} ${p}: ${(cause as Error).message}`, { cause });
    }
  };
  return grpc.credentials.createSsl(read('CA certificate', tls.ca), read('private key', tls.key), read('certificate', tls.cert));
}
