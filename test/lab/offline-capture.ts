// Test helpers for the offline capture reader (test/offline/*).
//
// Lab: network namespaces with real servers, clients and tcpdump/dumpcap, so the tests
// read captures the real tools wrote. Needs root, `ip`, `tcpdump`; labSkipReason() says
// why not when they are missing. Everything a lab makes is removed in close().
//
// Converters (TEST HELPERS, not product code): rewrite a real capture into forms no Linux
// tool writes — big-endian pcap/pcapng, BSD loopback link types, VLAN tags when the kernel
// has no 8021q — and cut/reorder/drop records to make retransmissions and gaps.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const exec = (cmd: string, args: string[], timeoutMs = 30_000): { status: number | null; stdout: string; stderr: string } => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
};

function must(cmd: string, args: string[], timeoutMs?: number): string {
  const r = exec(cmd, args, timeoutMs);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

let cachedSkip: string | false | undefined;

/** Why lab tests cannot run here, or false when they can. */
export function labSkipReason(): string | false {
  if (cachedSkip !== undefined) return cachedSkip;
  if (process.getuid?.() !== 0) return (cachedSkip = 'needs root to create network namespaces');
  for (const tool of ['ip', 'tcpdump']) {
    if (exec('which', [tool]).status !== 0) return (cachedSkip = `needs ${tool}`);
  }
  const probe = `ps-test-probe-${randomBytes(3).toString('hex')}`;
  const r = exec('ip', ['netns', 'add', probe]);
  if (r.status !== 0) return (cachedSkip = `cannot create a network namespace: ${r.stderr.trim()}`);
  exec('ip', ['netns', 'del', probe]);
  return (cachedSkip = false);
}

export function hasTool(tool: string): boolean {
  return exec('which', [tool]).status === 0;
}

/** Fills buf with a pattern that differs per `seed`, so prefixes can be checked byte for byte. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 7 + seed * 13 + (i >> 8)) & 0xff;
  return b;
}

// Scripts run inside the namespaces. The pattern must match pattern() above.
const PATTERN_JS = `function pattern(len, seed) { const b = Buffer.alloc(len); for (let i = 0; i < len; i++) b[i] = (i * 7 + seed * 13 + (i >> 8)) & 0xff; return b; }`;

/** TCP server: per connection, read to EOF, then send REPLY bytes (pattern seed 2) and close. */
const TCP_SERVER = `${PATTERN_JS}
const net = require('net');
const [host, port, reply] = [process.argv[2], +process.argv[3], +process.argv[4]];
const s = net.createServer((c) => { c.on('data', () => {}); c.on('end', () => c.end(pattern(reply, 2))); c.on('error', () => {}); });
s.listen({ host, port }, () => console.log('ready'));
`;

/** TCP client: TIMES sequential connections (optionally from one local port), each sends SIZE bytes (seed 1). */
const TCP_CLIENT = `${PATTERN_JS}
const net = require('net');
const [host, port, size, times, localPort, localAddress] = [process.argv[2], +process.argv[3], +process.argv[4], +(process.argv[5] || 1), +(process.argv[6] || 0), process.argv[7]];
let i = 0;
function one() {
  if (i++ >= times) return;
  const opts = { host, port };
  if (localPort) { opts.localPort = localPort; opts.localAddress = localAddress || host; }
  const c = net.connect(opts, () => c.end(pattern(size, 1)));
  let n = 0;
  c.on('data', (d) => (n += d.length));
  c.on('error', (e) => { console.error('client error', e.message); process.exit(1); });
  c.on('close', () => { console.log('received ' + n); setTimeout(one, 30); });
}
one();
`;

/** UDP: the server answers each datagram with REPLY bytes; the client sends COUNT datagrams of SIZE. */
const UDP_SERVER = `
const dgram = require('dgram');
const [host, port, reply] = [process.argv[2], +process.argv[3], +process.argv[4]];
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
s.on('message', (m, r) => s.send(Buffer.alloc(reply, 0x55), r.port, r.address));
s.bind(port, host, () => console.log('ready'));
`;
const UDP_CLIENT = `
const dgram = require('dgram');
const [host, port, size, count] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const c = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
let got = 0, sent = 0;
c.on('message', () => { if (++got === count) { console.log('received ' + got); c.close(); } else send(); });
function send() { sent++; c.send(Buffer.alloc(size, 0x11), port, host); }
setTimeout(() => { console.log('received ' + got); process.exit(got === count ? 0 : 1); }, 5000).unref();
send();
`;

/** Joins a tun device in namespace A with one in namespace B: packets cross in userspace. */
const TUN_BRIDGE = `
import os, fcntl, struct, select, sys, ctypes
TUNSETIFF = 0x400454ca; IFF_TUN = 0x0001; IFF_NO_PI = 0x1000; CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
def tun(ns, name):
    nsfd = os.open('/run/netns/' + ns, os.O_RDONLY)
    if libc.setns(nsfd, CLONE_NEWNET) != 0: raise OSError(ctypes.get_errno(), 'setns')
    os.close(nsfd)
    fd = os.open('/dev/net/tun', os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), IFF_TUN | IFF_NO_PI))
    return fd
a = tun(sys.argv[1], sys.argv[2]); b = tun(sys.argv[3], sys.argv[4])
print('ready', flush=True)
while True:
    for fd in select.select([a, b], [], [])[0]:
        data = os.read(fd, 65536)
        try: os.write(b if fd == a else a, data)
        except OSError: pass
`;

/** Sends COUNT raw IP packets of protocol PROTO with PAYLOAD bytes (ESP/AH/GRE stand-ins). */
const RAW_SENDER = `
import socket, sys
dst, proto, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
for i in range(count):
    if proto == 51:   # AH: next header TCP, length, reserved, SPI, sequence, 12-byte ICV, then 'payload'
        body = bytes([6, 4, 0, 0]) + (0x200).to_bytes(4, 'big') + (i + 1).to_bytes(4, 'big') + bytes(12) + bytes(size - 24)
    else:             # ESP: SPI, sequence, opaque
        body = (0x100).to_bytes(4, 'big') + (i + 1).to_bytes(4, 'big') + bytes(size - 8)
    s.sendto(body, (dst, 0))
print('sent', count)
`;

/** UDP over IPv6 with hop-by-hop and destination-options headers on every datagram. */
const UDP6_DSTOPTS = `
import socket, sys
dst, port, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
# Hop-by-hop and destination options, each: next header (kernel fills), length 0 (8 bytes), PadN.
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
for i in range(count):
    s.sendto(bytes(size), (dst, port))
print('sent', count)
`;

export interface Capture {
  file: string;
  /** Waits for the capture to settle, stops the tool with SIGINT, and returns the file. */
  stop(): Promise<string>;
}

/** Labs still open: removed at process exit too, should a test die before its teardown. */
const openLabs = new Set<Lab>();
process.once('exit', () => {
  for (const lab of openLabs) lab.closeSync();
});

export class Lab {
  readonly prefix = `ps-test-${randomBytes(3).toString('hex')}`;
  readonly dir: string;
  private readonly namespaces: string[] = [];
  private readonly procs: ChildProcess[] = [];

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ps-offline-'));
    fs.writeFileSync(path.join(this.dir, 'tcp-server.cjs'), TCP_SERVER);
    fs.writeFileSync(path.join(this.dir, 'tcp-client.cjs'), TCP_CLIENT);
    fs.writeFileSync(path.join(this.dir, 'udp-server.cjs'), UDP_SERVER);
    fs.writeFileSync(path.join(this.dir, 'udp-client.cjs'), UDP_CLIENT);
    fs.writeFileSync(path.join(this.dir, 'tun-bridge.py'), TUN_BRIDGE);
    fs.writeFileSync(path.join(this.dir, 'raw-sender.py'), RAW_SENDER);
    fs.writeFileSync(path.join(this.dir, 'udp6-dstopts.py'), UDP6_DSTOPTS);
    openLabs.add(this);
  }

  /** A new namespace with lo up; returns its full name. */
  ns(name: string): string {
    const full = `${this.prefix}-${name}`;
    must('ip', ['netns', 'add', full]);
    this.namespaces.push(full);
    must('ip', ['-n', full, 'link', 'set', 'lo', 'up']);
    return full;
  }

  /** A veth pair between two namespaces with addresses ("198.18.0.1/24", "fd00::1/64"). */
  veth(nsA: string, ifA: string, addrsA: string[], nsB: string, ifB: string, addrsB: string[]): void {
    must('ip', ['link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    for (const [ns, ifc, addrs] of [
      [nsA, ifA, addrsA],
      [nsB, ifB, addrsB],
    ] as const) {
      for (const a of addrs) must('ip', ['-n', ns, 'addr', 'add', a, 'dev', ifc, ...(a.includes(':') ? ['nodad'] : [])]);
      must('ip', ['-n', ns, 'link', 'set', ifc, 'up']);
    }
  }

  ip(args: string[]): { status: number | null; stderr: string } {
    return exec('ip', args);
  }

  /** Runs a command in a namespace to completion; returns stdout, throws on failure. */
  run(ns: string, cmd: string, args: string[], timeoutMs = 30_000): string {
    return must('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
  }

  script(name: string): string {
    return path.join(this.dir, name);
  }

  /** Starts a long-running process in a namespace and waits until it prints `readyText`. */
  async start(ns: string, cmd: string, args: string[], readyText: string, stream: 'stdout' | 'stderr' = 'stdout'): Promise<ChildProcess> {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(child);
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      let other = '';
      const timer = setTimeout(() => reject(new Error(`${cmd} did not print "${readyText}" in 10 s: ${seen}${other}`)), 10_000);
      const src = stream === 'stdout' ? child.stdout! : child.stderr!;
      const rest = stream === 'stdout' ? child.stderr! : child.stdout!;
      rest.on('data', (d: Buffer) => (other += d.toString()));
      src.on('data', (d: Buffer) => {
        seen += d.toString();
        if (seen.includes(readyText)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${cmd} exited (${code}) before "${readyText}": ${seen}${other}`));
      });
    });
    child.removeAllListeners('exit');
    return child;
  }

  /** tcpdump -w in a namespace; extra args e.g. ['-i', 'any', '-y', 'LINUX_SLL2']. */
  async tcpdump(ns: string, name: string, args: string[]): Promise<Capture> {
    const file = path.join(this.dir, name);
    const child = await this.start(ns, 'tcpdump', [...args, '-B', '16384', '-U', '-w', file], 'listening on', 'stderr');
    return this.capture(child, file);
  }

  /** dumpcap (pcapng) in a namespace. */
  async dumpcap(ns: string, name: string, args: string[]): Promise<Capture> {
    const file = path.join(this.dir, name);
    const child = await this.start(ns, 'dumpcap', [...args, '-w', file], 'Capturing on', 'stderr');
    return this.capture(child, file);
  }

  private capture(child: ChildProcess, file: string): Capture {
    return {
      file,
      stop: async () => {
        // The kernel hands packets to the capture tool in blocks retired after up to ~1 s;
        // wait for that, then for the file to stop growing, then stop the tool.
        await sleep(1200);
        let last = -1;
        for (let i = 0; i < 30; i++) {
          const size = fs.existsSync(file) ? fs.statSync(file).size : 0;
          if (size === last) break;
          last = size;
          await sleep(200);
        }
        await stopChild(child, 'SIGINT');
        return file;
      },
    };
  }

  /** Node script from the lab dir in a namespace, to completion. */
  node(ns: string, scriptName: string, args: (string | number)[]): string {
    return this.run(ns, process.execPath, [this.script(scriptName), ...args.map(String)]);
  }

  async close(): Promise<void> {
    for (const p of this.procs.reverse()) await stopChild(p, 'SIGTERM');
    this.closeSync();
  }

  /** Last resort (process exit): kill what is left, delete the namespaces and files. */
  closeSync(): void {
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const ns of this.namespaces.reverse()) exec('ip', ['netns', 'del', ns]);
    this.namespaces.length = 0;
    fs.rmSync(this.dir, { recursive: true, force: true });
    openLabs.delete(this);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------
// pcap records: parse and rebuild (little-endian µs or ns pcap as tcpdump writes it).

export interface PcapRecord {
  sec: number;
  frac: number;
  origLen: number;
  data: Uint8Array;
}

export interface Pcap {
  header: Uint8Array;
  linkType: number;
  records: PcapRecord[];
}

export function parsePcap(bytes: Uint8Array): Pcap {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error('test helper reads little-endian pcap only');
  const records: PcapRecord[] = [];
  for (let o = 24; o + 16 <= bytes.length; ) {
    const cap = dv.getUint32(o + 8, true);
    records.push({ sec: dv.getUint32(o, true), frac: dv.getUint32(o + 4, true), origLen: dv.getUint32(o + 12, true), data: bytes.slice(o + 16, o + 16 + cap) });
    o += 16 + cap;
  }
  return { header: bytes.slice(0, 24), linkType: dv.getUint32(20, true), records };
}

/**
 * Builds a pcap. TEST HELPER options: `bigEndian` writes every header field big-endian, and
 * `modified` writes Kuznetzov's "modified pcap" (magic a1b2cd34, 24-byte record headers) —
 * no tool on Linux writes either today.
 */
export function buildPcap(p: Pcap, opts: { bigEndian?: boolean; linkType?: number; modified?: boolean } = {}): Uint8Array {
  const le = !opts.bigEndian;
  const recLen = opts.modified ? 24 : 16;
  const total = 24 + p.records.reduce((n, r) => n + recLen + r.data.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  const src = new DataView(p.header.buffer, p.header.byteOffset, 24);
  dv.setUint32(0, opts.modified ? 0xa1b2cd34 : src.getUint32(0, true), le);
  dv.setUint16(4, src.getUint16(4, true), le);
  dv.setUint16(6, src.getUint16(6, true), le);
  dv.setInt32(8, src.getInt32(8, true), le);
  dv.setUint32(12, src.getUint32(12, true), le);
  dv.setUint32(16, src.getUint32(16, true), le);
  dv.setUint32(20, opts.linkType ?? p.linkType, le);
  let o = 24;
  for (const r of p.records) {
    dv.setUint32(o, r.sec, le);
    dv.setUint32(o + 4, r.frac, le);
    dv.setUint32(o + 8, r.data.length, le);
    dv.setUint32(o + 12, r.origLen, le);
    if (opts.modified) dv.setUint32(o + 16, 1, le); // ifindex; protocol, pkt_type, pad stay 0
    out.set(r.data, o + recLen);
    o += recLen + r.data.length;
  }
  return out;
}

/**
 * TEST HELPER: an Ethernet capture rewritten as BSD loopback — the 14-byte Ethernet header
 * replaced by a 4-byte address family: NULL (0) in the writing host's byte order
 * (little-endian unless `bigEndianHost`), LOOP (108) in network order. `af6` picks the BSD
 * flavour's AF_INET6 (24, 28 or 30). Non-IP frames (ARP) are dropped: loopback has none.
 */
export function ethernetToLoopback(p: Pcap, linkType: 0 | 108, opts: { af6?: number; bigEndianHost?: boolean } = {}): Pcap {
  const records = p.records.flatMap((r) => {
    const etherType = (r.data[12] << 8) | r.data[13];
    if (etherType !== 0x0800 && etherType !== 0x86dd) return [];
    const af = etherType === 0x86dd ? (opts.af6 ?? 30) : 2;
    const data = new Uint8Array(r.data.length - 10);
    new DataView(data.buffer).setUint32(0, af, linkType === 0 && !opts.bigEndianHost);
    data.set(r.data.subarray(14), 4);
    return [{ ...r, origLen: r.origLen - 10, data }];
  });
  return { header: p.header, linkType, records };
}

/** TEST HELPER: inserts VLAN tags (outermost first) after the MAC addresses of an Ethernet capture. */
export function insertVlanTags(p: Pcap, tags: { tpid: number; vid: number }[]): Pcap {
  const records = p.records.map((r) => {
    const data = new Uint8Array(r.data.length + 4 * tags.length);
    data.set(r.data.subarray(0, 12));
    tags.forEach((tag, i) => {
      const o = 12 + 4 * i;
      data[o] = tag.tpid >> 8;
      data[o + 1] = tag.tpid & 0xff;
      data[o + 2] = tag.vid >> 8;
      data[o + 3] = tag.vid & 0xff;
    });
    data.set(r.data.subarray(12), 12 + 4 * tags.length);
    return { ...r, origLen: r.origLen + 4 * tags.length, data };
  });
  return { header: p.header, linkType: 1, records };
}

/**
 * TEST HELPER: a big-endian pcapng with one section, one interface (link type, ns or µs
 * resolution) and one EPB per record — no tool on Linux writes big-endian pcapng.
 */
export function buildBigEndianPcapng(p: Pcap, nanos: boolean): Uint8Array {
  const chunks: Uint8Array[] = [];
  const block = (type: number, body: Uint8Array): void => {
    const len = 12 + body.length + ((4 - (body.length % 4)) % 4);
    const b = new Uint8Array(len);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, type, false);
    dv.setUint32(4, len, false);
    b.set(body, 8);
    dv.setUint32(len - 4, len, false);
    chunks.push(b);
  };
  const shb = new Uint8Array(16);
  const sdv = new DataView(shb.buffer);
  sdv.setUint32(0, 0x1a2b3c4d, false);
  sdv.setUint16(4, 1, false);
  sdv.setUint16(6, 0, false);
  sdv.setInt32(8, -1, false);
  sdv.setInt32(12, -1, false);
  block(0x0a0d0d0a, shb);
  const idb = new Uint8Array(8 + 8 + 4);
  const idv = new DataView(idb.buffer);
  idv.setUint16(0, p.linkType, false);
  idv.setUint32(4, 262144, false);
  idv.setUint16(8, 9, false); // if_tsresol
  idv.setUint16(10, 1, false);
  idb[12] = nanos ? 9 : 6;
  // opt_endofopt: 4 zero bytes already there
  block(0x00000001, idb);
  const magicNs = new DataView(p.header.buffer, p.header.byteOffset).getUint32(0, true) === 0xa1b23c4d;
  for (const r of p.records) {
    const body = new Uint8Array(20 + r.data.length);
    const dv = new DataView(body.buffer);
    const fracNs = magicNs ? r.frac : r.frac * 1000;
    const units = BigInt(r.sec) * (nanos ? 1_000_000_000n : 1_000_000n) + BigInt(nanos ? fracNs : Math.floor(fracNs / 1000));
    dv.setUint32(0, 0, false);
    dv.setUint32(4, Number(units >> 32n), false);
    dv.setUint32(8, Number(units & 0xffffffffn), false);
    dv.setUint32(12, r.data.length, false);
    dv.setUint32(16, r.origLen, false);
    body.set(r.data, 20);
    block(0x00000006, body);
  }
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Offset of the TCP payload in an Ethernet/IPv4 or IPv6 frame, and its length; undefined if not TCP. */
export function tcpPayloadOf(frame: Uint8Array): { seq: number; flags: number; payload: number; len: number } | undefined {
  const et = (frame[12] << 8) | frame[13];
  let p = 14;
  let proto: number;
  let l4Len: number;
  if (et === 0x0800) {
    const ihl = (frame[p] & 0x0f) * 4;
    proto = frame[p + 9];
    l4Len = ((frame[p + 2] << 8) | frame[p + 3]) - ihl;
    p += ihl;
  } else if (et === 0x86dd) {
    proto = frame[p + 6];
    l4Len = (frame[p + 4] << 8) | frame[p + 5];
    p += 40;
  } else return undefined;
  if (proto !== 6) return undefined;
  const dataOff = (frame[p + 12] >> 4) * 4;
  const seq = ((frame[p + 4] << 24) | (frame[p + 5] << 16) | (frame[p + 6] << 8) | frame[p + 7]) >>> 0;
  return { seq, flags: frame[p + 13], payload: p + dataOff, len: l4Len - dataOff };
}
