// Traffic servers for the classify benchmark. Runs INSIDE the server network
// namespace (started by generate.mjs via `ip netns exec`), never on its own.
//
//   node servers.mjs '{"host":"198.18.0.1","cert":"…","key":"…","ca":"…","ports":{…}}'
//
// Prints one line "READY" on stdout once every listener is up.
import http from 'node:http';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const cfg = JSON.parse(process.argv[2]);
const cert = readFileSync(cfg.cert);
const key = readFileSync(cfg.key);
const ca = readFileSync(cfg.ca);

// One MiB of incompressible bytes, repeated for bulk responses.
const CHUNK = randomBytes(1 << 20);
const FILLER = 'plainsight-bench '.repeat(256); // 4352 chars of text for small pages

function handler(req, res) {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/bulk') {
    const total = Number(url.searchParams.get('bytes')) || 0;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(CHUNK.length, total - sent);
        sent += n;
        if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
    return;
  }
  // Everything else: read the (small or bulk) request body, answer a small page whose
  // size depends on the path so responses are not all identical.
  let received = 0;
  req.on('data', (d) => { received += d.length; });
  req.on('end', () => {
    const size = 120 + (hash(url.pathname + url.search) % 3000);
    const body = JSON.stringify({ path: url.pathname, method: req.method, received, pad: FILLER.slice(0, size) });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

const servers = [
  http.createServer(handler).listen(cfg.ports.http, cfg.host),
  // TLS 1.3 only
  https.createServer({ cert, key, minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] }, handler)
    .listen(cfg.ports.tls13, cfg.host),
  // TLS 1.2 only
  https.createServer({ cert, key, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }, handler)
    .listen(cfg.ports.tls12, cfg.host),
  // mutual TLS (client certificate required), TLS 1.2 and 1.3 both allowed
  https.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }, handler)
    .listen(cfg.ports.mtls, cfg.host),
];

let pending = servers.length;
for (const s of servers) {
  s.keepAliveTimeout = 1000;
  s.on('listening', () => { if (--pending === 0) process.stdout.write('READY\n'); });
  s.on('error', (e) => { console.error(`servers: ${e.message}`); process.exit(1); });
  s.on('tlsClientError', () => {}); // a client giving up mid-handshake is not our problem
}
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
