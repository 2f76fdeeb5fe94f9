// Samples → classifier input: TCP prefixes in sequence order (retransmissions and
// overlaps add nothing, a gap or a cut sample ends the prefix), sequence wrap-around,
// UDP datagrams in arrival order.

import t from 'tap';
import { assemble, tcpPrefix, type SampleBytes } from '../../agent/src/capture/assembler.js';

let ts = 0;
function seg(seq: number, text: string, payloadLen = text.length): SampleBytes {
  return { index: 0, tcpSeq: seq >>> 0, payloadLen, payload: Buffer.from(text), ts: ts++ };
}
const str = (b: Uint8Array) => Buffer.from(b).toString();

t.test('in order, out of order, retransmitted, overlapping', async (t) => {
  const p = tcpPrefix([seg(100, 'hello '), seg(106, 'world')], false);
  t.equal(str(p.bytes), 'hello world');
  t.equal(p.truncated, false);
  t.equal(str(tcpPrefix([seg(106, 'world'), seg(100, 'hello ')], false).bytes), 'hello world', 'reordered');
  t.equal(str(tcpPrefix([seg(100, 'hello '), seg(100, 'hello '), seg(106, 'world')], false).bytes), 'hello world', 'retransmission adds nothing');
  t.equal(str(tcpPrefix([seg(100, 'hello '), seg(103, 'lo wor'), seg(106, 'world')], false).bytes), 'hello world', 'overlap: first copy wins, the rest appended');
});

t.test('a gap or a cut sample ends the prefix', async (t) => {
  const gap = tcpPrefix([seg(100, 'abc'), seg(110, 'xyz')], false);
  t.equal(str(gap.bytes), 'abc');
  t.equal(gap.truncated, true);
  const cut = tcpPrefix([seg(100, 'abc', 1000), seg(1100, 'next')], false);
  t.equal(str(cut.bytes), 'abc', 'only the copied bytes of a cut sample');
  t.equal(cut.truncated, true);
  t.equal(tcpPrefix([seg(100, 'abc')], true).truncated, true, 'more samples may follow: truncated');
  t.same(tcpPrefix([], false), { bytes: new Uint8Array(0), truncated: false });
});

t.test('sequence numbers wrap around 2^32', async (t) => {
  const p = tcpPrefix([seg(0xfffffffe, 'ab'), seg(0, 'cd')], false);
  t.equal(str(p.bytes), 'abcd');
  t.equal(str(tcpPrefix([seg(0, 'cd'), seg(0xfffffffe, 'ab')], false).bytes), 'abcd', 'base found across the wrap');
});

t.test('flow bytes for the classifier', async (t) => {
  const tcp = assemble({ transport: 'tcp', clientPort: 40000, serverPort: 80, toServer: [seg(1, 'GET / HTTP/1.1\r\n\r\n')], toClient: [seg(9, 'HTTP/1.1 200 OK\r\n\r\n')], toServerMore: false, toClientMore: true });
  t.match(tcp, { transport: 'tcp', clientPort: 40000, serverPort: 80, clientTruncated: false, serverTruncated: true });
  t.equal(str(tcp.client), 'GET / HTTP/1.1\r\n\r\n');
  const a = seg(0, 'second');
  const b = seg(0, 'first');
  b.ts = a.ts - 10;
  const udp = assemble({ transport: 'udp', clientPort: 5353, serverPort: 53, toServer: [a, b], toClient: [], toServerMore: false, toClientMore: false });
  t.same(udp.clientDatagrams.map(str), ['first', 'second'], 'datagrams in arrival order');
  t.same(assemble({ transport: 'esp', clientPort: 0, serverPort: 0, toServer: [a], toClient: [], toServerMore: false, toClientMore: false }).clientDatagrams, []);
});
