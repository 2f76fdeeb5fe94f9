#!/usr/bin/env node
// New-flow churn for the soak (bench/soak/run.mjs) and its CI test
// (test/integration/agent-soak.test.ts). Run inside a pod's network namespace:
//
//   node load.mjs server                              TCP :9000, TLS :9443; prints {"up":true}
//   node load.mjs tcp|tls|udp '{"host":…,"seconds":…,"concurrency":…}'
//
// Clients print one JSON line per second with cumulative counts ({"kind","n","errors"}),
// so the caller can compute the rate it really achieved, and a last line with "done".
// The TCP request/reply mirror bench/datapath (5-byte request, 2-byte reply, server closes
// first, so TIME_WAIT stays on the server and clients never run out of ports). TLS
// connections do a full handshake (no session reuse) so every one carries a ClientHello.
// UDP sends one DNS query per flow to a rotating destination port: each datagram is a new
// flow that only idle expiry ends (no listener: the kernel answers port unreachable).

import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

const [role, arg] = process.argv.slice(2);
const o = arg ? JSON.parse(arg) : {};
const emit = (x) => process.stdout.write(`${JSON.stringify(x)}\n`);

const TCP_PORT = 9000;
const TLS_PORT = 9443;

function selfSigned() {
  const dir = mkdtempSync(join(tmpdir(), 'ps-soak-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', '/CN=soak.lab', '-addext', 'subjectAltName=DNS:soak.lab', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function server() {
  let pending = 2;
  const up = () => --pending === 0 && emit({ up: true });
  net
    .createServer((s) => {
      s.once('data', () => s.end('ok'));
      s.on('error', () => {});
    })
    .listen(TCP_PORT, up);
  tls
    .createServer({ ...selfSigned(), ALPNProtocols: ['http/1.1'] }, (s) => {
      s.once('data', () => s.end('pong'));
      s.on('error', () => {});
    })
    .on('tlsClientError', () => {})
    .listen(TLS_PORT, up);
}

/** `conc` loops of one connection after another until the deadline; counts completed ones. */
function churn(kind, connect) {
  let n = 0;
  let errors = 0;
  const end = Date.now() + o.seconds * 1000;
  const one = () => {
    if (Date.now() > end) return;
    const s = connect();
    s.on('data', () => {});
    s.on('end', () => s.end());
    s.on('error', () => errors++);
    s.on('close', (hadError) => {
      if (!hadError) n++;
      // setImmediate: a refused connection must not recurse synchronously.
      setImmediate(one);
    });
  };
  for (let i = 0; i < (o.concurrency ?? 64); i++) one();
  report(kind, () => ({ n, errors }), end);
}

function report(kind, counts, end) {
  const tick = setInterval(() => emit({ kind, ...counts() }), 1000);
  setTimeout(() => {
    clearInterval(tick);
    emit({ kind, ...counts(), done: true });
    process.exit(0);
  }, end - Date.now() + 1500);
}

// A DNS query (A record of soak.lab): classified as plaintext dns by the agent.
const DNS_QUERY = Buffer.from('123401000001000000000000' + '04736f616b036c61620000010001', 'hex');

function udp() {
  const sock = dgram.createSocket('udp4');
  let n = 0;
  let errors = 0;
  let port = 0;
  const end = Date.now() + o.seconds * 1000;
  const perTick = Math.max(1, Math.round((o.rate ?? 500) / 100));
  sock.on('error', () => errors++);
  // 40k destination ports: at 500/s a port comes back after 80 s, well after the idle
  // timeout, so every datagram is a new flow.
  const timer = setInterval(() => {
    if (Date.now() > end) return clearInterval(timer);
    for (let i = 0; i < perTick; i++) {
      sock.send(DNS_QUERY, 20000 + (port++ % 40000), o.host, (err) => (err ? errors++ : n++));
    }
  }, 10);
  report('udp', () => ({ n, errors }), end);
}

const roles = {
  server,
  tcp: () =>
    churn('tcp', () => {
      const s = net.connect(TCP_PORT, o.host, () => s.write('hello'));
      return s;
    }),
  tls: () =>
    churn('tls', () => {
      const s = tls.connect({ port: TLS_PORT, host: o.host, servername: 'soak.lab', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => s.write('ping'));
      return s;
    }),
  udp,
};
if (!roles[role]) {
  process.stderr.write(`usage: load.mjs server|tcp|tls|udp '{"host":…,"seconds":…}'\n`);
  process.exit(2);
}
roles[role]();
