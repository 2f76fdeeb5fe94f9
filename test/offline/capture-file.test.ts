// The pcap/pcapng reader on captures written by tcpdump, dumpcap, editcap and mergecap;
// big-endian files (no Linux tool writes them) made by a test-helper converter; and
// hand-made bytes for empty, garbage, corrupt and cut files. fast-check: random and mutated
// captures never throw anything but PlainsightError and finish quickly.

import t, { type Test } from 'tap';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { isPlainsightError, PlainsightError } from '../../agent/src/errors.js';
import { readCaptureBytes, readCaptureFile, type CaptureReadOptions } from '../../agent/src/offline/capture-file.js';
import { readFlows, readFlowsFromBytes } from '../../agent/src/offline/flows.js';
import { buildBigEndianPcapng, buildPcap, hasTool, Lab, labSkipReason, parsePcap } from '../lab/offline-capture.js';

const skip = labSkipReason();

interface Pkt {
  tsMs: number;
  capLen: number;
  origLen: number;
  linkType: number;
  sha: string;
}

function packets(file: string | Uint8Array, opts?: CaptureReadOptions): { list: Pkt[]; warning?: string; format: string } {
  const list: Pkt[] = [];
  const cb = (buf: Uint8Array, off: number, capLen: number, origLen: number, tsMs: number, linkType: number): void => {
    list.push({ tsMs, capLen, origLen, linkType, sha: createHash('sha1').update(buf.subarray(off, off + capLen)).digest('hex') });
  };
  const s = typeof file === 'string' ? readCaptureFile(file, cb, opts) : readCaptureBytes(file, 'bytes', cb, opts);
  return { list, warning: s.truncatedWarning, format: s.format };
}

/** Same packets; timestamps equal within `tolMs`. */
/**
 * `anyOrder`: two capture processes on one interface may see two near-simultaneous
 * packets (one each way, handled on different CPUs) in opposite orders; compare them as
 * sets, paired by content then time.
 */
function samePackets(t: Test, a: Pkt[], b: Pkt[], tolMs: number, what: string, anyOrder = false): void {
  if (anyOrder) {
    const byContent = (l: Pkt[]): Pkt[] => [...l].sort((x, y) => (x.sha < y.sha ? -1 : x.sha > y.sha ? 1 : x.tsMs - y.tsMs));
    [a, b] = [byContent(a), byContent(b)];
  }
  t.equal(a.length, b.length, `${what}: packet count`);
  const strip = (l: Pkt[]): Omit<Pkt, 'tsMs'>[] => l.map(({ tsMs: _ts, ...rest }) => rest);
  t.same(strip(a), strip(b), `${what}: same bytes and lengths`);
  const worst = a.reduce((m, p, i) => Math.max(m, Math.abs(p.tsMs - (b[i]?.tsMs ?? Infinity))), 0);
  t.ok(worst <= tolMs, `${what}: timestamps agree (worst ${worst} ms)`);
}

function tool(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

function expectError(t: Test, fn: () => unknown, code: string, re: RegExp, what: string): void {
  try {
    fn();
    t.fail(`${what}: no error`);
  } catch (e) {
    t.ok(isPlainsightError(e), `${what}: a PlainsightError`);
    t.equal((e as PlainsightError).code, code, `${what}: ${code}`);
    t.match((e as Error).message, re, `${what}: message "${(e as Error).message}"`);
  }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ps-capture-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
const tmpFile = (name: string, bytes: Uint8Array | string): string => {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
};

/** Real captures shared by the subtests below (filled when the lab can run). */
const real: { us?: string; ns?: string; ng?: string; sll2?: string } = {};

t.test('real captures: tcpdump µs/ns, dumpcap pcapng, editcap, mergecap, big-endian', { skip }, async (t) => {
  const lab = new Lab();
  t.teardown(() => lab.close());
  const ns = lab.ns('cap');
  await lab.start(ns, process.execPath, [lab.script('tcp-server.cjs'), '127.0.0.1', '7000', '5000'], 'ready');
  const us = await lab.tcpdump(ns, 'us.pcap', ['-i', 'lo']);
  const nano = await lab.tcpdump(ns, 'ns.pcap', ['-i', 'lo', '--time-stamp-precision=nano']);
  const sll2 = await lab.tcpdump(ns, 'sll2.pcap', ['-i', 'any', '-y', 'LINUX_SLL2']);
  const ng = hasTool('dumpcap') ? await lab.dumpcap(ns, 'dumpcap.pcapng', ['-i', 'lo']) : undefined;
  const before = Date.now();
  lab.node(ns, 'tcp-client.cjs', ['127.0.0.1', 7000, 100000]);
  const after = Date.now();
  for (const [key, cap] of [
    ['us', us],
    ['ns', nano],
    ['sll2', sll2],
    ['ng', ng],
  ] as const) {
    if (cap) real[key] = path.join(tmp, path.basename(await cap.stop()));
    if (cap) fs.copyFileSync(cap.file, real[key]!);
  }

  const a = packets(real.us!);
  t.equal(a.format, 'pcap');
  t.ok(a.list.length >= 10, `µs pcap has the conversation (${a.list.length} packets)`);
  t.ok(a.list[0].tsMs >= before - 2000 && a.list[0].tsMs <= after + 2000, 'timestamps are epoch milliseconds');
  t.ok(a.list.every((p) => p.linkType === 1));
  const b = packets(real.ns!);
  // Separate capture sockets timestamp the same packet separately: close, not equal.
  samePackets(t, b.list, a.list, 1, 'ns pcap vs µs pcap');
  t.ok(b.list.some((p) => Math.round(p.tsMs * 1e6) % 1000 !== 0), 'ns pcap keeps sub-µs digits');

  const flows = readFlows(real.us!).flows;
  t.same(flows.map((f) => [f.bytes.toServer, f.bytes.toClient]), [[100000, 5000]]);

  t.test('editcap to pcapng (µs and ns) gives the same packets', { skip: !hasTool('editcap') && 'needs editcap' }, async (t) => {
    const ngUs = path.join(tmp, 'editcap-us.pcapng');
    const ngNs = path.join(tmp, 'editcap-ns.pcapng');
    tool('editcap', ['-F', 'pcapng', real.us!, ngUs]);
    tool('editcap', ['-F', 'pcapng', real.ns!, ngNs]);
    t.equal(packets(ngUs).format, 'pcapng');
    samePackets(t, packets(ngUs).list, a.list, 1e-6, 'pcapng µs');
    samePackets(t, packets(ngNs).list, b.list, 1e-6, 'pcapng ns');
    // Two files back to back are one pcapng with two sections.
    const two = tmpFile('two-sections.pcapng', Buffer.concat([fs.readFileSync(ngUs), fs.readFileSync(ngNs)]));
    samePackets(t, packets(two).list, [...a.list, ...b.list], 1e-6, 'two sections');
  });

  t.test('dumpcap pcapng', { skip: !real.ng && 'needs dumpcap' }, async (t) => {
    const d = packets(real.ng!);
    t.equal(d.format, 'pcapng');
    samePackets(t, d.list, a.list, 1, 'dumpcap vs tcpdump', true);
    t.same(readFlows(real.ng!).flows.map((f) => f.bytes), [{ toServer: 100000, toClient: 5000 }]);
  });

  t.test('mergecap: one pcapng, interfaces with different link types', { skip: !hasTool('mergecap') && 'needs mergecap' }, async (t) => {
    const merged = path.join(tmp, 'merged.pcapng');
    tool('mergecap', ['-F', 'pcapng', '-w', merged, real.us!, real.sll2!]);
    const r = readFlows(merged);
    t.same(r.stats.files[0].linkTypes.sort((x, y) => x - y), [1, 276]);
    // Every packet is there twice (Ethernet and cooked), so the one flow counts double.
    t.same(r.flows.map((f) => f.bytes), [{ toServer: 200000, toClient: 10000 }]);
    t.equal(r.stats.undecodable, 0);
  });

  t.test('big-endian pcap and pcapng, modified pcap (TEST HELPER converts; no Linux tool writes them)', async (t) => {
    const pcap = parsePcap(fs.readFileSync(real.us!));
    samePackets(t, packets(buildPcap(pcap, { bigEndian: true })).list, a.list, 0, 'big-endian µs pcap');
    samePackets(t, packets(buildPcap(pcap, { modified: true })).list, a.list, 0, 'modified pcap (a1b2cd34)');
    samePackets(t, packets(buildPcap(pcap, { modified: true, bigEndian: true })).list, a.list, 0, 'big-endian modified pcap');
    const pcapNs = parsePcap(fs.readFileSync(real.ns!));
    samePackets(t, packets(buildPcap(pcapNs, { bigEndian: true })).list, b.list, 0, 'big-endian ns pcap');
    samePackets(t, packets(buildBigEndianPcapng(pcapNs, true)).list, b.list, 1e-6, 'big-endian pcapng, ns');
    samePackets(t, packets(buildBigEndianPcapng(pcap, false)).list, a.list, 1e-6, 'big-endian pcapng, µs');
  });

  t.test('chunk boundaries: tiny read chunks give the same packets', async (t) => {
    for (const chunkSize of [64, 1000, 4096]) {
      samePackets(t, packets(real.us!, { chunkSize }).list, a.list, 0, `pcap, chunk ${chunkSize}`);
      if (real.ng) samePackets(t, packets(real.ng, { chunkSize }).list, packets(real.ng).list, 0, `pcapng, chunk ${chunkSize}`);
    }
  });

  t.test('a file cut anywhere stops cleanly with a warning', async (t) => {
    for (const file of [real.us!, real.ng].filter((f): f is string => !!f)) {
      const bytes = fs.readFileSync(file);
      const whole = packets(file).list;
      for (const cut of [bytes.length - 1, bytes.length - 7, Math.floor(bytes.length / 2), 60, 30]) {
        const r = packets(bytes.subarray(0, cut));
        t.ok(r.warning, `${path.basename(file)} cut at ${cut}: warning`);
        t.match(r.warning, /ends in .* at byte \d+/);
        // dumpcap ends with a statistics block: a cut there loses no packet.
        t.ok(r.list.length <= whole.length, `cut at ${cut}: no more packets than the whole file`);
        t.same(r.list, whole.slice(0, r.list.length), `cut at ${cut}: the packets before the cut are intact`);
      }
      const flowsCut = readFlowsFromBytes(bytes.subarray(0, bytes.length - 5), 'cut');
      t.ok(flowsCut.stats.truncatedWarning);
      t.ok(flowsCut.stats.warnings.includes(flowsCut.stats.truncatedWarning!));
    }
  });
});

t.test('not a capture, unsupported link types, damaged files', async (t) => {
  const pcapHeader = (linkType: number, opts: { version?: number; snaplen?: number } = {}): Buffer => {
    const h = Buffer.alloc(24);
    h.writeUInt32LE(0xa1b2c3d4, 0);
    h.writeUInt16LE(opts.version ?? 2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(opts.snaplen ?? 262144, 16);
    h.writeUInt32LE(linkType, 20);
    return h;
  };
  const record = (capLen: number, data = Buffer.alloc(capLen)): Buffer => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(1700000000, 0);
    r.writeUInt32LE(capLen, 8);
    r.writeUInt32LE(capLen, 12);
    return Buffer.concat([r, data]);
  };
  const block = (type: number, body: Buffer, opts: { len?: number; trailer?: number } = {}): Buffer => {
    const len = 12 + body.length;
    const b = Buffer.alloc(len);
    b.writeUInt32LE(type, 0);
    b.writeUInt32LE(opts.len ?? len, 4);
    body.copy(b, 8);
    b.writeUInt32LE(opts.trailer ?? len, len - 4);
    return b;
  };
  const shb = (): Buffer => {
    const body = Buffer.alloc(16);
    body.writeUInt32LE(0x1a2b3c4d, 0);
    body.writeUInt16LE(1, 4);
    body.writeInt32LE(-1, 8);
    body.writeInt32LE(-1, 12);
    return block(0x0a0d0d0a, body);
  };
  const idb = (linkType: number): Buffer => {
    const body = Buffer.alloc(8);
    body.writeUInt16LE(linkType, 0);
    return block(1, body);
  };
  const epb = (iface: number, capLen: number): Buffer => {
    const body = Buffer.alloc(20 + ((capLen + 3) & ~3));
    body.writeUInt32LE(iface, 0);
    body.writeUInt32LE(capLen, 12);
    body.writeUInt32LE(capLen, 16);
    return block(6, body);
  };
  const read = (name: string, bytes: Uint8Array | string) => () => readFlows(tmpFile(name, bytes));

  expectError(t, read('empty.pcap', ''), 'PLAINSIGHT_ERR_CAPTURE_FORMAT', /empty\.pcap is empty/, 'empty file');
  expectError(t, read('short.pcap', 'ab'), 'PLAINSIGHT_ERR_CAPTURE_FORMAT', /only 2 bytes long/, '2-byte file');
  expectError(t, read('notes.txt', 'hello world, not a capture\n'), 'PLAINSIGHT_ERR_CAPTURE_FORMAT', /notes\.txt is not a pcap or pcapng capture: it starts with 68 65 .*text "hello wo"/, 'text');
  const gz = gzipSync(Buffer.concat([pcapHeader(1), record(60)]));
  expectError(t, read('cap.pcap.gz', gz), 'PLAINSIGHT_ERR_CAPTURE_FORMAT', /gzip-compressed: decompress it first/, 'gzip');
  expectError(t, read('v3.pcap', pcapHeader(1, { version: 3 })), 'PLAINSIGHT_ERR_CAPTURE_FORMAT', /version 3\.4/, 'pcap version');
  expectError(t, read('wifi.pcap', Buffer.concat([pcapHeader(105), record(60)])), 'PLAINSIGHT_ERR_CAPTURE_LINKTYPE', /link type 105 \(IEEE802_11 \(Wi-Fi\)\)/, 'Wi-Fi pcap');
  expectError(t, read('odd.pcap', pcapHeader(4242)), 'PLAINSIGHT_ERR_CAPTURE_LINKTYPE', /link type 4242, which/, 'unknown link type');
  expectError(t, read('wifi.pcapng', Buffer.concat([shb(), idb(105), epb(0, 60)])), 'PLAINSIGHT_ERR_CAPTURE_LINKTYPE', /link type 105/, 'Wi-Fi pcapng');
  t.equal(readFlows(tmpFile('unused-wifi.pcapng', Buffer.concat([shb(), idb(105), idb(1), epb(1, 60)]))).stats.packets, 1, 'an unused unsupported interface is fine');
  expectError(t, read('huge.pcap', Buffer.concat([pcapHeader(1), record(0x7fffffff, Buffer.alloc(0))])), 'PLAINSIGHT_ERR_CAPTURE_CORRUPT', /huge\.pcap is damaged at byte 24: .*2147483647 captured bytes/, 'absurd caplen');
  expectError(t, read('big.pcap', Buffer.concat([pcapHeader(1, { snaplen: 1000 }), record(60), record(300000)])), 'PLAINSIGHT_ERR_CAPTURE_CORRUPT', /at byte 100/, 'caplen beyond snaplen');
  const sh = shb();
  expectError(t, read('len13.pcapng', Buffer.concat([sh, idb(1), block(6, Buffer.alloc(24), { len: 37 })])), 'PLAINSIGHT_ERR_CAPTURE_CORRUPT', new RegExp(`at byte ${sh.length + 20}: .*length 37`), 'block length not a multiple of 4');
  expectError(t, read('len8.pcapng', Buffer.concat([sh, block(6, Buffer.alloc(0), { len: 8 })])), 'PLAINSIGHT_ERR_CAPTURE_CORRUPT', /length 8/, 'block length below minimum');
  expectError(t, read('trailer.pcapng', Buffer.concat([sh, idb(1), block(6, Buffer.alloc(24), { trailer: 40 })])), 'PLAINSIGHT_ERR_CAPTURE_CORRUPT', /36 at its start but 40 at its end/, 'trailer mismatch');
  const badEpb = epb(0, 60);
  badEpb.writeUInt32LE(500, 20);
  expectError(t, read('epbcap.pcapng', Buffer.concat([sh, idb(1), badEpb])), 'PLAINSIGHT_ERR_CAPTURE_CORRUPT', /500 captured bytes in a block of 92/, 'EPB caplen beyond block');
  expectError(t, read('iface.pcapng', Buffer.concat([sh, idb(1), epb(3, 60)])), 'PLAINSIGHT_ERR_CAPTURE_CORRUPT', /interface 3 but the section describes 1/, 'unknown interface');
  const badShb = shb();
  badShb.writeUInt32LE(0x11223344, 8);
  expectError(t, read('bom.pcapng', badShb), 'PLAINSIGHT_ERR_CAPTURE_FORMAT', /byte-order magic is 11223344/, 'pcapng byte-order magic');
  expectError(t, () => readFlows(path.join(tmp, 'missing.pcap')), 'PLAINSIGHT_ERR_CAPTURE_OPEN', /cannot open .*missing\.pcap: no such file/, 'missing file');
  expectError(t, () => readFlows(tmp), 'PLAINSIGHT_ERR_CAPTURE_OPEN', /is a directory|EISDIR/, 'directory');

  t.same(readFlows(tmpFile('header-only.pcap', pcapHeader(1))).stats.packets, 0, 'header only: no packets, no warning');
  t.notOk(readFlows(tmpFile('header-only2.pcap', pcapHeader(1))).stats.truncatedWarning);
  t.match(readFlows(tmpFile('cut-header.pcap', pcapHeader(1).subarray(0, 10))).stats.truncatedWarning, /in the pcap file header/, 'cut in the file header: warning');
  const skipped = Buffer.concat([sh, block(0x0bad, Buffer.alloc(8)), idb(1), block(5, Buffer.alloc(20)), epb(0, 60)]);
  t.equal(readFlows(tmpFile('unknown-blocks.pcapng', skipped)).stats.packets, 1, 'unknown and statistics blocks are skipped');
  const ipv4Garbage = Buffer.alloc(40, 0x45);
  ipv4Garbage.writeUInt16BE(0x0800, 12); // Ethernet says IPv4; the IPv4 length says 17733 bytes
  const garbage = Buffer.concat([pcapHeader(1), record(40, ipv4Garbage)]);
  const g = readFlows(tmpFile('garbage-packet.pcap', garbage));
  t.same([g.stats.packets, g.stats.undecodable, g.flows.length], [1, 1, 0], 'a garbage packet is counted undecodable');
  t.match(g.stats.warnings.join('\n'), /1 undecodable packet/);
});

t.test('fast-check: random and mutated captures throw only PlainsightError, quickly', async (t) => {
  const seeds: Uint8Array[] = [];
  if (real.us) seeds.push(fs.readFileSync(real.us), buildPcap(parsePcap(fs.readFileSync(real.ns!)), { bigEndian: true }));
  if (real.ng) seeds.push(fs.readFileSync(real.ng));
  if (real.sll2) seeds.push(fs.readFileSync(real.sll2));
  if (seeds.length === 0) t.comment('no real captures here (lab skipped): fuzzing random bytes only');
  let slowest = 0;
  const check = (bytes: Uint8Array): boolean => {
    const start = performance.now();
    try {
      readFlowsFromBytes(bytes, 'fuzz.pcap', { tcpPrefixBytes: 2048, maxOutOfOrderSegments: 4 });
    } catch (e) {
      if (!(e instanceof PlainsightError)) throw e;
    }
    slowest = Math.max(slowest, performance.now() - start);
    return true;
  };
  const magics = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0x34, 0xcd, 0xb2, 0xa1],
    [0x0a, 0x0d, 0x0d, 0x0a],
  ];
  fc.assert(
    fc.property(fc.constantFrom(...magics), fc.uint8Array({ maxLength: 3000 }), (magic, rest) => check(new Uint8Array([...magic, ...rest]))),
    { numRuns: 400 },
  );
  if (seeds.length > 0) {
    fc.assert(
      fc.property(
        fc.nat(seeds.length - 1),
        fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 255 })), { maxLength: 24 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (which, edits, cutAt) => {
          const bytes = Uint8Array.from(seeds[which]);
          for (const [at, value] of edits) bytes[Math.floor(at * (bytes.length - 1))] = value;
          return check(bytes.subarray(0, Math.max(0, Math.floor(bytes.length * (0.5 + cutAt / 2)))));
        },
      ),
      { numRuns: 400 },
    );
  }
  t.ok(slowest < 2000, `every case finished quickly (slowest ${slowest.toFixed(1)} ms)`);
});
