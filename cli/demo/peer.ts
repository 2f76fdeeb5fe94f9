// The demo's small servers, sidecars, proxies and clients, run inside the "pods" (network
// namespaces) as `node dist/cli/demo/peer.js ROLE '{"json":"options"}'`. Real TLS stacks
// (Node's OpenSSL) with the handshakes meshes use; the bytes they carry are plain HTTP.
//
// Servers and proxies run until killed (the demo kills their process group). Clients loop:
// one fresh connection per round, `count` rounds at most, `intervalMs` apart, and exit
// before `deadlineMs` whatever happens — the demo's traffic is bounded in count and time.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';

interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
  minVersion?: tls.SecureVersion;
  maxVersion?: tls.SecureVersion;
  alpn?: string[];
  servername?: string;
  requestCert?: boolean;
}

interface Options extends TlsFiles {
  port?: number;
  host?: string;
  /** Upstream host:port (sidecars, proxies). */
  upstream?: { host: string; port: number; tls?: TlsFiles };
  /** Client: where to connect. */
  target?: { host: string; port: number };
  /** Client: HTTP request target in absolute form (http_proxy style). */
  proxyUrl?: string;
  count?: number;
  intervalMs?: number;
  deadlineMs?: number;
  /** Client: bytes of request body. */
  bodyBytes?: number;
  responseBytes?: number;
}

const [role, json] = process.argv.slice(2);
const o = JSON.parse(json ?? '{}') as Options;

function fail(msg: string): never {
  process.stderr.write(`demo peer ${role}: ${msg}\n`);
  process.exit(1);
}
process.on('uncaughtException', (e) => fail(e.stack ?? String(e)));
setTimeout(() => process.exit(0), o.deadlineMs ?? 10 * 60_000).unref();

function tlsOptions(x: TlsFiles): tls.SecureContextOptions & tls.TlsOptions & tls.ConnectionOptions {
  const read = (p?: string) => (p ? readFileSync(p) : undefined);
  const out: Record<string, unknown> = {
    cert: read(x.cert),
    key: read(x.key),
    ca: read(x.ca),
    minVersion: x.minVersion,
    maxVersion: x.maxVersion,
    ALPNProtocols: x.alpn,
    servername: x.servername,
    requestCert: x.requestCert,
    rejectUnauthorized: true,
    // Meshes verify workload identities (SPIFFE URIs), not host names.
    checkServerIdentity: () => undefined,
  };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

function connectUpstream(u: NonNullable<Options['upstream']>): net.Socket {
  return u.tls ? tls.connect({ host: u.host, port: u.port, ...tlsOptions(u.tls) }) : net.connect(u.port, u.host);
}

/** Byte-for-byte relay between a client socket and its upstream. */
function relay(down: net.Socket, up: net.Socket): void {
  down.pipe(up);
  up.pipe(down);
  const end = (): void => {
    down.destroy();
    up.destroy();
  };
  down.on('error', end).on('close', end);
  up.on('error', end).on('close', end);
}

function listening(server: net.Server): void {
  server.listen({ port: o.port, host: o.host ?? '0.0.0.0' }, () => process.stdout.write('{"event":"listening"}\n'));
  setInterval(() => {}, 1 << 30);
}

const body = (n: number): Buffer => Buffer.alloc(n, 0x61);

function request(path: string, host: string): string {
  const b = o.bodyBytes ?? 0;
  return `${b ? 'POST' : 'GET'} ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: plainsight-demo\r\nContent-Length: ${b}\r\nConnection: close\r\n\r\n`;
}

/** One request/response over `s` (already connecting): resolves when the server closed. */
function exchange(s: net.Socket, req: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = (): void => {
      s.write(req);
      if (o.bodyBytes) s.write(body(o.bodyBytes));
    };
    if (s instanceof tls.TLSSocket) s.once('secureConnect', start);
    else s.once('connect', start);
    s.on('data', () => undefined);
    s.on('end', () => s.end());
    s.on('error', reject);
    s.on('close', () => resolve());
  });
}

async function loop(round: () => Promise<void>): Promise<never> {
  const count = o.count ?? 20;
  let failures = 0;
  for (let i = 0; i < count; i++) {
    try {
      await round();
    } catch (e) {
      failures++;
      process.stderr.write(`demo peer ${role}: round ${i} failed: ${String(e)}\n`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 1000));
  }
  process.exit(failures === count ? 1 : 0);
}

const roles: Record<string, () => void | Promise<void>> = {
  // A plain HTTP/1.1 app.
  'http-server'() {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end(body(o.responseBytes ?? 512)));
    });
    listening(server);
  },
  // Inbound sidecar / remote proxy: TLS in (optionally requiring a client certificate), plain out.
  'tls-relay'() {
    const server = tls.createServer({ ...tlsOptions(o), rejectUnauthorized: Boolean(o.requestCert) }, (s) => relay(s, connectUpstream(o.upstream!)));
    server.on('tlsClientError', () => undefined);
    listening(server);
  },
  // Outbound sidecar / node-local proxy: plain in, plain or TLS out.
  relay() {
    listening(net.createServer((s) => relay(s, connectUpstream(o.upstream!))));
  },
  // A client making one HTTP request per round, over plain TCP or TLS, directly or through a proxy.
  async client() {
    const t = o.target!;
    const tlsOpts = o.cert || o.ca ? tlsOptions(o) : undefined;
    await loop(() => {
      const s = tlsOpts ? tls.connect({ host: t.host, port: t.port, ...tlsOpts }) : net.connect(t.port, t.host);
      return exchange(s, request(o.proxyUrl ?? '/', o.servername ?? t.host));
    });
  },
};

const fn = role === undefined ? undefined : roles[role];
if (!fn) fail(`unknown role; one of ${Object.keys(roles).join(', ')}`);
await fn();
