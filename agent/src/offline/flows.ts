// Flow table and TCP prefix reassembly for the offline mode.
//
// Packets are keyed bidirectionally (IP pair + ports + IP protocol) in an open-addressing
// hash index over typed arrays, so the per-packet path builds no string and no object.
// Per flow and direction it counts packets, L4 payload bytes (from the IP/UDP length
// fields, so snaplen-cut captures still count right) and first/last timestamps, and it
// collects what the classifier needs:
//  - TCP: the first `tcpPrefixBytes` of each direction, in sequence order from ISN+1 (or
//    the first seen sequence number without a SYN). Retransmitted/overlapping bytes: the
//    first copy wins. Out-of-order segments wait in a bounded list. A gap that never fills
//    ends the prefix there (the direction is marked truncated). Once a prefix is complete
//    the flow is only counted: no copy on the bulk-transfer path.
//  - UDP: the first `udpDatagrams` datagrams of each direction (copies).
//  - ESP, AH, others: counters only.
// A SYN (without ACK) on a key whose connection has ended (FIN/RST) or that carries another
// ISN starts a new flow, so short connections reusing one 4-tuple come out separately.
// Memory is bounded: at most `maxFlows` flows are tracked (the rest are counted) and all
// copied payload together stays under `maxPayloadMemory`.

import { statSync } from 'node:fs';
import { flowBytes, EMPTY, type FlowBytes, type Transport } from '../classify/types.js';
import { readCaptureBytes, readCaptureFile, type CaptureSummary, type PacketCallback } from './capture-file.js';
import {
  DecodedPacket,
  decodePacket,
  DECODE_FRAGMENT,
  DECODE_MALFORMED,
  DECODE_OK,
  L4_TCP,
  L4_UDP,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  TRANSPORT_NAMES,
  type L4Kind,
} from './decode.js';

export interface FlowOptions {
  /** Bytes of each TCP direction kept for the classifier. Default 32 KiB. */
  tcpPrefixBytes?: number;
  /** Datagrams of each UDP direction kept for the classifier. Default 8. */
  udpDatagrams?: number;
  /** Out-of-order TCP segments held per direction while waiting for a gap to fill. Default 64. */
  maxOutOfOrderSegments?: number;
  /** Flows tracked per file; packets of further flows are only counted. Default 1,000,000. */
  maxFlows?: number;
  /**
   * All payload copies together (TCP prefixes, out-of-order segments, UDP datagrams), per
   * file. When reached, directions stop collecting and are marked truncated. Default 512 MiB.
   */
  maxPayloadMemory?: number;
}

export const DEFAULT_TCP_PREFIX_BYTES = 32 * 1024;
export const DEFAULT_UDP_DATAGRAMS = 8;
export const DEFAULT_MAX_OOO_SEGMENTS = 64;
export const DEFAULT_MAX_FLOWS = 1_000_000;
export const DEFAULT_MAX_PAYLOAD_MEMORY = 512 * 1024 * 1024;

/**
 * Server ports above 1024 that are common enough to decide direction when no SYN was seen:
 * MySQL, PostgreSQL, Redis, HTTP/HTTPS alternates, Kafka, MongoDB, memcached, Istio's
 * HBONE (15008), Linkerd's proxy (4143), AMQP, MQTT, ZooKeeper.
 */
export const WELL_KNOWN_SERVER_PORTS: ReadonlySet<number> = new Set([
  3306, 5432, 6379, 8080, 8443, 9092, 27017, 11211, 15008, 4143, 5672, 1883, 2181,
]);

export function isServicePort(port: number): boolean {
  return port < 1024 || WELL_KNOWN_SERVER_PORTS.has(port);
}

export interface Endpoint {
  ip: string;
  port: number;
}

export interface Directional {
  toServer: number;
  toClient: number;
}

export interface DirectionTimes {
  firstMs: number;
  lastMs: number;
}

/** How the client side was chosen, most certain first. */
export type ClientBy = 'syn' | 'syn-ack' | 'port' | 'first-speaker';

export interface FlowRecord {
  /** The capture file the flow was read from (the path as given). */
  file: string;
  transport: Transport;
  ipVersion: 4 | 6;
  /** IP protocol number (6, 17, 50, 51, 1, 58, …): tells "other" flows apart. */
  ipProtocol: number;
  client: Endpoint;
  server: Endpoint;
  clientBy: ClientBy;
  packets: Directional;
  /**
   * L4 payload bytes per the IP/UDP headers, as on the wire: retransmissions count again;
   * non-first IP fragments are not seen, a fragmented UDP datagram counts whole.
   */
  bytes: Directional;
  /** Epoch milliseconds (float) of the flow's first and last packet. */
  firstSeenMs: number;
  lastSeenMs: number;
  /** Per direction; null when the direction sent nothing. */
  timesMs: { toServer: DirectionTimes | null; toClient: DirectionTimes | null };
  /** OR of the TCP flag bits seen per direction (decode.ts TCP_*); 0 for other transports. */
  tcpFlags: Directional;
  /**
   * For the classifier. The prefix and datagram arrays are views into shared slabs: read
   * them, don't write them or use their `.buffer`.
   */
  bytesForClassifier: FlowBytes;
}

export interface FileStats {
  path: string;
  format: CaptureSummary['format'];
  linkTypes: number[];
  packets: number;
  bytesRead: number;
  truncatedWarning?: string;
}

export interface FlowStats {
  /** Packets read from the captures. */
  packets: number;
  /** Capture bytes read. */
  bytesRead: number;
  /** Malformed packets inside a valid capture (short headers, impossible lengths): skipped. */
  undecodable: number;
  /** Well-formed frames that are not IP (ARP, LLDP, …). */
  nonIp: number;
  /** IP fragments other than the first: skipped (their bytes are not counted). */
  fragments: number;
  /** Flows returned. */
  flows: number;
  /** Flows beyond maxFlows: counted here, not returned (a lower bound past 2×maxFlows). */
  flowsNotTracked: number;
  packetsNotTracked: number;
  /** Payload bytes held for the classifier when reading ended. */
  payloadMemoryBytes: number;
  /** Directions that stopped collecting early because maxPayloadMemory was reached. */
  payloadMemoryExhausted: number;
  /** First truncated-file warning, if any (all of them are in `warnings`). */
  truncatedWarning?: string;
  /** One line each, for the CLI to print on stderr. */
  warnings: string[];
  files: FileStats[];
}

export interface ReadFlowsResult {
  flows: FlowRecord[];
  stats: FlowStats;
}

/** bytesRead/totalBytes over all files; totalBytes is 0 when unknown (a pipe). */
export type ProgressCallback = (bytesRead: number, totalBytes: number, file: string) => void;

const PROGRESS_INTERVAL_MS = 100;

/**
 * Reads one or more capture files and returns their flows (each file's flows in order of
 * first packet, files in the order given) and counters. Flows are never merged across
 * files. Throws PlainsightError only; a file cut short is a warning, not an error.
 */
export function readFlows(paths: string | readonly string[], opts: FlowOptions = {}, onProgress?: ProgressCallback): ReadFlowsResult {
  const flows: FlowRecord[] = [];
  const stats = forEachFlow(paths, (f) => flows.push(f), opts, onProgress);
  return { flows, stats };
}

/**
 * readFlows without the array: each flow is handed to `onFlow` as it is completed (at the
 * end of its file), in the same order, so a caller that reduces each flow to its output
 * keeps no FlowRecord (nor its payload views) alive. Returns the counters.
 */
export function forEachFlow(
  paths: string | readonly string[],
  onFlow: (flow: FlowRecord) => void,
  opts: FlowOptions = {},
  onProgress?: ProgressCallback,
): FlowStats {
  const list = typeof paths === 'string' ? [paths] : paths;
  const stats = emptyStats();
  let totalBytes = 0;
  if (onProgress) {
    for (const p of list) totalBytes += fileSizeOrZero(p);
  }
  let doneBefore = 0;
  let lastProgress = 0;
  for (const path of list) {
    const onBytes = onProgress
      ? (n: number): void => {
          const now = Date.now();
          if (now - lastProgress >= PROGRESS_INTERVAL_MS) {
            lastProgress = now;
            onProgress(doneBefore + n, totalBytes, path);
          }
        }
      : undefined;
    const bytesRead = readOne(path, opts, stats, onFlow, (onPacket) => readCaptureFile(path, onPacket, { onBytes }));
    doneBefore += bytesRead;
  }
  if (onProgress) onProgress(doneBefore, totalBytes || doneBefore, list[list.length - 1] ?? '');
  return stats;
}

/** readFlows for a capture already in memory; `name` stands for the path in flows and messages. */
export function readFlowsFromBytes(bytes: Uint8Array, name: string, opts: FlowOptions = {}): ReadFlowsResult {
  const flows: FlowRecord[] = [];
  const stats = emptyStats();
  readOne(name, opts, stats, (f) => flows.push(f), (onPacket) => readCaptureBytes(bytes, name, onPacket));
  return { flows, stats };
}

function emptyStats(): FlowStats {
  return {
    packets: 0,
    bytesRead: 0,
    undecodable: 0,
    nonIp: 0,
    fragments: 0,
    flows: 0,
    flowsNotTracked: 0,
    packetsNotTracked: 0,
    payloadMemoryBytes: 0,
    payloadMemoryExhausted: 0,
    warnings: [],
    files: [],
  };
}

/** One capture through decode and a fresh flow table: flows to `onFlow`, counters added to `stats`. Returns bytes read. */
function readOne(
  path: string,
  opts: FlowOptions,
  stats: FlowStats,
  onFlow: (flow: FlowRecord) => void,
  read: (onPacket: PacketCallback) => CaptureSummary,
): number {
  const table = new FlowTable(opts);
  const pkt = new DecodedPacket();
  let undecodable = 0;
  let nonIp = 0;
  let fragments = 0;
  const summary = read((buf, off, capLen, origLen, tsMs, linkType) => {
    const status = decodePacket(buf, off, capLen, origLen, linkType, pkt);
    if (status === DECODE_OK) table.add(pkt, buf, tsMs);
    else if (status === DECODE_MALFORMED) undecodable++;
    else if (status === DECODE_FRAGMENT) fragments++;
    else nonIp++;
  });
  const flowCount = table.emit(path, onFlow);
  stats.packets += summary.packets;
  stats.bytesRead += summary.bytesRead;
  stats.undecodable += undecodable;
  stats.nonIp += nonIp;
  stats.fragments += fragments;
  stats.flows += flowCount;
  stats.flowsNotTracked += table.flowsNotTracked;
  stats.packetsNotTracked += table.packetsNotTracked;
  stats.payloadMemoryBytes += table.payloadMemory;
  stats.payloadMemoryExhausted += table.payloadMemoryExhausted;
  const fileStats: FileStats = {
    path,
    format: summary.format,
    linkTypes: summary.linkTypes,
    packets: summary.packets,
    bytesRead: summary.bytesRead,
  };
  if (summary.truncatedWarning !== undefined) {
    fileStats.truncatedWarning = summary.truncatedWarning;
    stats.truncatedWarning ??= summary.truncatedWarning;
    stats.warnings.push(summary.truncatedWarning);
  }
  if (undecodable > 0) {
    stats.warnings.push(`${path}: skipped ${undecodable} undecodable packet${undecodable === 1 ? '' : 's'} (malformed headers)`);
  }
  if (table.flowsNotTracked > 0 || table.packetsNotTracked > 0) {
    stats.warnings.push(
      `${path}: more than ${table.maxFlows} flows; ${table.flowsNotTracked} more flows (${table.packetsNotTracked} packets) were counted but not classified`,
    );
  }
  if (table.payloadMemoryExhausted > 0) {
    stats.warnings.push(
      `${path}: payload memory limit reached; ${table.payloadMemoryExhausted} flow directions were classified from fewer bytes`,
    );
  }
  stats.files.push(fileStats);
  return summary.bytesRead;
}

/** For the progress total only: a file that cannot be opened fails later, in the reader. */
function fileSizeOrZero(path: string): number {
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : 0;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------
// Flow table
//
// Hot state lives in one 128-byte record per key in a typed array: the key, the hash, the
// index of the key's current flow, per-direction counters and "prefix done" bits. A packet
// of a flow whose prefixes are complete touches only its index slot and that record. Cold
// state (SYN bookkeeping, prefix buffers, datagrams) lives in objects reached only while a
// direction is still collecting.

/** u32 words per record (128 bytes). */
const REC_WORDS = 32;
const REC_DOUBLES = REC_WORDS / 2;
/** Key: [ipVersion<<8 | protocol, portA<<16 | portB, addrA×4, addrB×4]; A < B. */
const KEY_WORDS = 10;
const W_HASH = 10;
/** Int32: index in `flows` of the key's current flow, or FLOW_NEW / FLOW_UNTRACKED. */
const W_FLOW = 11;
const W_STATE = 12;
/** Sequence number where a finished prefix ended, per side (A, B). */
const W_NEXT = 13;
/** TCP flags seen: A in bits 0-7, B in bits 8-15. */
const W_TCP_FLAGS = 15;
/** Doubles from this index (within the record): per side A then B. */
const D_COUNTERS = 8;
const D_PACKETS = 0;
const D_BYTES = 1;
const D_FIRST = 2;
const D_LAST = 3;
const D_SIDE = 4;

/** W_STATE bits. */
const ST_DONE_A = 1;
const ST_TRUNC_A = 2;
const ST_DONE_B = 4;
const ST_TRUNC_B = 8;
const ST_PAYLOAD_SEEN = 16;
/** Set with ST_PAYLOAD_SEEN when B sent the first payload. */
const ST_PAYLOAD_FIRST_B = 32;

const FLOW_NEW = -2;
const FLOW_UNTRACKED = -1;
const INITIAL_SLOTS = 1 << 12;
const FIN_OR_RST = (TCP_FIN | TCP_RST) | ((TCP_FIN | TCP_RST) << 8);

/** An out-of-order TCP segment waiting for the gap before it to fill. */
interface Segment {
  seq: number;
  /** Payload length on the wire; `data` may be shorter when the capture cut it. */
  len: number;
  data: Uint8Array;
  /** The pool chunk `data` is a view of, returned when the segment is used. */
  chunk: Uint8Array;
}

/** TCP prefix collection for one direction. */
class Stream {
  /** Next sequence number the prefix needs (u32). */
  next = 0;
  hasBase = false;
  buf: Uint8Array = EMPTY;
  len = 0;
  /** Prefix complete or abandoned: only count from now on. */
  done = false;
  truncated = false;
  /** Furthest stream offset (relative to the prefix start) any segment reached. */
  maxEnd = 0;
  ooo: Segment[] | null = null;
}

/** What one side did that is only looked at while collecting. */
class ColdSide {
  /** Sent a SYN without ACK (isn) / a SYN-ACK (isn, synAckAck). */
  synSeen = false;
  synAckSeen = false;
  isn = 0;
  synAckAck = 0;
  stream: Stream | null = null;
  datagrams: Uint8Array[] | null = null;
  /** Datagram collection stopped by the memory limit. */
  datagramsCut = false;
}

class Flow {
  a: ColdSide | null = null;
  b: ColdSide | null = null;
  /** The record's counters, state and flags, copied when another flow took over the key. */
  saved: Float64Array | null = null;
  savedState = 0;
  savedFlags = 0;
  constructor(
    readonly entry: number,
    readonly l4: L4Kind,
    readonly firstMs: number,
    /** Side (0 = A, 1 = B) of the first packet. */
    readonly firstSender: number,
  ) {}

  side(fromB: number): ColdSide {
    if (fromB) return (this.b ??= new ColdSide());
    return (this.a ??= new ColdSide());
  }
}

/**
 * Payload copies come from slabs (1 MiB unless the limit is small): one ArrayBuffer per small copy would cost far more
 * than the copy. Chunks of power-of-two sizes (prefix buffers, parked segments) go back to
 * per-size free lists when released; datagrams are exact-size and kept to the end.
 */
class PayloadPool {
  /** Bytes of memory taken (slabs and large dedicated buffers). */
  used = 0;
  private readonly slabSize: number;
  private slab: Uint8Array = EMPTY;
  private pos = 0;
  private readonly free = new Map<number, Uint8Array[]>();

  constructor(private readonly limit: number) {
    // 1 MiB, smaller only when the limit itself is small.
    this.slabSize = Math.max(64 * 1024, Math.min(1024 * 1024, 2 ** Math.floor(Math.log2(Math.max(1, limit / 16)))));
  }

  /** A chunk of exactly `size` bytes, or null when the memory limit is reached. */
  take(size: number): Uint8Array | null {
    const list = this.free.get(size);
    if (list !== undefined && list.length > 0) return list.pop()!;
    if (size > this.slabSize / 4) {
      if (this.used + size > this.limit) return null;
      this.used += size;
      return new Uint8Array(size);
    }
    if (this.pos + size > this.slab.length) {
      if (this.used + this.slabSize > this.limit) return null;
      // Not zero-filled: every byte handed out is written before it is read.
      const raw = Buffer.allocUnsafeSlow(this.slabSize);
      this.slab = new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
      this.used += this.slabSize;
      this.pos = 0;
    }
    const chunk = this.slab.subarray(this.pos, this.pos + size);
    this.pos += (size + 7) & ~7;
    return chunk;
  }

  release(chunk: Uint8Array): void {
    let list = this.free.get(chunk.length);
    if (list === undefined) this.free.set(chunk.length, (list = []));
    list.push(chunk);
  }

  /** A copy of src[off, off+len) in pool memory, or null at the limit. */
  copy(src: Uint8Array, off: number, len: number): Uint8Array | null {
    const chunk = this.take(len);
    if (chunk !== null) chunk.set(src.subarray(off, off + len));
    return chunk;
  }
}

function pow2AtLeast(n: number): number {
  let p = 64;
  while (p < n) p *= 2;
  return p;
}

export class FlowTable {
  readonly maxFlows: number;
  flowsNotTracked = 0;
  packetsNotTracked = 0;
  payloadMemoryExhausted = 0;

  private readonly prefixLimit: number;
  private readonly datagramLimit: number;
  private readonly oooLimit: number;
  private readonly pool: PayloadPool;
  private readonly flows: Flow[] = [];
  /** Open-addressing index: slot → record + 1 (0 = empty). */
  private slots = new Int32Array(INITIAL_SLOTS);
  private mask = INITIAL_SLOTS - 1;
  /** Records: the same memory as u32 words (W), i32 (I) and doubles (D). */
  private W = new Uint32Array((INITIAL_SLOTS / 2) * REC_WORDS);
  private I = new Int32Array(this.W.buffer);
  private D = new Float64Array(this.W.buffer);
  private entries = 0;
  /** Record of the previous packet, or -1. */
  private lastEntry = -1;
  private readonly k = new Uint32Array(KEY_WORDS);

  constructor(opts: FlowOptions = {}) {
    this.prefixLimit = Math.max(0, opts.tcpPrefixBytes ?? DEFAULT_TCP_PREFIX_BYTES);
    this.datagramLimit = Math.max(0, opts.udpDatagrams ?? DEFAULT_UDP_DATAGRAMS);
    this.oooLimit = Math.max(0, opts.maxOutOfOrderSegments ?? DEFAULT_MAX_OOO_SEGMENTS);
    this.maxFlows = Math.max(0, opts.maxFlows ?? DEFAULT_MAX_FLOWS);
    this.pool = new PayloadPool(Math.max(0, opts.maxPayloadMemory ?? DEFAULT_MAX_PAYLOAD_MEMORY));
  }

  /** Bytes of memory holding payload copies. */
  get payloadMemory(): number {
    return this.pool.used;
  }

  /** Account one decoded packet; `buf` is the buffer `p`'s payload offset points into. */
  add(p: DecodedPacket, buf: Uint8Array, tsMs: number): void {
    // Canonical order: A is the lower (address, port) endpoint.
    let swap: boolean;
    if (p.src0 !== p.dst0) swap = p.src0 > p.dst0;
    else if (p.src1 !== p.dst1) swap = p.src1 > p.dst1;
    else if (p.src2 !== p.dst2) swap = p.src2 > p.dst2;
    else if (p.src3 !== p.dst3) swap = p.src3 > p.dst3;
    else swap = p.srcPort > p.dstPort;
    const k = this.k;
    k[0] = (p.ipVersion << 8) | p.ipProtocol;
    if (swap) {
      k[1] = ((p.dstPort << 16) | p.srcPort) >>> 0;
      k[2] = p.dst0;
      k[3] = p.dst1;
      k[4] = p.dst2;
      k[5] = p.dst3;
      k[6] = p.src0;
      k[7] = p.src1;
      k[8] = p.src2;
      k[9] = p.src3;
    } else {
      k[1] = ((p.srcPort << 16) | p.dstPort) >>> 0;
      k[2] = p.src0;
      k[3] = p.src1;
      k[4] = p.src2;
      k[5] = p.src3;
      k[6] = p.dst0;
      k[7] = p.dst1;
      k[8] = p.dst2;
      k[9] = p.dst3;
    }
    const fromB = swap ? 1 : 0;
    const e = this.lookupOrInsert();
    if (e < 0) {
      this.packetsNotTracked++;
      return;
    }
    const wo = e * REC_WORDS;
    let fi = this.I[wo + W_FLOW];
    const isTcp = p.l4 === L4_TCP;
    const flags = p.tcpFlags;
    if (
      fi === FLOW_NEW ||
      (isTcp && fi >= 0 && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN && this.isNewConnection(wo, this.flows[fi], fromB, p.tcpSeq))
    ) {
      fi = this.startFlow(e, fi, p.l4, tsMs, fromB);
    }
    const W = this.W;
    if (fi === FLOW_UNTRACKED) {
      this.packetsNotTracked++;
      // Still tell connections apart on an untracked 4-tuple, to count them.
      if (isTcp) {
        const wf = wo + W_TCP_FLAGS;
        if ((flags & (TCP_SYN | TCP_ACK)) === TCP_SYN && (W[wf] & FIN_OR_RST) !== 0) {
          this.flowsNotTracked++;
          W[wf] = 0;
        }
        W[wf] |= flags << (fromB ? 8 : 0);
      }
      return;
    }
    const D = this.D;
    const d = e * REC_DOUBLES + D_COUNTERS + (fromB ? D_SIDE : 0);
    if (D[d + D_PACKETS]++ === 0) D[d + D_FIRST] = tsMs;
    D[d + D_LAST] = tsMs;
    const len = p.payloadLength;
    D[d + D_BYTES] += len;
    if (isTcp) {
      W[wo + W_TCP_FLAGS] |= flags << (fromB ? 8 : 0);
      let dataSeq = p.tcpSeq;
      if (flags & TCP_SYN) {
        dataSeq = (dataSeq + 1) >>> 0;
        this.onSyn(this.flows[fi], fromB, flags, p.tcpSeq, p.tcpAck);
      }
      if (len > 0) {
        let state = W[wo + W_STATE];
        if ((state & ST_PAYLOAD_SEEN) === 0) state = W[wo + W_STATE] = state | ST_PAYLOAD_SEEN | (fromB ? ST_PAYLOAD_FIRST_B : 0);
        const doneBit = fromB ? ST_DONE_B : ST_DONE_A;
        const truncBit = fromB ? ST_TRUNC_B : ST_TRUNC_A;
        if (state & doneBit) {
          // Bulk-transfer path: the prefix is complete; only note data beyond it.
          if ((state & truncBit) === 0 && ((dataSeq - W[wo + W_NEXT + fromB]) | 0) + len > 0) W[wo + W_STATE] = state | truncBit;
        } else {
          const st = (this.flows[fi].side(fromB).stream ??= new Stream());
          if (!st.done) this.collect(st, buf, p.payloadOffset, p.payloadCaptured, len, dataSeq);
          if (st.done) {
            W[wo + W_STATE] |= doneBit | (st.truncated ? truncBit : 0);
            W[wo + W_NEXT + fromB] = st.next;
          }
        }
      }
    } else if (p.l4 === L4_UDP && D[d + D_PACKETS] <= this.datagramLimit) {
      const side = this.flows[fi].side(fromB);
      if (!side.datagramsCut) {
        const copy = this.pool.copy(buf, p.payloadOffset, p.payloadCaptured);
        if (copy === null) {
          side.datagramsCut = true;
          this.payloadMemoryExhausted++;
        } else {
          (side.datagrams ??= []).push(copy);
        }
      }
    }
  }

  /** A SYN without ACK from `fromB` on a key with a flow: same connection, or a new one? */
  private isNewConnection(wo: number, flow: Flow, fromB: number, seq: number): boolean {
    if ((this.W[wo + W_TCP_FLAGS] & FIN_OR_RST) !== 0) return true;
    const side = fromB ? flow.b : flow.a;
    if (side?.synSeen) return side.isn !== seq;
    const other = fromB ? flow.a : flow.b;
    // We saw the SYN-ACK first: a retransmitted SYN matches what it acknowledged.
    if (other?.synAckSeen) return other.synAckAck !== ((seq + 1) >>> 0);
    // Simultaneous open: both sides send a SYN before any data.
    if (other?.synSeen && (this.W[wo + W_STATE] & ST_PAYLOAD_SEEN) === 0) return false;
    // A flow seen mid-stream, then a fresh SYN on the same tuple.
    return true;
  }

  private onSyn(flow: Flow, fromB: number, flags: number, seq: number, ack: number): void {
    const side = flow.side(fromB);
    if (flags & TCP_ACK) {
      side.synAckSeen = true;
      side.synAckAck = ack;
    } else {
      side.synSeen = true;
    }
    side.isn = seq;
    const st = (side.stream ??= new Stream());
    if (!st.hasBase) {
      st.hasBase = true;
      st.next = (seq + 1) >>> 0;
    }
  }

  /** Append a TCP segment to the prefix, or park it if it is ahead of the prefix. */
  private collect(st: Stream, buf: Uint8Array, off: number, cap: number, len: number, seq: number): void {
    if (!st.hasBase) {
      st.hasBase = true;
      st.next = seq;
    }
    const rel = (seq - st.next) | 0;
    const end = st.len + rel + len;
    if (end > st.maxEnd) st.maxEnd = end;
    if (rel > 0) {
      // Ahead of the prefix: keep a copy if it starts inside the window and there is room.
      const room = this.prefixLimit - st.len;
      if (rel >= room || this.oooLimit === 0) return;
      const ooo = (st.ooo ??= []);
      if (ooo.length >= this.oooLimit) return;
      const keep = Math.min(cap, room - rel);
      const chunk = this.pool.take(pow2AtLeast(keep));
      if (chunk === null) {
        this.abandon(st);
        return;
      }
      const data = chunk.subarray(0, keep);
      data.set(buf.subarray(off, off + keep));
      ooo.push({ seq, len, data, chunk });
      return;
    }
    if (rel + len <= 0) return; // all of it is already in the prefix
    this.append(st, buf, off, cap, len, -rel);
    if (st.ooo !== null && st.ooo.length > 0 && !st.done) this.drain(st);
  }

  /** Append segment bytes [skip, len) at st.next; marks the prefix done when it must end. */
  private append(st: Stream, src: Uint8Array, off: number, cap: number, len: number, skip: number): void {
    const limit = this.prefixLimit;
    const want = Math.min(len - skip, limit - st.len);
    const have = Math.max(0, Math.min(cap - skip, want));
    if (have > 0) {
      if (!this.reserve(st, st.len + have)) return;
      st.buf.set(src.subarray(off + skip, off + skip + have), st.len);
      st.len += have;
      st.next = (st.next + have) >>> 0;
    }
    if (have < want) {
      // The capture cut this segment (snaplen): the bytes after it are a gap forever.
      this.finishStream(st, true);
    } else if (st.len >= limit) {
      this.finishStream(st, skip + have < len);
    }
  }

  /** Move parked segments that now touch the prefix into it. */
  private drain(st: Stream): void {
    const ooo = st.ooo!;
    for (let progress = true; progress && !st.done; ) {
      progress = false;
      for (let i = 0; i < ooo.length && !st.done; i++) {
        const seg = ooo[i];
        const rel = (seg.seq - st.next) | 0;
        if (rel > 0) continue;
        ooo.splice(i, 1);
        i--;
        if (rel + seg.len > 0) {
          this.append(st, seg.data, 0, seg.data.length, seg.len, -rel);
          progress = true;
        }
        this.pool.release(seg.chunk);
      }
    }
  }

  /** Grow the prefix buffer (×4, up to the limit) to hold `need` bytes. */
  private reserve(st: Stream, need: number): boolean {
    if (need <= st.buf.length) return true;
    let size = st.buf.length === 0 ? 1024 : st.buf.length * 4;
    while (size < need) size *= 4;
    size = Math.min(size, this.prefixLimit);
    const bigger = this.pool.take(size);
    if (bigger === null) {
      this.abandon(st);
      return false;
    }
    if (st.len > 0) bigger.set(st.buf.subarray(0, st.len));
    if (st.buf.length > 0) this.pool.release(st.buf);
    st.buf = bigger;
    return true;
  }

  private abandon(st: Stream): void {
    this.payloadMemoryExhausted++;
    this.finishStream(st, true);
  }

  private finishStream(st: Stream, truncated: boolean): void {
    st.done = true;
    if (truncated) st.truncated = true;
    if (st.ooo !== null) {
      for (const seg of st.ooo) this.pool.release(seg.chunk);
      st.ooo = null;
    }
  }

  /** A new flow on record `e` (a new key, or a new connection on a reused 4-tuple). */
  private startFlow(e: number, old: number, l4: L4Kind, tsMs: number, fromB: number): number {
    const wo = e * REC_WORDS;
    if (old >= 0) this.save(this.flows[old], e);
    this.W.fill(0, wo + W_STATE, wo + W_TCP_FLAGS + 1);
    this.D.fill(0, e * REC_DOUBLES + D_COUNTERS, (e + 1) * REC_DOUBLES);
    if (this.flows.length >= this.maxFlows) {
      this.flowsNotTracked++;
      this.I[wo + W_FLOW] = FLOW_UNTRACKED;
      return FLOW_UNTRACKED;
    }
    // Only TCP collects through the prefix path; mark the others done from the start.
    if (l4 !== L4_TCP) this.W[wo + W_STATE] = ST_DONE_A | ST_DONE_B;
    const fi = this.flows.length;
    this.flows.push(new Flow(e, l4, tsMs, fromB));
    this.I[wo + W_FLOW] = fi;
    return fi;
  }

  /** Copy the record's counters into a flow that is losing its key to a newer flow. */
  private save(flow: Flow, e: number): void {
    const o = e * REC_DOUBLES + D_COUNTERS;
    flow.saved = this.D.slice(o, o + 2 * D_SIDE);
    flow.savedState = this.W[e * REC_WORDS + W_STATE];
    flow.savedFlags = this.W[e * REC_WORDS + W_TCP_FLAGS];
  }

  /**
   * Record of key `this.k`, inserting it if new (its flow is then FLOW_NEW). Returns -1
   * when the index is full: keys of untracked flows are kept too (to count each once), up
   * to maxFlows of them.
   */
  private lookupOrInsert(): number {
    const k = this.k;
    // Packets come in runs of one flow (a bulk transfer and its ACKs): try the last record first.
    const last = this.lastEntry;
    if (last >= 0) {
      const W = this.W;
      const o = last * REC_WORDS;
      if (
        W[o + 1] === k[1] &&
        W[o + 2] === k[2] &&
        W[o + 6] === k[6] &&
        W[o] === k[0] &&
        W[o + 3] === k[3] &&
        W[o + 4] === k[4] &&
        W[o + 5] === k[5] &&
        W[o + 7] === k[7] &&
        W[o + 8] === k[8] &&
        W[o + 9] === k[9]
      ) {
        return last;
      }
    }
    let h = 0x9747b28c;
    for (let i = 0; i < KEY_WORDS; i++) {
      h = Math.imul(h ^ k[i], 0x5bd1e995);
      h ^= h >>> 15;
    }
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h = (h ^ (h >>> 16)) >>> 0;
    const slots = this.slots;
    const W = this.W;
    const mask = this.mask;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const e1 = slots[s];
      if (e1 === 0) break;
      const o = (e1 - 1) * REC_WORDS;
      if (
        W[o + W_HASH] === h &&
        W[o + 1] === k[1] &&
        W[o + 2] === k[2] &&
        W[o + 6] === k[6] &&
        W[o] === k[0] &&
        W[o + 3] === k[3] &&
        W[o + 4] === k[4] &&
        W[o + 5] === k[5] &&
        W[o + 7] === k[7] &&
        W[o + 8] === k[8] &&
        W[o + 9] === k[9]
      ) {
        this.lastEntry = e1 - 1;
        return e1 - 1;
      }
    }
    if (this.entries >= 2 * this.maxFlows + 1) return -1;
    if ((this.entries + 1) * 2 > this.slots.length) this.grow();
    const e = this.entries++;
    const o = e * REC_WORDS;
    this.W.set(k, o);
    this.W[o + W_HASH] = h;
    this.lastEntry = e;
    this.I[o + W_FLOW] = FLOW_NEW;
    for (let s = h & this.mask; ; s = (s + 1) & this.mask) {
      if (this.slots[s] === 0) {
        this.slots[s] = e + 1;
        break;
      }
    }
    return e;
  }

  private grow(): void {
    const size = this.slots.length * 2;
    const slots = new Int32Array(size);
    const mask = size - 1;
    for (let e = 0; e < this.entries; e++) {
      let s = this.W[e * REC_WORDS + W_HASH] & mask;
      while (slots[s] !== 0) s = (s + 1) & mask;
      slots[s] = e + 1;
    }
    this.slots = slots;
    this.mask = mask;
    const W = new Uint32Array((size / 2) * REC_WORDS);
    W.set(this.W);
    this.W = W;
    this.I = new Int32Array(W.buffer);
    this.D = new Float64Array(W.buffer);
  }

  /** The flows in order of first packet. The table should not be used afterwards. */
  finish(file: string): FlowRecord[] {
    const out: FlowRecord[] = [];
    this.emit(file, (f) => out.push(f));
    return out;
  }

  /**
   * finish() one flow at a time: each record goes to `onFlow` in order of first packet and
   * is not kept here. Returns the number of flows. The table should not be used afterwards.
   */
  emit(file: string, onFlow: (flow: FlowRecord) => void): number {
    const flows = this.flows;
    for (let i = 0; i < flows.length; i++) onFlow(this.record(flows[i], file));
    return flows.length;
  }

  private record(flow: Flow, file: string): FlowRecord {
    const o = flow.entry * REC_WORDS;
    const W = this.W;
    // Counters: in the record, or saved in the flow when a newer flow took the key.
    let counters: Float64Array;
    let base: number;
    let state: number;
    let tcpFlags: number;
    if (flow.saved !== null) {
      counters = flow.saved;
      base = 0;
      state = flow.savedState;
      tcpFlags = flow.savedFlags;
    } else {
      counters = this.D;
      base = flow.entry * REC_DOUBLES + D_COUNTERS;
      state = W[o + W_STATE];
      tcpFlags = W[o + W_TCP_FLAGS];
    }
    const ipVersion = (W[o] >>> 8) as 4 | 6;
    const ipProtocol = W[o] & 0xff;
    const portA = W[o + 1] >>> 16;
    const portB = W[o + 1] & 0xffff;
    const isTcp = flow.l4 === L4_TCP;
    const hasPorts = isTcp || flow.l4 === L4_UDP;
    const synA = flow.a?.synSeen ?? false;
    const synB = flow.b?.synSeen ?? false;

    let clientIsB: boolean;
    let clientBy: ClientBy;
    if (isTcp && (synA || synB)) {
      // Simultaneous open: the side whose SYN came first, which is the first sender.
      clientIsB = synA && synB ? flow.firstSender === 1 : synB;
      clientBy = 'syn';
    } else if (isTcp && (flow.a?.synAckSeen || flow.b?.synAckSeen)) {
      clientIsB = flow.a?.synAckSeen ?? false;
      clientBy = 'syn-ack';
    } else if (hasPorts && isServicePort(portA) !== isServicePort(portB)) {
      clientIsB = isServicePort(portA);
      clientBy = 'port';
    } else {
      clientIsB =
        isTcp && (state & ST_PAYLOAD_SEEN) !== 0 ? (state & ST_PAYLOAD_FIRST_B) !== 0 : flow.firstSender === 1;
      clientBy = 'first-speaker';
    }
    const cd = base + (clientIsB ? D_SIDE : 0);
    const sd = base + (clientIsB ? 0 : D_SIDE);
    const cCold = clientIsB ? flow.b : flow.a;
    const sCold = clientIsB ? flow.a : flow.b;
    const client: Endpoint = { ip: formatIp(ipVersion, W, clientIsB ? o + 6 : o + 2), port: clientIsB ? portB : portA };
    const server: Endpoint = { ip: formatIp(ipVersion, W, clientIsB ? o + 2 : o + 6), port: clientIsB ? portA : portB };
    const transport = TRANSPORT_NAMES[flow.l4];
    const cPackets = counters[cd + D_PACKETS];
    const sPackets = counters[sd + D_PACKETS];

    let fb: FlowBytes;
    if (isTcp) {
      const cs = this.closeStream(cCold?.stream ?? null);
      const ss = this.closeStream(sCold?.stream ?? null);
      const cTrunc = clientIsB ? ST_TRUNC_B : ST_TRUNC_A;
      const sTrunc = clientIsB ? ST_TRUNC_A : ST_TRUNC_B;
      // What flowBytes() would build (same keys, same order), without its object spread.
      fb = {
        clientPort: client.port,
        serverPort: server.port,
        client: cs === null ? EMPTY : cs.buf.subarray(0, cs.len),
        server: ss === null ? EMPTY : ss.buf.subarray(0, ss.len),
        clientDatagrams: [],
        serverDatagrams: [],
        transport,
        clientTruncated: (cs?.truncated ?? false) || (state & cTrunc) !== 0,
        serverTruncated: (ss?.truncated ?? false) || (state & sTrunc) !== 0,
      };
    } else if (flow.l4 === L4_UDP) {
      const cDatagrams = cCold?.datagrams ?? [];
      const sDatagrams = sCold?.datagrams ?? [];
      fb = flowBytes({
        transport,
        clientPort: client.port,
        serverPort: server.port,
        clientDatagrams: cDatagrams,
        serverDatagrams: sDatagrams,
        clientTruncated: cPackets > cDatagrams.length,
        serverTruncated: sPackets > sDatagrams.length,
      });
    } else {
      fb = flowBytes({ transport });
    }
    const cLast = counters[cd + D_LAST];
    const sLast = counters[sd + D_LAST];
    return {
      file,
      transport,
      ipVersion,
      ipProtocol,
      client,
      server,
      clientBy,
      packets: { toServer: cPackets, toClient: sPackets },
      bytes: { toServer: counters[cd + D_BYTES], toClient: counters[sd + D_BYTES] },
      firstSeenMs: flow.firstMs,
      lastSeenMs: sPackets > 0 && (cPackets === 0 || sLast > cLast) ? sLast : cLast,
      timesMs: {
        toServer: cPackets > 0 ? { firstMs: counters[cd + D_FIRST], lastMs: cLast } : null,
        toClient: sPackets > 0 ? { firstMs: counters[sd + D_FIRST], lastMs: sLast } : null,
      },
      tcpFlags: {
        toServer: (tcpFlags >>> (clientIsB ? 8 : 0)) & 0xff,
        toClient: (tcpFlags >>> (clientIsB ? 0 : 8)) & 0xff,
      },
      bytesForClassifier: fb,
    };
  }

  /** End of input: a parked segment, or data seen past the prefix, means truncated. */
  private closeStream(st: Stream | null): Stream | null {
    if (st === null) return null;
    if (!st.done) this.finishStream(st, st.maxEnd > st.len);
    return st;
  }
}

// ---------------------------------------------------------------------------------------
// Addresses, formatted only when a flow is emitted.

function formatIp(version: 4 | 6, words: Uint32Array, o: number): string {
  if (version === 4) return ipv4Text(words[o]);
  const w0 = words[o];
  const w1 = words[o + 1];
  const w2 = words[o + 2];
  const w3 = words[o + 3];
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return `::ffff:${ipv4Text(w3)}`;
  const g = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
  // RFC 5952: compress the longest run (≥ 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (x: number): string => x.toString(16);
  if (bestStart < 0) return g.map(hex).join(':');
  return `${g.slice(0, bestStart).map(hex).join(':')}::${g.slice(bestStart + bestLen).map(hex).join(':')}`;
}

/** Captures talk to few hosts: each address is formatted once (the cache starts over when big). */
const IPV4_CACHE_MAX = 65536;
const ipv4Cache = new Map<number, string>();

function ipv4Text(a: number): string {
  let t = ipv4Cache.get(a);
  if (t === undefined) {
    if (ipv4Cache.size >= IPV4_CACHE_MAX) ipv4Cache.clear();
    t = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
    ipv4Cache.set(a, t);
  }
  return t;
}
