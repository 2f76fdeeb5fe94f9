// Servers and clients for the lab, each started inside a namespace with a deadline.
// Servers resolve once they listen (seen in /proc, no probe connection); clients resolve
// with their results when they exit 0 and reject with their stderr otherwise.
//
//   node peers (peer.mjs roles): http, h2c, tls, https, smtp (STARTTLS), CONNECT proxy, DNS,
//   raw (reproducible high-entropy bytes over TCP or UDP: no protocol at all)
//   real software: openssl s_server/s_client, nginx, PostgreSQL + psql, redis + redis-cli, curl

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nginxConfig } from '../../cli/demo/nginx.js';
import type { CertFiles } from './certs.js';
import type { Child, ExecOptions, Lab, Netns } from './lab.js';

export const PEER_SCRIPT = fileURLToPath(new URL('./peer.mjs', import.meta.url));
const PG_BIN = '/usr/lib/postgresql/15/bin';

/** TLS options the node peers understand (file paths, not contents). */
export interface TlsPeerOptions {
  cert?: string;
  key?: string;
  ca?: string;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  alpn?: string[];
  requestCert?: boolean;
  rejectUnauthorized?: boolean;
  servername?: string;
  /** false: accept any server name (meshes verify SPIFFE identities, not host names). */
  checkHostname?: boolean;
  ciphers?: string;
}

export interface PeerResult {
  event: 'result';
  localPort: number;
  [k: string]: unknown;
}

export interface PeerConn {
  event: 'conn';
  remotePort: number;
  [k: string]: unknown;
}

/** `certs.server` as peer options (server side). */
export function serverTls(c: CertFiles): Pick<TlsPeerOptions, 'cert' | 'key' | 'ca'> {
  return { cert: c.cert, key: c.key, ca: c.ca };
}

/** Starts a peer.mjs server role and waits until it listens. */
export async function peerServer(
  lab: Lab,
  ns: Netns,
  role: 'http-server' | 'h2c-server' | 'tls-server' | 'https-server' | 'smtp-server' | 'connect-proxy' | 'dns-server' | 'raw-server',
  opts: { port: number; host?: string } & Record<string, unknown>,
  exec: ExecOptions = {},
): Promise<Child> {
  const child = lab.exec(ns, ['node', PEER_SCRIPT, role, JSON.stringify({ deadlineMs: 10 * 60_000, ...opts })], {
    timeoutMs: 10 * 60_000,
    name: role,
    ...exec,
  });
  const udp = role === 'dns-server' || (role === 'raw-server' && opts.proto === 'udp');
  await lab.waitListen(ns, opts.port, { proto: udp ? 'udp' : 'tcp', child });
  return child;
}

/** Runs a peer.mjs client role to completion; returns its result events. */
export async function peerClient(
  lab: Lab,
  ns: Netns,
  role: 'http-client' | 'h2c-client' | 'tls-client' | 'smtp-client' | 'dns-client' | 'raw-client',
  opts: Record<string, unknown>,
  exec: ExecOptions = {},
): Promise<PeerResult[]> {
  const deadlineMs = exec.timeoutMs ?? 30_000;
  const child = lab.exec(ns, ['node', PEER_SCRIPT, role, JSON.stringify({ deadlineMs, ...opts })], {
    timeoutMs: deadlineMs + 5000,
    name: role,
    ...exec,
  });
  const info = await child.exited;
  if (info.code !== 0) throw new Error(`${role} failed (code ${info.code}, signal ${info.signal}): ${child.stderr.trim() || child.stdout.trim()}`);
  return child.events<PeerResult>().filter((e) => e.event === 'result');
}

/** Server-side connection events a peer server printed so far. */
export function connEvents(child: Child): PeerConn[] {
  return child.events<PeerConn>().filter((e) => e.event === 'conn');
}

// ---------------------------------------------------------------------------------------
// openssl s_server / s_client

export interface OpensslTlsOptions {
  version: '1.2' | '1.3';
  alpn?: string[];
}

/**
 * `openssl s_server` on host:port. clientAuth: 'require' (-Verify 1), 'request' (-verify 1)
 * or 'none'. stdin stays open (s_server reads commands from it) until the lab closes.
 */
export async function opensslServer(
  lab: Lab,
  ns: Netns,
  o: OpensslTlsOptions & { host: string; port: number; certs: CertFiles; clientAuth: 'require' | 'request' | 'none' },
): Promise<Child> {
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  const argv = ['openssl', 's_server', '-accept', `${host}:${o.port}`, '-cert', o.certs.cert, '-key', o.certs.key, '-CAfile', o.certs.ca, `-tls1_${o.version === '1.3' ? '3' : '2'}`, '-no_ticket'];
  if (o.clientAuth === 'require') argv.push('-Verify', '1');
  if (o.clientAuth === 'request') argv.push('-verify', '1');
  if (o.alpn) argv.push('-alpn', o.alpn.join(','));
  const child = lab.exec(ns, argv, { stdin: 'pipe', timeoutMs: 10 * 60_000, name: 's_server' });
  await lab.waitListen(ns, o.port, { child });
  return child;
}

/**
 * One `openssl s_client` handshake, then `send` (if any) as application data at once, then
 * close (stdin at EOF). Returns its output.
 */
export async function opensslClient(
  lab: Lab,
  ns: Netns,
  o: OpensslTlsOptions & { host: string; port: number; servername?: string; ca: string; cert?: CertFiles; starttls?: 'smtp' | 'postgres'; send?: string },
): Promise<string> {
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  const argv = ['openssl', 's_client', '-connect', `${host}:${o.port}`, '-CAfile', o.ca, `-tls1_${o.version === '1.3' ? '3' : '2'}`, '-verify_return_error'];
  if (o.servername) argv.push('-servername', o.servername);
  else argv.push('-noservername');
  if (o.cert) argv.push('-cert', o.cert.cert, '-key', o.cert.key);
  if (o.alpn) argv.push('-alpn', o.alpn.join(','));
  if (o.starttls) argv.push('-starttls', o.starttls);
  const r = await lab.run(ns, argv, { stdin: o.send ?? '', timeoutMs: 15_000, name: 's_client' });
  return r.stdout;
}

// ---------------------------------------------------------------------------------------
// nginx

/** nginx (foreground, its own prefix in the lab dir) serving HTTPS, optionally with ssl_verify_client on. */
export async function startNginx(
  lab: Lab,
  ns: Netns,
  o: { listen: string[]; port: number; certs: CertFiles; verifyClient: boolean; protocols?: string },
): Promise<Child> {
  const prefix = lab.path(`nginx-${o.port}`);
  mkdirSync(prefix, { recursive: true });
  writeFileSync(join(prefix, 'nginx.conf'), nginxConfig({ prefix, ...o }));
  const child = lab.exec(ns, ['nginx', '-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', 'stderr'], { timeoutMs: 10 * 60_000, name: 'nginx' });
  await lab.waitListen(ns, o.port, { child });
  return child;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/**
 * A throwaway PostgreSQL 15 cluster (initdb as user postgres in the lab dir), listening on
 * `host:port` with ssl=on using the lab server certificate; trust auth from 198.18.0.0/15.
 */
export async function startPostgres(lab: Lab, ns: Netns, o: { host: string; port: number; certs: CertFiles }): Promise<Child> {
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  chmodSync(lab.dir, 0o711); // let postgres traverse into its data dir
  const base = lab.path(`pg-${o.port}`);
  mkdirSync(base, { mode: 0o700 });
  chownSync(base, uid, gid);
  const data = join(base, 'data');
  await lab.run(ns, [`${PG_BIN}/initdb`, '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C'], {
    user: 'postgres',
    timeoutMs: 60_000,
    name: 'initdb',
  });
  appendFileSync(join(data, 'pg_hba.conf'), 'host all all 198.18.0.0/15 trust\nhost all all fd00::/8 trust\n');
  for (const [src, dst] of [
    [o.certs.cert, 'server.crt'],
    [o.certs.key, 'server.key'],
  ] as const) {
    const p = join(data, dst);
    copyFileSync(src, p);
    chownSync(p, uid, gid);
    chmodSync(p, 0o600);
  }
  const child = lab.exec(
    ns,
    [
      `${PG_BIN}/postgres`, '-D', data,
      '-c', `listen_addresses=${o.host}`, '-c', `port=${o.port}`, '-c', 'unix_socket_directories=',
      '-c', 'ssl=on', '-c', 'ssl_cert_file=server.crt', '-c', 'ssl_key_file=server.key',
      '-c', 'fsync=off', '-c', 'max_connections=20', '-c', 'shared_buffers=16MB', '-c', 'logging_collector=off',
    ],
    { user: 'postgres', timeoutMs: 10 * 60_000, name: 'postgres', stopSignal: 'SIGINT' /* fast shutdown */ },
  );
  await lab.waitListen(ns, o.port, { child, timeoutMs: 30_000 });
  return child;
}

/** psql -c SQL with the given sslmode (require: SSLRequest then TLS; disable: plaintext). */
export async function psql(lab: Lab, ns: Netns, o: { host: string; port: number; sslmode: 'require' | 'disable'; sql?: string }): Promise<string> {
  const conn = `host=${o.host} port=${o.port} user=postgres dbname=postgres sslmode=${o.sslmode} gssencmode=disable connect_timeout=10`;
  const r = await lab.run(ns, [`${PG_BIN}/psql`, conn, '-X', '-A', '-t', '-c', o.sql ?? 'select 42'], { timeoutMs: 20_000, name: 'psql', env: { PGAPPNAME: 'plainsight-lab' } });
  return r.stdout.trim();
}

// ---------------------------------------------------------------------------------------
// redis

export async function startRedis(lab: Lab, ns: Netns, o: { hosts: string[]; port: number }): Promise<Child> {
  const child = lab.exec(
    ns,
    ['redis-server', '--port', String(o.port), '--bind', ...o.hosts, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no', '--dir', lab.dir, '--logfile', ''],
    { timeoutMs: 10 * 60_000, name: 'redis-server' },
  );
  await lab.waitListen(ns, o.port, { child });
  return child;
}

export async function redisCli(lab: Lab, ns: Netns, o: { host: string; port: number; args: string[] }): Promise<string> {
  const r = await lab.run(ns, ['redis-cli', '-h', o.host, '-p', String(o.port), ...o.args], { timeoutMs: 10_000, name: 'redis-cli' });
  return r.stdout.trim();
}

// ---------------------------------------------------------------------------------------
// curl

export async function curl(lab: Lab, ns: Netns, args: string[]): Promise<string> {
  const r = await lab.run(ns, ['curl', '-sS', '--max-time', '10', ...args], { timeoutMs: 15_000, name: 'curl' });
  return r.stdout;
}
