// The agent's flow table: kernel counters (drained in batches) joined with ring buffer
// samples per flow, classified once, reported, expired.
//
// A flow is one connection: the map key (which includes the observing interface) plus
// the entry's first_seen_ns, which the kernel resets — with the generation — when a SYN
// restarts the key (port reuse), and which every sample carries. So samples and counters
// of connections that reuse a 5-tuple never mix.
//
// Each flow produces up to two output lines:
//   final=false  when it is classified: enough samples (every sample slot of both
//                directions used), the TCP connection ended (FIN/RST), or `classifyAfterMs`
//                after its first sample — with the counters so far;
//   final=true   when it ends for the agent: idle expiry (then its map entry is deleted),
//                replaced by a new connection on the same key, evicted by the kernel's LRU,
//                or agent shutdown — with the complete totals (not deltas) and the
//                classification again if samples arrived since.
// `countersComplete: false` on a final line says the kernel entry went away between two
// drains (port reuse within one drain interval, LRU eviction): its last packets were not
// read, and bytes fall back to at least what the samples account for.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { FlowKey, FlowRecord, Sample } from '../bpf/flow-abi.js';
import { classify } from '../classify/index.js';
import type { Classification } from '../classify/types.js';
import { toFlowJson, type FlowJson } from '../offline/report.js';
import { assemble } from './assembler.js';

const TCP_FIN = 0x01;
const TCP_RST = 0x04;
/** Finalized flow ids remembered, so a late sample does not resurrect one. */
const FINISHED_MEMORY = 65536;

/** Where a flow was seen, resolved from its key's ifindex when the flow is first seen. */
export interface ObservationPoint {
  pod?: string;
  interface: string;
  /** Pod loopback: app ↔ sidecar traffic inside one pod, plaintext by design. */
  intraPod: boolean;
  /** The observing pod's own addresses (to tell which endpoint is the peer). */
  podAddresses?: ReadonlySet<string>;
}

export interface TrackerOptions {
  samplesPerDirection: number;
  idleTimeoutMs: number;
  /** TCP flows that ended (FIN both ways, or RST) expire after this much quiet. */
  closedTimeoutMs: number;
  classifyAfterMs: number;
}

export interface TrackerHooks {
  /** Observation point of a key's ifindex, or undefined when not ours (anymore). */
  resolve(ifindex: number): ObservationPoint | undefined;
  /** Pod owning an address, when known. */
  podOf(ip: string): string | undefined;
  emit(line: AgentFlowJson): void;
  onClassify(seconds: number): void;
  onEviction(): void;
}

export interface AgentFlowJson extends FlowJson {
  pod?: string;
  peerPod?: string;
  intraPod: boolean;
  interface: string;
  flowId: string;
  final: boolean;
  countersComplete?: boolean;
  midstream?: boolean;
}

interface Tracked {
  id: string;
  keyStr: string;
  key: FlowKey;
  startNs: bigint;
  generation: number;
  point: ObservationPoint | undefined;
  toServer: Sample[];
  toClient: Sample[];
  /** Sum of payloadLen of the samples, per direction: a floor for the byte counters. */
  sampledBytes: { toServer: number; toClient: number };
  record: FlowRecord | undefined;
  firstSampleMs: number;
  classification: Classification | undefined;
  classifiedWith: number;
  reported: boolean;
}

export function keyString(k: FlowKey): string {
  return `${k.ifindex}|${k.proto}|${k.a.ip}|${k.a.port}|${k.b.ip}|${k.b.port}`;
}

const LOOPBACK = /^(127\.|::1$)/;

export class FlowTracker {
  private readonly flows = new Map<string, Tracked>();
  private readonly finished = new Map<string, true>();
  /** Monotonic ns ↔ wall ms, for first/last seen. */
  private readonly monoBaseNs = process.hrtime.bigint();
  private readonly wallBaseMs = Date.now();
  stats = { samples: 0, samplesIgnored: 0, classified: 0, finalized: 0, evictions: 0, incomplete: 0 };

  constructor(
    private readonly opts: TrackerOptions,
    private readonly hooks: TrackerHooks,
  ) {}

  get size(): number {
    return this.flows.size;
  }

  onSample(s: Sample): void {
    const keyStr = keyString(s.key);
    const id = `${keyStr}#${s.flowStartNs}`;
    if (this.finished.has(id)) {
      this.stats.samplesIgnored++;
      return;
    }
    this.stats.samples++;
    const t = this.flows.get(id) ?? this.create(id, keyStr, s.key, s.flowStartNs, s.generation);
    if (t.firstSampleMs === 0) t.firstSampleMs = Date.now();
    if (s.direction === 'to-server') {
      t.toServer.push(s);
      t.sampledBytes.toServer += s.payloadLen;
    } else {
      t.toClient.push(s);
      t.sampledBytes.toClient += s.payloadLen;
    }
  }

  private create(id: string, keyStr: string, key: FlowKey, startNs: bigint, generation: number): Tracked {
    const t: Tracked = {
      id,
      keyStr,
      key,
      startNs,
      generation,
      point: this.hooks.resolve(key.ifindex),
      toServer: [],
      toClient: [],
      sampledBytes: { toServer: 0, toClient: 0 },
      record: undefined,
      firstSampleMs: 0,
      classification: undefined,
      classifiedWith: 0,
      reported: false,
    };
    this.flows.set(id, t);
    return t;
  }

  /**
   * One drain: every entry of the kernel map (read just now, after the ring buffer was
   * drained). Classifies what is ready, finalizes what ended. Returns the raw keys of
   * expired entries, to delete from the map.
   */
  sweep(records: readonly FlowRecord[], nowNs: bigint): Buffer[] {
    const nowMs = Date.now();
    const seen = new Set<string>();
    const liveKeys = new Set<string>();
    for (const r of records) {
      const keyStr = keyString(r.key);
      const id = `${keyStr}#${r.firstSeenNs}`;
      if (this.finished.has(id)) continue; // expired, deleted, and not recreated yet
      const t = this.flows.get(id) ?? this.create(id, keyStr, r.key, r.firstSeenNs, r.generation);
      t.record = r;
      seen.add(id);
      liveKeys.add(keyStr);
    }
    const expired: Buffer[] = [];
    for (const t of this.flows.values()) {
      if (!seen.has(t.id)) {
        // Gone from the map without our delete: a newer connection took the key, or the
        // LRU evicted it (or samples of a connection that never reached a drain).
        if (t.record && !liveKeys.has(t.keyStr)) {
          this.stats.evictions++;
          this.hooks.onEviction();
        }
        this.finalize(t, false);
        continue;
      }
      const r = t.record!;
      const idleMs = Number(nowNs - r.lastSeenNs) / 1e6;
      const flags = r.toServer.tcpFlags | r.toClient.tcpFlags;
      const closed =
        r.key.transport === 'tcp' &&
        ((flags & TCP_RST) !== 0 || ((r.toServer.tcpFlags & TCP_FIN) !== 0 && (r.toClient.tcpFlags & TCP_FIN) !== 0));
      if (idleMs >= this.opts.idleTimeoutMs || (closed && idleMs >= this.opts.closedTimeoutMs)) {
        this.finalize(t, true);
        expired.push(r.rawKey);
        continue;
      }
      if (!t.reported && this.ready(t, r, nowMs)) {
        this.classifyNow(t);
        t.reported = true;
        this.emit(t, false, true);
      }
    }
    return expired;
  }

  private ready(t: Tracked, r: FlowRecord, nowMs: number): boolean {
    if (t.toServer.length + t.toClient.length === 0) return false;
    const n = this.opts.samplesPerDirection;
    if (t.toServer.length >= n && t.toClient.length >= n) return true;
    if (r.key.transport === 'tcp' && ((r.toServer.tcpFlags | r.toClient.tcpFlags) & (TCP_FIN | TCP_RST)) !== 0) return true;
    return nowMs - t.firstSampleMs >= this.opts.classifyAfterMs;
  }

  /** Shutdown: every flow ends now, with the counters of the last drain. */
  finalizeAll(): void {
    for (const t of [...this.flows.values()]) this.finalize(t, true);
  }

  private finalize(t: Tracked, complete: boolean): void {
    this.flows.delete(t.id);
    this.finished.set(t.id, true);
    if (this.finished.size > FINISHED_MEMORY) {
      const oldest = this.finished.keys().next().value;
      if (oldest !== undefined) this.finished.delete(oldest);
    }
    if (t.classification === undefined || t.classifiedWith !== t.toServer.length + t.toClient.length) this.classifyNow(t);
    this.stats.finalized++;
    if (!complete) this.stats.incomplete++;
    this.emit(t, true, complete);
  }

  private sides(t: Tracked): { client: { ip: string; port: number }; server: { ip: string; port: number } } {
    if (t.record) return { client: t.record.client, server: t.record.server };
    // Samples only: a to-server sample came from the client; on the pod's veth, the side
    // with the pod's address is the pod. Without a clue, key side a.
    const { a, b } = t.key;
    const own = t.point?.podAddresses;
    const first = [...t.toServer, ...t.toClient].sort((x, y) => (x.timestampNs < y.timestampNs ? -1 : 1))[0];
    if (first && own && (own.has(a.ip) !== own.has(b.ip))) {
      const podSide = own.has(a.ip) ? a : b;
      const other = podSide === a ? b : a;
      const podSent = first.hook === 'tc-ingress' || first.hook === 'socket-out';
      const podIsClient = (first.direction === 'to-server') === podSent;
      return podIsClient ? { client: podSide, server: other } : { client: other, server: podSide };
    }
    return { client: a, server: b };
  }

  private classifyNow(t: Tracked): void {
    const { client, server } = this.sides(t);
    const n = this.opts.samplesPerDirection;
    const more = (samples: number, held: number): boolean => samples > held || held >= n;
    const input = assemble({
      transport: t.key.transport,
      clientPort: client.port,
      serverPort: server.port,
      toServer: t.toServer,
      toClient: t.toClient,
      toServerMore: more(t.record?.toServer.samples ?? 0, t.toServer.length),
      toClientMore: more(t.record?.toClient.samples ?? 0, t.toClient.length),
    });
    const t0 = performance.now();
    t.classification = classify(input);
    this.hooks.onClassify((performance.now() - t0) / 1000);
    t.classifiedWith = t.toServer.length + t.toClient.length;
    this.stats.classified++;
  }

  private emit(t: Tracked, final: boolean, complete: boolean): void {
    const c = t.classification!;
    const { client, server } = this.sides(t);
    const r = t.record;
    const bytes = {
      toServer: Math.max(r?.toServer.bytes ?? 0, t.sampledBytes.toServer),
      toClient: Math.max(r?.toClient.bytes ?? 0, t.sampledBytes.toClient),
    };
    const packets = {
      toServer: Math.max(r?.toServer.packets ?? 0, t.toServer.length),
      toClient: Math.max(r?.toClient.packets ?? 0, t.toClient.length),
    };
    const lastNs = r?.lastSeenNs ?? [...t.toServer, ...t.toClient].reduce((m, s) => (s.timestampNs > m ? s.timestampNs : m), t.startNs);
    const base = toFlowJson(
      {
        transport: t.key.transport,
        client,
        server,
        packets,
        bytes,
        firstSeenMs: this.wallMs(t.startNs),
        lastSeenMs: this.wallMs(lastNs),
      },
      c,
    );
    const point = t.point;
    const line: AgentFlowJson = {
      ...base,
      intraPod: point?.intraPod ?? false,
      interface: point?.interface ?? `ifindex ${t.key.ifindex}`,
      flowId: createHash('sha1').update(t.id).digest('hex').slice(0, 16),
      final,
    };
    if (point?.pod !== undefined) {
      line.pod = point.pod;
      const peer = this.peerOf(point, client.ip, server.ip);
      if (peer !== undefined) line.peerPod = peer;
    }
    if (final) line.countersComplete = complete;
    if (r?.midstream) line.midstream = true;
    this.hooks.emit(line);
  }

  /** The pod of the endpoint that is not the observing pod (loopback: the pod itself). */
  private peerOf(point: ObservationPoint, clientIp: string, serverIp: string): string | undefined {
    if (point.intraPod || (LOOPBACK.test(clientIp) && LOOPBACK.test(serverIp))) return point.pod;
    const own = point.podAddresses;
    const other = own?.has(clientIp) ? serverIp : own?.has(serverIp) ? clientIp : undefined;
    if (other !== undefined) return this.hooks.podOf(other);
    return this.hooks.podOf(clientIp) ?? this.hooks.podOf(serverIp);
  }

  private wallMs(ns: bigint): number {
    return this.wallBaseMs + Number(ns - this.monoBaseNs) / 1e6;
  }
}
