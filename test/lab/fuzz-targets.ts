// Fuzz targets: every wire parser entry point of the classifier, the offline reader and
// the capture assembler, each as bytes → label. Parsers that take a flow (two directions,
// ports, datagram lists) or kernel samples read a small container (encodeFlow /
// encodeSamples) so that a crash is always one replayable file.
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

import { assemble, type SampleBytes } from '../../agent/src/capture/assembler.js';
import { detectEncryptedTcp, detectEncryptedUdp } from '../../agent/src/classify/encrypted-other.js';
import { classify, classifierFaults, classifyStrict, type Classification } from '../../agent/src/classify/index.js';
import { detectMesh } from '../../agent/src/classify/mesh.js';
import { parseDtlsHello } from '../../agent/src/classify/other/dtls.js';
import { detectIpsecDatagrams, parseIke } from '../../agent/src/classify/other/ipsec.js';
import { detectOpenvpnDatagrams, detectOpenvpnStream, hardResetLayout } from '../../agent/src/classify/other/openvpn.js';
import { decryptClientHello } from '../../agent/src/classify/other/quic-initial.js';
import { parseQuicInitial } from '../../agent/src/classify/other/quic.js';
import { looksRandom } from '../../agent/src/classify/other/random.js';
import { detectSsh, findSshIdent, kexinitAt } from '../../agent/src/classify/other/ssh.js';
import { detectWireguardDatagrams, wireguardKind } from '../../agent/src/classify/other/wireguard.js';
import { detectPlaintextTcp, detectPlaintextUdp, looksLikeText } from '../../agent/src/classify/plaintext.js';
import { detectAmqp, detectKafka, detectLdap, detectMongo, detectMqtt, parseLdapExtendedResponse, parseLdapRequest } from '../../agent/src/classify/plaintext/binary.js';
import { detectDnsTcp, detectUdp, parseDnsMessage } from '../../agent/src/classify/plaintext/dns.js';
import { detectHttp, h2FramesSayGrpc, hasH2Preface, parseRequestLine, parseStatusLine, scanHead } from '../../agent/src/classify/plaintext/http.js';
import { detectMemcached, detectRedis, parseMemcachedBinary, parseMemcachedText } from '../../agent/src/classify/plaintext/kv.js';
import { commandVerb, detectMail, imapTaggedCommand, readCodedReply } from '../../agent/src/classify/plaintext/mail.js';
import { parseProxyHeader } from '../../agent/src/classify/plaintext/proxy.js';
import { detectMysql, detectPostgres, parseMysqlGreeting, parseMysqlResponse, parsePgStartup, pgNegotiation } from '../../agent/src/classify/plaintext/sql.js';
import { analyzeTls, looksLikeTls } from '../../agent/src/classify/tls/analyze.js';
import { readHandshakeMessages } from '../../agent/src/classify/tls/handshake.js';
import { looksLikeSslv2ClientHello, looksLikeSslv2ServerHello, parseClientHello, parseServerHello, parseSslv2ClientHello, sslv2Header } from '../../agent/src/classify/tls/hello.js';
import { ja4 } from '../../agent/src/classify/tls/ja4.js';
import { firstPlainAlert, walkRecords } from '../../agent/src/classify/tls/records.js';
import { flowBytes, type FlowBytes, type Transport } from '../../agent/src/classify/types.js';
import { findUpgrade } from '../../agent/src/classify/upgrade.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { readCaptureBytes } from '../../agent/src/offline/capture-file.js';
import * as dec from '../../agent/src/offline/decode.js';
import { readFlowsFromBytes } from '../../agent/src/offline/flows.js';
import { addToSummary, emptySummary, toFlowJson } from '../../agent/src/offline/report.js';
import { invariant, mutate, type Gen, type Rng, type Target } from './fuzz-engine.js';
import type { Corpus, SeedFlow } from './fuzz-corpus.js';
import { mysqlGreeting } from './wire-lab.js';
import { INTERESTING_PORTS } from './wire-fuzz.js';

// --- containers ---

const TRANSPORTS: Transport[] = ['tcp', 'udp', 'esp', 'ah', 'other'];

function u32(v: number): number[] {
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

function framed(parts: Uint8Array[], head: number[]): Uint8Array {
  const total = head.length + parts.reduce((a, p) => a + 4 + p.length, 0);
  const out = new Uint8Array(total);
  out.set(head);
  let o = head.length;
  for (const p of parts) {
    out.set(u32(p.length), o);
    out.set(p, o + 4);
    o += 4 + p.length;
  }
  return out;
}

/** Reads `n` length-prefixed parts from b[o…]; lenient: a short container gives short/empty parts. */
function unframe(b: Uint8Array, o: number, n: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    const len = o + 4 <= b.length ? ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0 : 0;
    o += 4;
    parts.push(b.subarray(Math.min(o, b.length), Math.min(o + len, b.length)));
    o += len;
  }
  return parts;
}

/** Flow container: transport, truncation flags, ports, datagram counts, then length-prefixed parts. */
export function encodeFlow(f: FlowBytes): Uint8Array {
  const tcp = f.transport === 'tcp';
  const c = tcp ? [f.client] : f.clientDatagrams;
  const s = tcp ? [f.server] : f.serverDatagrams;
  const flags = (f.clientTruncated ? 1 : 0) | (f.serverTruncated ? 2 : 0);
  const head = [TRANSPORTS.indexOf(f.transport), flags, f.clientPort >> 8, f.clientPort & 0xff, f.serverPort >> 8, f.serverPort & 0xff, c.length, s.length];
  return framed([...c, ...s], head);
}

export function decodeFlow(b: Uint8Array): FlowBytes {
  const transport = TRANSPORTS[(b[0] ?? 0) % TRANSPORTS.length]!;
  const nc = b[6] ?? 0;
  const ns = b[7] ?? 0;
  const parts = unframe(b, 8, nc + ns);
  const f = flowBytes({
    transport,
    clientTruncated: ((b[1] ?? 0) & 1) !== 0,
    serverTruncated: ((b[1] ?? 0) & 2) !== 0,
    clientPort: ((b[2] ?? 0) << 8) | (b[3] ?? 0),
    serverPort: ((b[4] ?? 0) << 8) | (b[5] ?? 0),
  });
  if (transport === 'tcp') {
    f.client = parts[0] ?? f.client;
    f.server = parts[nc] ?? f.server;
  } else {
    f.clientDatagrams = parts.slice(0, nc);
    f.serverDatagrams = parts.slice(nc);
  }
  return f;
}

/** Sample container for the capture assembler: transport, "more" flags, counts, then per sample seq, payloadLen, ts and the bytes. */
export function encodeSamples(transport: Transport, toServer: SampleBytes[], toClient: SampleBytes[], more: number): Uint8Array {
  const all = [...toServer, ...toClient];
  const head = [TRANSPORTS.indexOf(transport), more, toServer.length, toClient.length];
  for (const s of all) head.push(...u32(s.tcpSeq), ...u32(s.payloadLen), ...u32(s.ts));
  return framed(
    all.map((s) => s.payload),
    head,
  );
}

export function decodeSamples(b: Uint8Array): { transport: Transport; toServer: SampleBytes[]; toClient: SampleBytes[]; more: number } {
  const transport = TRANSPORTS[(b[0] ?? 0) % TRANSPORTS.length]!;
  const nS = b[2] ?? 0;
  const nC = b[3] ?? 0;
  const meta = 4;
  const be = (o: number): number => (((b[o] ?? 0) << 24) | ((b[o + 1] ?? 0) << 16) | ((b[o + 2] ?? 0) << 8) | (b[o + 3] ?? 0)) >>> 0;
  const parts = unframe(b, meta + 12 * (nS + nC), nS + nC);
  const samples = parts.map((payload, k) => ({ index: k, tcpSeq: be(meta + 12 * k), payloadLen: be(meta + 12 * k + 4), ts: be(meta + 12 * k + 8), payload }));
  return { transport, toServer: samples.slice(0, nS), toClient: samples.slice(nS), more: b[1] ?? 0 };
}

// --- context: the seed pools, built once from the corpus ---

export interface FuzzContext {
  corpus: Corpus;
  tcpSeeds: SeedFlow[];
  udpSeeds: SeedFlow[];
  tlsSeeds: SeedFlow[];
  /** Every stream and datagram of the corpus: the splice pool. */
  all: Uint8Array[];
  tlsStreams: Uint8Array[];
  clientHellos: Uint8Array[];
  serverHellos: Uint8Array[];
  sslv2: Uint8Array[];
  quic: Uint8Array[];
  dtls: Uint8Array[];
  dtlsHellos: Uint8Array[];
  ssh: Uint8Array[];
  wireguard: Uint8Array[];
  openvpn: Uint8Array[];
  ike: Uint8Array[];
  dns: Uint8Array[];
  plaintext: Uint8Array[];
  /** Ethernet frames from the loopback capture, by IP version. */
  frames4: Uint8Array[];
  frames6: Uint8Array[];
}

const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

function handshakeBodies(stream: Uint8Array, type: number): Uint8Array[] {
  const msgs = readHandshakeMessages(stream, walkRecords(stream).records);
  return msgs.filter((m) => m.type === type && m.complete).map((m) => Uint8Array.from(m.body));
}

export function buildContext(corpus: Corpus): FuzzContext {
  const tcpSeeds = corpus.flows.filter((s) => s.flow.transport === 'tcp');
  const udpSeeds = corpus.flows.filter((s) => s.flow.transport === 'udp');
  const tlsSeeds = tcpSeeds.filter((s) => s.expect.protocol === 'tls' && looksLikeTls(s.flow.client));
  const named = (p: string): SeedFlow[] => corpus.flows.filter((s) => s.name.startsWith(p));
  const grams = (p: string): Uint8Array[] => named(p).flatMap((s) => [...s.flow.clientDatagrams, ...s.flow.serverDatagrams]);
  const tlsStreams = tlsSeeds.flatMap((s) => [s.flow.client, s.flow.server]);
  const dtls = grams('dtls');
  const dtlsHellos: Uint8Array[] = [];
  for (const d of dtls) {
    const h = parseDtlsHello(d, 0, true) ?? parseDtlsHello(d, 0, false);
    if (h?.complete) dtlsHellos.push(d.slice(h.bodyStart, h.bodyStart + h.bodyLength));
  }
  // SSLv2-compatible ClientHello (RFC 5246 E.2): no tool here still sends one.
  const v2ciphers = [0x00, 0x00, 0x2f, 0x00, 0x00, 0x35, 0x01, 0x00, 0x80];
  const v2body = [0x01, 0x03, 0x01, 0x00, v2ciphers.length, 0x00, 0x00, 0x00, 0x10, ...v2ciphers, ...new Array(16).fill(0x42)];
  const sslv2 = [Uint8Array.from([0x80 | (v2body.length >> 8), v2body.length & 0xff, ...v2body])];
  const ssh = named('ssh').flatMap((s) => [s.flow.client, s.flow.server]);
  const plaintext = tcpSeeds
    .filter((s) => s.expect.verdict !== 'tls' && s.expect.verdict !== 'mtls' && s.expect.protocol !== 'ssh')
    .flatMap((s) => [s.flow.client, s.flow.server])
    .filter((b) => b.length > 0);
  plaintext.push(
    mysqlGreeting(),
    ascii('PROXY TCP4 198.18.0.1 198.18.0.2 40000 443\r\nGET / HTTP/1.1\r\n\r\n'),
    Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 198, 18, 0, 1, 198, 18, 0, 2, 0x9c, 0x40, 0x01, 0xbb]),
    ascii('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello'),
    ascii('+OK POP3 server ready\r\n'),
    ascii('* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n'),
    Uint8Array.from([0x80, 0x00, 0x00, 0x03, 0x66, 0x6f, 0x6f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  );
  const frames4: Uint8Array[] = [];
  const frames6: Uint8Array[] = [];
  for (const file of [corpus.pcap, corpus.pcapng]) {
    readCaptureBytes(file, 'corpus', (buf, off, capLen) => {
      const f = buf.slice(off, off + capLen);
      const et = (f[12]! << 8) | f[13]!;
      (et === 0x86dd ? frames6 : frames4).push(f);
    });
  }
  const all = corpus.flows.flatMap((s) => [s.flow.client, s.flow.server, ...s.flow.clientDatagrams, ...s.flow.serverDatagrams]).filter((b) => b.length > 0);
  return {
    corpus,
    tcpSeeds,
    udpSeeds,
    tlsSeeds,
    all,
    tlsStreams,
    clientHellos: tlsSeeds.flatMap((s) => handshakeBodies(s.flow.client, 1)),
    serverHellos: tlsSeeds.flatMap((s) => handshakeBodies(s.flow.server, 2)),
    sslv2,
    quic: grams('quic'),
    dtls,
    dtlsHellos,
    ssh,
    wireguard: grams('wireguard'),
    openvpn: grams('openvpn'),
    ike: grams('ike'),
    dns: grams('dns'),
    plaintext,
    frames4,
    frames6,
  };
}

// --- generators ---

/** Random bytes (10%), a seed unchanged (5%), or a mutated seed. */
function genBytes(r: Rng, ctx: FuzzContext, pool: readonly Uint8Array[], expect?: string): Gen {
  const x = r.int(100);
  if (x < 10 || pool.length === 0) return { bytes: r.bytes(r.length(4096)) };
  const src = r.pick(pool);
  if (x < 15) return { bytes: Uint8Array.from(src), expect };
  return { bytes: mutate(r, src, ctx.all), expect: r.chance(0.3) ? undefined : expect };
}

/** Mutated copy of one direction, or the seed itself. */
function maybeMutate(r: Rng, ctx: FuzzContext, b: Uint8Array, p: number): Uint8Array {
  return r.chance(p) ? mutate(r, b, ctx.all) : b;
}

function randomPort(r: Rng): number {
  return r.chance(0.5) ? r.pick(INTERESTING_PORTS) : r.int(65536);
}

/**
 * A flow from a seed: each direction mutated or not, ports kept or changed, directions
 * swapped sometimes; or (5%) a flow of random bytes. `expect` is the seed's verdict (or
 * label(seed)) when the ports and directions were kept.
 */
function genFlow(r: Rng, ctx: FuzzContext, seeds: readonly SeedFlow[], label: (s: SeedFlow) => string | undefined = (s) => s.expect.verdict): Gen {
  const s = r.pick(seeds);
  const f = { ...s.flow };
  if (r.chance(0.05)) {
    f.client = r.bytes(r.length(2048));
    f.server = r.bytes(r.length(2048));
    f.clientDatagrams = Array.from({ length: r.int(10) }, () => r.bytes(r.length(1500)));
    f.serverDatagrams = Array.from({ length: r.int(4) }, () => r.bytes(r.length(1500)));
    return { bytes: encodeFlow(f) };
  }
  let kept = true;
  if (f.transport === 'tcp') {
    f.client = maybeMutate(r, ctx, f.client, 0.6);
    f.server = maybeMutate(r, ctx, f.server, 0.4);
  } else {
    f.clientDatagrams = f.clientDatagrams.map((d) => maybeMutate(r, ctx, d, 0.4));
    f.serverDatagrams = f.serverDatagrams.map((d) => maybeMutate(r, ctx, d, 0.3));
    if (r.chance(0.1)) f.clientDatagrams = [...f.clientDatagrams, r.bytes(r.length(1500))];
    if (r.chance(0.1)) f.clientDatagrams = f.clientDatagrams.slice(r.int(f.clientDatagrams.length + 1));
  }
  if (r.chance(0.15)) {
    f.clientPort = randomPort(r);
    f.serverPort = randomPort(r);
    kept = false;
  }
  f.clientTruncated = r.chance(0.3);
  f.serverTruncated = r.chance(0.3);
  return { bytes: encodeFlow(f), expect: kept ? label(s) : undefined };
}

function swapFlow(b: Uint8Array): Uint8Array {
  const f = decodeFlow(b);
  return encodeFlow({
    ...f,
    client: f.server,
    server: f.client,
    clientDatagrams: f.serverDatagrams,
    serverDatagrams: f.clientDatagrams,
    clientPort: f.serverPort,
    serverPort: f.clientPort,
  });
}

// --- invariants ---

const VERDICTS = new Set(['plaintext', 'tls', 'mtls', 'encrypted-other', 'unknown']);
const MESHES = new Set(['istio', 'istio-ambient', 'linkerd', 'consul', 'none']);
const CLIENT_CERT = new Set(['observed', 'inferred', 'none', 'unknown']);

function checkClassification(c: Classification): string {
  invariant(VERDICTS.has(c.verdict), `verdict outside the enum: ${String(c.verdict)}`);
  invariant(MESHES.has(c.mesh), `mesh outside the enum: ${String(c.mesh)}`);
  invariant(typeof c.protocol === 'string' && c.protocol.length > 0, 'empty protocol');
  invariant(typeof c.evidence === 'string' && c.evidence.length > 0, 'empty evidence');
  if (c.tls) invariant(CLIENT_CERT.has(c.tls.clientCertificate), `clientCertificate outside the enum: ${String(c.tls.clientCertificate)}`);
  return c.verdict;
}

function match(m: { protocol: string; evidence: string } | null): string {
  if (m === null) return 'none';
  invariant(typeof m.protocol === 'string' && m.protocol.length > 0 && typeof m.evidence === 'string', 'match without protocol/evidence');
  return m.protocol;
}

/** Offline reader: a PlainsightError about the file is its contract for bad input; anything else is a bug. */
function captureOutcome(f: () => void): string {
  try {
    f();
    return 'read';
  } catch (e) {
    if (e instanceof PlainsightError && e.code.startsWith('PLAINSIGHT_ERR_CAPTURE_')) return 'rejected';
    throw e;
  }
}

// --- link-layer conversions of the captured Ethernet frames ---

function relink(frame: Uint8Array, linkType: number): Uint8Array {
  const ip = frame.subarray(14);
  const v6 = ((frame[12]! << 8) | frame[13]!) === 0x86dd;
  const withHead = (h: number[]): Uint8Array => Uint8Array.from([...h, ...ip]);
  switch (linkType) {
    case dec.LINKTYPE_NULL:
      return withHead(v6 ? [10, 0, 0, 0] : [2, 0, 0, 0]); // little-endian AF_INET(6, Linux)
    case dec.LINKTYPE_LOOP:
      return withHead(v6 ? [0, 0, 0, 24] : [0, 0, 0, 2]);
    case dec.LINKTYPE_LINUX_SLL:
      return withHead([0, 0, 0, 1, 0, 6, ...frame.subarray(6, 12), 0, 0, frame[12]!, frame[13]!]);
    case dec.LINKTYPE_LINUX_SLL2:
      return withHead([frame[12]!, frame[13]!, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, ...frame.subarray(6, 12), 0, 0]);
    case dec.LINKTYPE_ETHERNET:
      return frame;
    default:
      return Uint8Array.from(ip);
  }
}

function decodeTarget(name: string, linkType: number, v: 4 | 6 | 0): Target<FuzzContext> {
  const out = new dec.DecodedPacket();
  const cache = new WeakMap<FuzzContext, Uint8Array[]>();
  const framesOf = (ctx: FuzzContext): Uint8Array[] => {
    let f = cache.get(ctx);
    if (!f) cache.set(ctx, (f = (v === 4 ? ctx.frames4 : v === 6 ? ctx.frames6 : [...ctx.frames4, ...ctx.frames6]).map((x) => relink(x, linkType))));
    return f;
  };
  return {
    name,
    realSeeds: true,
    gen: (r, ctx) => {
      const g = genBytes(r, ctx, framesOf(ctx), 'ok');
      // Last 4 bytes: origLen (length on the wire), sometimes not the captured length.
      const orig = r.chance(0.8) ? g.bytes.length : r.u32();
      return { bytes: Uint8Array.from([...g.bytes, ...u32(orig)]), expect: g.expect };
    },
    run: (b) => {
      const capLen = Math.max(0, b.length - 4);
      const orig = ((b[capLen] ?? 0) << 24 | (b[capLen + 1] ?? 0) << 16 | (b[capLen + 2] ?? 0) << 8 | (b[capLen + 3] ?? 0)) >>> 0;
      // Decode from inside a larger buffer, as the reader does: bounds must hold to capLen, not to the buffer.
      const buf = new Uint8Array(capLen + 64).fill(0xee);
      buf.set(b.subarray(0, capLen), 16);
      const st = dec.decodePacket(buf, 16, capLen, orig, linkType, out);
      if (st === dec.DECODE_OK) {
        // A header cut by the snap length leaves the payload offset past the end with nothing captured: fine.
        invariant(out.payloadCaptured === 0 || (out.payloadOffset >= 16 && out.payloadOffset + out.payloadCaptured <= 16 + capLen), `payload [${out.payloadOffset}, +${out.payloadCaptured}) outside the frame [16, ${16 + capLen})`);
        invariant(out.payloadCaptured <= out.payloadLength || out.l4 === dec.L4_OTHER || out.payloadLength === 0, 'captured more payload than the packet has');
        return 'ok';
      }
      return `status-${st}`;
    },
  };
}

// --- the targets ---

function bytesTarget(name: string, pool: (c: FuzzContext) => Uint8Array[], run: (b: Uint8Array) => string | undefined, expect?: string): Target<FuzzContext> {
  return { name, realSeeds: expect !== undefined, gen: (r, ctx) => genBytes(r, ctx, pool(ctx), expect), run };
}

function flowTarget(
  name: string,
  seeds: (c: FuzzContext) => SeedFlow[],
  run: (f: FlowBytes) => string | undefined,
  label?: (s: SeedFlow) => string | undefined,
): Target<FuzzContext> {
  return { name, realSeeds: label !== undefined, gen: (r, ctx) => genFlow(r, ctx, seeds(ctx), label ?? (() => undefined)), run: (b) => run(decodeFlow(b)) };
}

const named = (p: string) => (c: FuzzContext) => c.corpus.flows.filter((s) => s.name.startsWith(p));
const tcpSeeds = (c: FuzzContext): SeedFlow[] => c.tcpSeeds;
const udpSeeds = (c: FuzzContext): SeedFlow[] => c.udpSeeds;
const protoIs = (p: string) => (s: SeedFlow) => (s.expect.protocol === p ? p : undefined);

function captureTarget(name: string, pick: (c: Corpus) => Uint8Array, full: boolean): Target<FuzzContext> {
  return {
    name,
    realSeeds: true,
    gen: (r, ctx) => genBytes(r, ctx, [pick(ctx.corpus)], 'read'),
    run: (b) =>
      captureOutcome(() => {
        if (!full) {
          readCaptureBytes(b, 'fuzz', (buf, off, capLen, origLen, tsMs) => {
            invariant(off >= 0 && capLen >= 0 && off + capLen <= buf.length, `packet [${off}, +${capLen}) outside the buffer (${buf.length})`);
            invariant(Number.isFinite(tsMs) && origLen >= 0, 'timestamp or length not a number');
          });
          return;
        }
        // What `plainsight classify` does with each flow (offline/index.ts): classify, report, serialize.
        const { flows } = readFlowsFromBytes(b, 'fuzz');
        const summary = emptySummary();
        for (const f of flows) {
          const out = toFlowJson(f, classifyStrict(f.bytesForClassifier), f.file);
          checkClassification(out);
          addToSummary(summary, out);
          JSON.stringify(out);
        }
      }),
  };
}

/** Kernel samples cut from a seed flow: segments with sequence numbers (wrapping), duplicates, gaps, short copies. */
function genSamples(r: Rng, ctx: FuzzContext): Gen {
  const udp = r.chance(0.25);
  const s = r.pick(udp ? ctx.udpSeeds : ctx.tcpSeeds);
  const cut = (stream: Uint8Array): SampleBytes[] => {
    const out: SampleBytes[] = [];
    let seq = r.chance(0.3) ? 0xffffffff - r.int(2000) : r.u32();
    for (let o = 0; o < stream.length && out.length < 8; ) {
      const len = 1 + r.int(Math.min(1500, stream.length - o));
      const payload = stream.subarray(o, o + len);
      const copied = r.chance(0.2) ? payload.subarray(0, r.int(len + 1)) : payload;
      out.push({ index: out.length, tcpSeq: seq >>> 0, payloadLen: r.chance(0.05) ? r.u32() : len, payload: copied, ts: r.int(1e6) });
      if (r.chance(0.1)) out.push({ ...out[out.length - 1]!, index: out.length }); // retransmission
      seq = (seq + len + (r.chance(0.05) ? r.int(100) - 50 : 0)) >>> 0;
      o += len;
    }
    return r.chance(0.3) ? out.reverse() : out;
  };
  const toServer = udp ? s.flow.clientDatagrams.map((d, k) => ({ index: k, tcpSeq: 0, payloadLen: d.length, payload: d, ts: r.int(1e6) })) : cut(maybeMutate(r, ctx, s.flow.client, 0.3));
  const toClient = udp ? s.flow.serverDatagrams.map((d, k) => ({ index: k, tcpSeq: 0, payloadLen: d.length, payload: d, ts: r.int(1e6) })) : cut(maybeMutate(r, ctx, s.flow.server, 0.3));
  const bytes = encodeSamples(udp ? 'udp' : 'tcp', toServer, toClient, r.int(4));
  return { bytes: r.chance(0.1) ? mutate(r, bytes) : bytes };
}

export function buildTargets(): Target<FuzzContext>[] {
  const T: Target<FuzzContext>[] = [
    // TLS
    bytesTarget('tls-records', (c) => c.tlsStreams, (b) => (walkRecords(b).records.length > 0 ? 'records' : 'none'), 'records'),
    bytesTarget('tls-handshake', (c) => c.tlsStreams, (b) => (readHandshakeMessages(b, walkRecords(b).records).length > 0 ? 'messages' : 'none'), 'messages'),
    bytesTarget('tls-plain-alert', (c) => c.tlsStreams, (b) => (firstPlainAlert(b, walkRecords(b).records) ? 'alert' : 'none')),
    bytesTarget('tls-looks-like', (c) => c.tlsStreams, (b) => (looksLikeTls(b) ? 'tls' : 'not'), 'tls'),
    bytesTarget('tls-client-hello', (c) => c.clientHellos, (b) => (parseClientHello(b) ? 'parsed' : 'null'), 'parsed'),
    bytesTarget('tls-client-hello-partial', (c) => c.clientHellos, (b) => (parseClientHello(b, { partial: true }) ? 'parsed' : 'null'), 'parsed'),
    bytesTarget('tls-server-hello', (c) => c.serverHellos, (b) => (parseServerHello(b) ? 'parsed' : 'null'), 'parsed'),
    bytesTarget('tls-server-hello-partial', (c) => c.serverHellos, (b) => (parseServerHello(b, { partial: true }) ? 'parsed' : 'null'), 'parsed'),
    bytesTarget(
      'tls-ja4',
      (c) => [...c.clientHellos, ...c.dtlsHellos],
      (b) => {
        const h = parseClientHello(b, { partial: true });
        if (!h) return 'null';
        for (const tr of ['t', 'q', 'd'] as const) invariant(typeof ja4(h, tr) === 'string', 'ja4 not a string');
        return 'ja4';
      },
      'ja4',
    ),
    bytesTarget(
      'tls-sslv2',
      (c) => [...c.sslv2, ...c.tlsStreams],
      (b) => {
        sslv2Header(b);
        looksLikeSslv2ServerHello(b);
        return looksLikeSslv2ClientHello(b) && parseSslv2ClientHello(b) ? 'v2' : 'none';
      },
    ),
    {
      name: 'tls-analyze',
      realSeeds: true,
      gen: (r, ctx) => genFlow(r, ctx, ctx.tlsSeeds, () => 'tls'),
      run: (b) => {
        const f = decodeFlow(b);
        const a = analyzeTls(f.client, f.server, { clientTruncated: f.clientTruncated, serverTruncated: f.serverTruncated });
        if (a === null) return 'none';
        invariant(typeof a.evidence === 'string' && a.evidence.length > 0, 'empty evidence');
        invariant(!/[\x00-\x1f\x7f]/.test(a.evidence), 'control characters in evidence');
        invariant(CLIENT_CERT.has(a.details.clientCertificate), 'clientCertificate outside the enum');
        detectMesh(a.details, f.serverPort);
        return 'tls';
      },
    },
    // QUIC, DTLS
    bytesTarget(
      'quic-initial',
      (c) => c.quic,
      (b) => {
        parseQuicInitial(b, false);
        const ini = parseQuicInitial(b, true);
        return ini && decryptClientHello(b, ini) ? 'decrypted' : 'none';
      },
    ),
    {
      name: 'quic-client-initial',
      realSeeds: true,
      // Mutations after the header are caught by the AEAD tag; mutate mostly the header and the length.
      gen: (r, ctx) => genBytes(r, ctx, ctx.quic.filter((d) => d.length >= 1200), 'decrypted'),
      run: (b) => {
        const ini = parseQuicInitial(b, true);
        const h = ini && decryptClientHello(b, ini);
        if (!h) return 'none';
        invariant(typeof h.authenticated === 'boolean', 'authenticated not a boolean');
        return 'decrypted';
      },
    },
    bytesTarget(
      'dtls-hello',
      (c) => c.dtls,
      (b) => {
        const h = parseDtlsHello(b, 0, true) ?? parseDtlsHello(b, 0, false);
        if (!h) return 'none';
        invariant(h.bodyStart >= 0 && h.bodyStart <= b.length, 'DTLS body outside the datagram');
        if (h.kind === 'ClientHello') parseClientHello(b.subarray(h.bodyStart, h.bodyStart + h.bodyLength), { dtls: true, partial: true });
        return 'hello';
      },
      'hello',
    ),
    bytesTarget('tls-client-hello-dtls', (c) => c.dtlsHellos, (b) => (parseClientHello(b, { dtls: true }) ? 'parsed' : 'null'), 'parsed'),
    // SSH, WireGuard, OpenVPN, IPsec, randomness
    bytesTarget(
      'ssh-ident',
      (c) => c.ssh,
      (b) => {
        const id = findSshIdent(b);
        if (!id) return 'none';
        invariant(id.end > 0 && id.end <= b.length, 'identification end outside the stream');
        kexinitAt(b, id.end);
        return 'ident';
      },
      'ident',
    ),
    flowTarget('ssh-detect', named('ssh'), (f) => match(detectSsh(f.client, f.server)), protoIs('ssh')),
    bytesTarget('wireguard-kind', (c) => c.wireguard, (b) => wireguardKind(b) ?? 'none'),
    flowTarget('wireguard-detect', named('wireguard'), (f) => (detectWireguardDatagrams(f.clientDatagrams, f.serverDatagrams) ? 'wireguard' : 'none'), protoIs('wireguard')),
    bytesTarget('openvpn-reset', (c) => c.openvpn, (b) => hardResetLayout(b, 0, b.length, true) ?? hardResetLayout(b, 0, b.length, false) ?? 'none'),
    flowTarget('openvpn-detect', named('openvpn'), (f) => (detectOpenvpnDatagrams(f.clientDatagrams, f.serverDatagrams) ? 'openvpn' : 'none'), protoIs('openvpn')),
    {
      name: 'openvpn-stream',
      gen: (r, ctx) => {
        const [c, s] = ctx.openvpn;
        const frame = (d: Uint8Array): Uint8Array => Uint8Array.from([d.length >> 8, d.length & 0xff, ...d]);
        const f = flowBytes({ transport: 'tcp', clientPort: 40000, serverPort: 1194, client: maybeMutate(r, ctx, frame(c!), 0.7), server: maybeMutate(r, ctx, frame(s!), 0.5) });
        return { bytes: encodeFlow(f) };
      },
      run: (b) => {
        const f = decodeFlow(b);
        return detectOpenvpnStream(f.client, f.server) ?? 'none';
      },
    },
    bytesTarget('ike-parse', (c) => c.ike, (b) => parseIke(b, 0) ?? 'none'),
    flowTarget('ipsec-detect', named('ike'), (f) => (detectIpsecDatagrams(f.clientDatagrams, f.serverDatagrams, f.clientPort, f.serverPort) ? 'ipsec' : 'none'), protoIs('ipsec')),
    bytesTarget('looks-random', (c) => c.all, (b) => (looksRandom(b, 0, b.length) ? 'random' : 'not')),
    flowTarget('encrypted-tcp', tcpSeeds, (f) => match(detectEncryptedTcp(f.client, f.server, f.clientPort, f.serverPort))),
    flowTarget('encrypted-udp', udpSeeds, (f) => match(detectEncryptedUdp(f.clientDatagrams, f.serverDatagrams, f.clientPort, f.serverPort)), (s) => (s.expect.verdict === 'encrypted-other' ? s.expect.protocol : undefined)),
    // Plaintext protocols
    flowTarget('http-detect', tcpSeeds, (f) => match(detectHttp(f.client, f.server, 0)), protoIs('http/1.1')),
    bytesTarget('http-request-line', (c) => c.plaintext, (b) => (parseRequestLine(b, 0) ? 'request' : 'none')),
    bytesTarget('http-status-line', (c) => c.plaintext, (b) => (parseStatusLine(b, 0) ? 'status' : 'none')),
    bytesTarget('http-head', (c) => c.plaintext, (b) => {
      scanHead(b, 0);
      return 'scanned';
    }),
    bytesTarget('h2-frames', (c) => c.plaintext, (b) => (hasH2Preface(b, 0) && h2FramesSayGrpc(b, 24) ? 'grpc' : h2FramesSayGrpc(b, 0) ? 'grpc' : 'none')),
    flowTarget('redis-detect', tcpSeeds, (f) => match(detectRedis(f.client, f.server, 0, f.serverPort)), protoIs('redis')),
    bytesTarget('memcached', (c) => c.plaintext, (b) => parseMemcachedText(b, 0) ?? parseMemcachedBinary(b, 0) ?? match(detectMemcached(b, 0))),
    flowTarget('mail-detect', tcpSeeds, (f) => match(detectMail(f.client, f.server, f.clientPort, f.serverPort)), protoIs('smtp')),
    bytesTarget('mail-lines', (c) => c.plaintext, (b) => {
      readCodedReply(b, 0);
      commandVerb(b, 0);
      return imapTaggedCommand(b, 0)?.command ?? 'none';
    }),
    bytesTarget('proxy-header', (c) => c.plaintext, (b) => (parseProxyHeader(b) ? 'proxy' : 'none')),
    flowTarget('postgres-detect', tcpSeeds, (f) => {
      pgNegotiation(f.client, f.server);
      parsePgStartup(f.client, 0);
      return match(detectPostgres(f.client, f.server, 0));
    }),
    flowTarget('mysql-detect', tcpSeeds, (f) => {
      parseMysqlGreeting(f.server);
      parseMysqlResponse(f.client, 0);
      return match(detectMysql(f.client, f.server));
    }),
    bytesTarget('kafka', (c) => c.plaintext, (b) => match(detectKafka(b, 0))),
    bytesTarget('mongo', (c) => c.plaintext, (b) => match(detectMongo(b, 0))),
    bytesTarget('mqtt', (c) => c.plaintext, (b) => match(detectMqtt(b, 0))),
    bytesTarget('amqp', (c) => c.plaintext, (b) => match(detectAmqp(b, 0))),
    flowTarget('ldap-detect', tcpSeeds, (f) => {
      parseLdapRequest(f.client, 0);
      parseLdapExtendedResponse(f.server, 0);
      return match(detectLdap(f.client, f.server, 0));
    }),
    bytesTarget('dns-message', (c) => c.dns, (b) => {
      parseDnsMessage(b, 0, b.length, true);
      return parseDnsMessage(b, 0, b.length, false) ? 'dns' : 'none';
    }, 'dns'),
    flowTarget('dns-tcp', tcpSeeds, (f) => match(detectDnsTcp(f.client, f.server, 0))),
    flowTarget('dns-udp', named('dns'), (f) => match(detectUdp(f.clientDatagrams, f.serverDatagrams, f.clientPort, f.serverPort)), protoIs('dns')),
    flowTarget('plaintext-tcp', tcpSeeds, (f) => match(detectPlaintextTcp(f.client, f.server, f.clientPort, f.serverPort)), (s) => (s.expect.verdict === 'plaintext' ? s.expect.protocol : undefined)),
    flowTarget('plaintext-udp', udpSeeds, (f) => match(detectPlaintextUdp(f.clientDatagrams, f.serverDatagrams, f.clientPort, f.serverPort))),
    bytesTarget('looks-like-text', (c) => c.plaintext, (b) => (looksLikeText(b) ? 'text' : 'not')),
    flowTarget('upgrade', tcpSeeds, (f) => {
      const u = findUpgrade(f.client, f.server, f.clientPort, f.serverPort);
      if (u === null) return 'none';
      if ('refused' in u) return 'refused';
      invariant(u.clientOffset >= 0 && u.clientOffset <= f.client.length && u.serverOffset >= 0 && u.serverOffset <= f.server.length, 'upgrade offset outside the stream');
      return 'upgrade';
    }, (s) => (s.name === 'smtp-starttls' ? 'upgrade' : undefined)),
    // The composition, both directions, both transports, and the guard
    flowTarget('classify-tcp', tcpSeeds, (f) => checkClassification(classifyStrict(f)), (s) => s.expect.verdict),
    { ...flowTarget('classify-tcp-reversed', tcpSeeds, (f) => checkClassification(classifyStrict(f))), gen: (r, ctx) => ({ bytes: swapFlow(genFlow(r, ctx, ctx.tcpSeeds).bytes) }) },
    flowTarget('classify-udp', udpSeeds, (f) => checkClassification(classifyStrict(f)), (s) => s.expect.verdict),
    { ...flowTarget('classify-udp-reversed', udpSeeds, (f) => checkClassification(classifyStrict(f))), gen: (r, ctx) => ({ bytes: swapFlow(genFlow(r, ctx, ctx.udpSeeds).bytes) }) },
    flowTarget('classify-guard', (c) => c.corpus.flows, (f) => {
      const before = classifierFaults.count;
      const c = classify(f);
      invariant(classifierFaults.count === before, `classify()'s last-resort guard fired: ${c.evidence}`);
      return checkClassification(c);
    }, (s) => s.expect.verdict),
    // Offline reader: files, packets per link type, flows
    captureTarget('pcap-read', (c) => c.pcap, false),
    captureTarget('pcapng-read', (c) => c.pcapng, false),
    captureTarget('pcap-flows', (c) => c.pcap, true),
    captureTarget('pcapng-flows', (c) => c.pcapng, true),
    decodeTarget('decode-ethernet', dec.LINKTYPE_ETHERNET, 0),
    decodeTarget('decode-sll', dec.LINKTYPE_LINUX_SLL, 0),
    decodeTarget('decode-sll2', dec.LINKTYPE_LINUX_SLL2, 0),
    decodeTarget('decode-raw', dec.LINKTYPE_RAW, 0),
    decodeTarget('decode-ipv4', dec.LINKTYPE_IPV4, 4),
    decodeTarget('decode-ipv6', dec.LINKTYPE_IPV6, 6),
    decodeTarget('decode-null', dec.LINKTYPE_NULL, 0),
    decodeTarget('decode-loop', dec.LINKTYPE_LOOP, 0),
    // Live capture: kernel samples → FlowBytes → classify
    {
      name: 'assembler',
      gen: genSamples,
      run: (b) => {
        const x = decodeSamples(b);
        const f = assemble({ transport: x.transport, clientPort: 40000, serverPort: 443, toServer: x.toServer, toClient: x.toClient, toServerMore: (x.more & 1) !== 0, toClientMore: (x.more & 2) !== 0 });
        const copied = (ss: SampleBytes[]): number => ss.reduce((a, s) => a + s.payload.length, 0);
        invariant(f.client.length <= copied(x.toServer) && f.server.length <= copied(x.toClient), 'prefix longer than the bytes sampled');
        return checkClassification(classifyStrict(f));
      },
    },
  ];
  const names = new Set<string>();
  for (const t of T) {
    invariant(!names.has(t.name), `duplicate target ${t.name}`);
    names.add(t.name);
  }
  return T;
}
