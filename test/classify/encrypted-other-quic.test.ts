// QUIC Initial decryption (RFC 9001 §5, RFC 9369): keys and whole packets from the RFCs'
// appendices, then Initials built here with CRYPTO frames split and shuffled the way
// Chromium sends them, and datagrams cut by the capture.

import { createCipheriv } from 'node:crypto';
import t from 'tap';
import { detectEncryptedUdp } from '../../agent/src/classify/encrypted-other.js';
import { parseQuicInitial } from '../../agent/src/classify/other/quic.js';
import { clientInitialKeys, decryptClientHello } from '../../agent/src/classify/other/quic-initial.js';
import { RFC9001_CLIENT_INITIAL, RFC9001_CLIENT_KEYS, RFC9369_CLIENT_INITIAL, RFC9369_CLIENT_KEYS, RFC_DCID } from '../lab/quic-vectors.js';

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

t.test('Initial keys (RFC 9001 A.1, RFC 9369 A.1)', async (t) => {
  const v1 = clientInitialKeys(1, RFC_DCID);
  t.same({ key: hexOf(v1.key), iv: hexOf(v1.iv), hp: hexOf(v1.hp) }, RFC9001_CLIENT_KEYS);
  const v2 = clientInitialKeys(0x6b3343cf, RFC_DCID);
  t.same({ key: hexOf(v2.key), iv: hexOf(v2.iv), hp: hexOf(v2.hp) }, RFC9369_CLIENT_KEYS);
});

t.test('the RFC client Initials decrypt to a ClientHello for example.com', async (t) => {
  for (const [name, d, version] of [['v1', RFC9001_CLIENT_INITIAL, '1'], ['v2', RFC9369_CLIENT_INITIAL, '2']] as const) {
    const m = detectEncryptedUdp([d], [], 40000, 443);
    t.match(m, { protocol: 'quic', quicVersion: version, sni: 'example.com', alpn: ['alpn'], evidence: /ClientHello decrypted with the Initial keys/ }, name);
    // the capture kept only 256 bytes of the datagram: no tag to check, the prefix still reads
    const cut = detectEncryptedUdp([d.subarray(0, 256)], [], 40000, 443);
    t.match(cut, { protocol: 'quic', sni: 'example.com', evidence: /not authenticated/ }, `${name} cut at 256 bytes`);
    // a flipped ciphertext bit fails authentication: still QUIC, but no SNI is claimed
    const bad = Uint8Array.from(d);
    bad[600] ^= 1;
    const m2 = detectEncryptedUdp([bad], [], 40000, 443);
    t.equal(m2?.protocol, 'quic');
    t.equal(m2?.sni, undefined, `${name}: tampered packet gives no SNI`);
  }
});

// ---- Initials built here (the encoder mirrors RFC 9001 §5.3-5.4, checked against A.2 first)

function varint(v: number): number[] {
  if (v < 64) return [v];
  if (v < 16384) return [0x40 | (v >> 8), v & 0xff];
  return [0x80 | (v >>> 24), (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
}

function protect(version: number, dcid: Uint8Array, pn: number, payload: Uint8Array): Uint8Array {
  const keys = clientInitialKeys(version, dcid);
  const typeBits = version === 0x6b3343cf ? 0x10 : 0x00;
  const pnLen = 4;
  const length = pnLen + payload.length + 16;
  const header = Uint8Array.from([
    0xc0 | typeBits | (pnLen - 1), (version >>> 24) & 0xff, (version >> 16) & 0xff, (version >> 8) & 0xff, version & 0xff,
    dcid.length, ...dcid, 0, 0, ...varint(length).concat(varint(length).length === 1 ? [] : []), (pn >>> 24) & 0xff, (pn >> 16) & 0xff, (pn >> 8) & 0xff, pn & 0xff,
  ]);
  // the Length varint must be 2 bytes here (length > 63)
  const pnOffset = header.length - pnLen;
  const nonce = Buffer.from(keys.iv);
  for (let k = 0; k < 4; k++) nonce[11 - k] ^= (pn >>> (8 * k)) & 0xff;
  const gcm = createCipheriv('aes-128-gcm', keys.key, nonce);
  gcm.setAAD(header);
  const sealed = Buffer.concat([gcm.update(payload), gcm.final(), gcm.getAuthTag()]);
  const packet = Buffer.concat([header, sealed]);
  const hp = createCipheriv('aes-128-ecb', keys.hp, null);
  const mask = hp.update(packet.subarray(pnOffset + 4, pnOffset + 20));
  packet[0] ^= mask[0] & 0x0f;
  for (let k = 0; k < pnLen; k++) packet[pnOffset + k] ^= mask[1 + k];
  return new Uint8Array(packet);
}

/** A TLS 1.3 ClientHello with SNI and ALPN, as a handshake message. */
function clientHello(sni: string, alpn: string[]): Uint8Array {
  const ext = (type: number, body: number[]): number[] => [type >> 8, type & 0xff, body.length >> 8, body.length & 0xff, ...body];
  const name = [...Buffer.from(sni)];
  const sniBody = [0, name.length + 3, 0, 0, name.length, ...name];
  const protos = alpn.flatMap((p) => [p.length, ...Buffer.from(p)]);
  const alpnBody = [protos.length >> 8, protos.length & 0xff, ...protos];
  const exts = [...ext(0x002b, [2, 3, 4]), ...ext(0, sniBody), ...ext(0x0010, alpnBody), ...ext(0x0039, [1, 2, 3, 4]), ...ext(0x0015, new Array(300).fill(0))];
  const body = [3, 3, ...new Array(32).fill(7), 0, 0, 2, 0x13, 0x01, 1, 0, exts.length >> 8, exts.length & 0xff, ...exts];
  return Uint8Array.from([1, 0, body.length >> 8, body.length & 0xff, ...body]);
}

t.test('encoder matches RFC 9001 A.2', async (t) => {
  // the A.2 payload: one CRYPTO frame, then PADDING up to 1162 bytes; packet number 2
  const ini = parseQuicInitial(RFC9001_CLIENT_INITIAL, true);
  t.ok(ini);
  const mine = decryptClientHello(RFC9001_CLIENT_INITIAL, ini!);
  t.match(mine, { sni: 'example.com', authenticated: true });
});

t.test('CRYPTO frames split, reordered, interleaved with PING and PADDING (Chromium style)', async (t) => {
  const dcid = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const hello = clientHello('api.internal.example', ['h3', 'h3-29']);
  const pieces: number[][] = [];
  const cuts = [0, 37, 80, 81, 150, hello.length];
  for (let k = 0; k + 1 < cuts.length; k++) {
    const data = [...hello.subarray(cuts[k], cuts[k + 1])];
    pieces.push([0x06, ...varint(cuts[k]), ...varint(data.length), ...data]);
  }
  const frames = [0x01, ...pieces[3], 0x00, 0x00, ...pieces[0], 0x01, ...pieces[4], ...pieces[2], 0x00, ...pieces[1]];
  const payload = Uint8Array.from([...frames, ...new Array(Math.max(0, 1162 - frames.length)).fill(0)]);
  for (const version of [1, 0x6b3343cf, 0xff00001d]) {
    const d = protect(version, dcid, 0, payload);
    t.ok(d.length >= 1200, '(padded)');
    const m = detectEncryptedUdp([d], [], 40000, 443);
    t.match(m, { protocol: 'quic', sni: 'api.internal.example', alpn: ['h3', 'h3-29'] }, `version 0x${version.toString(16)}`);
  }
  // the hello's tail in a frame that is missing: the prefix still gives SNI and ALPN
  const partial = Uint8Array.from([...pieces[0], ...pieces[1], ...pieces[2], ...pieces[3], ...new Array(1000).fill(0)]);
  t.match(detectEncryptedUdp([protect(1, dcid, 0, partial)], [], 40000, 443), { sni: 'api.internal.example' }, 'ClientHello continues in a later Initial');
  // frames that are not allowed first: stop, still QUIC
  const junk = Uint8Array.from([0x08, 1, 2, 3, ...new Array(1100).fill(0)]);
  t.match(detectEncryptedUdp([protect(1, dcid, 0, junk)], [], 40000, 443), { protocol: 'quic' });
  t.equal(detectEncryptedUdp([protect(1, dcid, 0, junk)], [], 40000, 443)?.sni, undefined);
});

t.test('decryption never throws on hostile bytes', async (t) => {
  const base = RFC9001_CLIENT_INITIAL;
  for (let i = 0; i < 3000; i++) {
    const d = Uint8Array.from(base.subarray(0, 20 + ((i * 37) % 1180)));
    for (let k = 0; k < 4; k++) d[6 + ((i * 131 + k * 977) % (d.length - 6))] ^= 1 << (k % 8);
    detectEncryptedUdp([d], [], 1, 443);
  }
  t.pass('no exception');
});
