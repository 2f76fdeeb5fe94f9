// Traffic clients for the classify benchmark. Runs INSIDE the client network
// namespace (started by generate.mjs via `ip netns exec`), never on its own.
//
//   node clients.mjs '<json plan>'
//
// Every loop is bounded. Short flows each use a NEW connection (agent:false →
// "Connection: close"). Progress goes to stdout as JSON lines:
//   {"progress":{...}}  about once a second
//   {"done":{...}}      at the end (exit 0), or exit 1 if too many requests failed
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { readFileSync } from 'node:fs';

const plan = JSON.parse(process.argv[2]);
const ca = readFileSync(plan.ca);
const clientCert = readFileSync(plan.clientCert);
const clientKey = readFileSync(plan.clientKey);
const SNI = plan.sni;

const done = { http: 0, tls12: 0, tls13: 0, mtls: 0, redis: 0, bulk: 0 };
const failed = { http: 0, tls12: 0, tls13: 0, mtls: 0, redis: 0, bulk: 0 };
const errors = new Map();
let bulkBytes = 0;

function noteError(kind, err) {
  failed[kind]++;
  const k = `${kind}: ${err.code || err.message}`;
  errors.set(k, (errors.get(k) || 0) + 1);
}

// A request on a fresh connection; resolves with the number of body bytes received.
function request(kind, opts, body) {
  const mod = kind === 'http' ? http : https;
  return new Promise((resolve, reject) => {
    const req = mod.request({ host: plan.host, agent: false, timeout: 30000, ...opts }, (res) => {
      let n = 0;
      res.on('data', (d) => { n += d.length; });
      res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body === undefined) return req.end();
    if (typeof body === 'number') return writeBulk(req, body);
    req.end(body);
  });
}

const UPLOAD_CHUNK = Buffer.alloc(1 << 20, 'u');
function writeBulk(req, total) {
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const n = Math.min(UPLOAD_CHUNK.length, total - sent);
      sent += n;
      if (!req.write(n === UPLOAD_CHUNK.length ? UPLOAD_CHUNK : UPLOAD_CHUNK.subarray(0, n))) {
        req.once('drain', pump);
        return;
      }
    }
    req.end();
  };
  pump();
}

const PATHS = ['/', '/api/v1/orders', '/api/v1/users/42', '/healthz', '/metrics', '/static/app.js', '/search?q=plainsight'];
const tlsCommon = { ca, servername: SNI };

function shortOne(kind, i) {
  const path = `${PATHS[i % PATHS.length]}${PATHS[i % PATHS.length].includes('?') ? '&' : '?'}i=${i}`;
  const post = i % 5 === 0;
  const body = post ? JSON.stringify({ i, item: 'widget', qty: i % 7 }) : undefined;
  const opts = { path, method: post ? 'POST' : 'GET', headers: { 'user-agent': 'plainsight-bench/1', ...(post ? { 'content-type': 'application/json' } : {}) } };
  switch (kind) {
    case 'http':
      return request('http', { ...opts, port: plan.ports.http }, body);
    case 'tls13':
      return request('tls13', { ...opts, ...tlsCommon, port: plan.ports.tls13, ...(i % 2 ? { ALPNProtocols: ['http/1.1'] } : {}) }, body);
    case 'tls12':
      return request('tls12', { ...opts, ...tlsCommon, port: plan.ports.tls12, ...(i % 2 ? { ALPNProtocols: ['http/1.1'] } : {}) }, body);
    case 'mtls':
      return request('mtls', { ...opts, ...tlsCommon, port: plan.ports.mtls, cert: clientCert, key: clientKey,
        ...(i % 2 ? { maxVersion: 'TLSv1.2' } : {}) }, body);
    case 'redis':
      return redisOne(i);
    default:
      throw new Error(`unknown kind ${kind}`);
  }
}

// PING, SET, GET, QUIT on a fresh connection; the server closes after QUIT.
function redisOne(i) {
  const cmd = (...a) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(String(x))}\r\n${x}\r\n`).join('')}`;
  const value = `value-${i}-${'x'.repeat(i % 200)}`;
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: plan.host, port: plan.ports.redis });
    let got = '';
    s.setTimeout(30000, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.write(cmd('PING') + cmd('SET', `bench:${i}`, value) + cmd('GET', `bench:${i}`) + cmd('QUIT')));
    s.on('data', (d) => { got += d; });
    s.on('error', reject);
    s.on('close', () => (got.startsWith('+PONG') && got.includes(value) ? resolve(got.length) : reject(new Error('bad redis reply'))));
  });
}

async function pool(kind, total, concurrency) {
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      try { await shortOne(kind, i); done[kind]++; } catch (e) { noteError(kind, e); }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
}

async function bulkOne(b) {
  const port = plan.ports[b.proto];
  const opts = b.proto === 'http' ? { port } : { port, ...tlsCommon };
  try {
    if (b.dir === 'get') {
      const n = await request(b.proto === 'http' ? 'http' : 'tls', { ...opts, path: `/bulk?bytes=${b.bytes}` });
      if (n !== b.bytes) throw new Error(`short bulk read ${n}/${b.bytes}`);
      bulkBytes += n;
    } else {
      await request(b.proto === 'http' ? 'http' : 'tls', { ...opts, path: '/upload', method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'content-length': b.bytes } }, b.bytes);
      bulkBytes += b.bytes;
    }
    done.bulk++;
  } catch (e) { noteError('bulk', e); }
}

const t0 = Date.now();
const ticker = setInterval(() => {
  process.stdout.write(JSON.stringify({ progress: { seconds: (Date.now() - t0) / 1000, done, failed, bulkMiB: +(bulkBytes / 1048576).toFixed(1) } }) + '\n');
}, 1000);

// Bulk transfers start staggered, interleaved with the short flows.
const bulk = plan.bulk.map((b, k) => new Promise((r) => setTimeout(r, 300 + k * 700)).then(() => bulkOne(b)));
await Promise.all([
  ...Object.entries(plan.short).map(([kind, n]) => pool(kind, n, plan.concurrency)),
  ...bulk,
]);
clearInterval(ticker);

const totalDone = Object.values(done).reduce((a, b) => a + b, 0);
const totalFailed = Object.values(failed).reduce((a, b) => a + b, 0);
process.stdout.write(JSON.stringify({ done: { seconds: (Date.now() - t0) / 1000, done, failed, bulkBytes, errors: Object.fromEntries(errors) } }) + '\n');
// A few failures (e.g. a reset under load) are tolerable; a failing bulk transfer or >1% is not.
process.exit(failed.bulk > 0 || totalFailed > 0.01 * (totalDone + totalFailed) ? 1 : 0);
