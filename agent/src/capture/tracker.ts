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
//
// Built for 100k+ live flows: entries stay raw (the 44-byte key as a latin1 string,
// counters as numbers) and are decoded only when a line is printed; a drain touches an
// entry's counters only if its last_seen changed; samples are released once the flow is
// classified (later samples only raise the byte floor: the verdict is the first one), and
// identical classifications are shared. Work per drain (classify, report, expire) comes
// in slices of `workBudgetMs`: the agent runs the rest (`more`) after yielding to the
// event loop, so /healthz, /metrics and the ring buffer reader get their turn between
// slices however far behind the tracker is. `pump` (the ring buffer reader) runs every
// few hundred entries, so a burst of flows never leaves the ring unread for long.
//
// Bounded: at most 1.25 × `maxFlows` flows (the kernel map's capacity; at least +1024 for
// small maps, at most +16384). The map's flows, plus those the kernel already evicted
// that only the ring buffer showed since the last drain: they still get a line, from
// their samples.
// When the agent falls behind — its share of a loaded machine's CPU is too small for the
// churn — evicted flows wait in the table until a slice gets to them; once it is full new
// ones are not taken in: their samples are dropped and counted (stats.samplesDropped),
// their map entries picked up by a later drain once there is room (bench/soak: without
// the cap the table outgrew the map by a third within a minute and RSS kept growing).

import { performance } from 'node:perf_hooks';
import * as abi from '../bpf/flow-abi.js';
import { classify } from '../classify/index.js';
import type { Classification } from '../classify/types.js';
import { toFlowJson, type FlowJson } from '../offline/report.js';
import { assemble, type SampleBytes } from './assembler.js';

const TCP_FIN = 0x01;
const TCP_RST = 0x04;
/** Recently finalized flows remembered, so a late sample or a racing drain does not resurrect one. */
const FINISHED_MEMORY = 4096;
const U32 = 4294967296;
/** Above this map fill the LRU may evict: every drain is a full pass. */
const EVICTION_RISK_FILL = 0.9;
const FULL_PASS_EVERY = 16;
/** A packet counted while the previous read was under way may carry a slightly older last_seen. */
const READ_SLACK_NS = 50e6;
/** Distinct classifications kept for sharing. */
const CLASSIFICATIONS_SHARED = 4096;
/**
 * Table room beyond the map's capacity, for flows evicted between two drains: a quarter
 * of it, within these bounds (16k ≥ the new flows per second this agent was seen to follow).
 */
const CAP_SLACK_MIN = 1024;
const CAP_SLACK_MAX = 16384;
/** Entries visited between two looks at the clock. */
const VISIT_CHUNK = 1024;

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
  /** Time one slice of work (classify, report, expire) may take; the rest waits for `more`. Default 50 ms. */
  workBudgetMs?: number;
  /** The kernel map's capacity: the table holds maxFlows + clamp(maxFlows / 4, 1024, 16384) at most. Default: unbounded. */
  maxFlows?: number;
}

export interface TrackerHooks {
  /** Observation point of a key's ifindex, or undefined when not ours (anymore). */
  resolve(ifindex: number): ObservationPoint | undefined;
  /** Pod owning an address, when known. */
  podOf(ip: string): string | undefined;
  emit(line: AgentFlowJson): void;
  onClassify(seconds: number): void;
  onEviction(): void;
  /** Called every few hundred entries during a drain: read the ring buffer meanwhile. */
  pump?(): void;
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

interface HeldSample extends SampleBytes {
  toServer: boolean;
  hook: number;
}

/** One connection. Numbers, not objects: 100k of these must stay small. */
class Flow {
  /** Drain number that last saw the entry in the kernel map (0: never). */
  epoch = 0;
  /** Drain number current when the flow was created. */
  born = 0;
  lastSeenNs = 0;
  /** From the kernel entry; undefined until a drain saw it. */
  clientIsA: boolean | undefined = undefined;
  vflags = 0;
  pS = 0;
  pC = 0;
  bS = 0;
  bC = 0;
  fS = 0;
  fC = 0;
  /** Sample slots the kernel claimed per direction. */
  nS = 0;
  nC = 0;
  heldS = 0;
  heldC = 0;
  sampledS = 0;
  sampledC = 0;
  samples: HeldSample[] | null = null;
  /** ms since the tracker started (small integer) of the first sample; -1: none yet. */
  firstSampleMs = -1;
  classification: Classification | undefined = undefined;
  reported = false;

  constructor(
    /** The raw ps_flow_key as a latin1 string: a cheap, exact map key. */
    readonly k: string,
    readonly startNs: number,
    readonly point: ObservationPoint | undefined,
  ) {}
}

const u64 = (b: Buffer, off: number): number => b.readUInt32LE(off) + b.readUInt32LE(off + 4) * U32;

const LOOPBACK = /^(127\.|::1$)/;

/** A stable 64-bit id (two FNV-1a lanes) of key + start time, as 16 hex digits. */
function flowId(k: string, startNs: number): string {
  const s = `${k}#${startNs}`;
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) ^ (h2 >>> 15);
  }
  return (h1 >>> 0).toString(16).padStart(8, '0') + (h2 >>> 0).toString(16).padStart(8, '0');
}

export class FlowTracker {
  private readonly flows = new Map<string, Flow>();
  private readonly finished = new Set<string>();
  private readonly classifications = new Map<string, Classification>();
  private epoch = 0;
  /** Monotonic ns of the previous read (minus slack); -1 before the first. */
  private prevReadNs = -1;
  /** This drain marks every entry (eviction check). */
  private full = true;
  /** Entries with last_seen below this are skipped by a partial pass. */
  private since = -1;
  /** Flows created from a sample that no read has seen yet. */
  private readonly unseen = new Set<Flow>();
  /** Monotonic ns ↔ wall ms, for first/last seen. */
  private readonly monoBaseNs = Number(process.hrtime.bigint());
  private readonly wallBaseMs = Date.now();
  stats = { samples: 0, samplesIgnored: 0, samplesDropped: 0, classified: 0, finalized: 0, evictions: 0, incomplete: 0, budgetExhausted: 0 };
  /** The last slice of work stopped at its budget: call `more` (after yielding). */
  behind = false;
  private readonly cap: number;
  /** The clock of the last drain's read (monotonic ns). */
  private workNowNs = 0;
  /** Copies of the last read's batches, reused by the next (≈ maxFlows × 116 B). */
  private readonly batches: { keys: Buffer; values: Buffer; count: number }[] = [];
  private nBatches = 0;
  /** Next entry to visit: batch index, entry index. */
  private batchAt = 0;
  private entryAt = 0;
  /** Where the last slice of work stopped: the table's iterator, and the flow it had in hand. */
  private cursor: IterableIterator<Flow> | undefined;
  private held: Flow | undefined;

  constructor(
    private readonly opts: TrackerOptions,
    private readonly hooks: TrackerHooks,
  ) {
    this.cap = opts.maxFlows === undefined ? Infinity : opts.maxFlows + Math.min(CAP_SLACK_MAX, Math.max(CAP_SLACK_MIN, Math.ceil(opts.maxFlows / 4)));
  }

  get size(): number {
    return this.flows.size;
  }

  /** One ring buffer record (abi.SAMPLE_HDR, then payload), valid only during the call. */
  onSampleRecord(rec: Buffer): void {
    const H = abi.SAMPLE_HDR;
    const k = rec.toString('latin1', H.key, H.key + abi.KEY.size);
    const startNs = u64(rec, H.flow_start_ns);
    let f = this.flows.get(k);
    if (f && f.startNs !== startNs) {
      if (startNs < f.startNs) {
        this.stats.samplesIgnored++; // a straggler of an older connection on this key
        return;
      }
      this.finalize(f, false); // a newer connection took the key
      f = undefined;
    }
    if (!f) {
      if (this.finished.has(`${k}#${startNs}`)) {
        this.stats.samplesIgnored++;
        return;
      }
      if (this.flows.size >= this.cap) {
        this.stats.samplesDropped++;
        return;
      }
      f = this.create(k, startNs);
    }
    this.stats.samples++;
    const toServer = rec[H.direction] === abi.PS_DIR_TO_SERVER;
    if (f.reported) {
      // Classified already: the verdict stands; the bytes still count toward the floor.
      const len = rec.readUInt32LE(H.payload_len);
      if (toServer) f.sampledS += len;
      else f.sampledC += len;
      this.stats.samplesIgnored++;
      return;
    }
    const captured = Math.min(rec.readUInt16LE(H.captured_len), abi.PS_SAMPLE_MAX_PAYLOAD, rec.length - H.size);
    const s: HeldSample = {
      toServer,
      hook: rec[H.hook]!,
      index: rec[H.index]!,
      tcpSeq: rec.readUInt32LE(H.tcp_seq),
      payloadLen: rec.readUInt32LE(H.payload_len),
      payload: Buffer.from(rec.subarray(H.size, H.size + Math.max(0, captured))),
      ts: u64(rec, H.timestamp_ns),
    };
    (f.samples ??= []).push(s);
    if (toServer) {
      f.heldS++;
      f.sampledS += s.payloadLen;
    } else {
      f.heldC++;
      f.sampledC += s.payloadLen;
    }
    if (f.firstSampleMs < 0) f.firstSampleMs = Date.now() - this.wallBaseMs;
  }

  private create(k: string, startNs: number): Flow {
    const ifindex = k.charCodeAt(0) | (k.charCodeAt(1) << 8) | (k.charCodeAt(2) << 16) | (k.charCodeAt(3) << 24);
    const f = new Flow(k, startNs, this.hooks.resolve(ifindex >>> 0));
    f.born = this.epoch;
    this.flows.set(k, f);
    this.unseen.add(f);
    return f;
  }

  /** One batch of the read (FlowProgram.visitFlows), copied: it is visited in slices. */
  private keepBatch(keys: Buffer, values: Buffer, count: number): void {
    const kl = count * abi.KEY.size;
    const vl = count * abi.VALUE.size;
    let b = this.batches[this.nBatches];
    if (!b || b.keys.length < kl || b.values.length < vl) {
      b = { keys: Buffer.allocUnsafe(kl), values: Buffer.allocUnsafe(vl), count: 0 };
      this.batches[this.nBatches] = b;
    }
    keys.copy(b.keys, 0, 0, kl);
    values.copy(b.values, 0, 0, vl);
    b.count = count;
    this.nBatches++;
  }

  /**
   * Entries [from, to) of one batch of raw map entries. An entry not updated since the
   * previous drain read (last_seen older than it) is skipped without a lookup — no
   * allocation — unless this is a full pass, which marks every entry so that flows the
   * kernel evicted show up as missing.
   */
  private visitEntries(keys: Buffer, values: Buffer, from: number, to: number): void {
    const V = abi.VALUE;
    const D = abi.DIR;
    const since = this.full ? -1 : this.since;
    for (let i = from; i < to; i++) {
      const ko = i * abi.KEY.size;
      const vo = i * V.size;
      if (u64(values, vo + V.last_seen_ns) < since) continue;
      const k = keys.toString('latin1', ko, ko + abi.KEY.size);
      const startNs = u64(values, vo + V.first_seen_ns);
      let f = this.flows.get(k);
      if (f && f.startNs !== startNs) {
        if (startNs < f.startNs) continue; // cannot happen: the kernel only moves forward
        this.finalize(f, false); // port reuse: the old connection's last packets were not drained
        f = undefined;
      }
      if (!f) {
        if (this.finished.has(`${k}#${startNs}`)) continue; // expired, delete raced a packet
        if (this.flows.size >= this.cap) continue; // full: a later drain takes it in
        f = this.create(k, startNs);
      }
      const last = u64(values, vo + V.last_seen_ns);
      if (f.epoch === 0 || last !== f.lastSeenNs) {
        f.lastSeenNs = last;
        f.clientIsA = values[vo + V.client_side] === abi.PS_SIDE_A;
        f.vflags = values[vo + V.flags]!;
        const s = vo + V.dir + abi.PS_DIR_TO_SERVER * D.size;
        const c = vo + V.dir + abi.PS_DIR_TO_CLIENT * D.size;
        f.pS = u64(values, s + D.packets);
        f.bS = u64(values, s + D.bytes);
        f.fS = values.readUInt32LE(s + D.tcp_flags);
        f.nS = values.readUInt32LE(s + D.samples);
        f.pC = u64(values, c + D.packets);
        f.bC = u64(values, c + D.bytes);
        f.fC = values.readUInt32LE(c + D.tcp_flags);
        f.nC = values.readUInt32LE(c + D.samples);
      }
      if (f.epoch === 0) this.unseen.delete(f);
      f.epoch = this.epoch;
    }
  }

  /**
   * A drain: `read` hands every map entry over (after the ring buffer was drained); they
   * are copied, then visited, and what is ready classified and what ended finalized, in
   * slices. Returns the raw keys of expired entries, to delete from the map. If `behind`
   * is then true, call `more` (after yielding to the event loop) for the next slice. A
   * drain while the last read is still being visited does not read again: it continues.
   */
  drain(read: (visit: (keys: Buffer, values: Buffer, count: number) => void) => void, nowNs: number, mapFill = 0): Buffer[] {
    if (this.batchAt < this.nBatches) return this.work();
    this.epoch++;
    // Evictions only happen when the map is (nearly) full; a full pass now and then
    // catches any that slipped through otherwise.
    this.full = mapFill > EVICTION_RISK_FILL || this.epoch % FULL_PASS_EVERY === 0 || this.prevReadNs < 0;
    const readAt = Number(process.hrtime.bigint());
    // Flows known from samples only must be found even if their entry looks unchanged.
    this.since = this.prevReadNs;
    for (const f of this.unseen) if (f.startNs < this.since) this.since = f.startNs;
    this.nBatches = 0;
    this.batchAt = 0;
    this.entryAt = 0;
    this.cursor = undefined;
    this.held = undefined;
    read((keys, values, count) => this.keepBatch(keys, values, count));
    this.prevReadNs = readAt - READ_SLACK_NS;
    this.workNowNs = nowNs;
    return this.work();
  }

  /**
   * The next slice of the last drain's work, when `behind`. Returns keys to delete, as
   * drain does. Judged as of that drain's read: counters newer than it were not read, so
   * a later clock could expire (and delete) a flow that just got packets.
   */
  more(): Buffer[] {
    return this.behind ? this.work() : [];
  }

  /** Visits the read's entries, then classifies, reports, expires, in table order, for one slice. */
  private work(): Buffer[] {
    const deadline = performance.now() + (this.opts.workBudgetMs ?? 50);
    this.behind = false;
    // First the read's entries: all of them before anything is judged missing (evicted).
    while (this.batchAt < this.nBatches) {
      const b = this.batches[this.batchAt]!;
      const to = Math.min(b.count, this.entryAt + VISIT_CHUNK);
      this.visitEntries(b.keys, b.values, this.entryAt, to);
      this.entryAt = to;
      if (to >= b.count) {
        this.batchAt++;
        this.entryAt = 0;
      }
      this.hooks.pump?.();
      if (this.batchAt < this.nBatches && performance.now() > deadline) {
        this.stats.budgetExhausted++;
        this.behind = true;
        return [];
      }
    }
    const nowNs = this.workNowNs;
    const nowMs = Date.now() - this.wallBaseMs;
    const expired: Buffer[] = [];
    let work = 0;
    let visited = 0;
    const idleNs = this.opts.idleTimeoutMs * 1e6;
    const closedNs = this.opts.closedTimeoutMs * 1e6;
    // A slice goes on where the last one stopped (a Map iterator survives deletes and sees
    // appends): restarting from the oldest flows, a busy ring's pumps alone could use up
    // every slice before it reached the flows that need work.
    const it = (this.cursor ??= this.flows.values());
    for (;;) {
      let f: Flow;
      if (this.held) {
        f = this.held;
        this.held = undefined;
        if (this.flows.get(f.k) !== f) continue; // finalized meanwhile (a newer connection on its key)
      } else {
        const r = it.next();
        if (r.done) break;
        f = r.value;
      }
      // Pumps count against the slice too: with the ring never empty they are the work.
      const pumped = (++visited & 255) === 0;
      if (pumped) this.hooks.pump?.();
      if ((pumped || (work & 63) === 63) && performance.now() > deadline) {
        this.stats.budgetExhausted++;
        this.behind = true;
        this.held = f;
        break;
      }
      // Missing from this read: in a full pass, any flow; otherwise only one no read has
      // ever seen (samples of a connection whose entry was restarted before a drain).
      if (f.epoch !== this.epoch && (this.full ? f.born !== this.epoch : f.epoch === 0 && f.born < this.epoch)) {
        work++;
        // Gone from the map without our delete, and no newer connection on its key (that
        // would have been found by the read): the LRU evicted it — perhaps before any
        // drain saw it (then only its samples are known).
        this.stats.evictions++;
        this.hooks.onEviction();
        this.finalize(f, false);
        continue;
      }
      if (f.epoch === 0) continue; // known from samples only, so far: wait for its entry
      const idle = nowNs - f.lastSeenNs;
      const tcp = f.k.charCodeAt(abi.KEY.proto) === 6;
      const closed = tcp && ((f.fS | f.fC) & TCP_RST || (f.fS & TCP_FIN && f.fC & TCP_FIN));
      if (idle >= idleNs || (closed && idle >= closedNs)) {
        work++;
        this.finalize(f, true);
        expired.push(Buffer.from(f.k, 'latin1'));
        continue;
      }
      if (!f.reported && this.ready(f, tcp, nowMs)) {
        work++;
        const key = abi.decodeKey(Buffer.from(f.k, 'latin1'));
        this.classifyNow(f, key);
        f.reported = true;
        f.samples = null; // the verdict stands: release the bytes
        this.emit(f, false, true, key);
      }
    }
    if (!this.behind) this.cursor = undefined;
    return expired;
  }

  private ready(f: Flow, tcp: boolean, nowMs: number): boolean {
    if (f.heldS + f.heldC === 0) return false;
    const n = this.opts.samplesPerDirection;
    if (f.heldS >= n && f.heldC >= n) return true;
    if (tcp && ((f.fS | f.fC) & (TCP_FIN | TCP_RST)) !== 0) return true;
    return nowMs - f.firstSampleMs >= this.opts.classifyAfterMs;
  }

  /** Shutdown: every flow ends now, with the counters of the last drain. */
  finalizeAll(): void {
    for (const f of [...this.flows.values()]) this.finalize(f, true);
  }

  private finalize(f: Flow, complete: boolean): void {
    this.flows.delete(f.k);
    this.unseen.delete(f);
    const id = `${f.k}#${f.startNs}`;
    this.finished.add(id);
    if (this.finished.size > FINISHED_MEMORY) {
      const oldest = this.finished.values().next().value;
      if (oldest !== undefined) this.finished.delete(oldest);
    }
    const key = abi.decodeKey(Buffer.from(f.k, 'latin1'));
    if (f.classification === undefined) this.classifyNow(f, key);
    this.stats.finalized++;
    if (!complete) this.stats.incomplete++;
    this.emit(f, true, complete, key);
  }

  /** Client and server endpoints. Without a drained entry, guessed from the samples. */
  private sides(f: Flow, key: abi.FlowKey): { client: abi.Endpoint; server: abi.Endpoint } {
    const { a, b } = key;
    if (f.clientIsA !== undefined) return f.clientIsA ? { client: a, server: b } : { client: b, server: a };
    // A to-server sample came from the client; on the pod's veth, the side with the pod's
    // address is the pod. Without a clue, key side a.
    const own = f.point?.podAddresses;
    const first = f.samples?.reduce((m, s) => (s.ts < m.ts ? s : m));
    if (first && own && own.has(a.ip) !== own.has(b.ip)) {
      const podSide = own.has(a.ip) ? a : b;
      const other = podSide === a ? b : a;
      const podSent = first.hook === abi.PS_HOOK_TC_INGRESS || first.hook === abi.PS_HOOK_SOCKET_OUT;
      const podIsClient = first.toServer === podSent;
      return podIsClient ? { client: podSide, server: other } : { client: other, server: podSide };
    }
    return { client: a, server: b };
  }

  private classifyNow(f: Flow, key: abi.FlowKey): void {
    const { client, server } = this.sides(f, key);
    const n = this.opts.samplesPerDirection;
    const held = f.samples ?? [];
    const input = assemble({
      transport: key.transport,
      clientPort: client.port,
      serverPort: server.port,
      toServer: held.filter((s) => s.toServer),
      toClient: held.filter((s) => !s.toServer),
      toServerMore: f.nS > f.heldS || f.heldS >= n,
      toClientMore: f.nC > f.heldC || f.heldC >= n,
    });
    const t0 = performance.now();
    f.classification = this.intern(classify(input));
    this.hooks.onClassify((performance.now() - t0) / 1000);
    this.stats.classified++;
  }

  /** One shared object per distinct classification (bounded): 100k flows, a few dozen kinds. */
  private intern(c: Classification): Classification {
    const id = JSON.stringify(c);
    const known = this.classifications.get(id);
    if (known) return known;
    if (this.classifications.size < CLASSIFICATIONS_SHARED) this.classifications.set(id, c);
    return c;
  }

  private emit(f: Flow, final: boolean, complete: boolean, key: abi.FlowKey): void {
    const { client, server } = this.sides(f, key);
    let lastNs = f.lastSeenNs;
    if (f.epoch === 0) for (const s of f.samples ?? []) lastNs = Math.max(lastNs, s.ts);
    const base = toFlowJson(
      {
        transport: key.transport,
        client,
        server,
        packets: { toServer: Math.max(f.pS, f.heldS), toClient: Math.max(f.pC, f.heldC) },
        bytes: { toServer: Math.max(f.bS, f.sampledS), toClient: Math.max(f.bC, f.sampledC) },
        firstSeenMs: this.wallMs(f.startNs),
        lastSeenMs: this.wallMs(Math.max(lastNs, f.startNs)),
      },
      f.classification!,
    );
    const point = f.point;
    const line: AgentFlowJson = {
      ...base,
      intraPod: point?.intraPod ?? false,
      interface: point?.interface ?? `ifindex ${key.ifindex}`,
      flowId: flowId(f.k, f.startNs),
      final,
    };
    if (point?.pod !== undefined) {
      line.pod = point.pod;
      const peer = this.peerOf(point, client.ip, server.ip);
      if (peer !== undefined) line.peerPod = peer;
    }
    if (final) line.countersComplete = complete;
    if (f.vflags & abi.PS_FLOW_F_MIDSTREAM) line.midstream = true;
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

  private wallMs(ns: number): number {
    return this.wallBaseMs + (ns - this.monoBaseNs) / 1e6;
  }
}
