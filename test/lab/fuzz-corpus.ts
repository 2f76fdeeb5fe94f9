// Seed corpus for the fuzzer (bench/fuzz, test/fuzz): real handshakes and real captures,
// recorded once on 127.0.0.1 by `node bench/fuzz/make-corpus.mjs` and kept small in
// test/fixtures/fuzz/corpus/ so every fuzz run (and CI) starts from the same bytes.
//
// Real: node TLS 1.2/1.3 (with and without client certificates), openssl DTLS, OpenSSH's
// client, node HTTP/1.1 and h2c, c-ares DNS queries, and tcpdump/dumpcap captures of those
// exchanges (pcap and pcapng). Public vectors: RFC 9001/9369 QUIC Initials. Hand-made to
// the spec (no tool here speaks them): WireGuard, OpenVPN, IKE, and the plaintext starts
// of wire-fuzz.ts. Each seed records the verdict classifyStrict gave it when recorded, so
// a fuzz run can show that mutated seeds still reach the deep paths.
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { mkdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { classifyStrict, flowBytes, type FlowBytes } from '../../agent/src/classify/index.js';
import { RFC9001_CLIENT_INITIAL, RFC9001_SERVER_INITIAL, RFC9369_CLIENT_INITIAL } from './quic-vectors.js';
import { Relay, makePki, nodeClient, nodeServer, type Capture } from './tls-lab.js';
import { have, run, selfSigned, tcpRelay, udpRelay } from './wire-lab.js';
import { PLAINTEXT_STARTS } from './wire-fuzz.js';

/** One seed flow as stored in flows.json (bytes base64). */
export interface SeedFlowJson {
  name: string;
  transport: 'tcp' | 'udp';
  clientPort: number;
  serverPort: number;
  client?: string;
  server?: string;
  clientDatagrams?: string[];
  serverDatagrams?: string[];
  /** classifyStrict's verdict/protocol when the seed was recorded. */
  expect: { verdict: string; protocol: string };
}

export interface SeedFlow {
  name: string;
  flow: FlowBytes;
  expect: { verdict: string; protocol: string };
}

export interface Corpus {
  flows: SeedFlow[];
  pcap: Uint8Array;
  pcapng: Uint8Array;
}

export const CORPUS_DIR = new URL('../fixtures/fuzz/corpus/', import.meta.url);

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

export function loadCorpus(dir: URL = CORPUS_DIR): Corpus {
  const json = JSON.parse(readFileSync(new URL('flows.json', dir), 'utf8')) as SeedFlowJson[];
  const flows = json.map((s) => ({
    name: s.name,
    expect: s.expect,
    flow: flowBytes({
      transport: s.transport,
      clientPort: s.clientPort,
      serverPort: s.serverPort,
      client: unb64(s.client ?? ''),
      server: unb64(s.server ?? ''),
      clientDatagrams: (s.clientDatagrams ?? []).map(unb64),
      serverDatagrams: (s.serverDatagrams ?? []).map(unb64),
    }),
  }));
  return {
    flows,
    pcap: new Uint8Array(readFileSync(new URL('loopback.pcap.bin', dir))),
    pcapng: new Uint8Array(readFileSync(new URL('loopback.pcapng.bin', dir))),
  };
}

function seed(name: string, flow: FlowBytes): SeedFlowJson {
  const c = classifyStrict(flow);
  const out: SeedFlowJson = { name, transport: flow.transport as 'tcp' | 'udp', clientPort: flow.clientPort, serverPort: flow.serverPort, expect: { verdict: c.verdict, protocol: c.protocol } };
  if (flow.transport === 'tcp') {
    out.client = b64(flow.client);
    out.server = b64(flow.server);
  } else {
    out.clientDatagrams = flow.clientDatagrams.map(b64);
    out.serverDatagrams = flow.serverDatagrams.map(b64);
  }
  return out;
}

const tcp = (c: Capture, serverPort: number): FlowBytes => flowBytes({ transport: 'tcp', clientPort: 40000, serverPort, client: c.client, server: c.server });
const udp = (c: Uint8Array[], s: Uint8Array[], serverPort: number): FlowBytes =>
  flowBytes({ transport: 'udp', clientPort: 40000, serverPort, clientDatagrams: c, serverDatagrams: s });

/** A packet capture on lo limited to `ports`; stop() resolves once the file is complete. */
async function startCapture(tool: 'tcpdump' | 'dumpcap', file: string, ports: number[]): Promise<{ stop: () => Promise<void> }> {
  const filter = ports.map((p) => `port ${p}`).join(' or ');
  const args = tool === 'tcpdump' ? ['-i', 'lo', '-U', '-s', '0', '-w', file, filter] : ['-i', 'lo', '-q', '-w', file, '-f', filter];
  const child: ChildProcess = spawn(tool, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${tool} did not start`)), 10_000);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/listening on|Capturing on/i.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`${tool} exited: ${err}`)));
  });
  // dumpcap prints before its filter is live; give both a moment.
  await new Promise((r) => setTimeout(r, 500));
  return {
    stop: async () => {
      await new Promise((r) => setTimeout(r, 500));
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
    },
  };
}

/** Records the corpus into `dir` (needs root for the captures, openssl, tcpdump, dumpcap). */
export async function makeCorpus(dir: URL = CORPUS_DIR): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const seeds: SeedFlowJson[] = [];
  const pki = makePki();
  const cert = selfSigned();
  const work = mkdtempSync(join(tmpdir(), 'plainsight-fuzz-corpus-'));
  try {
    // --- servers and relays first, so the captures can filter on the relays' ports ---
    const tlsOpts = { key: pki.pem(pki.serverKey), cert: pki.pem(pki.serverCert), ca: pki.pem(pki.caCert) };
    const tls13 = await nodeServer({ ...tlsOpts, ALPNProtocols: ['h2', 'http/1.1'] });
    const tls12 = await nodeServer({ ...tlsOpts, maxVersion: 'TLSv1.2', requestCert: true, rejectUnauthorized: false });
    const mtls13 = await nodeServer({ ...tlsOpts, requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['istio-peer-exchange', 'h2'] });
    const tlsRelays = [await Relay.start(tls13.port), await Relay.start(tls12.port), await Relay.start(mtls13.port)];

    const httpServer = http.createServer((req, res) => res.end('hello\n'));
    await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
    const h2Server = http2.createServer();
    h2Server.on('stream', (s) => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' });
      s.end('x');
    });
    await new Promise<void>((r) => h2Server.listen(0, '127.0.0.1', r));
    const httpRelay = await tcpRelay((httpServer.address() as net.AddressInfo).port);
    const h2Relay = await tcpRelay((h2Server.address() as net.AddressInfo).port);

    const sshServer = net.createServer((s) => {
      s.write('SSH-2.0-FakeServer_1.0\r\n');
      s.on('data', () => undefined);
      setTimeout(() => s.destroy(), 1500);
    });
    await new Promise<void>((r) => sshServer.listen(0, '127.0.0.1', r));
    const sshRelay = await tcpRelay((sshServer.address() as net.AddressInfo).port);

    // DNS: answers every query with its own question (QR set, NOERROR, no records).
    const dnsServer = dgram.createSocket('udp4');
    dnsServer.on('message', (m, rinfo) => {
      const r = Buffer.from(m);
      r[2] |= 0x80;
      dnsServer.send(r, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => dnsServer.bind(0, '127.0.0.1', r));
    const dnsRelay = await udpRelay(dnsServer.address().port);

    const dtlsPort = await freeUdpPort();
    const dtlsServer = spawn('openssl', ['s_server', '-dtls1_2', '-accept', String(dtlsPort), '-cert', cert.certFile, '-key', cert.keyFile], { stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 3000);
      dtlsServer.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('ACCEPT')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const dtlsRelay = await udpRelay(dtlsPort);

    // IPv6 on ::1, so the captures hold IPv6 packets for the decoder too.
    const v6Server = net.createServer((s) => s.end('220 v6.example ESMTP ready\r\n'));
    await new Promise<void>((r) => v6Server.listen(0, '::1', r));
    const v6Port = (v6Server.address() as net.AddressInfo).port;

    // The captures hold a few small exchanges only: every fuzz input re-reads the whole file.
    const capturedPorts = [tlsRelays[0]!.port, httpRelay.port, dnsRelay.port, dtlsRelay.port, v6Port];
    const pcapFile = join(work, 'lo.pcap');
    const pcapngFile = join(work, 'lo.pcapng');
    const caps = [await startCapture('tcpdump', pcapFile, capturedPorts), await startCapture('dumpcap', pcapngFile, capturedPorts)];

    // --- clients ---
    const caOpts = { ca: pki.pem(pki.caCert), servername: 'api.example' };
    seeds.push(seed('tls13-h2', tcp(await nodeClient(tlsRelays[0]!, { ...caOpts, ALPNProtocols: ['h2', 'http/1.1'] }), 443)));
    seeds.push(seed('tls12-no-client-cert', tcp(await nodeClient(tlsRelays[1]!, caOpts), 443)));
    seeds.push(seed('tls12-mtls-rsa', tcp(await nodeClient(tlsRelays[1]!, { ...caOpts, cert: pki.pem(pki.clientRsaCert), key: pki.pem(pki.clientRsaKey) }), 443)));
    seeds.push(seed('tls13-mtls-ec', tcp(await nodeClient(tlsRelays[2]!, { ...caOpts, cert: pki.pem(pki.clientEcCert), key: pki.pem(pki.clientEcKey), ALPNProtocols: ['istio-peer-exchange', 'h2'] }), 15008)));
    seeds.push(seed('tls13-p384', tcp(await nodeClient(tlsRelays[0]!, { ...caOpts, ecdhCurve: 'P-384' }), 443)));

    await new Promise<void>((resolve) => {
      http.get({ host: '127.0.0.1', port: httpRelay.port, path: '/fuzz?q=1', headers: { 'user-agent': 'plainsight-fuzz' } }, (res) => {
        res.resume();
        res.on('end', resolve);
      }).on('error', () => resolve());
    });
    await new Promise<void>((resolve) => {
      const c = http2.connect(`http://127.0.0.1:${h2Relay.port}`);
      c.on('error', () => resolve());
      const req = c.request({ ':path': '/pkg.Svc/Method', ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' });
      req.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
      req.resume();
      req.on('end', () => c.close(() => resolve()));
      req.on('error', () => c.close(() => resolve()));
    });
    for (const [name, rec] of [['http1', (await httpRelay.settled(1, 5000))[0]], ['h2c-grpc', (await h2Relay.settled(1, 5000))[0]]] as const) {
      if (rec) seeds.push(seed(name, tcp(rec, name === 'http1' ? 80 : 50051)));
    }

    if (have('ssh')) {
      await run('ssh', ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=3', '-p', String(sshRelay.port), 'fuzz@127.0.0.1', 'true'], 8000);
      const rec = (await sshRelay.settled(1, 5000))[0];
      if (rec) seeds.push(seed('ssh-openssh', tcp(rec, 22)));
    }

    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([`127.0.0.1:${dnsRelay.port}`]);
    await resolver.resolve4('fuzz.example.com').catch(() => undefined);
    await resolver.resolveTxt('_x.fuzz.example').catch(() => undefined);
    seeds.push(seed('dns', udp(dnsRelay.recorded.client, dnsRelay.recorded.server, 53)));

    await run('openssl', ['s_client', '-dtls1_2', '-connect', `127.0.0.1:${dtlsRelay.port}`, '-servername', 'dtls.example'], 8000);
    dtlsServer.kill('SIGKILL');
    seeds.push(seed('dtls12', udp(dtlsRelay.recorded.client, dtlsRelay.recorded.server, 4433)));

    const v6 = await new Promise<Capture>((resolve) => {
      const got: Buffer[] = [];
      const s = net.connect({ host: '::1', port: v6Port }, () => s.end('EHLO fuzz\r\n'));
      s.on('data', (d) => got.push(d));
      s.on('close', () => resolve({ client: Buffer.from('EHLO fuzz\r\n'), server: Buffer.concat(got) }));
      s.on('error', () => undefined);
    });
    seeds.push(seed('smtp-greeting', tcp(v6, 25)));

    for (const c of caps) await c.stop();
    writeFileSync(new URL('loopback.pcap.bin', dir), readFileSync(pcapFile));
    writeFileSync(new URL('loopback.pcapng.bin', dir), readFileSync(pcapngFile));

    // STARTTLS: the real TLS 1.3 handshake above behind an SMTP negotiation.
    const real = seeds.find((s) => s.name === 'tls13-h2')!;
    const smtpC = Buffer.concat([Buffer.from('EHLO fuzz.example\r\nSTARTTLS\r\n'), unb64(real.client!)]);
    const smtpS = Buffer.concat([Buffer.from('220 mx.example ESMTP\r\n250-mx.example\r\n250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n'), unb64(real.server!)]);
    seeds.push(seed('smtp-starttls', tcp({ client: smtpC, server: smtpS }, 25)));

    seeds.push(seed('quic-v1', udp([RFC9001_CLIENT_INITIAL], [RFC9001_SERVER_INITIAL], 443)));
    seeds.push(seed('quic-v2', udp([RFC9369_CLIENT_INITIAL], [], 443)));
    seeds.push(seed('wireguard', udp([wgInitiation()], [wgResponse()], 51820)));
    seeds.push(seed('openvpn-udp', udp([ovpnReset(7)], [ovpnReset(8)], 1194)));
    const ike = Buffer.concat([randomBytes(8), Buffer.alloc(8), Buffer.from([33, 0x20, 34, 0x08, 0, 0, 0, 0, 0, 0, 1, 44]), Buffer.alloc(300 - 28)]);
    seeds.push(seed('ike', udp([ike], [], 500)));
    PLAINTEXT_STARTS.forEach((p, i) => seeds.push(seed(`plaintext-${i}`, tcp({ client: p, server: new Uint8Array(0) }, 0))));

    for (const r of tlsRelays) await r.close();
    for (const s of [tls13, tls12, mtls13]) await s.close();
    for (const r of [httpRelay, h2Relay, sshRelay]) await r.close();
    await dnsRelay.close();
    await dtlsRelay.close();
    dnsServer.close();
    for (const s of [httpServer, sshServer, v6Server]) s.close();
    h2Server.close();
  } finally {
    pki.cleanup();
    cert.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
  writeFileSync(new URL('flows.json', dir), JSON.stringify(seeds, null, 1) + '\n');
  return seeds.map((s) => `${s.name}: ${s.expect.verdict}/${s.expect.protocol}`);
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function wgInitiation(): Uint8Array {
  const m = randomBytes(148);
  m.set([1, 0, 0, 0], 0);
  m.writeUInt32LE(7, 4);
  m.fill(0, 132);
  return m;
}

function wgResponse(): Uint8Array {
  const m = randomBytes(92);
  m.set([2, 0, 0, 0], 0);
  m.writeUInt32LE(9, 4);
  m.writeUInt32LE(7, 8);
  m.fill(0, 76);
  return m;
}

/** OpenVPN P_CONTROL_HARD_RESET_{CLIENT,SERVER}_V2, plain layout. */
function ovpnReset(opcode: number): Uint8Array {
  return Buffer.concat([Buffer.from([opcode << 3]), randomBytes(8), Buffer.from([0, 0, 0, 0, 0])]);
}
