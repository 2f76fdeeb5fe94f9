// Loader for bpf/flow.bpf.c — the only place its ELF program and map names appear.
//
//   const flow = FlowProgram.open({ maxFlows: 65536 });   // configure, then load (verifier)
//   try {
//     flow.attachTcx(ifindex, 'ingress'); flow.attachTcx(ifindex, 'egress');
//     flow.attachSocketFilter('/var/run/netns/pod', 'lo');
//     flow.openSamples((s) => …);                          // ring buffer, drained on a timer
//     setInterval(() => flow.readFlows(), 1000);           // counters, batched
//   } finally { flow.close(); }                            // links first, then the object
//
// TCX links vanish with the process. clsact filters (kernels < 6.6) do not: they are
// found by our handle/priority and replaced or removed, never by deleting the qdisc.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PlainsightError } from '../errors.js';
import { RingBufferReader, type RingBufferOptions } from '../capture/ringbuf.js';
import * as abi from './flow-abi.js';
import * as bpf from './libbpf.js';

// ELF names (bpf/flow.bpf.c).
const PROG_TC_INGRESS = 'ps_tc_ingress';
const PROG_TC_EGRESS = 'ps_tc_egress';
const PROG_SOCKET = 'ps_socket';
const MAP_FLOWS = 'ps_flows';
const MAP_SAMPLES = 'ps_samples';
const MAP_STATS = 'ps_stats';
const MAP_CONFIG = '.rodata.cfg';

const OBJECT_FILE = join('bpf', 'build', 'flow.bpf.o');

/** Identifies plainsight's clsact filters (with the priority) so a restart finds its own. */
export const CLSACT_HANDLE = 0x7073_6967; // "psig"
export const CLSACT_PRIORITY = 0x7073;

const MAX_SAMPLES_PER_DIR = 255; // the sample index is a u8
const READ_BATCH = 4096;
const MAX_SOCKET_ID = 0x7fff_ffff;

export type Direction = 'ingress' | 'egress';
export type AttachMode = 'auto' | 'tcx' | 'clsact';

export interface FlowProgramOptions {
  /** Path of flow.bpf.o. Default: bpf/build/flow.bpf.o of this package. */
  objectPath?: string;
  /** Flow map (LRU) entries. Default 65536. */
  maxFlows?: number;
  /** Ring buffer bytes: a power-of-two multiple of the page size. Default 8 MiB. */
  ringBytes?: number;
  /** First payload packets per flow direction sent to userspace. Default 6. */
  samplesPerDirection?: number;
  /** Payload bytes copied per sample, 1..512. Default 512. */
  sampleBytes?: number;
}

export interface Attachment {
  readonly kind: 'tcx' | 'clsact' | 'socket';
  /** Host ifindex (TCX/clsact), or the flow keys' ifindex tag (socket). */
  readonly ifindex: number;
  readonly direction: Direction | 'both';
  /** Detaches. Idempotent. */
  close(): void;
}

export interface SocketAttachment extends Attachment {
  readonly kind: 'socket';
  readonly netnsPath: string;
  readonly ifname: string;
}

/** The default object: bpf/build/flow.bpf.o found walking up from this module (src or dist). */
export function defaultObjectPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, OBJECT_FILE);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new PlainsightError('PLAINSIGHT_ERR_BPF_OBJECT', `cannot find ${OBJECT_FILE}`);
    dir = up;
  }
}

function usage(message: string): PlainsightError {
  return new PlainsightError('PLAINSIGHT_ERR_USAGE', message);
}

interface Resolved {
  objectPath: string;
  maxFlows: number;
  ringBytes: number;
  samplesPerDirection: number;
  sampleBytes: number;
}

function resolveOptions(o: FlowProgramOptions): Resolved {
  const r: Resolved = {
    objectPath: o.objectPath ?? defaultObjectPath(),
    maxFlows: o.maxFlows ?? abi.PS_DEFAULT_MAX_FLOWS,
    ringBytes: o.ringBytes ?? abi.PS_DEFAULT_RINGBUF_BYTES,
    samplesPerDirection: o.samplesPerDirection ?? abi.PS_DEFAULT_SAMPLES_PER_DIR,
    sampleBytes: o.sampleBytes ?? abi.PS_SAMPLE_MAX_PAYLOAD,
  };
  const page = bpf.pageSize();
  if (!Number.isInteger(r.maxFlows) || r.maxFlows < 1) throw usage(`maxFlows must be a positive integer, not ${r.maxFlows}`);
  if (!Number.isInteger(r.ringBytes) || r.ringBytes < page || (r.ringBytes & (r.ringBytes - 1)) !== 0) {
    throw usage(`ringBytes must be a power of two ≥ ${page}, not ${r.ringBytes}`);
  }
  if (!Number.isInteger(r.samplesPerDirection) || r.samplesPerDirection < 0 || r.samplesPerDirection > MAX_SAMPLES_PER_DIR) {
    throw usage(`samplesPerDirection must be 0..${MAX_SAMPLES_PER_DIR}, not ${r.samplesPerDirection}`);
  }
  if (!Number.isInteger(r.sampleBytes) || r.sampleBytes < 1 || r.sampleBytes > abi.PS_SAMPLE_MAX_PAYLOAD) {
    throw usage(`sampleBytes must be 1..${abi.PS_SAMPLE_MAX_PAYLOAD}, not ${r.sampleBytes}`);
  }
  return r;
}

/** Checks the object was built from this ABI, then sets the configuration (before load). */
function configure(obj: bpf.BpfObject, r: Resolved, socketTag: number): void {
  const cfgMap = bpf.findMap(obj, MAP_CONFIG);
  const built = bpf.mapInitialValue(cfgMap);
  const version = built.length === abi.CONFIG.size ? built.readUInt32LE(abi.CONFIG.abi_version) : -1;
  if (version !== abi.PS_ABI_VERSION) {
    throw new PlainsightError(
      'PLAINSIGHT_ERR_BPF_OBJECT',
      `${r.objectPath} was built for ABI ${version}, this agent speaks ${abi.PS_ABI_VERSION}`,
    );
  }
  bpf.setInitialValue(cfgMap, abi.encodeConfig({ samplesPerDir: r.samplesPerDirection, sampleBytes: r.sampleBytes, socketTag }));
}

export class FlowProgram {
  readonly options: Readonly<Resolved>;
  private obj: bpf.BpfObject | undefined;
  private readonly flowsFd: number;
  private readonly samplesFd: number;
  private readonly statsFd: number;
  private readonly progFd: Record<Direction | 'socket', number>;
  private readonly cpus: number;
  /** Open attachments in attach order; closed in reverse. Keyed to refuse doubles. */
  private readonly attachments = new Map<string, Attachment>();
  private ring: RingBufferReader | undefined;
  private nextSocketId = 1;

  private constructor(obj: bpf.BpfObject, r: Resolved) {
    this.obj = obj;
    this.options = r;
    this.flowsFd = bpf.mapFd(bpf.findMap(obj, MAP_FLOWS));
    this.samplesFd = bpf.mapFd(bpf.findMap(obj, MAP_SAMPLES));
    this.statsFd = bpf.mapFd(bpf.findMap(obj, MAP_STATS));
    this.progFd = {
      ingress: bpf.programFd(bpf.findProgram(obj, PROG_TC_INGRESS)),
      egress: bpf.programFd(bpf.findProgram(obj, PROG_TC_EGRESS)),
      // Loaded here too (flows tagged PS_IFINDEX_SOCKET_TAG | 0) so one load verifies every
      // program; attachments load their own copy with their tag.
      socket: bpf.programFd(bpf.findProgram(obj, PROG_SOCKET)),
    };
    this.cpus = bpf.possibleCpus();
  }

  /** Opens, configures and loads flow.bpf.o (maps created, verifier run). Attaches nothing. */
  static open(options: FlowProgramOptions = {}): FlowProgram {
    const r = resolveOptions(options);
    const obj = bpf.openObject(r.objectPath);
    try {
      configure(obj, r, abi.PS_IFINDEX_SOCKET_TAG);
      bpf.setMaxEntries(bpf.findMap(obj, MAP_FLOWS), r.maxFlows);
      bpf.setMaxEntries(bpf.findMap(obj, MAP_SAMPLES), r.ringBytes);
      bpf.loadObject(obj, r.objectPath);
      return new FlowProgram(obj, r);
    } catch (e) {
      bpf.closeObject(obj);
      throw e;
    }
  }

  /** fd of a loaded program, for test runs (bpf_prog_test_run_opts). */
  programFd(which: Direction | 'socket'): number {
    return this.progFd[which];
  }

  /**
   * Attaches to one direction of a (host-side) interface in our network namespace. TCX
   * when the kernel has it (mode 'auto'), else a clsact filter. Any stale clsact filter of
   * ours on that hook (a killed agent's) is removed or replaced, so nothing counts twice.
   * Attaching the same hook twice returns the existing attachment.
   */
  attachTcx(ifindex: number, direction: Direction, mode: AttachMode = 'auto'): Attachment {
    const id = `tc/${ifindex}/${direction}`;
    const existing = this.attachments.get(id);
    if (existing) return existing;
    const progFd = this.progFd[direction];
    const tcPoint = direction === 'ingress' ? bpf.BPF_TC_INGRESS : bpf.BPF_TC_EGRESS;

    let att: Attachment | undefined;
    if (mode !== 'clsact') {
      // A stale clsact filter of ours (an older run, or a kernel upgrade) would count twice.
      // Removed first: should TCX be missing, the clsact attach below replaces it anyway.
      bpf.clsactDetach(ifindex, tcPoint, CLSACT_HANDLE, CLSACT_PRIORITY);
      const link = bpf.tcxAttach(progFd, ifindex, direction === 'ingress' ? bpf.BPF_TCX_INGRESS : bpf.BPF_TCX_EGRESS);
      if (link !== bpf.TCX_UNSUPPORTED) {
        att = this.track(id, { kind: 'tcx', ifindex, direction }, () => bpf.closeFd(link));
      } else if (mode === 'tcx') {
        throw new PlainsightError('PLAINSIGHT_ERR_BPF_ATTACH', `this kernel has no TCX (needs Linux 6.6+); ifindex ${ifindex}`);
      }
    }
    if (!att) {
      bpf.clsactAttach(progFd, ifindex, tcPoint, CLSACT_HANDLE, CLSACT_PRIORITY);
      att = this.track(id, { kind: 'clsact', ifindex, direction }, () => {
        bpf.clsactDetach(ifindex, tcPoint, CLSACT_HANDLE, CLSACT_PRIORITY);
      });
    }
    return att;
  }

  /**
   * Removes clsact filters of ours left on an interface by an agent that died (SIGKILL),
   * on both directions, unless this instance owns them. Returns how many were removed.
   */
  removeStaleClsact(ifindex: number): number {
    let removed = 0;
    for (const [direction, point] of [['ingress', bpf.BPF_TC_INGRESS], ['egress', bpf.BPF_TC_EGRESS]] as const) {
      if (this.attachments.get(`tc/${ifindex}/${direction}`)?.kind === 'clsact') continue;
      if (bpf.clsactDetach(ifindex, point, CLSACT_HANDLE, CLSACT_PRIORITY)) removed++;
    }
    return removed;
  }

  /**
   * Observes `ifname` inside the network namespace at `netnsPath` (e.g. a pod's loopback,
   * which has no host peer) through an AF_PACKET socket with the socket filter. Each such
   * attachment loads its own copy of the socket program, sharing this program's maps, so
   * its flows carry a unique key.ifindex (PS_IFINDEX_SOCKET_TAG | id): interface indexes
   * repeat across namespaces. Only the setns section runs inside the namespace.
   */
  attachSocketFilter(netnsPath: string, ifname: string): SocketAttachment {
    const id = `socket/${netnsPath}/${ifname}`;
    const existing = this.attachments.get(id);
    if (existing) return existing as SocketAttachment;
    if (this.nextSocketId > MAX_SOCKET_ID) throw new PlainsightError('PLAINSIGHT_ERR_BPF_ATTACH', 'out of socket attachment ids');
    const tag = (abi.PS_IFINDEX_SOCKET_TAG | this.nextSocketId++) >>> 0;

    const obj = bpf.openObject(this.options.objectPath);
    let sock = -1;
    try {
      configure(obj, this.options, tag);
      bpf.setAutoload(bpf.findProgram(obj, PROG_TC_INGRESS), false);
      bpf.setAutoload(bpf.findProgram(obj, PROG_TC_EGRESS), false);
      bpf.reuseMapFd(bpf.findMap(obj, MAP_FLOWS), this.flowsFd);
      bpf.reuseMapFd(bpf.findMap(obj, MAP_SAMPLES), this.samplesFd);
      bpf.reuseMapFd(bpf.findMap(obj, MAP_STATS), this.statsFd);
      bpf.loadObject(obj, `${this.options.objectPath} (socket filter)`);
      const progFd = bpf.programFd(bpf.findProgram(obj, PROG_SOCKET));
      sock = bpf.withNetns(netnsPath, () => bpf.packetSocketWithFilter(progFd, bpf.ifNameToIndex(ifname)));
    } catch (e) {
      bpf.closeObject(obj);
      throw e;
    }
    const fd = sock;
    const att = this.track(id, { kind: 'socket', ifindex: tag, direction: 'both', netnsPath, ifname }, () => {
      bpf.closeFd(fd); // the socket held the program: close it before the object
      bpf.closeObject(obj);
    });
    return att as SocketAttachment;
  }

  private track<T extends Omit<Attachment, 'close'>>(id: string, info: T, detach: () => void): T & Attachment {
    let open = true;
    const att = {
      ...info,
      close: () => {
        if (!open) return;
        open = false;
        this.attachments.delete(id);
        detach();
      },
    };
    this.attachments.set(id, att);
    return att;
  }

  /** Current attachments, in attach order. */
  list(): Attachment[] {
    return [...this.attachments.values()];
  }

  /**
   * Starts draining the sample ring buffer on a timer (budgeted per tick). One reader per
   * program: the ring has a single consumer position.
   */
  openSamples(onSample: (s: abi.Sample) => void, opts: Pick<RingBufferOptions, 'intervalMs' | 'budget' | 'onError'> = {}): RingBufferReader {
    return this.openSampleRecords((rec) => onSample(abi.decodeSample(rec)), opts);
  }

  /**
   * openSamples without decoding: `onRecord` gets each record (abi.SAMPLE_HDR layout, then
   * the payload) as a view valid only during the call.
   */
  openSampleRecords(onRecord: (rec: Buffer) => void, opts: Pick<RingBufferOptions, 'intervalMs' | 'budget' | 'onError'> = {}): RingBufferReader {
    if (this.ring) throw new PlainsightError('PLAINSIGHT_ERR_BPF_MAP', 'the sample ring buffer already has a reader');
    this.ring = RingBufferReader.open({
      mapFd: this.samplesFd,
      size: this.options.ringBytes,
      onRecord,
      ...opts,
    });
    this.ring.start();
    return this.ring;
  }

  /** Every flow entry, read in batches (bpf_map_lookup_batch). */
  readFlows(): abi.FlowRecord[] {
    const out: abi.FlowRecord[] = [];
    this.visitFlows((keys, values, count) => {
      for (let i = 0; i < count; i++) out.push(abi.decodeFlow(keys, i * abi.KEY.size, values, i * abi.VALUE.size));
    });
    return out;
  }

  /**
   * Every flow entry, undecoded: `visit` gets each batch's raw keys and values (abi.KEY /
   * abi.VALUE layouts, `count` entries; the buffers are reused after it returns). For a
   * table of 100k flows, decoding only what changed is what keeps a drain cheap.
   * Returns the number of entries.
   */
  visitFlows(visit: (keys: Buffer, values: Buffer, count: number) => void): number {
    let total = 0;
    let chunk = READ_BATCH;
    let keys = Buffer.alloc(chunk * abi.KEY.size);
    let values = Buffer.alloc(chunk * abi.VALUE.size);
    // Hash maps use a u32 bucket cursor; key-sized buffers are always large enough.
    let cursorIn: Buffer | null = null;
    let cursorOut: Buffer = Buffer.alloc(Math.max(abi.KEY.size, 8));
    for (;;) {
      const r = bpf.mapLookupBatch(this.flowsFd, cursorIn, cursorOut, keys, values, chunk);
      if (r.tooSmall) {
        chunk *= 2;
        keys = Buffer.alloc(chunk * abi.KEY.size);
        values = Buffer.alloc(chunk * abi.VALUE.size);
        continue;
      }
      if (r.count > 0) visit(keys, values, r.count);
      total += r.count;
      if (r.done) return total;
      const next: Buffer = cursorIn ?? Buffer.alloc(cursorOut.length);
      cursorIn = cursorOut;
      cursorOut = next;
    }
  }

  /** Deletes one flow entry (e.g. after it expired); false if already gone. */
  deleteFlow(rawKey: Buffer): boolean {
    return bpf.mapDeleteElem(this.flowsFd, rawKey);
  }

  /** Kernel-side counters, summed over CPUs. */
  readStats(): abi.Stats {
    const stride = Math.ceil(abi.STATS_SIZE / 8) * 8;
    const value = Buffer.alloc(stride * this.cpus);
    bpf.mapLookupElem(this.statsFd, Buffer.alloc(4), value);
    return abi.sumStats(value, this.cpus);
  }

  /** Detaches everything (reverse order), stops the ring reader, closes the object. Idempotent. */
  close(): void {
    const errors: unknown[] = [];
    for (const att of [...this.attachments.values()].reverse()) {
      try {
        att.close();
      } catch (e) {
        errors.push(e);
      }
    }
    try {
      this.ring?.close();
    } catch (e) {
      errors.push(e);
    }
    this.ring = undefined;
    if (this.obj !== undefined) bpf.closeObject(this.obj);
    this.obj = undefined;
    if (errors.length) throw errors[0];
  }
}
