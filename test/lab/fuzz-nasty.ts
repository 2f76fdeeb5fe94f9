// Hand-picked hostile inputs, one per classic parser trap, written to
// test/fixtures/fuzz/crashes/ (by `node bench/fuzz/make-corpus.mjs --nasty`) next to any
// crash the fuzzer finds, so test/fuzz/regressions.test.ts always has something to replay.
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

import { flowBytes } from '../../agent/src/classify/types.js';
import type { Corpus } from './fuzz-corpus.js';
import { encodeFlow, encodeSamples } from './fuzz-targets.js';

export interface Nasty {
  target: string;
  why: string;
  bytes: Uint8Array;
}

const u8 = (...parts: (number[] | Uint8Array)[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));
const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const repeat = (b: number[], n: number): number[] => Array.from({ length: n }, () => b).flat();

export function nastyInputs(corpus: Corpus): Nasty[] {
  const pcapHeader = corpus.pcap.subarray(0, 24);
  const shbLen = new DataView(corpus.pcapng.buffer, corpus.pcapng.byteOffset).getUint32(4, true);
  const shb = corpus.pcapng.subarray(0, shbLen);
  const tls = (client: Uint8Array): Uint8Array => encodeFlow(flowBytes({ transport: 'tcp', clientPort: 40000, serverPort: 443, client, server: new Uint8Array(0) }));
  return [
    { target: 'tls-records', why: '300 zero-length handshake records (more than MAX_RECORDS)', bytes: u8(repeat([0x16, 3, 1, 0, 0], 300)) },
    { target: 'tls-handshake', why: 'a handshake message claiming 16 MiB, then more records', bytes: u8([0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff], repeat([0x16, 3, 1, 0, 1, 0], 50)) },
    { target: 'tls-handshake', why: 'handshake headers split one byte per record', bytes: u8(...[1, 0, 0, 40, 3, 3].map((b) => [0x16, 3, 1, 0, 1, b])) },
    { target: 'tls-client-hello', why: 'ClientHello whose extensions block claims 65535 bytes', bytes: u8([3, 3], new Array(32).fill(1), [0, 0, 2, 0x13, 1, 1, 0, 0xff, 0xff, 0, 0, 0, 4]) },
    { target: 'tls-client-hello', why: 'session id, cipher and compression lengths all at their maximum', bytes: u8([3, 3], new Array(32).fill(1), [0xff], new Array(10).fill(0)) },
    { target: 'tls-analyze', why: 'TLS record header only, declared length 65535', bytes: tls(u8([0x16, 3, 1, 0xff, 0xff, 1])) },
    { target: 'classify-tcp', why: '16 KiB of empty lines', bytes: tls(new Uint8Array(16384).fill(0x0a)) },
    { target: 'classify-tcp', why: 'SSH identification of 8 KiB without an end of line', bytes: tls(u8([...Buffer.from('SSH-2.0-')], new Array(8192).fill(0x41))) },
    { target: 'quic-initial', why: 'QUIC v1 Initial with a token length varint of 2^62-1', bytes: u8([0xc3, 0, 0, 0, 1, 8], new Array(8).fill(7), [0], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], new Array(40).fill(0)) },
    { target: 'dns-message', why: 'a compression pointer that points at itself', bytes: u8([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]) },
    { target: 'dns-message', why: 'two compression pointers pointing at each other', bytes: u8([0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 14, 0xc0, 12, 0, 1, 0, 1]) },
    { target: 'decode-ipv6', why: 'twelve chained hop-by-hop extension headers', bytes: u8([0x60, 0, 0, 0, 0, 96, 0, 64], new Array(32).fill(0), repeat([0, 0, 0, 0, 0, 0, 0, 0], 12), le32(0).reverse()) },
    { target: 'decode-ipv4', why: 'IPv4 total length 0 (TSO) with an origLen of 4 GiB', bytes: u8([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2], [0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0xf0, 0x18, 0, 0, 0, 0, 0, 0], [0xff, 0xff, 0xff, 0xff]) },
    { target: 'pcap-read', why: 'a packet record claiming 4 GiB captured', bytes: u8(pcapHeader, le32(0), le32(0), le32(0xffffffff), le32(0xffffffff), [1, 2, 3]) },
    { target: 'pcap-read', why: 'a packet record claiming 200 MiB in a 60-byte file', bytes: u8(pcapHeader, le32(0), le32(0), le32(200 << 20), le32(200 << 20), new Array(20).fill(0)) },
    { target: 'pcapng-read', why: 'a block claiming 0xfffffff0 bytes', bytes: u8(shb, le32(6), le32(0xfffffff0), new Array(24).fill(0)) },
    { target: 'pcapng-read', why: 'a block length that is not a multiple of 4', bytes: u8(shb, le32(6), le32(33), new Array(29).fill(0)) },
    { target: 'pcapng-read', why: 'a block shorter than its own header', bytes: u8(shb, le32(1), le32(8), new Array(8).fill(0)) },
    { target: 'pcapng-read', why: 'a packet block before any interface block', bytes: u8(shb, le32(6), le32(36), le32(0), le32(0), le32(0), le32(4), le32(4), [1, 2, 3, 4], le32(36)) },
    {
      target: 'assembler',
      why: 'TCP samples around the sequence wrap, a copy claiming 4 GiB, and a duplicate',
      bytes: encodeSamples(
        'tcp',
        [
          { index: 0, tcpSeq: 0xfffffffe, payloadLen: 4, payload: u8([0x16, 3, 1, 0]), ts: 1 },
          { index: 1, tcpSeq: 2, payloadLen: 0xffffffff, payload: u8([0x10, 1, 0, 0, 0]), ts: 2 },
          { index: 2, tcpSeq: 0xfffffffe, payloadLen: 4, payload: u8([0x16, 3, 1, 0]), ts: 3 },
        ],
        [],
        3,
      ),
    },
  ];
}
