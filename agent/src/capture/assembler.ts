// Samples of one flow → what the classifier takes (FlowBytes).
//
// The kernel sends the first payload packets of each direction (at most
// `samplesPerDirection`, each cut to `sampleBytes`). TCP: the prefix is rebuilt in sequence
// order from the lowest sequence number sampled — retransmissions and overlaps add
// nothing (the first copy wins), a gap ends the prefix, and so does a sample cut short
// (captured < payload length): what follows it was never copied. UDP: the datagrams in
// arrival order. The offline assembler (offline/flows.ts) works packet by packet on
// typed-array records and does not extract cleanly; this one works on a handful of
// samples per flow and stays small.

import { EMPTY, flowBytes, type FlowBytes, type Transport } from '../classify/types.js';

/** What the assembler needs of a sample (see agent/src/bpf/flow-abi.ts SAMPLE_HDR). */
export interface SampleBytes {
  index: number;
  tcpSeq: number;
  /** L4 payload bytes of the packet. */
  payloadLen: number;
  /** The copied bytes (may be fewer than payloadLen). */
  payload: Uint8Array;
  /** Kernel timestamp (ns, as a double): arrival order of UDP datagrams. */
  ts: number;
}

export interface AssembleInput {
  transport: Transport;
  clientPort: number;
  serverPort: number;
  toServer: readonly SampleBytes[];
  toClient: readonly SampleBytes[];
  /** Per direction: the kernel stopped sampling (all sample slots used), so more may follow. */
  toServerMore: boolean;
  toClientMore: boolean;
}

export interface Prefix {
  bytes: Uint8Array;
  /** Bytes past the prefix exist (cut sample, gap, or sampling stopped). */
  truncated: boolean;
}

/** Relative u32 sequence distance b - a, as a signed number. */
function seqDiff(a: number, b: number): number {
  return (b - a) | 0;
}

/** The contiguous stream prefix of one TCP direction. */
export function tcpPrefix(samples: readonly SampleBytes[], more: boolean): Prefix {
  const segs = samples.filter((s) => s.payloadLen > 0);
  if (segs.length === 0) return { bytes: EMPTY, truncated: false };
  // Base: the lowest sequence number, relative to the first sample (wrap-safe).
  const ref = segs[0]!.tcpSeq;
  let base = ref;
  for (const s of segs) if (seqDiff(base, s.tcpSeq) < 0) base = s.tcpSeq;
  const sorted = [...segs].sort((x, y) => seqDiff(ref, x.tcpSeq) - seqDiff(ref, y.tcpSeq) || y.payload.length - x.payload.length);
  const parts: Uint8Array[] = [];
  let end = 0; // bytes of the prefix so far, relative to base
  let truncated = false;
  let maxEnd = 0;
  for (const s of sorted) {
    const rel = seqDiff(base, s.tcpSeq);
    maxEnd = Math.max(maxEnd, rel + s.payloadLen);
    if (truncated) continue;
    if (rel > end) {
      truncated = true; // a gap: nothing after it is contiguous
      continue;
    }
    const skip = end - rel;
    if (skip >= s.payloadLen) continue; // a retransmission wholly inside the prefix
    if (skip < s.payload.length) {
      parts.push(s.payload.subarray(skip));
      end += s.payload.length - skip;
    }
    if (s.payload.length < s.payloadLen) truncated = true; // the sample was cut: a gap follows
  }
  if (maxEnd > end || more) truncated = true;
  return { bytes: concat(parts, end), truncated };
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 0) return EMPTY;
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function byArrival(samples: readonly SampleBytes[]): SampleBytes[] {
  return [...samples].sort((x, y) => x.ts - y.ts || x.index - y.index);
}

export function assemble(input: AssembleInput): FlowBytes {
  const { transport, clientPort, serverPort } = input;
  if (transport === 'tcp') {
    const c = tcpPrefix(input.toServer, input.toServerMore);
    const s = tcpPrefix(input.toClient, input.toClientMore);
    return flowBytes({
      transport,
      clientPort,
      serverPort,
      client: c.bytes,
      server: s.bytes,
      clientTruncated: c.truncated,
      serverTruncated: s.truncated,
    });
  }
  if (transport === 'udp') {
    return flowBytes({
      transport,
      clientPort,
      serverPort,
      clientDatagrams: byArrival(input.toServer).map((s) => s.payload),
      serverDatagrams: byArrival(input.toClient).map((s) => s.payload),
      clientTruncated: input.toServerMore,
      serverTruncated: input.toClientMore,
    });
  }
  return flowBytes({ transport, clientPort, serverPort });
}
