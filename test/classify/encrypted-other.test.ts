// detectEncryptedTcp / detectEncryptedUdp on real bytes where something local speaks the
// protocol (OpenSSH and libssh2 clients, openssl DTLS over a UDP relay), the RFC 9001
// Appendix A QUIC packets, and hand-made packets (WireGuard, OpenVPN, IPsec) built to the
// protocols' layouts — plus the near misses each detector must reject.

import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import net from 'node:net';
import t from 'tap';
import { detectEncryptedTcp, detectEncryptedUdp } from '../../agent/src/classify/encrypted-other.js';
import { detectPlaintextTcp, detectPlaintextUdp } from '../../agent/src/classify/plaintext.js';
import { RFC9001_CLIENT_INITIAL, RFC9001_SERVER_INITIAL } from '../lab/quic-vectors.js';
import { bytes, have, listen, run, selfSigned, tcpRelay, text, udpRelay, type Recording } from '../lab/wire-lab.js';

const EMPTY = new Uint8Array(0);

/** A fake SSH server: sends its identification line, records what the client sends, closes. */
async function sshClientBytes(drive: (port: number) => Promise<unknown>): Promise<Recording> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.write('SSH-2.0-FakeServer_1.0\r\n');
    setTimeout(() => s.destroy(), 700);
  });
  const port = await listen(server);
  const relay = await tcpRelay(port);
  try {
    await drive(relay.port);
    const [rec] = await relay.settled(1, 5000);
    return rec;
  } finally {
    await relay.close();
    server.close();
  }
}

t.test('SSH: OpenSSH client and libssh2 (curl sftp)', async (t) => {
  if (have('ssh')) {
    const rec = await sshClientBytes((port) =>
      run('ssh', ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=3', '-p', String(port), 'alice@127.0.0.1', 'true'], 8000));
    const version = (await run('ssh', ['-V'])).stderr.split(/[ ,]/)[0]; // "OpenSSH_9.2p1"
    const m = detectEncryptedTcp(rec.client, rec.server, 40000, 22);
    t.match(m, { protocol: 'ssh', evidence: new RegExp(`client SSH-2\\.0-${version.replace(/\./g, '\\.')}; KEXINIT`) });
    t.match(m?.evidence, /server SSH-2\.0-FakeServer_1\.0/);
    t.notOk(m?.evidence.includes('alice'), 'no user in evidence');
    t.notOk(/Debian/.test(m?.evidence ?? ''), 'the comments part of the banner is left out');
    t.equal(detectPlaintextTcp(rec.client, rec.server, 40000, 22), null, 'not plaintext');
    // one side at a time: the client's banner + KEXINIT suffice; the server's bare banner does not
    t.equal(detectEncryptedTcp(rec.client, EMPTY, 40000, 22)?.protocol, 'ssh');
    t.equal(detectEncryptedTcp(EMPTY, rec.server, 40000, 22), null, 'a lone banner proves no encryption');
    t.equal(detectEncryptedTcp(text('SSH-2.0-x\r\n'), text('SSH-2.0-y\r\n'), 1, 22)?.protocol, 'ssh', 'identification exchanged');
    // bytes after a banner that are not a KEXINIT: not SSH as we know it
    t.equal(detectEncryptedTcp(text('SSH-2.0-x\r\nhello, this is text\r\n'), EMPTY, 1, 22), null);
    // a server that sends lines before its identification (RFC 4253 §4.2), with the client's KEXINIT as its own
    const kex = rec.client.subarray(rec.client.indexOf(0x0a) + 1);
    t.match(detectEncryptedTcp(EMPTY, bytes('Welcome\r\nSSH-2.0-OpenSSH_8.0\r\n', kex), 40000, 22), { protocol: 'ssh', evidence: /server SSH-2\.0-OpenSSH_8\.0; KEXINIT/ });
  }
  if (have('curl')) {
    const rec = await sshClientBytes((port) => run('curl', ['-s', '-k', '-u', 'alice:pw', `sftp://127.0.0.1:${port}/`], 8000));
    if (rec.client.length > 0) t.match(detectEncryptedTcp(rec.client, rec.server, 40000, 22), { protocol: 'ssh', evidence: /client SSH-2\.0-libssh2_[0-9.]+; KEXINIT/ });
  }
});

t.test('DTLS 1.2 and 1.0: openssl s_client -dtls through a UDP relay', { skip: have('openssl') ? false : 'openssl not installed' }, async (t) => {
  const cert = selfSigned();
  t.teardown(cert.cleanup);
  for (const [flag, version] of [['-dtls1_2', '1.2'], ['-dtls1', '1.0']] as const) {
    const probe = net.createServer();
    const port = await listen(probe);
    probe.close();
    const server = spawn('openssl', ['s_server', flag, '-accept', String(port), '-cert', cert.certFile, '-key', cert.keyFile, '-cipher', 'ALL:@SECLEVEL=0'], { stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 3000);
      server.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('ACCEPT')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const relay = await udpRelay(port);
    await run('openssl', ['s_client', flag, '-connect', `127.0.0.1:${relay.port}`, '-servername', 'dtls.example', '-cipher', 'ALL:@SECLEVEL=0'], 8000);
    server.kill('SIGKILL');
    await relay.close();
    const { client, server: srv } = relay.recorded;
    t.ok(client.length > 0, `(${flag}: client datagrams recorded)`);
    const m = detectEncryptedUdp(client, srv, 40000, port);
    t.match(m, { protocol: 'dtls', evidence: new RegExp(`DTLS ${version.replace('.', '\\.')} ClientHello`) }, flag);
    t.equal(m?.sni, 'dtls.example', 'SNI from the ClientHello');
    t.equal(detectPlaintextUdp(client, srv, 40000, port), null, 'not plaintext');
    t.match(detectEncryptedUdp([], srv, 40000, port), { protocol: 'dtls', evidence: /HelloVerifyRequest|ServerHello/ }, 'server direction alone');
    // the ClientHello cut by the capture just after its SNI extension
    const sniEnd = Buffer.from(client[0]).indexOf('dtls.example') + 'dtls.example'.length;
    t.match(detectEncryptedUdp([client[0].subarray(0, sniEnd)], [], 40000, port), { protocol: 'dtls', sni: 'dtls.example' }, 'cut ClientHello');
  }
});

t.test('QUIC Initial (RFC 9001 Appendix A)', async (t) => {
  t.equal(RFC9001_CLIENT_INITIAL.length, 1200, '(vector intact)');
  const m = detectEncryptedUdp([RFC9001_CLIENT_INITIAL], [RFC9001_SERVER_INITIAL], 40000, 443);
  t.match(m, { protocol: 'quic', quicVersion: '1', evidence: /QUIC v1 client Initial \(long header, datagram padded to 1200 bytes\)/ });
  t.match(detectEncryptedUdp([], [RFC9001_SERVER_INITIAL], 40000, 443), { protocol: 'quic', evidence: /server Initial/ }, 'server direction alone');
  t.match(detectEncryptedUdp([RFC9001_CLIENT_INITIAL.subarray(0, 256)], [], 40000, 443), { protocol: 'quic' }, 'datagram cut to 256 bytes by the capture');
  t.equal(detectPlaintextUdp([RFC9001_CLIENT_INITIAL], [RFC9001_SERVER_INITIAL], 40000, 443), null, 'not plaintext');
  // version 2 (RFC 9369): Initial is long packet type 1; draft-29: type 0
  const v2 = Uint8Array.from(RFC9001_CLIENT_INITIAL);
  v2.set([0xd0, 0x6b, 0x33, 0x43, 0xcf], 0);
  t.match(detectEncryptedUdp([v2], [], 1, 443), { quicVersion: '2', evidence: /QUIC v2/ });
  const d29 = Uint8Array.from(RFC9001_CLIENT_INITIAL);
  d29.set([0xc0, 0xff, 0x00, 0x00, 0x1d], 0);
  t.match(detectEncryptedUdp([d29], [], 1, 443), { quicVersion: 'draft-29' });
  // near misses
  const noFixed = Uint8Array.from(RFC9001_CLIENT_INITIAL);
  noFixed[0] = 0x80;
  t.equal(detectEncryptedUdp([noFixed], [], 1, 443), null, 'fixed bit clear');
  const wrongType = Uint8Array.from(v2);
  wrongType[0] = 0xc0; // type 0 with version 2 is Retry, not Initial
  t.equal(detectEncryptedUdp([wrongType], [], 1, 443), null, 'v2 with the v1 Initial type');
  const unknownVersion = Uint8Array.from(RFC9001_CLIENT_INITIAL);
  unknownVersion.set([0, 0, 0, 2], 1);
  t.equal(detectEncryptedUdp([unknownVersion], [], 1, 443), null, 'unknown version');
  const shortDcid = Uint8Array.from(RFC9001_CLIENT_INITIAL.subarray(0, 64));
  shortDcid[5] = 4;
  t.equal(detectEncryptedUdp([shortDcid], [], 1, 443), null, 'client DCID shorter than 8');
});

/** WireGuard messages with random keys/MACs in the places the layout has them. */
function wgInitiation(sender: number): Uint8Array {
  const m = randomBytes(148);
  m.set([1, 0, 0, 0], 0);
  m.writeUInt32LE(sender, 4);
  m.fill(0, 132); // mac2 is zero unless the responder is under load
  return m;
}
function wgResponse(sender: number, receiver: number): Uint8Array {
  const m = randomBytes(92);
  m.set([2, 0, 0, 0], 0);
  m.writeUInt32LE(sender, 4);
  m.writeUInt32LE(receiver, 8);
  m.fill(0, 76);
  return m;
}
function wgData(receiver: number, counter: number, payload: number): Uint8Array {
  const m = randomBytes(16 + payload + 16);
  m.set([4, 0, 0, 0], 0);
  m.writeUInt32LE(receiver, 4);
  m.writeUInt32LE(counter, 8);
  m.writeUInt32LE(0, 12);
  return m;
}

t.test('WireGuard', async (t) => {
  t.match(detectEncryptedUdp([wgInitiation(7)], [wgResponse(9, 7)], 40000, 51820), { protocol: 'wireguard', evidence: 'handshake initiation (148 bytes) and matching response (92 bytes)' });
  t.match(detectEncryptedUdp([wgInitiation(7)], [], 40000, 51820), { protocol: 'wireguard', evidence: 'handshake initiation (148 bytes)' });
  t.match(detectEncryptedUdp([], [wgResponse(9, 7)], 40000, 51820), { protocol: 'wireguard' });
  t.match(detectEncryptedUdp([wgData(5, 0, 64), wgData(5, 1, 1280)], [], 40000, 51820), { protocol: 'wireguard', evidence: /transport data/ });
  t.match(detectEncryptedUdp([wgData(5, 10, 0), wgData(5, 11, 0)], [], 40000, 51820), { protocol: 'wireguard' }, 'keepalives');
  t.equal(detectEncryptedUdp([wgData(5, 0, 64)], [], 40000, 51820), null, 'one data message is not enough');
  t.equal(detectEncryptedUdp([wgData(5, 1, 64), wgData(6, 2, 64)], [], 40000, 51820), null, 'different receivers');
  // the same layouts without randomness: a little-endian binary protocol that happens to start 01 00 00 00
  const zeros = new Uint8Array(148);
  zeros[0] = 1;
  t.equal(detectEncryptedUdp([zeros], [], 40000, 51820), null, 'zero-filled 148-byte message');
  const textLike = bytes([1, 0, 0, 0], 'x'.repeat(144));
  t.equal(detectEncryptedUdp([textLike], [], 40000, 51820), null, 'text after the header');
  const wrongLen = wgInitiation(7).subarray(0, 147);
  t.equal(detectEncryptedUdp([wrongLen], [], 40000, 51820), null, '147 bytes');
  const reserved = wgInitiation(7);
  reserved[2] = 1;
  t.equal(detectEncryptedUdp([reserved], [], 40000, 51820), null, 'reserved bytes not zero');
});

/** OpenVPN P_CONTROL_HARD_RESET_CLIENT_V2 in the three layouts. */
function ovpnPlain(opcode = 7): Uint8Array {
  return bytes([opcode << 3], randomBytes(8), [0], [0, 0, 0, 0]);
}
function ovpnTlsAuth(hmac = 20): Uint8Array {
  const now = Math.floor(Date.now() / 1000);
  return bytes([7 << 3], randomBytes(8), randomBytes(hmac), [0, 0, 0, 1], [now >>> 24, (now >> 16) & 0xff, (now >> 8) & 0xff, now & 0xff], [0], [0, 0, 0, 0]);
}
function ovpnTlsCrypt(opcode = 7, extra = 0, pid = [0, 0, 0, 1]): Uint8Array {
  const now = Math.floor(Date.now() / 1000);
  return bytes([opcode << 3], randomBytes(8), pid, [now >>> 24, (now >> 16) & 0xff, (now >> 8) & 0xff, now & 0xff], randomBytes(32), randomBytes(5 + extra));
}

t.test('OpenVPN', async (t) => {
  const client = ovpnPlain();
  const server = bytes([8 << 3], randomBytes(8), [1], [0, 0, 0, 0], client.subarray(1, 9), [0, 0, 0, 0]);
  t.match(detectEncryptedUdp([client], [server], 40000, 1194), { protocol: 'openvpn', evidence: 'P_CONTROL_HARD_RESET_CLIENT (plain) over UDP' });
  t.match(detectEncryptedUdp([], [server], 40000, 1194), { protocol: 'openvpn', evidence: /SERVER \(plain\)/ });
  for (const h of [20, 32, 64]) t.match(detectEncryptedUdp([ovpnTlsAuth(h)], [], 40000, 1194), { evidence: /\(tls-auth\)/ }, `tls-auth HMAC ${h}`);
  t.match(detectEncryptedUdp([ovpnTlsCrypt()], [], 40000, 1194), { evidence: /\(tls-crypt\)/ });
  t.match(detectEncryptedUdp([ovpnTlsCrypt(10, 300)], [], 40000, 1194), { evidence: /\(tls-crypt\)/ }, 'tls-crypt-v2 (V3 opcode) with its wrapped key');
  t.match(detectEncryptedUdp([ovpnTlsCrypt(10, 300, [0x0f, 0, 0, 1])], [], 40000, 1194), { evidence: /\(tls-crypt\)/ }, 'tls-crypt-v2 announcing early negotiation (packet id 0x0f000001)');
  // TCP: a 2-byte length before each packet
  const framed = bytes([0, client.length], client);
  t.match(detectEncryptedTcp(framed, bytes([0, server.length], server), 40000, 1194), { protocol: 'openvpn', evidence: /over TCP/ });
  t.equal(detectPlaintextTcp(framed, EMPTY, 40000, 1194), null, 'not plaintext');
  // near misses
  const keyId = Uint8Array.from(client);
  keyId[0] |= 1;
  t.equal(detectEncryptedUdp([keyId], [], 40000, 1194), null, 'key id 1 on a hard reset');
  const packetId = Uint8Array.from(client);
  packetId[13] = 1;
  t.equal(detectEncryptedUdp([packetId], [], 40000, 1194), null, 'message packet id not 0');
  t.equal(detectEncryptedUdp([text('8 bytes! and some more text here')], [], 40000, 1194), null, "text starting with '8'");
  t.equal(detectEncryptedUdp([ovpnPlain(10)], [], 40000, 1194), null, 'V3 opcode requires tls-crypt-v2');
  t.equal(detectEncryptedTcp(bytes([0, 99], client), EMPTY, 40000, 1194), null, 'TCP length disagrees');
});

t.test('IPsec over UDP (IKE on 500, NAT-T on 4500)', async (t) => {
  const ikeInit = (len: number): Uint8Array => bytes(randomBytes(8), new Uint8Array(8), [33, 0x20, 34, 0x08], [0, 0, 0, 0], [len >>> 24, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff], new Uint8Array(len - 28));
  t.match(detectEncryptedUdp([ikeInit(300)], [], 500, 500), { protocol: 'ipsec', evidence: 'IKEv2 IKE_SA_INIT over UDP 500' });
  t.match(detectEncryptedUdp([ikeInit(300).subarray(0, 256)], [], 500, 500), { protocol: 'ipsec' }, 'cut by the capture');
  t.equal(detectEncryptedUdp([ikeInit(300)], [], 40000, 40001), null, 'IKE header on another port');
  const ikeAuth = bytes([0, 0, 0, 0], randomBytes(16), [46, 0x20, 35, 0x08], [0, 0, 0, 1], [0, 0, 0, 80], randomBytes(52));
  t.match(detectEncryptedUdp([ikeAuth], [], 4500, 4500), { protocol: 'ipsec', evidence: 'IKEv2 IKE_AUTH over UDP 4500 (non-ESP marker)' });
  const esp = bytes([0xc1, 0x2f, 0x00, 0x10], [0, 0, 0, 1], randomBytes(100));
  t.match(detectEncryptedUdp([bytes([0xff]), esp], [], 40000, 4500), { protocol: 'ipsec', evidence: /ESP in UDP 4500/ }, 'after a NAT-keepalive');
  t.equal(detectEncryptedUdp([esp], [], 40000, 4501), null, 'ESP layout off port 4500');
  t.equal(detectEncryptedUdp([bytes([0xc1, 0x2f, 0x00, 0x10], [0, 0, 0, 1], 'plain text payload, clearly not ciphertext at all, no')], [], 40000, 4500), null, 'text behind an SPI');
  t.equal(detectEncryptedUdp([bytes([0, 0, 0, 9], [0, 0, 0, 1], randomBytes(100))], [], 40000, 4500), null, 'reserved SPI');
  const badIke = Uint8Array.from(ikeAuth);
  badIke[4 + 17] = 0x30;
  t.equal(detectEncryptedUdp([badIke], [], 4500, 4500), null, 'IKE version 3');
});

t.test('plaintext is never encrypted-other: hand-made plaintext on the encrypted protocols’ ports', async (t) => {
  const texts = ['GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'SSH is great but this is text\r\n', 'P'.repeat(148), '\x01\x00\x00\x00' + 'a'.repeat(144)];
  for (const s of texts) {
    for (const port of [22, 443, 500, 1194, 4500, 51820]) {
      t.equal(detectEncryptedTcp(text(s), text(s), 40000, port), null);
      t.equal(detectEncryptedUdp([text(s)], [text(s)], 40000, port), null);
    }
  }
});
