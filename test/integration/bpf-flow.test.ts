// The flow program on a real pod-like topology: TCX on the host-side veth (root netns),
// real TCP/UDP peers, and exact per-direction byte counts; samples only for the first
// payload packets; port reuse starting new flows; IPv6; the socket filter on a pod's
// loopback; and nothing left attached after close(). Needs root; skips with the reason.

import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { FlowProgram } from '../../agent/src/bpf/flow.js';
import { PS_SAMPLE_MAX_PAYLOAD, type FlowRecord, type Sample } from '../../agent/src/bpf/flow-abi.js';
import { BPF_TCX_EGRESS, BPF_TCX_INGRESS, progQuery } from '../../agent/src/bpf/libbpf.js';
import {
  Lab,
  bpfSkipReason,
  makePod,
  progsRemaining,
  startServer,
  tcFilters,
  tcpClientIn,
  tcpExchange,
  udpExchange,
  type ServerLine,
} from '../lab/bpf-lab.js';

const skip = bpfSkipReason();
const SAMPLES_PER_DIR = 6;
/** Typical MSS on a 1500-byte veth with TCP timestamps. */
const MSS = 1448;

/**
 * TCP segments retransmitted (tail loss probes included) in the network namespace of
 * `pid`, or undefined once it is gone. On a loaded machine a delayed ACK can make the
 * sender retransmit, and the datapath rightly counts those wire bytes again.
 */
function tcpRetransmits(pid: number | 'self'): number | undefined {
  try {
    const [head, vals] = readFileSync(`/proc/${pid}/net/snmp`, 'utf8').split('\n').filter((l) => l.startsWith('Tcp:')).map((l) => l.trim().split(/\s+/));
    return Number(vals![head!.indexOf('RetransSegs')]);
  } catch {
    return undefined;
  }
}

/** Exactly `want` bytes, unless segments were retransmitted meanwhile: then at most that many MSS more. */
function exactBytes(t: Test, got: number, want: number, retransmits: number, what: string): void {
  if (retransmits <= 0) t.equal(got, want, what);
  else t.ok(got >= want && got <= want + retransmits * MSS, `${what}: ${got} (${retransmits} segments retransmitted in the namespace meanwhile)`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A payload whose bytes identify their offset (mod 251, prime): samples can be checked against it. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

function flowsTo(flows: FlowRecord[], port: number, transport = 'tcp'): FlowRecord[] {
  return flows.filter((f) => f.server.port === port && f.key.transport === transport);
}

function samplesOf(samples: Sample[], f: FlowRecord): Sample[] {
  return samples.filter(
    (s) =>
      s.key.ifindex === f.key.ifindex &&
      s.key.proto === f.key.proto &&
      s.key.a.ip === f.key.a.ip &&
      s.key.a.port === f.key.a.port &&
      s.key.b.ip === f.key.b.ip &&
      s.key.b.port === f.key.b.port,
  );
}

t.test('TCX on a pod veth', { skip }, async (t) => {
  const lab = await Lab.open(t, 'bpf');
  const pod = await makePod(t, lab);
  const flow = FlowProgram.open({ samplesPerDirection: SAMPLES_PER_DIR });
  t.teardown(() => flow.close());
  const samples: Sample[] = [];
  const reader = flow.openSamples((s) => samples.push(s));
  const settle = async () => {
    await sleep(100); // last ACKs in flight
    reader.drain(Infinity);
  };

  const ingress = flow.attachTcx(pod.hostIfindex, 'ingress');
  const egress = flow.attachTcx(pod.hostIfindex, 'egress');
  t.equal(ingress.kind, 'tcx', 'TCX on this kernel');
  t.equal(egress.kind, 'tcx');
  t.equal(flow.attachTcx(pod.hostIfindex, 'ingress'), ingress, 'attaching twice returns the same link');
  const progIds = [...progQuery(pod.hostIfindex, BPF_TCX_INGRESS), ...progQuery(pod.hostIfindex, BPF_TCX_EGRESS)];
  t.equal(progIds.length, 2, 'one program per direction');

  await t.test('TCP: 100000 bytes up, 5000 down, counted exactly', async (t) => {
    const server = await startServer(lab, pod.ns, { proto: 'tcp', port: 8080, expect: 100_000, reply: 5000 });
    const sent = pattern(100_000);
    const retx0 = [tcpRetransmits('self'), tcpRetransmits(server.pid)];
    const { localPort } = await tcpExchange(pod.podIp4, 8080, sent, 5000);
    await server.waitFor('stdout', /"received"/);
    t.equal(server.events<ServerLine>()[0]?.received, 100_000, 'the server got every byte: nothing dropped');
    await settle();

    const f = flowsTo(flow.readFlows(), 8080).find((x) => x.client.port === localPort);
    if (!f) return t.fail('flow found');
    t.same(f.client, { ip: pod.hostIp4, port: localPort }, 'client = the side that sent the SYN');
    t.same(f.server, { ip: pod.podIp4, port: 8080 });
    t.equal(f.key.ifindex, pod.hostIfindex);
    const retx = [tcpRetransmits('self'), tcpRetransmits(server.pid)].map((n, i) => (n === undefined || retx0[i] === undefined ? 0 : n - retx0[i]!));
    exactBytes(t, f.toServer.bytes, 100_000, retx[0]!, 'payload bytes to the server');
    exactBytes(t, f.toClient.bytes, 5000, retx[1]!, 'payload bytes to the client');
    const minUp = Math.ceil(100_000 / MSS);
    t.ok(f.toServer.packets >= minUp && f.toServer.packets <= minUp + 40, `wire packets up (${f.toServer.packets}, GSO-aware)`);
    t.ok(f.toClient.packets >= Math.ceil(5000 / MSS) + 1 && f.toClient.packets <= 80, `wire packets down (${f.toClient.packets})`);
    t.ok(f.synSeen && !f.midstream, 'direction from the SYN');
    t.equal(f.generation, 0);
    t.equal(f.toServer.tcpFlags & 0x02, 0x02, 'SYN seen from the client');

    const mine = samplesOf(samples, f);
    const up = mine.filter((s) => s.direction === 'to-server').sort((a, b) => a.index - b.index);
    const down = mine.filter((s) => s.direction === 'to-client');
    t.equal(up.length, SAMPLES_PER_DIR, 'the first payload packets up, and no more');
    t.ok(down.length >= 1 && down.length <= SAMPLES_PER_DIR, `samples down: ${down.length}`);
    t.same(up.map((s) => s.index), [...Array(SAMPLES_PER_DIR).keys()], 'sample indexes 0..n-1');
    t.equal(f.toServer.samples, SAMPLES_PER_DIR);
    const seq0 = up[0]!.tcpSeq;
    for (const s of up) {
      const off = (s.tcpSeq - seq0) >>> 0;
      t.equal(s.payload.length, Math.min(s.payloadLen, PS_SAMPLE_MAX_PAYLOAD), 'captured min(payload, PS_SAMPLE_MAX_PAYLOAD) bytes');
      t.ok(s.payload.equals(sent.subarray(off, off + s.payload.length)), `sample ${s.index} holds the bytes sent at offset ${off}`);
      t.equal(s.generation, f.generation);
      t.equal(s.flowStartNs, f.firstSeenNs, 'samples join their flow by start time');
      t.equal(s.hook, 'tc-egress', 'host → pod is egress of the host-side veth');
    }
    t.ok(down.every((s) => s.hook === 'tc-ingress' && s.payload.every((b) => b === 0x53)), 'reply samples from ingress');
  });

  await t.test('a SYN on an existing key starts a new flow (port reuse)', async (t) => {
    const CONNS = 20;
    await startServer(lab, pod.ns, { proto: 'tcp', port: 8081, expect: 100, reply: 10 });
    const localPort = 40_000 + Math.floor(Math.random() * 20_000);
    for (let i = 0; i < CONNS; i++) await tcpExchange(pod.podIp4, 8081, Buffer.alloc(100 + i, 1), 10, localPort);
    await settle();

    const entries = flowsTo(flow.readFlows(), 8081).filter((f) => f.client.port === localPort);
    t.equal(entries.length, 1, 'one map entry for the reused 5-tuple');
    const f = entries[0]!;
    t.equal(f.generation, CONNS - 1, 'generation bumped by every new SYN');
    t.equal(f.toServer.bytes, 100 + CONNS - 1, 'counters are the last connection’s only');
    t.equal(f.toClient.bytes, 10);
    const up = samplesOf(samples, f).filter((s) => s.direction === 'to-server');
    t.same(
      up.map((s) => [s.generation, s.payloadLen]).sort((a, b) => a[0]! - b[0]!),
      [...Array(CONNS).keys()].map((g) => [g, 100 + g]),
      'one sample per connection, each tagged with its generation',
    );
    t.ok(flow.readStats().flows_restarted >= CONNS - 1);
  });

  await t.test('many short connections: every one counted and sampled', async (t) => {
    const CONNS = 200;
    const PARALLEL = 10;
    await startServer(lab, pod.ns, { proto: 'tcp', port: 8082, expect: 10, reply: 20 });
    for (let i = 0; i < CONNS; i += PARALLEL) {
      await Promise.all([...Array(PARALLEL)].map(() => tcpExchange(pod.podIp4, 8082, Buffer.alloc(10, 2), 20)));
    }
    await settle();
    const entries = flowsTo(flow.readFlows(), 8082);
    t.equal(entries.reduce((n, f) => n + f.generation + 1, 0), CONNS, 'entries × generations = connections');
    t.ok(entries.every((f) => f.toServer.bytes === 10 && f.toClient.bytes === 20), 'exact bytes in every flow');
    const mine = samples.filter((s) => s.key.b.port === 8082 || s.key.a.port === 8082);
    t.equal(mine.filter((s) => s.direction === 'to-server').length, CONNS, 'one request sample per connection');
    t.equal(mine.filter((s) => s.direction === 'to-client').length, CONNS, 'one reply sample per connection');
    const st = flow.readStats();
    t.equal(st.samples_lost, 0, 'no sample lost');
    t.equal(st.map_insert_fail, 0);
    t.equal(st.parse_errors, 0);
  });

  await t.test('IPv6', async (t) => {
    await startServer(lab, pod.ns, { proto: 'tcp', port: 8083, expect: 20_000, reply: 3000 });
    const { localPort } = await tcpExchange(pod.podIp6, 8083, pattern(20_000), 3000);
    await settle();
    const f = flowsTo(flow.readFlows(), 8083).find((x) => x.client.port === localPort);
    if (!f) return t.fail('flow found');
    t.same(f.client, { ip: pod.hostIp6, port: localPort });
    t.same(f.server, { ip: pod.podIp6, port: 8083 });
    t.equal(f.toServer.bytes, 20_000);
    t.equal(f.toClient.bytes, 3000);
    const up = samplesOf(samples, f).filter((s) => s.direction === 'to-server');
    t.ok(up.length >= 1 && up.length <= SAMPLES_PER_DIR);
    t.ok(up[0]!.payload.length > 0 && up[0]!.payload.equals(pattern(20_000).subarray(0, up[0]!.payload.length)), 'first bytes sampled');
  });

  await t.test('UDP', async (t) => {
    const sizes = [100, 200, 300];
    await startServer(lab, pod.ns, { proto: 'udp', port: 9053 });
    const localPort = await udpExchange(pod.podIp4, 9053, sizes);
    await settle();
    const f = flowsTo(flow.readFlows(), 9053, 'udp').find((x) => x.client.port === localPort);
    if (!f) return t.fail('flow found');
    t.same(f.client, { ip: pod.hostIp4, port: localPort }, 'client = first sender');
    t.same([f.toServer.bytes, f.toClient.bytes], [600, 600]);
    t.same([f.toServer.packets, f.toClient.packets], [3, 3]);
    const mine = samplesOf(samples, f);
    t.same(mine.filter((s) => s.direction === 'to-server').map((s) => s.payloadLen), sizes, 'every datagram sampled (3 ≤ 6)');
  });

  await t.test('socket filter on the pod loopback', async (t) => {
    const att = flow.attachSocketFilter(pod.netnsPath, 'lo');
    t.equal(att.kind, 'socket');
    t.ok(att.ifindex > 0x8000_0000, 'flows tagged with a socket attachment id');
    const packetSockets = () => lab.run(pod.ns, ['cat', '/proc/net/packet']).then((r) => r.stdout.trim().split('\n').length - 1);
    t.equal(await packetSockets(), 1, 'one AF_PACKET socket in the pod');

    await startServer(lab, pod.ns, { proto: 'tcp', port: 9090, expect: 3000, reply: 700 });
    await tcpClientIn(lab, pod.ns, '127.0.0.1', 9090, 3000, 700);
    await settle();
    const all = flowsTo(flow.readFlows(), 9090);
    const f = all.find((x) => x.key.ifindex === att.ifindex);
    if (!f) return t.fail('loopback flow found');
    t.equal(all.length, 1, 'loopback traffic is not seen by the veth hooks');
    t.equal(f.client.ip, '127.0.0.1');
    t.equal(f.toServer.bytes, 3000, 'counted once, although AF_PACKET sees loopback packets twice');
    t.equal(f.toClient.bytes, 700);
    const mine = samplesOf(samples, f);
    t.ok(mine.length >= 2 && mine.every((s) => s.hook === 'socket-in'), 'samples through the same ring buffer');
    t.ok(flow.readStats().loopback_outgoing > 0);

    att.close();
    t.equal(await packetSockets(), 0, 'socket closed on detach');
  });

  await t.test('close() leaves nothing attached', async (t) => {
    flow.close();
    t.same(progQuery(pod.hostIfindex, BPF_TCX_INGRESS), [], 'no TCX ingress program');
    t.same(progQuery(pod.hostIfindex, BPF_TCX_EGRESS), [], 'no TCX egress program');
    t.same(tcFilters(pod.hostIf, 'ingress'), [], 'no tc filter ingress');
    t.same(tcFilters(pod.hostIf, 'egress'), [], 'no tc filter egress');
    t.same(await progsRemaining(progIds), [], 'programs unloaded');
    t.notOk(readFileSync('/proc/self/maps', 'utf8').includes('anon_inode:bpf-map'), 'ring buffer unmapped');
  });
});
