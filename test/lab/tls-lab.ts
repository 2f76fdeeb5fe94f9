// Test lab for the TLS classifier: real handshakes between node's `tls` and the `openssl`
// CLI on 127.0.0.1, recorded byte for byte by a TCP relay that sits between them.
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

import { execFileSync, spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

export interface Capture {
  client: Uint8Array;
  server: Uint8Array;
}

// --- PKI: a throwaway CA, a server certificate and two client certificates ---

export interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientEcCert: string;
  clientEcKey: string;
  clientRsaCert: string;
  clientRsaKey: string;
  /** PEM contents, for node's tls options. */
  pem: (file: string) => Buffer;
  cleanup: () => void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'plainsight-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  openssl(['req', '-x509', ...ec, '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=plainsight test CA', '-days', '2'], dir);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,DNS:api.example,IP:127.0.0.1\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  const issue = (name: string, key: string[], ext: string): void => {
    openssl(['req', ...key, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', ext], dir);
  };
  issue('server', ec, 'server.ext');
  issue('client-ec', ec, 'client.ext');
  issue('client-rsa', ['-newkey', 'rsa:2048'], 'client.ext');
  const p = (f: string): string => join(dir, f);
  return {
    dir,
    caCert: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientEcCert: p('client-ec.crt'),
    clientEcKey: p('client-ec.key'),
    clientRsaCert: p('client-rsa.crt'),
    clientRsaKey: p('client-rsa.key'),
    pem: (file) => readFileSync(file),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

// --- relay: records each direction of every connection it forwards ---

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export class Relay {
  private readonly server: net.Server;
  private readonly pending: Deferred<Capture>[] = [];
  private accepted = 0;
  private taken = 0;
  port = 0;

  private constructor(private readonly targetPort: number) {
    this.server = net.createServer({ allowHalfOpen: true }, (c) => this.forward(c));
  }

  static async start(targetPort: number): Promise<Relay> {
    const r = new Relay(targetPort);
    await new Promise<void>((res) => r.server.listen(0, '127.0.0.1', res));
    r.port = (r.server.address() as net.AddressInfo).port;
    return r;
  }

  private slot(i: number): Deferred<Capture> {
    while (this.pending.length <= i) this.pending.push(deferred<Capture>());
    return this.pending[i];
  }

  private forward(c: net.Socket): void {
    const slot = this.slot(this.accepted++);
    const up = net.connect({ port: this.targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const fromClient: Buffer[] = [];
    const fromServer: Buffer[] = [];
    let closed = 0;
    const done = (): void => {
      if (++closed === 2) slot.resolve({ client: Buffer.concat(fromClient), server: Buffer.concat(fromServer) });
    };
    c.on('data', (d) => {
      fromClient.push(d);
      up.write(d);
    });
    up.on('data', (d) => {
      fromServer.push(d);
      c.write(d);
    });
    c.on('end', () => up.end());
    up.on('end', () => c.end());
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
    c.on('close', done);
    up.on('close', done);
  }

  /** The capture of the next connection (in accept order), once both sides have closed. */
  next(): Promise<Capture> {
    return this.slot(this.taken++).promise;
  }

  close(): Promise<void> {
    return new Promise((res) => this.server.close(() => res()));
  }
}

// --- node client and server ---

export interface NodeExchangeResult extends Capture {
  /** Session from the client, for a resumption attempt. */
  session?: Buffer;
  clientError?: string;
  /** Protocol the node client negotiated, e.g. "TLSv1.3". */
  protocol?: string | null;
  cipher?: string;
  /** Whether the node client resumed its session. */
  reused?: boolean;
}

/** A node TLS echo server; close() when done. */
export async function nodeServer(opts: tls.TlsOptions): Promise<{ port: number; close: () => Promise<void> }> {
  const server = tls.createServer(opts, (sock) => {
    sock.on('data', (d) => sock.write(d));
    sock.on('end', () => sock.end());
    sock.on('error', () => undefined);
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((res) => server.close(() => res())),
  };
}

/**
 * Connects a node TLS client through `relay`, sends "ping", waits for the echo (with
 * waitSession also for a session ticket; with endAfterHandshake for nothing), then
 * closes. Resolves when the relay has recorded the whole connection.
 */
export async function nodeClient(
  relay: Relay,
  opts: tls.ConnectionOptions & { waitSession?: boolean; endAfterHandshake?: boolean },
): Promise<NodeExchangeResult> {
  const capture = relay.next();
  const result = await new Promise<Omit<NodeExchangeResult, 'client' | 'server'>>((resolve) => {
    const out: Omit<NodeExchangeResult, 'client' | 'server'> = {};
    const sock = tls.connect({ host: '127.0.0.1', port: relay.port, ...opts });
    let echoed = false;
    const maybeEnd = (): void => {
      if (echoed && (!opts.waitSession || out.session !== undefined)) sock.end();
    };
    sock.on('session', (s) => {
      out.session = s;
      maybeEnd();
    });
    sock.on('secureConnect', () => {
      out.protocol = sock.getProtocol();
      out.cipher = sock.getCipher()?.standardName;
      out.reused = sock.isSessionReused();
      sock.write('ping');
      // For servers that do not echo (openssl s_server): the second flight is already written.
      if (opts.endAfterHandshake) sock.end();
    });
    sock.on('data', () => {
      echoed = true;
      maybeEnd();
    });
    sock.on('error', (e) => {
      out.clientError = e.message;
      sock.destroy();
    });
    sock.on('close', () => resolve(out));
    sock.setTimeout(5000, () => sock.destroy());
  });
  return { ...(await capture), ...result };
}

// --- openssl s_server / s_client ---

export interface OpensslServer {
  port: number;
  close: () => void;
}

/** `openssl s_server` on 127.0.0.1, serving connections one after another until closed. */
export async function opensslServer(args: string[]): Promise<OpensslServer> {
  const proc = spawn('openssl', ['s_server', '-accept', '127.0.0.1:0', ...args]);
  // s_server quits when its stdin ends: keep the pipe open until close().
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ACCEPT [^\n]*:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.stderr.on('data', () => undefined);
    proc.on('exit', (code) => reject(new Error(`openssl s_server exited (${code}): ${out}`)));
  });
  proc.stdout.removeAllListeners('data');
  proc.stdout.resume();
  return {
    port,
    close: () => {
      proc.stdin.end();
      proc.kill();
    },
  };
}

/**
 * Runs `openssl s_client` through `relay`: once it reports the handshake (its
 * verification line), one line is sent and stdin ends, which makes s_client close.
 */
export async function opensslClient(relay: Relay, args: string[]): Promise<Capture & { stdout: string }> {
  const capture = relay.next();
  const proc: ChildProcessWithoutNullStreams = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${relay.port}`, ...args]);
  let stdout = '';
  let sent = false;
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (!sent && /Verify return code|Verification/.test(stdout)) {
      sent = true;
      proc.stdin.write('ping\n');
      setTimeout(() => proc.stdin.end(), 50);
    }
  });
  proc.stderr.on('data', (d: Buffer) => (stdout += d.toString()));
  const timer = setTimeout(() => proc.kill(), 5000);
  await new Promise<void>((res) => proc.on('exit', () => res()));
  clearTimeout(timer);
  return { ...(await capture), stdout };
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

// --- GnuTLS gnutls-serv / gnutls-cli (optional: a third TLS stack when installed) ---

/** Why GnuTLS tests cannot run here, or false when gnutls-cli and gnutls-serv exist. */
export function gnutlsSkipReason(): string | false {
  for (const tool of ['gnutls-cli', 'gnutls-serv']) {
    if (spawnSync(tool, ['--version']).error) return `${tool} not installed (apt-get install gnutls-bin)`;
  }
  return false;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((res) => s.close(res));
  return port;
}

/** `gnutls-serv --echo` on 127.0.0.1; args add certificates, client-cert policy, priority. */
export async function gnutlsServer(args: string[]): Promise<OpensslServer> {
  const port = await freePort();
  const proc = spawn('gnutls-serv', ['-p', String(port), '--echo', ...args]);
  proc.stdout.resume();
  proc.stderr.resume();
  // gnutls-serv prints nothing reliable when ready: poll the port.
  for (let i = 0; i < 50; i++) {
    const up = await new Promise<boolean>((res) => {
      const c = net.connect({ port, host: '127.0.0.1' }, () => {
        c.destroy();
        res(true);
      });
      c.on('error', () => res(false));
    });
    if (up) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  return { port, close: () => proc.kill() };
}

/** Runs `gnutls-cli` through `relay`: one line once the handshake completed, then EOF. */
export async function gnutlsClient(relay: Relay, args: string[]): Promise<Capture & { stdout: string }> {
  const capture = relay.next();
  const proc = spawn('gnutls-cli', ['-p', String(relay.port), ...args, '127.0.0.1']);
  let stdout = '';
  let sent = false;
  const onData = (d: Buffer): void => {
    stdout += d.toString();
    if (!sent && /Handshake was completed/.test(stdout)) {
      sent = true;
      proc.stdin.write('ping\n');
      setTimeout(() => proc.stdin.end(), 50);
    }
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  const timer = setTimeout(() => proc.kill(), 5000);
  await new Promise<void>((res) => proc.on('exit', () => res()));
  clearTimeout(timer);
  return { ...(await capture), stdout };
}
