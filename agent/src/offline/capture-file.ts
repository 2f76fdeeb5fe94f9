// pcap and pcapng reader. Reads the file in large chunks into one reusable buffer and hands
// every packet to a callback as (buffer, offset, length): no object, no copy per packet.
// The buffer is only valid during the callback — copy what you keep.
//
// Timestamps are milliseconds since the Unix epoch as a float (`tsMs`): exact to the
// microsecond for µs captures; nanosecond captures round to ~0.25 µs (a double's
// precision at today's epoch), which is plenty for flow timing.
//
// Formats: pcap in both byte orders with µs (a1b2c3d4) or ns (a1b23c4d) timestamps, the
// "modified" Kuznetzov pcap (a1b2cd34), and pcapng (any number of sections in either byte
// order, IDB if_tsresol/if_tsoffset, EPB, SPB, the obsolete PB; other blocks skipped).
//
// Bad input: not a capture → PLAINSIGHT_ERR_CAPTURE_FORMAT; a link type the decoder does
// not read → PLAINSIGHT_ERR_CAPTURE_LINKTYPE (pcap: at the header; pcapng: at the first
// packet of such an interface, so an unused interface does not fail the file); impossible
// lengths → PLAINSIGHT_ERR_CAPTURE_CORRUPT with the byte offset. A file that ends inside a
// record is not an error: reading stops there and the summary carries a warning.

import * as fs from 'node:fs';
import { PlainsightError } from '../errors.js';
import { isSupportedLinkType, linkTypeName } from './decode.js';

/**
 * Called once per packet. `buf[offset, offset + capLen)` is the captured frame; `origLen`
 * its length on the wire. Valid only during the call.
 */
export type PacketCallback = (
  buf: Uint8Array,
  offset: number,
  capLen: number,
  origLen: number,
  tsMs: number,
  linkType: number,
) => void;

export interface CaptureReadOptions {
  /** Read chunk size; default 8 MiB. Grows only for a record larger than it. */
  chunkSize?: number;
  /** Called after each chunk is read with the bytes read so far. */
  onBytes?: (bytesRead: number) => void;
}

export interface CaptureSummary {
  format: 'pcap' | 'pcapng';
  /** Packets handed to the callback. */
  packets: number;
  /** Bytes of the file consumed (up to the end, or up to the cut record). */
  bytesRead: number;
  /** Size of the file; undefined for a pipe. */
  fileSize: number | undefined;
  /** Link types declared (pcap header, pcapng IDBs), in order of appearance. */
  linkTypes: number[];
  /** Set when the file ends in the middle of a record: what was read before it is good. */
  truncatedWarning?: string;
}

export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
/** No real record comes near this; a length beyond it means the file is damaged. */
export const MAX_RECORD_LEN = 256 * 1024 * 1024;
/** libpcap's largest snaplen: caplen may exceed a smaller declared snaplen up to this. */
const MAX_SNAPLEN_DEFAULT = 262144;

const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAP_MAGIC_MODIFIED = 0xa1b2cd34;
const PCAP_HEADER_LEN = 24;
const PCAP_RECORD_LEN = 16;
const PCAP_MODIFIED_RECORD_LEN = 24;
const PCAP_VERSION_MAJOR = 2;
const PCAP_LINKTYPE_MASK = 0x03ffffff; // upper bits carry FCS information

const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_IDB = 0x00000001;
const PCAPNG_PB = 0x00000002;
const PCAPNG_SPB = 0x00000003;
const PCAPNG_EPB = 0x00000006;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const PCAPNG_VERSION_MAJOR = 1;
const PCAPNG_BLOCK_OVERHEAD = 12; // type + length + trailing length
const PCAPNG_SHB_MIN_LEN = 28;
const PCAPNG_IDB_MIN_LEN = 20;
const PCAPNG_EPB_MIN_LEN = 32;
const PCAPNG_PB_MIN_LEN = 32;
const PCAPNG_SPB_MIN_LEN = 16;
const PCAPNG_OPT_ENDOFOPT = 0;
const PCAPNG_OPT_IF_TSRESOL = 9;
const PCAPNG_OPT_IF_TSOFFSET = 14;
const PCAPNG_DEFAULT_UNITS_PER_SEC = 1e6; // 10^-6 s
const MS_PER_S = 1000;
const TWO_POW_32 = 4294967296;

/** Reads a capture file from disk. Throws PlainsightError only. */
export function readCaptureFile(path: string, onPacket: PacketCallback, opts: CaptureReadOptions = {}): CaptureSummary {
  let fd: number;
  let size: number | undefined;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new PlainsightError('PLAINSIGHT_ERR_CAPTURE_OPEN', `cannot open ${path}: ${errText(e)}`, { cause: e });
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) {
      throw new PlainsightError('PLAINSIGHT_ERR_CAPTURE_OPEN', `cannot read ${path}: it is a directory`);
    }
    size = st.isFile() ? st.size : undefined;
    const w = new Window(new FileSource(fd, path, size), size, opts);
    return readCapture(w, path, size, onPacket);
  } finally {
    fs.closeSync(fd);
  }
}

/** Same as readCaptureFile for bytes already in memory; `name` is used in messages. */
export function readCaptureBytes(
  bytes: Uint8Array,
  name: string,
  onPacket: PacketCallback,
  opts: CaptureReadOptions = {},
): CaptureSummary {
  return readCapture(new Window(new MemorySource(bytes), bytes.length, opts), name, bytes.length, onPacket);
}

interface Source {
  /** Reads up to `len` bytes into `into[at…]`; returns 0 at end of input. */
  read(into: Uint8Array, at: number, len: number): number;
}

class FileSource implements Source {
  private pos = 0;
  constructor(
    private readonly fd: number,
    private readonly path: string,
    private readonly size: number | undefined,
  ) {}

  read(into: Uint8Array, at: number, len: number): number {
    try {
      // Regular files: positional reads. Pipes: sequential.
      const n = fs.readSync(this.fd, into, at, len, this.size === undefined ? null : this.pos);
      this.pos += n;
      return n;
    } catch (e) {
      throw new PlainsightError('PLAINSIGHT_ERR_CAPTURE_OPEN', `cannot read ${this.path} at byte ${this.pos}: ${errText(e)}`, {
        cause: e,
      });
    }
  }
}

class MemorySource implements Source {
  private pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  read(into: Uint8Array, at: number, len: number): number {
    const n = Math.min(len, this.bytes.length - this.pos);
    into.set(this.bytes.subarray(this.pos, this.pos + n), at);
    this.pos += n;
    return n;
  }
}

/**
 * A sliding view of the input: buf[start, end) holds file bytes [base + start, base + end).
 * ensure(n) makes n bytes available from `start`, compacting and (for a huge record)
 * growing the buffer; after it, re-read `buf`/`dv`/`start`, they may have changed.
 */
class Window {
  buf: Uint8Array;
  dv: DataView;
  start = 0;
  end = 0;
  base = 0;
  private eof = false;
  private readonly onBytes?: (bytesRead: number) => void;

  /** `size`: total input length when known; the buffer never grows past it. */
  constructor(
    private readonly source: Source,
    private readonly size: number | undefined,
    opts: CaptureReadOptions,
  ) {
    const chunk = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.onBytes = opts.onBytes;
    this.buf = new Uint8Array(size === undefined ? chunk : Math.max(64, Math.min(chunk, size)));
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  /** File offset of buf[start]. */
  get offset(): number {
    return this.base + this.start;
  }

  get available(): number {
    return this.end - this.start;
  }

  ensure(n: number): boolean {
    return this.end - this.start >= n || this.fill(n);
  }

  private fill(n: number): boolean {
    // A length field that points past the end of the input: don't grow or read for it.
    if (this.eof || (this.size !== undefined && this.base + this.start + n > this.size)) {
      this.readRest();
      return false;
    }
    this.compact();
    if (n > this.buf.length) {
      const bigger = new Uint8Array(Math.max(n, this.buf.length * 2));
      bigger.set(this.buf.subarray(0, this.end));
      this.buf = bigger;
      this.dv = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
    }
    this.readUntil(n);
    return this.end - this.start >= n;
  }

  /** Reads what is left of the input (up to the buffer size), so `available` is true. */
  private readRest(): void {
    if (this.eof) return;
    this.compact();
    this.readUntil(this.buf.length);
  }

  private compact(): void {
    if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
      this.base += this.start;
      this.end -= this.start;
      this.start = 0;
    }
  }

  private readUntil(n: number): void {
    while (this.end < n && this.end < this.buf.length) {
      const got = this.source.read(this.buf, this.end, this.buf.length - this.end);
      if (got === 0) {
        this.eof = true;
        break;
      }
      this.end += got;
      this.onBytes?.(this.base + this.end);
    }
  }
}

function readCapture(
  w: Window,
  name: string,
  fileSize: number | undefined,
  onPacket: PacketCallback,
): CaptureSummary {
  if (!w.ensure(4)) {
    const n = w.available;
    throw new PlainsightError(
      'PLAINSIGHT_ERR_CAPTURE_FORMAT',
      n === 0
        ? `${name} is empty (0 bytes), not a pcap or pcapng capture`
        : `${name} is only ${n} byte${n === 1 ? '' : 's'} long, too short for a pcap or pcapng capture`,
    );
  }
  const magicLe = w.dv.getUint32(0, true);
  const magicBe = w.dv.getUint32(0, false);
  if (magicLe === PCAPNG_SHB) return readPcapng(w, name, fileSize, onPacket);
  for (const le of [true, false]) {
    const magic = le ? magicLe : magicBe;
    if (magic === PCAP_MAGIC_US || magic === PCAP_MAGIC_NS || magic === PCAP_MAGIC_MODIFIED) {
      return readPcap(w, name, fileSize, onPacket, le, magic);
    }
  }
  throw new PlainsightError(
    'PLAINSIGHT_ERR_CAPTURE_FORMAT',
    `${name} is not a pcap or pcapng capture: it starts with ${describeStart(w.buf.subarray(0, Math.min(w.available, 8)))}`,
  );
}

function readPcap(
  w: Window,
  name: string,
  fileSize: number | undefined,
  onPacket: PacketCallback,
  le: boolean,
  magic: number,
): CaptureSummary {
  const summary: CaptureSummary = { format: 'pcap', packets: 0, bytesRead: 0, fileSize, linkTypes: [] };
  if (!w.ensure(PCAP_HEADER_LEN)) {
    summary.truncatedWarning = cutWarning(name, w.offset, w.available, PCAP_HEADER_LEN, 0, 'in the pcap file header');
    summary.bytesRead = w.offset + w.available;
    return summary;
  }
  const major = w.dv.getUint16(4, le);
  if (major !== PCAP_VERSION_MAJOR) {
    throw new PlainsightError(
      'PLAINSIGHT_ERR_CAPTURE_FORMAT',
      `${name} has a pcap header with version ${major}.${w.dv.getUint16(6, le)}; only pcap version 2.x is known`,
    );
  }
  const snaplen = w.dv.getUint32(16, le);
  const linkType = w.dv.getUint32(20, le) & PCAP_LINKTYPE_MASK;
  summary.linkTypes.push(linkType);
  if (!isSupportedLinkType(linkType)) throw linkTypeError(name, linkType);
  const maxCap = Math.min(MAX_RECORD_LEN, Math.max(snaplen, MAX_SNAPLEN_DEFAULT));
  const fracPerMs = magic === PCAP_MAGIC_NS ? 1e6 : 1e3;
  const recLen = magic === PCAP_MAGIC_MODIFIED ? PCAP_MODIFIED_RECORD_LEN : PCAP_RECORD_LEN;
  w.start += PCAP_HEADER_LEN;
  let packets = 0;
  for (;;) {
    if (!w.ensure(recLen)) {
      if (w.available > 0) {
        summary.truncatedWarning = cutWarning(name, w.offset, w.available, recLen, packets, 'in a packet record header');
      }
      break;
    }
    let s = w.start;
    const capLen = w.dv.getUint32(s + 8, le);
    if (capLen > maxCap) {
      throw corrupt(name, w.offset, `a packet record claims ${capLen} captured bytes (the file's snaplen is ${snaplen})`);
    }
    if (!w.ensure(recLen + capLen)) {
      summary.truncatedWarning = cutWarning(name, w.offset, w.available, recLen + capLen, packets, 'in a packet');
      break;
    }
    s = w.start;
    const dv = w.dv;
    const tsMs = dv.getUint32(s, le) * MS_PER_S + dv.getUint32(s + 4, le) / fracPerMs;
    onPacket(w.buf, s + recLen, capLen, dv.getUint32(s + 12, le), tsMs, linkType);
    packets++;
    w.start = s + recLen + capLen;
  }
  summary.packets = packets;
  summary.bytesRead = w.offset + (summary.truncatedWarning ? w.available : 0);
  return summary;
}

interface PcapngInterface {
  linkType: number;
  supported: boolean;
  snaplen: number;
  /** Timestamp units per second (if_tsresol); 1e6 by default. */
  unitsPerSec: number;
  offsetMs: number;
}

/** Largest units-per-second for which tsMs() divides exactly (keeps ns timestamps exact). */
const EXACT_UNITS_MAX = 2 ** 30;

/**
 * A 64-bit pcapng timestamp (hi, lo) in `unitsPerSec` → ms. 64-bit ns values exceed a
 * double's 53 bits, so for resolutions up to ~1 ns this divides in 16-bit digits: whole
 * seconds and the remainder stay exact, like pcap's sec/nsec pair. Allocation-free.
 */
function tsMs(hi: number, lo: number, iface: PcapngInterface): number {
  const d = iface.unitsPerSec;
  if (d > EXACT_UNITS_MAX || d !== Math.floor(d)) return ((hi * TWO_POW_32 + lo) / d) * MS_PER_S + iface.offsetMs;
  let cur = hi >>> 16;
  let q = Math.floor(cur / d);
  let rem = cur - q * d;
  cur = rem * 65536 + (hi & 0xffff);
  let qd = Math.floor(cur / d);
  q = q * 65536 + qd;
  rem = cur - qd * d;
  cur = rem * 65536 + (lo >>> 16);
  qd = Math.floor(cur / d);
  q = q * 65536 + qd;
  rem = cur - qd * d;
  cur = rem * 65536 + (lo & 0xffff);
  qd = Math.floor(cur / d);
  q = q * 65536 + qd;
  rem = cur - qd * d;
  return q * MS_PER_S + rem / (d / MS_PER_S) + iface.offsetMs;
}

function readPcapng(w: Window, name: string, fileSize: number | undefined, onPacket: PacketCallback): CaptureSummary {
  const summary: CaptureSummary = { format: 'pcapng', packets: 0, bytesRead: 0, fileSize, linkTypes: [] };
  let le = true;
  let ifaces: PcapngInterface[] = [];
  let packets = 0;
  let lastTsMs = 0;
  for (;;) {
    if (!w.ensure(8)) {
      if (w.available > 0) summary.truncatedWarning = cutWarning(name, w.offset, w.available, 8, packets, 'in a block header');
      break;
    }
    let s = w.start;
    const type = w.dv.getUint32(s, le);
    if (type === PCAPNG_SHB) {
      // The byte order is per section and told by the section's own magic.
      if (!w.ensure(12)) {
        summary.truncatedWarning = cutWarning(name, w.offset, w.available, 12, packets, 'in a section header');
        break;
      }
      s = w.start;
      const bom = w.dv.getUint32(s + 8, true);
      if (bom === PCAPNG_BYTE_ORDER_MAGIC) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else if (w.offset === 0) {
        throw new PlainsightError(
          'PLAINSIGHT_ERR_CAPTURE_FORMAT',
          `${name} starts like pcapng but its byte-order magic is ${hex32(bom)}, not 1a2b3c4d`,
        );
      } else throw corrupt(name, w.offset, `a section header has byte-order magic ${hex32(bom)}`);
    }
    const blockLen = w.dv.getUint32(s + 4, le);
    if (blockLen < PCAPNG_BLOCK_OVERHEAD || blockLen % 4 !== 0 || blockLen > MAX_RECORD_LEN) {
      throw corrupt(name, w.offset, `a block of type ${hex32(type)} claims length ${blockLen}`);
    }
    if (!w.ensure(blockLen)) {
      summary.truncatedWarning = cutWarning(name, w.offset, w.available, blockLen, packets, 'in a block');
      break;
    }
    s = w.start;
    const dv = w.dv;
    const trailer = dv.getUint32(s + blockLen - 4, le);
    if (trailer !== blockLen) {
      throw corrupt(name, w.offset, `a block of type ${hex32(type)} has length ${blockLen} at its start but ${trailer} at its end`);
    }
    switch (type) {
      case PCAPNG_EPB: {
        if (blockLen < PCAPNG_EPB_MIN_LEN) throw corrupt(name, w.offset, `an enhanced packet block is only ${blockLen} bytes`);
        const iface = ifaceFor(name, w.offset, ifaces, dv.getUint32(s + 8, le));
        const capLen = dv.getUint32(s + 20, le);
        if (capLen > blockLen - PCAPNG_EPB_MIN_LEN) {
          throw corrupt(name, w.offset, `a packet claims ${capLen} captured bytes in a block of ${blockLen}`);
        }
        const ts = tsMs(dv.getUint32(s + 12, le), dv.getUint32(s + 16, le), iface);
        lastTsMs = ts;
        onPacket(w.buf, s + 28, capLen, dv.getUint32(s + 24, le), ts, iface.linkType);
        packets++;
        break;
      }
      case PCAPNG_SPB: {
        if (blockLen < PCAPNG_SPB_MIN_LEN) throw corrupt(name, w.offset, `a simple packet block is only ${blockLen} bytes`);
        const iface = ifaceFor(name, w.offset, ifaces, 0);
        const origLen = dv.getUint32(s + 8, le);
        let capLen = Math.min(origLen, blockLen - PCAPNG_SPB_MIN_LEN);
        if (iface.snaplen !== 0) capLen = Math.min(capLen, iface.snaplen);
        // A simple packet block has no timestamp: it inherits the previous packet's.
        onPacket(w.buf, s + 12, capLen, origLen, lastTsMs, iface.linkType);
        packets++;
        break;
      }
      case PCAPNG_PB: {
        if (blockLen < PCAPNG_PB_MIN_LEN) throw corrupt(name, w.offset, `a packet block is only ${blockLen} bytes`);
        const iface = ifaceFor(name, w.offset, ifaces, dv.getUint16(s + 8, le));
        const capLen = dv.getUint32(s + 20, le);
        if (capLen > blockLen - PCAPNG_PB_MIN_LEN) {
          throw corrupt(name, w.offset, `a packet claims ${capLen} captured bytes in a block of ${blockLen}`);
        }
        const ts = tsMs(dv.getUint32(s + 12, le), dv.getUint32(s + 16, le), iface);
        lastTsMs = ts;
        onPacket(w.buf, s + 28, capLen, dv.getUint32(s + 24, le), ts, iface.linkType);
        packets++;
        break;
      }
      case PCAPNG_IDB: {
        if (blockLen < PCAPNG_IDB_MIN_LEN) throw corrupt(name, w.offset, `an interface description block is only ${blockLen} bytes`);
        const iface = parseIdb(dv, s, blockLen, le);
        ifaces.push(iface);
        if (!summary.linkTypes.includes(iface.linkType)) summary.linkTypes.push(iface.linkType);
        break;
      }
      case PCAPNG_SHB: {
        if (blockLen < PCAPNG_SHB_MIN_LEN) throw corrupt(name, w.offset, `a section header block is only ${blockLen} bytes`);
        const major = dv.getUint16(s + 12, le);
        if (major !== PCAPNG_VERSION_MAJOR) {
          const what = `a pcapng section of version ${major}.${dv.getUint16(s + 14, le)}; only 1.x is known`;
          if (w.offset === 0) throw new PlainsightError('PLAINSIGHT_ERR_CAPTURE_FORMAT', `${name} has ${what}`);
          throw corrupt(name, w.offset, `${what}`);
        }
        ifaces = [];
        break;
      }
      default:
        // Name resolution, statistics, decryption secrets, custom blocks: not needed.
        break;
    }
    w.start = s + blockLen;
  }
  summary.packets = packets;
  summary.bytesRead = w.offset + (summary.truncatedWarning ? w.available : 0);
  return summary;

  function ifaceFor(file: string, offset: number, list: PcapngInterface[], id: number): PcapngInterface {
    const iface = list[id];
    if (iface === undefined) {
      throw corrupt(file, offset, `a packet refers to interface ${id} but the section describes ${list.length}`);
    }
    if (!iface.supported) throw linkTypeError(file, iface.linkType);
    return iface;
  }
}

function parseIdb(dv: DataView, s: number, blockLen: number, le: boolean): PcapngInterface {
  const linkType = dv.getUint16(s + 8, le);
  const iface: PcapngInterface = {
    linkType,
    supported: isSupportedLinkType(linkType),
    snaplen: dv.getUint32(s + 12, le),
    unitsPerSec: PCAPNG_DEFAULT_UNITS_PER_SEC,
    offsetMs: 0,
  };
  const end = s + blockLen - 4;
  for (let p = s + 16; p + 4 <= end; ) {
    const code = dv.getUint16(p, le);
    const len = dv.getUint16(p + 2, le);
    if (code === PCAPNG_OPT_ENDOFOPT || p + 4 + len > end) break;
    if (code === PCAPNG_OPT_IF_TSRESOL && len >= 1) {
      const v = dv.getUint8(p + 4);
      const exp = v & 0x7f;
      // Bit 7 clear: 10^-exp s per unit; set: 2^-exp. Ignore values no clock could have.
      if ((v & 0x80) === 0 && exp <= 18) iface.unitsPerSec = 10 ** exp;
      else if ((v & 0x80) !== 0 && exp <= 63) iface.unitsPerSec = 2 ** exp;
    } else if (code === PCAPNG_OPT_IF_TSOFFSET && len >= 8) {
      const hi = le ? dv.getInt32(p + 8, true) : dv.getInt32(p + 4, false);
      const lo = le ? dv.getUint32(p + 4, true) : dv.getUint32(p + 8, false);
      iface.offsetMs = (hi * TWO_POW_32 + lo) * MS_PER_S;
    }
    p += 4 + ((len + 3) & ~3);
  }
  return iface;
}

function corrupt(name: string, offset: number, what: string): PlainsightError {
  return new PlainsightError('PLAINSIGHT_ERR_CAPTURE_CORRUPT', `${name} is damaged at byte ${offset}: ${what}`);
}

function linkTypeError(name: string, linkType: number): PlainsightError {
  const known = linkTypeName(linkType);
  return new PlainsightError(
    'PLAINSIGHT_ERR_CAPTURE_LINKTYPE',
    `${name} has link type ${linkType}${known ? ` (${known})` : ''}, which plainsight does not decode`,
  );
}

function cutWarning(name: string, offset: number, have: number, need: number, packets: number, where: string): string {
  return (
    `${name} ends ${where} at byte ${offset} (${have} of ${need} bytes present); ` +
    `read ${packets} packet${packets === 1 ? '' : 's'} before it — the capture was cut short or is still being written`
  );
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** "1f 8b 08 00 … (gzip-compressed: decompress it first)" */
function describeStart(b: Uint8Array): string {
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
  let guess: string | undefined;
  if (b[0] === 0x1f && b[1] === 0x8b) guess = 'gzip-compressed: decompress it first';
  else if (b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) guess = 'zstd-compressed: decompress it first';
  else if (b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58) guess = 'xz-compressed: decompress it first';
  else if (b[0] === 0x42 && b[1] === 0x5a && b[2] === 0x68) guess = 'bzip2-compressed: decompress it first';
  else if (b[0] === 0x50 && b[1] === 0x4b && b[2] === 3 && b[3] === 4) guess = 'a zip archive: extract it first';
  else if (String.fromCharCode(...b.subarray(0, 5)) === 'snoop') guess = 'a Solaris snoop capture: convert it with `editcap -F pcap`';
  else if (b.every((x) => x === 0x09 || x === 0x0a || x === 0x0d || (x >= 0x20 && x < 0x7f))) {
    guess = `text "${String.fromCharCode(...b)}"`;
  }
  return guess ? `${hex} (${guess})` : hex;
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'it is a directory',
  EIO: 'I/O error',
};

function errText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code !== undefined) return `${ERRNO_TEXT[code] ?? (e as Error).message} (${code})`;
  return String(e);
}
