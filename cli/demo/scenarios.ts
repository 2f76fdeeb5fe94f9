// What the demo builds and what plainsight should say about it. Each scenario is real
// software in "pods" (network namespaces) with the handshakes production meshes use:
//
//   1 Consul Connect   gateway ─HTTP─▶ web:8080 (plaintext, flagged)
//                      gateway ─TLS 1.2 + client cert, SNI web.default.dc1.internal.<id>.consul─▶ web sidecar :21000
//                      web sidecar ─HTTP over the pod's loopback─▶ web app :8080 (intra-pod, expected)
//   2 Istio            sleep app ─lo─▶ sleep sidecar ─TLS 1.3 mTLS, ALPN istio-peer-exchange/istio,
//                      SNI outbound_.8000_._.httpbin.default.svc.cluster.local─▶ httpbin sidecar :15006 ─lo─▶ httpbin :8000
//   3 node proxies     shop ─HTTP (http_proxy)─▶ node-local proxy :3128 (node-1) ─TLS :4141─▶ proxy (node-2) ─HTTP─▶ api :8080
//   4 egress           egress ─HTTP─▶ internet :80; ─TLS, SNI api.example.com─▶ :443; ─mTLS─▶ nginx (ssl_verify_client on)
//   + databases        billing ─SSLRequest + TLS─▶ postgres :5432; billing ─RESP─▶ redis :6379 (plaintext)

import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { demoCerts, type CertFiles } from './certs.js';
import { nginxConfig } from './nginx.js';
import type { DemoLab, Pod, Proc } from './lab.js';

export const PEER = fileURLToPath(new URL('./peer.js', import.meta.url));

export const CONSUL_SNI = 'web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul';
export const ISTIO_SNI = 'outbound_.8000_._.httpbin.default.svc.cluster.local';
export const ISTIO_ALPN = ['istio-peer-exchange', 'istio'];
export const EGRESS_SNI = 'api.example.com';
export const NGINX_SNI = 'partner.example.com';
const INTERNET = { http: '198.19.80.80', nginx: '198.19.80.81' };

/** One hop the demo makes, and the verdict plainsight should give it. */
export interface Expectation {
  scenario: string;
  hop: string;
  /** Client pod short name. */
  client: string;
  /** Server pod short name, or `external:<ip>`. */
  server: string;
  port: number;
  /** Pod loopback (app ↔ sidecar): seen by the agent's socket filter in `client`'s pod. */
  intraPod?: boolean;
  verdict: string[];
  mesh?: string;
  upgradedFrom?: string;
  protocol?: string;
  sni?: string;
  tlsVersion?: string;
}

export const SCENARIOS: Record<string, string> = {
  '1': 'Consul Connect: gateway → web (plain HTTP and sidecar mTLS), sidecar → app on loopback',
  '2': 'Istio sidecars: sleep → httpbin, TLS 1.3 mTLS',
  '3': 'node-local proxies: pod → node proxy (plain), proxy → proxy across nodes on 4141',
  '4': 'egress: plain HTTP, TLS origination, mTLS origination to nginx',
  db: 'databases: PostgreSQL with SSLRequest, Redis in plaintext',
};

export const EXPECTATIONS: Expectation[] = [
  { scenario: '1', hop: 'gateway → web app over plain HTTP', client: 'gateway', server: 'web', port: 8080, verdict: ['plaintext'], protocol: 'http/1.1' },
  { scenario: '1', hop: 'gateway → web sidecar (Consul Connect)', client: 'gateway', server: 'web', port: 21000, verdict: ['mtls'], mesh: 'consul', sni: CONSUL_SNI, tlsVersion: '1.2' },
  { scenario: '1', hop: 'web sidecar → web app (pod loopback)', client: 'web', server: 'web', port: 8080, intraPod: true, verdict: ['plaintext'] },
  { scenario: '2', hop: 'sleep app → its sidecar (pod loopback)', client: 'sleep', server: 'sleep', port: 15001, intraPod: true, verdict: ['plaintext'] },
  { scenario: '2', hop: 'sleep sidecar → httpbin sidecar (Istio mTLS)', client: 'sleep', server: 'httpbin', port: 15006, verdict: ['mtls'], mesh: 'istio', sni: ISTIO_SNI, tlsVersion: '1.3' },
  { scenario: '2', hop: 'httpbin sidecar → httpbin app (pod loopback)', client: 'httpbin', server: 'httpbin', port: 8000, intraPod: true, verdict: ['plaintext'] },
  { scenario: '3', hop: 'shop → node-local proxy (http_proxy, node-1)', client: 'shop', server: 'node1-proxy', port: 3128, verdict: ['plaintext'], protocol: 'http/1.1' },
  { scenario: '3', hop: 'node-1 proxy → node-2 proxy (TLS on 4141)', client: 'node1-proxy', server: 'node2-proxy', port: 4141, verdict: ['tls', 'mtls'] },
  { scenario: '3', hop: 'node-local proxy → api (node-2)', client: 'node2-proxy', server: 'api', port: 8080, verdict: ['plaintext'] },
  { scenario: '4', hop: 'egress → internet, plain HTTP', client: 'egress', server: `external:${INTERNET.http}`, port: 80, verdict: ['plaintext'], protocol: 'http/1.1' },
  { scenario: '4', hop: 'egress → internet, TLS origination', client: 'egress', server: `external:${INTERNET.http}`, port: 443, verdict: ['tls'], sni: EGRESS_SNI },
  { scenario: '4', hop: 'egress → nginx, mutual TLS origination', client: 'egress', server: `external:${INTERNET.nginx}`, port: 443, verdict: ['mtls'], sni: NGINX_SNI },
  { scenario: 'db', hop: 'billing → postgres (psql sslmode=require)', client: 'billing', server: 'postgres', port: 5432, verdict: ['tls'], upgradedFrom: 'postgresql' },
  { scenario: 'db', hop: 'billing → redis (plaintext RESP)', client: 'billing', server: 'redis', port: 6379, verdict: ['plaintext'], protocol: 'redis' },
];

/** Binaries the demo runs, with the Debian package that has each. */
export function missingTools(): { tool: string; pkg: string }[] {
  const want: [string, string][] = [
    ['ip', 'iproute2'],
    ['setpriv', 'util-linux'],
    ['openssl', 'openssl'],
    ['nginx', 'nginx-light'],
    ['redis-server', 'redis-server'],
    ['redis-cli', 'redis-tools'],
  ];
  const out: { tool: string; pkg: string }[] = [];
  for (const [tool, pkg] of want) if (!onPath(tool)) out.push({ tool, pkg });
  if (!pgBin()) out.push({ tool: 'postgres', pkg: 'postgresql' });
  return out;
}

export function onPath(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** /usr/lib/postgresql/<newest>/bin when it has initdb, postgres and psql. */
export function pgBin(): string | undefined {
  try {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const bin = `/usr/lib/postgresql/${v}/bin`;
      if (['initdb', 'postgres', 'psql'].every((b) => existsSync(join(bin, b)))) return bin;
    }
  } catch {
    /* not installed */
  }
  return undefined;
}

export interface Topology {
  pods: Record<string, Pod>;
  internet: string;
  /** Netns names the agent observes (pods; not the internet). */
  podNetns: string[];
}

/** The two nodes, their pods, and the internet. */
export function buildTopology(lab: DemoLab): Topology {
  lab.node('node1');
  lab.node('node2');
  const pods: Record<string, Pod> = {};
  const add = (name: string, node: string, ip: string): void => {
    pods[name] = lab.pod(name, node, [ip]);
  };
  // node-1
  add('gateway', 'node1', '198.18.1.10');
  add('web', 'node1', '198.18.1.11');
  add('sleep', 'node1', '198.18.1.12');
  add('httpbin', 'node1', '198.18.1.13');
  add('shop', 'node1', '198.18.1.14');
  add('node1-proxy', 'node1', '198.18.1.15');
  add('egress', 'node1', '198.18.1.16');
  add('billing', 'node1', '198.18.1.17');
  add('postgres', 'node1', '198.18.1.18');
  add('redis', 'node1', '198.18.1.19');
  // node-2
  add('node2-proxy', 'node2', '198.18.2.10');
  add('api', 'node2', '198.18.2.11');
  const podNetns = Object.values(pods).map((p) => p.netns);
  // The internet: reachable from node-1, not a pod (the agent does not observe it).
  const internet = lab.pod('internet', 'node1', [INTERNET.http, INTERNET.nginx]).netns;
  lab.pods.pop();
  return { pods, internet, podNetns };
}

function peer(lab: DemoLab, ns: string, role: string, o: Record<string, unknown>, name: string): Proc {
  return lab.exec(ns, [process.execPath, PEER, role, JSON.stringify(o)], { name });
}

async function server(lab: DemoLab, ns: string, port: number, role: string, o: Record<string, unknown>, name: string): Promise<Proc> {
  const p = peer(lab, ns, role, { port, ...o }, name);
  await lab.waitListen(ns, port, p);
  return p;
}

/** Starts every server, sidecar and proxy; resolves when all listen. */
export async function startServers(lab: DemoLab, topo: Topology): Promise<void> {
  const P = topo.pods;
  const ip = (n: string): string => P[n]!.ip;
  const sans = [
    `DNS:${CONSUL_SNI}`, `DNS:${EGRESS_SNI}`, `DNS:${NGINX_SNI}`, 'DNS:localhost', 'DNS:postgres',
    'URI:spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web',
    'URI:spiffe://cluster.local/ns/default/sa/httpbin',
  ];
  const { server: srv, client: cli } = await demoCerts(lab.dir, sans);
  certs = { server: srv, client: cli };
  const mtlsIn = { cert: srv.cert, key: srv.key, ca: srv.ca, requestCert: true };
  const mtlsOut = { cert: cli.cert, key: cli.key, ca: cli.ca };
  await Promise.all([
    // 1: the web app (plain HTTP, reachable from outside the pod too) and its Consul sidecar.
    server(lab, P.web!.netns, 8080, 'http-server', {}, 'web app'),
    server(lab, P.web!.netns, 21000, 'tls-relay', { ...mtlsIn, maxVersion: 'TLSv1.2', upstream: { host: '127.0.0.1', port: 8080 } }, 'web sidecar'),
    // 2: Istio-style sidecars on both pods.
    server(lab, P.httpbin!.netns, 8000, 'http-server', { host: '127.0.0.1' }, 'httpbin app'),
    server(lab, P.httpbin!.netns, 15006, 'tls-relay', { ...mtlsIn, minVersion: 'TLSv1.3', alpn: ISTIO_ALPN, upstream: { host: '127.0.0.1', port: 8000 } }, 'httpbin sidecar'),
    server(lab, P.sleep!.netns, 15001, 'relay', {
      host: '127.0.0.1',
      upstream: { host: ip('httpbin'), port: 15006, tls: { ...mtlsOut, minVersion: 'TLSv1.3', alpn: ISTIO_ALPN, servername: ISTIO_SNI } },
    }, 'sleep sidecar'),
    // 3: node-local proxies and the api on node-2.
    server(lab, P.api!.netns, 8080, 'http-server', {}, 'api'),
    server(lab, P['node2-proxy']!.netns, 4141, 'tls-relay', { ...mtlsIn, upstream: { host: ip('api'), port: 8080 } }, 'node-2 proxy'),
    server(lab, P['node1-proxy']!.netns, 3128, 'relay', { upstream: { host: ip('node2-proxy'), port: 4141, tls: { ...mtlsOut, servername: 'node2-proxy.demo' } } }, 'node-1 proxy'),
    // 4: the internet: plain HTTP, HTTPS with SNI, and nginx requiring client certificates.
    server(lab, topo.internet, 80, 'http-server', { host: INTERNET.http }, 'internet http'),
    server(lab, topo.internet, 443, 'tls-relay', { cert: srv.cert, key: srv.key, host: INTERNET.http, upstream: { host: INTERNET.http, port: 80 } }, 'internet https'),
    startNginx(lab, topo.internet, INTERNET.nginx, srv),
    // databases
    startPostgres(lab, P.postgres!.netns, ip('postgres'), srv),
    (async () => {
      const p = lab.exec(P.redis!.netns, ['redis-server', '--port', '6379', '--bind', ip('redis'), '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no', '--dir', lab.dir, '--logfile', ''], { name: 'redis-server' });
      await lab.waitListen(P.redis!.netns, 6379, p);
    })(),
  ]);
}

let certs: { server: CertFiles; client: CertFiles } | undefined;

async function startNginx(lab: DemoLab, ns: string, host: string, c: CertFiles): Promise<void> {
  const prefix = lab.path('nginx');
  mkdirSync(prefix, { recursive: true });
  writeFileSync(join(prefix, 'nginx.conf'), nginxConfig({ prefix, listen: [host], port: 443, certs: c, verifyClient: true, protocols: 'TLSv1.2' }));
  const p = lab.exec(ns, ['nginx', '-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', 'stderr'], { name: 'nginx' });
  await lab.waitListen(ns, 443, p);
}

async function startPostgres(lab: DemoLab, ns: string, host: string, c: CertFiles): Promise<void> {
  const bin = pgBin()!;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  chmodSync(lab.dir, 0o711); // postgres must traverse into its data directory
  const base = lab.path('pg');
  mkdirSync(base, { mode: 0o700 });
  chownSync(base, uid, gid);
  const data = join(base, 'data');
  await lab.run(ns, [`${bin}/initdb`, '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C'], { user: 'postgres', name: 'initdb', timeoutMs: 60_000 });
  appendFileSync(join(data, 'pg_hba.conf'), 'host all all 198.18.0.0/15 trust\n');
  for (const [src, dst] of [[c.cert, 'server.crt'], [c.key, 'server.key']] as const) {
    const p = join(data, dst);
    copyFileSync(src, p);
    chownSync(p, uid, gid);
    chmodSync(p, 0o600);
  }
  const p = lab.exec(
    ns,
    [
      `${bin}/postgres`, '-D', data, '-c', `listen_addresses=${host}`, '-c', 'port=5432', '-c', 'unix_socket_directories=',
      '-c', 'ssl=on', '-c', 'ssl_cert_file=server.crt', '-c', 'ssl_key_file=server.key',
      '-c', 'fsync=off', '-c', 'max_connections=20', '-c', 'shared_buffers=16MB', '-c', 'logging_collector=off',
    ],
    { user: 'postgres', name: 'postgres', stopSignal: 'SIGINT' },
  );
  await lab.waitListen(ns, 5432, p, 30_000);
}

/**
 * Starts the clients: one connection per round on each hop, `rounds` rounds `intervalMs`
 * apart, all gone by `deadlineMs`. Returns a stop function (kills the loops).
 */
export function startTraffic(lab: DemoLab, topo: Topology, o: { intervalMs: number; rounds: number; deadlineMs: number }): () => void {
  const P = topo.pods;
  const ip = (n: string): string => P[n]!.ip;
  const c = certs!;
  const mtlsOut = { cert: c.client.cert, key: c.client.key, ca: c.client.ca };
  const loop = { count: o.rounds, intervalMs: o.intervalMs, deadlineMs: o.deadlineMs };
  const clients: [string, Record<string, unknown>, string][] = [
    [P.gateway!.netns, { target: { host: ip('web'), port: 8080 } }, 'gateway http'],
    [P.gateway!.netns, { target: { host: ip('web'), port: 21000 }, ...mtlsOut, maxVersion: 'TLSv1.2', servername: CONSUL_SNI }, 'gateway consul'],
    [P.sleep!.netns, { target: { host: '127.0.0.1', port: 15001 } }, 'sleep app'],
    [P.shop!.netns, { target: { host: ip('node1-proxy'), port: 3128 }, proxyUrl: 'http://api.node2.demo/orders' }, 'shop'],
    [P.egress!.netns, { target: { host: INTERNET.http, port: 80 } }, 'egress http'],
    [P.egress!.netns, { target: { host: INTERNET.http, port: 443 }, ca: c.server.ca, servername: EGRESS_SNI }, 'egress https'],
    [P.egress!.netns, { target: { host: INTERNET.nginx, port: 443 }, ...mtlsOut, servername: NGINX_SNI }, 'egress mtls'],
  ];
  const procs: Proc[] = [];
  for (const [ns, opts, name] of clients) procs.push(peer(lab, ns, 'client', { ...opts, ...loop }, name));
  // Database clients: the real ones, one process per round.
  const bin = pgBin()!;
  const timers: NodeJS.Timeout[] = [];
  let rounds = 0;
  const end = Date.now() + o.deadlineMs;
  const tick = (): void => {
    if (rounds++ >= o.rounds || Date.now() > end) return;
    const conn = `host=${ip('postgres')} port=5432 user=postgres dbname=postgres sslmode=require gssencmode=disable connect_timeout=5`;
    lab.run(P.billing!.netns, [`${bin}/psql`, conn, '-X', '-A', '-t', '-c', 'select 42'], { name: 'psql', timeoutMs: 10_000 }).catch(() => undefined);
    lab.run(P.billing!.netns, ['redis-cli', '-h', ip('redis'), '-p', '6379', 'INCR', 'orders'], { name: 'redis-cli', timeoutMs: 10_000 }).catch(() => undefined);
  };
  tick();
  timers.push(setInterval(tick, o.intervalMs));
  return () => {
    for (const t of timers) clearInterval(t);
    for (const p of procs) p.signal('SIGKILL');
  };
}
