// Test lab for the non-TLS detectors: real clients and servers on 127.0.0.1, recorded byte
// for byte by a relay between them (TCP: each direction as one stream; UDP: each datagram).
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

export interface Recording {
  client: Uint8Array;
  server: Uint8Array;
}

export interface TcpRelay {
  port: number;
  /** Each direction of every connection so far, in accept order. */
  connections: () => Recording[];
  /** Resolves once `count` connections have closed on both sides (or after `timeoutMs`). */
  settled: (count?: number, timeoutMs?: number) => Promise<Recording[]>;
  close: () => Promise<void>;
}

/** A recording TCP relay on 127.0.0.1 in front of `targetPort`. */
export async function tcpRelay(targetPort: number): Promise<TcpRelay> {
  const conns: { c: Buffer[]; s: Buffer[]; closed: number }[] = [];
  const sockets = new Set<net.Socket>();
  let wake: () => void = () => {};
  const server = net.createServer((down) => {
    const rec = { c: [] as Buffer[], s: [] as Buffer[], closed: 0 };
    conns.push(rec);
    const up = net.connect(targetPort, '127.0.0.1');
    for (const sock of [down, up]) {
      sockets.add(sock);
      sock.on('error', () => {});
      sock.on('close', () => {
        sockets.delete(sock);
        rec.closed++;
        (sock === down ? up : down).destroy();
        wake();
      });
    }
    down.on('data', (d: Buffer) => {
      rec.c.push(Buffer.from(d));
      up.write(d);
    });
    up.on('data', (d: Buffer) => {
      rec.s.push(Buffer.from(d));
      down.write(d);
    });
    down.on('end', () => up.end());
    up.on('end', () => down.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const snapshot = (): Recording[] => conns.map((r) => ({ client: Buffer.concat(r.c), server: Buffer.concat(r.s) }));
  return {
    port,
    connections: snapshot,
    settled: async (count = 1, timeoutMs = 8000) => {
      const deadline = Date.now() + timeoutMs;
      while (conns.filter((r) => r.closed >= 2).length < count && Date.now() < deadline) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 50);
        });
      }
      return snapshot();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface UdpRecording {
  client: Uint8Array[];
  server: Uint8Array[];
}

/** A recording UDP relay: the client talks to `port`, the relay forwards to targetPort. */
export async function udpRelay(targetPort: number): Promise<{ port: number; recorded: UdpRecording; close: () => Promise<void> }> {
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  const recorded: UdpRecording = { client: [], server: [] };
  let peer: { port: number; address: string } | null = null;
  front.on('message', (msg, rinfo) => {
    peer = { port: rinfo.port, address: rinfo.address };
    recorded.client.push(Buffer.from(msg));
    back.send(msg, targetPort, '127.0.0.1');
  });
  back.on('message', (msg) => {
    recorded.server.push(Buffer.from(msg));
    if (peer) front.send(msg, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => front.bind(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => back.bind(0, '127.0.0.1', resolve));
  return {
    port: front.address().port,
    recorded,
    close: async () => {
      await new Promise<void>((resolve) => front.close(() => resolve()));
      await new Promise<void>((resolve) => back.close(() => resolve()));
    },
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a program with stdin closed; kill it after timeoutMs. Never rejects. */
export function run(cmd: string, args: string[], timeoutMs = 10000, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + String(e) });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** True when `cmd` can be executed (for skip reasons). */
export function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface SelfSigned {
  key: Buffer;
  cert: Buffer;
  keyFile: string;
  certFile: string;
  cleanup: () => void;
}

/** A throwaway self-signed EC certificate for localhost, made with the openssl CLI. */
export function selfSigned(): SelfSigned {
  const dir = mkdtempSync(join(tmpdir(), 'plainsight-wire-'));
  const keyFile = join(dir, 'k.pem');
  const certFile = join(dir, 'c.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-subj', '/CN=localhost', '-days', '2'],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(keyFile), cert: readFileSync(certFile), keyFile, certFile, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Listen on an ephemeral 127.0.0.1 port. */
export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

export async function closeServer(server: net.Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Call `onLine` for each CRLF/LF-terminated line arriving on `sock` until it returns 'stop'. */
export function lines(sock: net.Socket, onLine: (line: string) => 'stop' | void): void {
  let buf = '';
  const onData = (d: Buffer): void => {
    buf += d.toString('latin1');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, '');
      buf = buf.slice(i + 1);
      if (onLine(line) === 'stop') {
        sock.off('data', onData);
        return;
      }
    }
  };
  sock.on('data', onData);
}

/** Hand a plaintext socket over to a TLS server session (the STARTTLS moment). */
export function startTls(sock: net.Socket, cert: SelfSigned, onSecure?: (t: tls.TLSSocket) => void): tls.TLSSocket {
  const t = new tls.TLSSocket(sock, { isServer: true, key: cert.key, cert: cert.cert });
  t.on('error', () => {});
  t.on('secure', () => {
    if (onSecure) onSecure(t);
    else t.end();
  });
  return t;
}

export const bytes = (...parts: (number[] | string | Uint8Array)[]): Uint8Array => {
  const chunks = parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p as number[])));
  return new Uint8Array(Buffer.concat(chunks));
};

export const text = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

/** A MySQL 8.0 server greeting (HandshakeV10) with CLIENT_SSL. */
export function mysqlGreeting(capsLow = 0xffff): Uint8Array {
  const payload = bytes([0x0a], '8.0.36', [0], [8, 0, 0, 0], 'abcdefgh', [0], [capsLow & 0xff, capsLow >> 8], [0xff], [2, 0], [0xff, 0xdf], [21], new Uint8Array(10), 'ijklmnopqrst', [0], 'caching_sha2_password', [0]);
  return bytes([payload.length, 0, 0, 0], payload);
}
