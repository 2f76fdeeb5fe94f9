// Load without attaching: a verifier regression fails here on its own. Then the parsers,
// run in the kernel on hand-built packets (bpf_prog_test_run_opts): VLAN/QinQ, IPv4
// options and fragments, IPv6 extension headers, ESP, truncation, SYN-ACK-first and
// mid-stream flows — and the per-packet cost, printed as a comment.

import t from 'tap';
import { FlowProgram } from '../../agent/src/bpf/flow.js';
import { PS_SAMPLE_MAX_PAYLOAD, type FlowRecord, type Sample } from '../../agent/src/bpf/flow-abi.js';
import { testRun } from '../../agent/src/bpf/libbpf.js';
import { isPlainsightError } from '../../agent/src/errors.js';
import { bpfSkipReason } from '../lab/bpf-lab.js';

const skip = bpfSkipReason();
const TC_ACT_UNSPEC = -1;
/** bpf_prog_test_run runs TC programs on the loopback device of the caller's netns. */
const TEST_RUN_IFINDEX = 1;

// ---- packet builders (checksums are irrelevant to the parsers) ---------------------------

const ETH_IP = 0x0800;
const ETH_IP6 = 0x86dd;
const ETH_ARP = 0x0806;
const ETH_8021Q = 0x8100;
const ETH_8021AD = 0x88a8;
const TCP = 6;
const UDP = 17;
const ESP = 50;
const ICMP = 1;
const SYN = 0x02;
const ACK = 0x10;
const PSH = 0x08;

function eth(type: number, payload: Buffer, vlanTypes: number[] = []): Buffer {
  const h = Buffer.from('020000000001020000000002', 'hex'); // destination, source MAC
  const tags = vlanTypes.map((tpid, i) => {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(tpid, 0);
    b.writeUInt16BE(100 + i, 2); // TCI
    return b;
  });
  const et = Buffer.alloc(2);
  et.writeUInt16BE(type);
  // Wire order: TPID1 TCI1 [TPID2 TCI2] ethertype; our tags hold (TPID, TCI).
  return Buffer.concat([h, ...tags, et, payload]);
}

function ip4(addr: string): Buffer {
  return Buffer.from(addr.split('.').map(Number));
}

function ipv4(proto: number, src: string, dst: string, l4: Buffer, o: { options?: number; fragOffset8?: number; more?: boolean; totLen?: number } = {}): Buffer {
  const optLen = (o.options ?? 0) * 4;
  const h = Buffer.alloc(20 + optLen);
  h[0] = 0x40 | (5 + (o.options ?? 0));
  h.writeUInt16BE(o.totLen ?? h.length + l4.length, 2);
  h.writeUInt16BE(((o.more ? 1 : 0) << 13) | (o.fragOffset8 ?? 0), 6);
  h[8] = 64;
  h[9] = proto;
  ip4(src).copy(h, 12);
  ip4(dst).copy(h, 16);
  h.fill(1, 20); // NOP options
  return Buffer.concat([h, l4]);
}

function ip6(addr: string): Buffer {
  const [head, tail] = addr.split('::') as [string, string?];
  const words = (s?: string) => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const a = words(head);
  const b = words(tail);
  const all = [...a, ...Array(8 - a.length - b.length).fill(0), ...b];
  const buf = Buffer.alloc(16);
  all.forEach((w, i) => buf.writeUInt16BE(w, i * 2));
  return buf;
}

function ipv6(next: number, src: string, dst: string, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = 64;
  ip6(src).copy(h, 8);
  ip6(dst).copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** Hop-by-hop / destination options: 8 bytes of padding options. */
function optExt(next: number, rest: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = next;
  h[1] = 0;
  h[2] = 1; // PadN
  h[3] = 4;
  return Buffer.concat([h, rest]);
}

function fragExt(next: number, offset8: number, more: boolean, rest: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = next;
  h.writeUInt16BE((offset8 << 3) | (more ? 1 : 0), 2);
  h.writeUInt32BE(0x1234, 4);
  return Buffer.concat([h, rest]);
}

function tcp(sport: number, dport: number, flags: number, seq: number, payload = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(seq, 4);
  h[12] = 5 << 4;
  h[13] = flags;
  h.writeUInt16BE(65535, 14);
  return Buffer.concat([h, payload]);
}

function udp(sport: number, dport: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

function esp(spi: number, seq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(spi, 0);
  h.writeUInt32BE(seq, 4);
  return Buffer.concat([h, body]);
}

function findFlow(flows: FlowRecord[], port: number, transport = 'tcp'): FlowRecord | undefined {
  return flows.find((f) => f.key.transport === transport && (f.key.a.port === port || f.key.b.port === port));
}

// ---- tests --------------------------------------------------------------------------------

t.test('flow.bpf.o loads (verifier) without attaching', { skip }, async (t) => {
  const started = performance.now();
  const flow = FlowProgram.open();
  t.teardown(() => flow.close());
  t.comment(`open + configure + load: ${(performance.now() - started).toFixed(1)} ms`);
  for (const p of ['ingress', 'egress', 'socket'] as const) t.ok(flow.programFd(p) > 0, `${p} program loaded`);
  t.same(flow.readFlows(), [], 'empty flow map');
  t.equal(flow.readStats().packets, 0);
  t.same(flow.list(), [], 'nothing attached');
  // The socket filter never queues anything on its socket (samples go to the ring buffer).
  // (A test run hands socket filters the packet from L3, unlike AF_PACKET, so only the
  // verdict is checked here; bpf-flow.test.ts checks what it counts on a real loopback.)
  const pkt = Buffer.concat([Buffer.alloc(12), Buffer.from([0x08, 0x00]), Buffer.alloc(40)]);
  t.equal(testRun(flow.programFd('socket'), pkt, 1).retval, 0, 'socket filter copies nothing');
});

t.test('configuration is validated before load', { skip }, async (t) => {
  for (const bad of [{ ringBytes: 12345 }, { sampleBytes: 0 }, { sampleBytes: PS_SAMPLE_MAX_PAYLOAD + 1 }, { samplesPerDirection: 256 }, { maxFlows: 0 }]) {
    t.throws(() => FlowProgram.open(bad), { code: 'PLAINSIGHT_ERR_USAGE' }, JSON.stringify(bad));
  }
  try {
    FlowProgram.open({ objectPath: '/nonexistent/flow.bpf.o' });
    t.fail('opened a missing object');
  } catch (e) {
    t.ok(isPlainsightError(e) && e.code === 'PLAINSIGHT_ERR_BPF_OBJECT', 'missing object → PLAINSIGHT_ERR_BPF_OBJECT');
    t.match(isPlainsightError(e) ? e.line() : '', /npm run build/, 'with an actionable hint');
  }
});

t.test('parsers, in the kernel, on hand-built packets', { skip }, async (t) => {
  const flow = FlowProgram.open({ samplesPerDirection: 2, sampleBytes: 64 });
  t.teardown(() => flow.close());
  const samples: Sample[] = [];
  const reader = flow.openSamples((s) => samples.push(s));
  const prog = flow.programFd('ingress');
  const run = (pkt: Buffer, fd = prog) => testRun(fd, pkt, 1).retval;

  const hello = Buffer.from('hello, plainsight');
  t.equal(run(eth(ETH_IP, ipv4(TCP, '198.19.0.1', '198.19.0.2', tcp(40000, 443, SYN, 1000)))), TC_ACT_UNSPEC, 'observe only');
  run(eth(ETH_IP, ipv4(TCP, '198.19.0.2', '198.19.0.1', tcp(443, 40000, SYN | ACK, 5000))));
  run(eth(ETH_IP, ipv4(TCP, '198.19.0.1', '198.19.0.2', tcp(40000, 443, PSH | ACK, 1001, hello))));
  // IPv4 with two option words, UDP.
  run(eth(ETH_IP, ipv4(UDP, '198.19.0.3', '198.19.0.4', udp(5000, 53, Buffer.alloc(33)), { options: 2 })));
  // QinQ: 802.1ad outer tag, 802.1Q inner tag.
  run(eth(ETH_IP, ipv4(UDP, '198.19.0.5', '198.19.0.6', udp(6000, 4789, Buffer.alloc(44))), [ETH_8021AD, ETH_8021Q]));
  // IPv6: hop-by-hop → destination options → TCP.
  run(eth(ETH_IP6, ipv6(0, 'fd00:7073::1', 'fd00:7073::2', optExt(60, optExt(TCP, tcp(40001, 8443, SYN, 1))))));
  // IPv6 first fragment (offset 0, more) carries UDP; a later fragment has no header.
  run(eth(ETH_IP6, ipv6(44, 'fd00:7073::3', 'fd00:7073::4', fragExt(UDP, 0, true, udp(7000, 7001, Buffer.alloc(16))))));
  run(eth(ETH_IP6, ipv6(44, 'fd00:7073::3', 'fd00:7073::4', fragExt(UDP, 2, false, Buffer.alloc(16)))));
  // IPv4 non-first fragment.
  run(eth(ETH_IP, ipv4(UDP, '198.19.0.7', '198.19.0.8', Buffer.alloc(40), { fragOffset8: 10 })));
  // ESP: no ports, the whole IP payload counted.
  run(eth(ETH_IP, ipv4(ESP, '198.19.0.9', '198.19.0.10', esp(0xabcd, 1, Buffer.alloc(92)))));
  // Not tracked, not IP, truncated.
  run(eth(ETH_IP, ipv4(ICMP, '198.19.0.1', '198.19.0.2', Buffer.alloc(8))));
  run(eth(ETH_ARP, Buffer.alloc(28)));
  run(eth(ETH_IP, ipv4(TCP, '198.19.0.1', '198.19.0.2', Buffer.alloc(10))));
  // A SYN-ACK first: its receiver is the client.
  run(eth(ETH_IP, ipv4(TCP, '198.19.0.12', '198.19.0.11', tcp(80, 41000, SYN | ACK, 9))));
  // Mid-stream: an established flow's data, no SYN ever seen.
  run(eth(ETH_IP, ipv4(TCP, '198.19.0.13', '198.19.0.14', tcp(42000, 5432, ACK, 77, Buffer.alloc(20)))));
  // The IP length claims more than the packet holds: count only what is there.
  run(eth(ETH_IP, ipv4(UDP, '198.19.0.15', '198.19.0.16', udp(9000, 9001, Buffer.alloc(10)), { totLen: 1400 })));

  reader.drain(Infinity);
  const flows = flow.readFlows();
  const f443 = findFlow(flows, 443);
  t.same(f443?.client, { ip: '198.19.0.1', port: 40000 }, 'IPv4 TCP client from the SYN');
  t.same([f443?.toServer.bytes, f443?.toServer.packets, f443?.toClient.packets], [hello.length, 2, 1]);
  t.equal(f443?.key.ifindex, TEST_RUN_IFINDEX);
  const s443 = samples.filter((s) => s.key.b.port === 443 || s.key.a.port === 443);
  t.equal(s443.length, 1, 'a sample for the one payload packet only');
  t.same(s443[0]?.payload, hello, 'sample payload');
  t.same([s443[0]?.tcpSeq, s443[0]?.direction, s443[0]?.index], [1001, 'to-server', 0]);

  t.equal(findFlow(flows, 53, 'udp')?.toServer.bytes, 33, 'IPv4 options skipped via IHL');
  t.equal(findFlow(flows, 4789, 'udp')?.toServer.bytes, 44, 'QinQ tags skipped');
  const v6 = findFlow(flows, 8443);
  t.same(v6?.client, { ip: 'fd00:7073::1', port: 40001 }, 'IPv6 extension headers walked');
  t.equal(findFlow(flows, 7001, 'udp')?.toServer.bytes, 16, 'first IPv6 fragment parsed');
  const espFlow = flows.find((f) => f.key.transport === 'esp');
  t.same([espFlow?.key.a.port, espFlow?.key.b.port, espFlow?.toServer.bytes], [0, 0, 100], 'ESP: no ports, IP payload bytes');
  const synack = findFlow(flows, 80);
  t.same(synack?.client, { ip: '198.19.0.11', port: 41000 }, 'SYN-ACK first: client is its receiver');
  const mid = findFlow(flows, 5432);
  t.ok(mid?.midstream && !mid.synSeen, 'mid-stream flow flagged');
  t.equal(findFlow(flows, 9001, 'udp')?.toServer.bytes, 10, 'a lying IP length is clamped to the packet');

  const st = flow.readStats();
  t.equal(st.fragments, 2, 'non-first fragments (IPv4, IPv6) skipped and counted');
  t.equal(st.not_tracked, 1, 'ICMP');
  t.equal(st.not_ip, 1, 'ARP');
  t.equal(st.parse_errors, 1, 'truncated TCP');
  t.equal(st.flows_midstream, 1);
  t.equal(st.samples_lost, 0);
  t.equal(st.samples_sent, samples.length);
  t.ok(samples.every((s) => s.payload.length <= 64), 'sampleBytes honoured');
});

t.test('per-packet cost (bpf_prog_test_run_opts)', { skip }, async (t) => {
  const flow = FlowProgram.open();
  t.teardown(() => flow.close());
  flow.openSamples(() => undefined);
  const prog = flow.programFd('ingress');
  const REPEAT = 200_000;
  const data = eth(ETH_IP, ipv4(TCP, '198.19.1.1', '198.19.1.2', tcp(40000, 443, ACK, 1, Buffer.alloc(1400))));
  testRun(prog, data, 10); // creates the flow and uses up its samples
  const bulk = testRun(prog, data, REPEAT);
  const arp = testRun(prog, eth(ETH_ARP, Buffer.alloc(28)), REPEAT);
  t.equal(bulk.retval, TC_ACT_UNSPEC);
  t.comment(`per packet: established TCP flow ${bulk.durationNs} ns, non-IP bail-out ${arp.durationNs} ns`);
  t.ok(bulk.durationNs < 5000, 'well under 5 µs per packet');
  t.equal(flow.readFlows()[0]?.toServer.packets, REPEAT + 10, 'every run counted');
});

t.test('ring buffer: full ring counted as lost, wrap-around, per-tick budget', { skip }, async (t) => {
  const PAGE = 4096;
  const flow = FlowProgram.open({ ringBytes: PAGE, samplesPerDirection: 1 });
  t.teardown(() => flow.close());
  const got: Sample[] = [];
  const reader = flow.openSamples((s) => got.push(s), { intervalMs: 60_000 }); // drained by hand below
  const prog = flow.programFd('ingress');
  // Each new flow's first payload packet is one record of 8 + 88 + 400 bytes; 8 fit in a 4 KiB ring.
  let port = 10_000;
  const newFlow = () => {
    const p = port++;
    const payload = Buffer.alloc(400, p & 0xff);
    testRun(prog, eth(ETH_IP, ipv4(UDP, '198.19.2.1', '198.19.2.2', udp(p, 53, payload))), 1);
    return p;
  };

  for (let i = 0; i < 20; i++) newFlow();
  const full = flow.readStats();
  t.ok(full.samples_lost > 0, `a full ring is counted, not silent (${full.samples_lost} lost)`);
  t.equal(full.samples_sent + full.samples_lost, 20, 'every claimed sample is sent or counted lost');
  t.equal(reader.drain(2), 2, 'the budget caps one drain');
  t.ok(reader.pending() > 0, 'the rest waits for the next tick');
  reader.drain(Infinity);
  t.equal(got.length, full.samples_sent, 'every sent sample read');

  // Many laps around the ring: records that wrap the end arrive intact (double mapping).
  got.length = 0;
  const sentPorts: number[] = [];
  for (let lap = 0; lap < 30; lap++) {
    for (let i = 0; i < 5; i++) sentPorts.push(newFlow());
    reader.drain(Infinity);
  }
  t.same(got.map((s) => s.key.a.port), sentPorts, 'all samples, in order');
  t.ok(got.every((s) => s.payload.length === 400 && s.payload.every((b) => b === (s.key.a.port & 0xff))), 'payloads intact');
  t.equal(flow.readStats().samples_lost, full.samples_lost, 'nothing more lost');
});
