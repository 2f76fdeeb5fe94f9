// Flow table and TCP prefix reassembly on real loopback captures: exact byte counters,
// prefixes equal to what the peers sent, snaplen-cut captures, port reuse, captures
// starting mid-connection, UDP datagrams, limits and progress. Retransmissions, reordering
// and gaps are made by reordering/duplicating/dropping records of a real capture.

import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TCP_ACK, TCP_FIN, TCP_SYN } from '../../agent/src/offline/decode.js';
import { isServicePort, readFlows, readFlowsFromBytes, type FlowRecord } from '../../agent/src/offline/flows.js';
import { buildPcap, Lab, labSkipReason, parsePcap, pattern, tcpPayloadOf, type Pcap } from '../lab/offline-capture.js';

const skip = labSkipReason();

const CLIENT_BYTES = 100000;
const SERVER_BYTES = 5000;
const PREFIX = 32 * 1024;

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

/** Indexes of records carrying TCP payload from `srcPort`. */
function dataRecords(p: Pcap, srcPort: number): number[] {
  const out: number[] = [];
  p.records.forEach((r, i) => {
    const tcp = tcpPayloadOf(r.data);
    if (tcp && tcp.len > 0 && ((r.data[34] << 8) | r.data[35]) === srcPort) out.push(i);
  });
  return out;
}

t.test('TCP and UDP flows from real loopback traffic', { skip }, async (t) => {
  const lab = new Lab();
  t.teardown(() => lab.close());
  const ns = lab.ns('flows');
  await lab.start(ns, process.execPath, [lab.script('tcp-server.cjs'), '127.0.0.1', '7000', String(SERVER_BYTES)], 'ready');
  await lab.start(ns, process.execPath, [lab.script('tcp-server.cjs'), '127.0.0.1', '5432', '300'], 'ready');
  await lab.start(ns, process.execPath, [lab.script('udp-server.cjs'), '127.0.0.1', '9000', '200'], 'ready');

  const full = await lab.tcpdump(ns, 'full.pcap', ['-i', 'lo', 'tcp port 7000']);
  const cut = await lab.tcpdump(ns, 'snap.pcap', ['-i', 'lo', '-s', '120', 'tcp port 7000']);
  lab.node(ns, 'tcp-client.cjs', ['127.0.0.1', 7000, CLIENT_BYTES]);
  const fullFile = await full.stop();
  const cutFile = await cut.stop();

  const reuse = await lab.tcpdump(ns, 'reuse.pcap', ['-i', 'lo', 'tcp port 7000']);
  lab.node(ns, 'tcp-client.cjs', ['127.0.0.1', 7000, 1000, 5, 40000]);
  const reuseFile = await reuse.stop();

  const misc = await lab.tcpdump(ns, 'misc.pcap', ['-i', 'lo']);
  lab.node(ns, 'tcp-client.cjs', ['127.0.0.1', 5432, 20000]);
  lab.node(ns, 'udp-client.cjs', ['127.0.0.1', 9000, 100, 12]);
  const miscFile = await misc.stop();

  const clientSent = pattern(CLIENT_BYTES, 1);
  const serverSent = pattern(SERVER_BYTES, 2);

  t.test('byte counters and prefixes equal what the peers sent', async (t) => {
    const { flows, stats } = readFlows(fullFile);
    t.equal(flows.length, 1);
    const f = flows[0];
    t.match(f, { transport: 'tcp', ipVersion: 4, client: { ip: '127.0.0.1' }, server: { ip: '127.0.0.1', port: 7000 }, clientBy: 'syn' });
    t.same(f.bytes, { toServer: CLIENT_BYTES, toClient: SERVER_BYTES });
    t.equal(f.packets.toServer + f.packets.toClient, stats.packets, 'every packet belongs to the flow');
    const fb = f.bytesForClassifier;
    t.same([fb.transport, fb.clientPort, fb.serverPort], ['tcp', f.client.port, 7000]);
    t.ok(bytesEqual(fb.client, clientSent.subarray(0, PREFIX)), 'client prefix: the first 32 KiB sent, in order');
    t.equal(fb.clientTruncated, true, 'client sent more than the prefix');
    t.ok(bytesEqual(fb.server, serverSent), 'server prefix: everything it sent');
    t.equal(fb.serverTruncated, false);
    t.equal(f.tcpFlags.toServer & (TCP_SYN | TCP_FIN | TCP_ACK), TCP_SYN | TCP_FIN | TCP_ACK);
    t.ok(f.firstSeenMs <= f.timesMs.toClient!.firstMs && f.timesMs.toServer!.lastMs <= f.lastSeenMs);
    t.equal(f.firstSeenMs, f.timesMs.toServer!.firstMs, 'the SYN is the first packet');

    const small = readFlows(fullFile, { tcpPrefixBytes: 1000 }).flows[0].bytesForClassifier;
    t.ok(bytesEqual(small.client, clientSent.subarray(0, 1000)) && bytesEqual(small.server, serverSent.subarray(0, 1000)), 'tcpPrefixBytes');
  });

  t.test('a snaplen-cut capture still counts right; prefixes end where the capture cut', async (t) => {
    const f = readFlows(cutFile).flows[0];
    t.same(f.bytes, { toServer: CLIENT_BYTES, toClient: SERVER_BYTES }, 'IP lengths, not captured lengths');
    const fb = f.bytesForClassifier;
    t.ok(fb.client.length > 0 && fb.client.length < 120, `client prefix is what the first segment kept (${fb.client.length})`);
    t.ok(bytesEqual(fb.client, clientSent.subarray(0, fb.client.length)));
    t.ok(bytesEqual(fb.server, serverSent.subarray(0, fb.server.length)));
    t.same([fb.clientTruncated, fb.serverTruncated], [true, true]);
  });

  t.test('one 4-tuple reused by 5 connections gives 5 flows', async (t) => {
    const { flows } = readFlows(reuseFile);
    t.equal(flows.length, 5);
    for (const f of flows) {
      t.match(f, { client: { port: 40000 }, server: { port: 7000 }, clientBy: 'syn', bytes: { toServer: 1000, toClient: SERVER_BYTES } });
      t.ok(bytesEqual(f.bytesForClassifier.client, pattern(1000, 1)));
    }
    const firsts = flows.map((f) => f.firstSeenMs);
    t.same(firsts, [...firsts].sort((a, b) => a - b), 'in order of first packet');
    t.ok(flows.every((f, i) => i === 0 || f.firstSeenMs >= flows[i - 1].lastSeenMs), 'no packet of one connection in another');

    const capped = readFlows(reuseFile, { maxFlows: 2 });
    t.equal(capped.flows.length, 2, 'maxFlows');
    t.equal(capped.stats.flowsNotTracked, 3);
    t.ok(capped.stats.packetsNotTracked > 0);
    t.match(capped.stats.warnings.join('\n'), /more than 2 flows; 3 more flows/);
  });

  t.test('retransmitted, reordered and missing segments (records of the real capture moved)', async (t) => {
    const pcap = parsePcap(fs.readFileSync(fullFile));
    const clientPort = readFlows(fullFile).flows[0].client.port;
    const data = dataRecords(pcap, clientPort);
    t.ok(data.length >= 2, `client data in ${data.length} segments`);
    const [d0, d1] = data;
    const first = tcpPayloadOf(pcap.records[d0].data)!;

    // d1 before d0, and d0 again (a retransmission) at the end.
    const reordered = [...pcap.records];
    [reordered[d0], reordered[d1]] = [reordered[d1], reordered[d0]];
    reordered.push(pcap.records[d0]);
    const r = readFlowsFromBytes(buildPcap({ ...pcap, records: reordered }), 'reordered.pcap').flows;
    t.equal(r.length, 1);
    t.ok(bytesEqual(r[0].bytesForClassifier.client, clientSent.subarray(0, PREFIX)), 'same prefix: reordering and duplicates do not change it');
    t.equal(r[0].bytes.toServer, CLIENT_BYTES + first.len, 'retransmitted bytes are counted (they were on the wire)');

    // Overlap: d0 again but starting half-way into it carries the same bytes; first copy wins.
    const overlapped = [...pcap.records];
    const half = Uint8Array.from(pcap.records[d0].data);
    half.fill(0xee, first.payload, first.payload + first.len);
    overlapped.splice(d0 + 1, 0, { ...pcap.records[d0], data: half });
    const o = readFlowsFromBytes(buildPcap({ ...pcap, records: overlapped }), 'overlap.pcap').flows[0];
    t.ok(bytesEqual(o.bytesForClassifier.client, clientSent.subarray(0, PREFIX)), 'a retransmission with other bytes: the first copy wins');

    // d1 never arrives: the prefix ends after d0, truncated.
    const gap = pcap.records.filter((_, i) => i !== d1);
    const g = readFlowsFromBytes(buildPcap({ ...pcap, records: gap }), 'gap.pcap').flows[0];
    const expectLen = Math.min(first.len, PREFIX);
    t.equal(g.bytesForClassifier.client.length, expectLen, 'prefix stops at the gap');
    t.ok(bytesEqual(g.bytesForClassifier.client, clientSent.subarray(0, expectLen)));
    t.equal(g.bytesForClassifier.clientTruncated, true);
    t.ok(bytesEqual(g.bytesForClassifier.server, serverSent), 'the other direction is unaffected');
  });

  t.test('a capture that starts mid-connection (handshake records dropped)', async (t) => {
    const pcap = parsePcap(fs.readFileSync(fullFile));
    const clientPort = readFlows(fullFile).flows[0].client.port;
    const d0 = dataRecords(pcap, clientPort)[0];
    const noSyn = readFlowsFromBytes(buildPcap({ ...pcap, records: pcap.records.slice(d0) }), 'nosyn.pcap').flows[0];
    t.match(noSyn, { clientBy: 'first-speaker', client: { port: clientPort }, server: { port: 7000 } }, 'no service port: the first speaker is the client');
    t.ok(bytesEqual(noSyn.bytesForClassifier.client, clientSent.subarray(0, PREFIX)), 'prefix from the first seen sequence number');

    // Port 5432 (PostgreSQL) decides even when the first packet left is the server's.
    const misc = parsePcap(fs.readFileSync(miscFile));
    const pg = readFlows(miscFile).flows.find((f) => f.server.port === 5432)!;
    t.same(pg.bytes, { toServer: 20000, toClient: 300 });
    const fromServer = misc.records.findIndex((r) => tcpPayloadOf(r.data) && ((r.data[34] << 8) | r.data[35]) === 5432 && (tcpPayloadOf(r.data)!.flags & TCP_SYN) === 0);
    const late = readFlowsFromBytes(buildPcap({ ...misc, records: misc.records.slice(fromServer) }), 'late.pcap').flows.find((f) => f.transport === 'tcp')!;
    t.match(late, { clientBy: 'port', client: { port: pg.client.port }, server: { port: 5432 } });
    t.ok(isServicePort(5432) && isServicePort(443) && !isServicePort(7000));
  });

  t.test('UDP: counters, the first datagrams per direction', async (t) => {
    const u = readFlows(miscFile).flows.find((f) => f.transport === 'udp')!;
    t.match(u, { server: { ip: '127.0.0.1', port: 9000 }, clientBy: 'first-speaker' });
    t.same([u.packets, u.bytes], [{ toServer: 12, toClient: 12 }, { toServer: 1200, toClient: 2400 }]);
    const fb = u.bytesForClassifier;
    t.same([fb.clientDatagrams.length, fb.serverDatagrams.length], [8, 8]);
    t.ok(fb.clientDatagrams.every((d) => d.length === 100 && d.every((b) => b === 0x11)));
    t.ok(fb.serverDatagrams.every((d) => d.length === 200 && d.every((b) => b === 0x55)));
    t.same([fb.clientTruncated, fb.serverTruncated], [true, true]);
    t.same(readFlows(miscFile, { udpDatagrams: 2 }).flows.find((f) => f.transport === 'udp')!.bytesForClassifier.clientDatagrams.length, 2);
  });

  t.test('payload memory limit: collection stops, counting goes on', async (t) => {
    const { flows, stats } = readFlows(fullFile, { maxPayloadMemory: 1000 });
    t.same(flows[0].bytes, { toServer: CLIENT_BYTES, toClient: SERVER_BYTES });
    t.ok(stats.payloadMemoryExhausted > 0);
    t.equal(flows[0].bytesForClassifier.clientTruncated, true);
    t.match(stats.warnings.join('\n'), /payload memory limit reached/);
    t.ok(readFlows(fullFile).stats.payloadMemoryBytes >= PREFIX + SERVER_BYTES, 'memory held is reported');
  });

  t.test('several files: flows carry their file; progress is reported', async (t) => {
    const calls: [number, number, string][] = [];
    const files = [fullFile, reuseFile, miscFile];
    const r = readFlows(files, {}, (done, total, file) => calls.push([done, total, file]));
    const total = files.reduce((n, f) => n + fs.statSync(f).size, 0);
    t.same([...new Set(r.flows.map((f: FlowRecord) => path.basename(f.file)))], ['full.pcap', 'reuse.pcap', 'misc.pcap']);
    t.equal(r.stats.files.length, 3);
    t.equal(r.stats.bytesRead, total);
    t.ok(calls.length >= 1 && calls.length <= 3, `throttled (${calls.length} calls for small files)`);
    t.same(calls[calls.length - 1].slice(0, 2), [total, total], 'ends at 100%');
  });
});
