// The TypeScript half of bpf/include/flow_abi.h: sizes, offsets, constants and decoders
// for what bpf/flow.bpf.c writes. Keep aligned with that header —
// test/integration/bpf-abi.test.ts compiles it and compares every number here.

export const PS_ABI_VERSION = 1;

export const PS_DEFAULT_MAX_FLOWS = 65536;
export const PS_DEFAULT_RINGBUF_BYTES = 8 * 1024 * 1024;
export const PS_DEFAULT_SAMPLES_PER_DIR = 6;
export const PS_SAMPLE_MAX_PAYLOAD = 4096;

export const PS_SIDE_A = 0;
export const PS_SIDE_B = 1;
export const PS_DIR_TO_SERVER = 0;
export const PS_DIR_TO_CLIENT = 1;

export const PS_HOOK_TC_INGRESS = 0;
export const PS_HOOK_TC_EGRESS = 1;
export const PS_HOOK_SOCKET_IN = 2;
export const PS_HOOK_SOCKET_OUT = 3;

export const PS_FLOW_F_SYN_SEEN = 0x1;
export const PS_FLOW_F_MIDSTREAM = 0x2;

export const PS_IFINDEX_SOCKET_TAG = 0x8000_0000;

/** Offsets and sizes, named as in the C structs. */
export const KEY = {
  size: 44,
  ifindex: 0,
  proto: 4,
  port_a: 8,
  port_b: 10,
  addr_a: 12,
  addr_b: 28,
} as const;

export const DIR = { size: 24, packets: 0, bytes: 8, tcp_flags: 16, samples: 20 } as const;

export const VALUE = {
  size: 72,
  first_seen_ns: 0,
  last_seen_ns: 8,
  dir: 16,
  generation: 64,
  client_side: 68,
  flags: 69,
} as const;

export const SAMPLE_HDR = {
  size: 88,
  key: 0,
  generation: 44,
  flow_start_ns: 48,
  timestamp_ns: 56,
  tcp_seq: 64,
  tcp_ack: 68,
  payload_len: 72,
  captured_len: 76,
  direction: 78,
  tcp_flags: 79,
  hook: 80,
  index: 81,
} as const;

export const SAMPLE_SIZE = SAMPLE_HDR.size + PS_SAMPLE_MAX_PAYLOAD;

/** struct ps_stats, field by field (u64 each), in order. */
export const STATS_FIELDS = [
  'packets',
  'not_ip',
  'not_tracked',
  'fragments',
  'parse_errors',
  'flows_created',
  'flows_restarted',
  'flows_midstream',
  'map_insert_fail',
  'samples_sent',
  'samples_lost',
  'sample_copy_fail',
  'loopback_outgoing',
] as const;
export const STATS_SIZE = STATS_FIELDS.length * 8;

export const CONFIG = { size: 16, abi_version: 0, samples_per_dir: 4, sample_bytes: 8, socket_tag: 12 } as const;

// ---- decoded shapes --------------------------------------------------------------------

export type Transport = 'tcp' | 'udp' | 'esp' | 'ah' | 'other';
export type Hook = 'tc-ingress' | 'tc-egress' | 'socket-in' | 'socket-out';

export interface Endpoint {
  /** Dotted quad for IPv4 (mapped in the key), RFC 5952 text for IPv6. */
  ip: string;
  port: number;
}

/** A flow key with the sides named: `client` sent the SYN (or the first packet). */
export interface FlowKey {
  /** Host ifindex (TC) or PS_IFINDEX_SOCKET_TAG | attachment id (socket filter). */
  ifindex: number;
  proto: number;
  transport: Transport;
  a: Endpoint;
  b: Endpoint;
}

export interface DirectionCounters {
  packets: number;
  bytes: number;
  tcpFlags: number;
  samples: number;
}

export interface FlowRecord {
  key: FlowKey;
  /** The raw key, e.g. to delete the entry. */
  rawKey: Buffer;
  client: Endpoint;
  server: Endpoint;
  toServer: DirectionCounters;
  toClient: DirectionCounters;
  firstSeenNs: bigint;
  lastSeenNs: bigint;
  generation: number;
  /** The client/server split came from a SYN (else from the first packet seen). */
  synSeen: boolean;
  /** TCP flow first seen without its SYN: older than the hook, or evicted and re-created. */
  midstream: boolean;
}

export interface Sample {
  key: FlowKey;
  generation: number;
  /** Equals the flow's firstSeenNs: joins samples with their flow across port reuse. */
  flowStartNs: bigint;
  timestampNs: bigint;
  direction: 'to-server' | 'to-client';
  hook: Hook;
  /** 0-based sample number within this direction of the flow. */
  index: number;
  tcpSeq: number;
  tcpAck: number;
  tcpFlags: number;
  /** L4 payload bytes of the packet (may exceed `payload.length`). */
  payloadLen: number;
  /** A copy: the ring buffer slot is reused once the reader moves on. */
  payload: Buffer;
}

export type Stats = Record<(typeof STATS_FIELDS)[number], number>;

// ---- decoders ---------------------------------------------------------------------------

const TRANSPORTS: Record<number, Transport> = { 6: 'tcp', 17: 'udp', 50: 'esp', 51: 'ah' };
const HOOKS: Hook[] = ['tc-ingress', 'tc-egress', 'socket-in', 'socket-out'];
const V4_MAPPED_PREFIX = Buffer.from('00000000000000000000ffff', 'hex');

export function ipFromKeyBytes(b: Uint8Array): string {
  if (Buffer.compare(b.subarray(0, 12), V4_MAPPED_PREFIX) === 0) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  // The URL parser yields the RFC 5952 form (zero runs compressed, lower case).
  return new URL(`http://[${words.join(':')}]/`).hostname.slice(1, -1);
}

export function decodeKey(buf: Buffer, off = 0): FlowKey {
  const proto = buf[off + KEY.proto]!;
  return {
    ifindex: buf.readUInt32LE(off + KEY.ifindex),
    proto,
    transport: TRANSPORTS[proto] ?? 'other',
    a: { ip: ipFromKeyBytes(buf.subarray(off + KEY.addr_a, off + KEY.addr_a + 16)), port: buf.readUInt16LE(off + KEY.port_a) },
    b: { ip: ipFromKeyBytes(buf.subarray(off + KEY.addr_b, off + KEY.addr_b + 16)), port: buf.readUInt16LE(off + KEY.port_b) },
  };
}

function decodeDir(buf: Buffer, off: number): DirectionCounters {
  return {
    packets: Number(buf.readBigUInt64LE(off + DIR.packets)),
    bytes: Number(buf.readBigUInt64LE(off + DIR.bytes)),
    tcpFlags: buf.readUInt32LE(off + DIR.tcp_flags),
    samples: buf.readUInt32LE(off + DIR.samples),
  };
}

export function decodeFlow(keys: Buffer, keyOff: number, values: Buffer, valueOff: number): FlowRecord {
  const key = decodeKey(keys, keyOff);
  const clientIsA = values[valueOff + VALUE.client_side] === PS_SIDE_A;
  const flags = values[valueOff + VALUE.flags]!;
  return {
    key,
    rawKey: Buffer.from(keys.subarray(keyOff, keyOff + KEY.size)),
    client: clientIsA ? key.a : key.b,
    server: clientIsA ? key.b : key.a,
    toServer: decodeDir(values, valueOff + VALUE.dir + PS_DIR_TO_SERVER * DIR.size),
    toClient: decodeDir(values, valueOff + VALUE.dir + PS_DIR_TO_CLIENT * DIR.size),
    firstSeenNs: values.readBigUInt64LE(valueOff + VALUE.first_seen_ns),
    lastSeenNs: values.readBigUInt64LE(valueOff + VALUE.last_seen_ns),
    generation: values.readUInt32LE(valueOff + VALUE.generation),
    synSeen: (flags & PS_FLOW_F_SYN_SEEN) !== 0,
    midstream: (flags & PS_FLOW_F_MIDSTREAM) !== 0,
  };
}

/** Decodes one ring buffer record (`rec` spans exactly the record's data). */
export function decodeSample(rec: Buffer): Sample {
  const captured = Math.min(rec.readUInt16LE(SAMPLE_HDR.captured_len), PS_SAMPLE_MAX_PAYLOAD, rec.length - SAMPLE_HDR.size);
  return {
    key: decodeKey(rec, SAMPLE_HDR.key),
    generation: rec.readUInt32LE(SAMPLE_HDR.generation),
    flowStartNs: rec.readBigUInt64LE(SAMPLE_HDR.flow_start_ns),
    timestampNs: rec.readBigUInt64LE(SAMPLE_HDR.timestamp_ns),
    direction: rec[SAMPLE_HDR.direction] === PS_DIR_TO_SERVER ? 'to-server' : 'to-client',
    hook: HOOKS[rec[SAMPLE_HDR.hook]!] ?? 'tc-ingress',
    index: rec[SAMPLE_HDR.index]!,
    tcpSeq: rec.readUInt32LE(SAMPLE_HDR.tcp_seq),
    tcpAck: rec.readUInt32LE(SAMPLE_HDR.tcp_ack),
    tcpFlags: rec[SAMPLE_HDR.tcp_flags]!,
    payloadLen: rec.readUInt32LE(SAMPLE_HDR.payload_len),
    payload: Buffer.from(rec.subarray(SAMPLE_HDR.size, SAMPLE_HDR.size + Math.max(0, captured))),
  };
}

/** Sums a per-CPU ps_stats lookup (one value per possible CPU, each 8-byte aligned). */
export function sumStats(percpu: Buffer, cpus: number): Stats {
  const stride = Math.ceil(STATS_SIZE / 8) * 8;
  const out = Object.fromEntries(STATS_FIELDS.map((f) => [f, 0])) as Stats;
  for (let c = 0; c < cpus; c++) {
    STATS_FIELDS.forEach((f, i) => {
      out[f] += Number(percpu.readBigUInt64LE(c * stride + i * 8));
    });
  }
  return out;
}

export function encodeConfig(cfg: { samplesPerDir: number; sampleBytes: number; socketTag: number }): Buffer {
  const b = Buffer.alloc(CONFIG.size);
  b.writeUInt32LE(PS_ABI_VERSION, CONFIG.abi_version);
  b.writeUInt32LE(cfg.samplesPerDir, CONFIG.samples_per_dir);
  b.writeUInt32LE(cfg.sampleBytes, CONFIG.sample_bytes);
  b.writeUInt32LE(cfg.socketTag >>> 0, CONFIG.socket_tag);
  return b;
}
