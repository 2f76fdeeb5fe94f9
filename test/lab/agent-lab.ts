// Helpers for the agent tests (not a test itself): a small "node" — pods that are network
// namespaces whose eth0 is a veth with its host end on a bridge in the root namespace,
// the way a CNI plugin wires them — peers that report exact TCP/UDP payload byte counts,
// and the real agent (`node dist/cli/main.js agent …`) as a child process.
//
// Addresses: 198.19.N.0/24 and fd00:7073:N::/64 (N random per node; the bridge has no
// address, so nothing is routed in the root namespace). Pod namespaces come from the
// Lab (named ps-<role>-<hex>, one role per node so `--netns 'ps-<role>-*'` selects only
// this node's pods); host veths and the bridge are deleted in t.teardown.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CLI } from './plainsight.js';
import type { Child, Lab, Netns } from './lab.js';

export { bpfSkipReason } from './bpf-lab.js';

interface TapLike {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
}

function sh(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function quiet(argv: string[]): void {
  try {
    sh(argv);
  } catch {
    /* already gone */
  }
}

export interface NodePod {
  name: string;
  ns: Netns;
  hostIf: string;
  hostIfindex: number;
  ip4: string;
  ip6: string;
}

export class LabNode {
  readonly pods: NodePod[] = [];
  private hostN = 10;

  private constructor(
    private readonly t: TapLike,
    private readonly lab: Lab,
    readonly role: string,
    readonly bridge: string,
    readonly subnet: number,
  ) {}

  /** A bridge in the root namespace and `count` pods on it. */
  static async create(t: TapLike, lab: Lab, count: number): Promise<LabNode> {
    const role = `ag${randomBytes(2).toString('hex')}`;
    const bridge = `psb-${randomBytes(3).toString('hex')}`;
    const node = new LabNode(t, lab, role, bridge, randomInt(100, 250));
    t.teardown(() => quiet(['ip', 'link', 'del', bridge]));
    sh(['ip', 'link', 'add', bridge, 'type', 'bridge']);
    sh(['ip', 'link', 'set', bridge, 'up']);
    for (let i = 0; i < count; i++) await node.addPod();
    return node;
  }

  /** The `--netns` glob matching this node's pods only. */
  get glob(): string {
    return `ps-${this.role}-*`;
  }

  async addPod(): Promise<NodePod> {
    const ns = await this.lab.netns(this.role);
    const hostIf = `psa-${randomBytes(4).toString('hex')}`.slice(0, 15);
    const h = this.hostN++;
    const pod: NodePod = {
      name: ns.name,
      ns,
      hostIf,
      hostIfindex: 0,
      ip4: `198.19.${this.subnet}.${h}`,
      ip6: `fd00:7073:${this.subnet.toString(16)}::${h.toString(16)}`,
    };
    this.t.teardown(() => quiet(['ip', 'link', 'del', hostIf]));
    sh(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
    sh(['ip', 'link', 'set', hostIf, 'master', this.bridge]);
    sh(['ip', 'link', 'set', hostIf, 'up']);
    sh(['ip', '-n', ns.name, 'addr', 'add', `${pod.ip4}/24`, 'dev', 'eth0']);
    sh(['ip', '-n', ns.name, 'addr', 'add', `${pod.ip6}/64`, 'dev', 'eth0', 'nodad']);
    sh(['ip', '-n', ns.name, 'link', 'set', 'eth0', 'up']);
    pod.hostIfindex = Number(readFileSync(`/sys/class/net/${hostIf}/ifindex`, 'utf8').trim());
    this.pods.push(pod);
    return pod;
  }
}

// ---- peers --------------------------------------------------------------------------------

/**
 * Peers that report the payload bytes their TCP socket really moved (for TLS: the raw
 * socket under the TLS layer, so handshake bytes count). One JSON line per connection.
 */
const PEER_JS = String.raw`
const [role, o] = [process.argv[1], JSON.parse(process.argv[2])];
const fs = require('fs'), net = require('net'), tls = require('tls'), dgram = require('dgram');
const emit = (x) => process.stdout.write(JSON.stringify(x) + '\n');
const die = (m) => { process.stderr.write(role + ': ' + m + '\n'); process.exit(1); };
setTimeout(() => die('deadline'), o.deadlineMs ?? 60000).unref();
process.on('uncaughtException', (e) => die(e.stack || String(e)));
const read = (p) => (p ? fs.readFileSync(p) : undefined);
const tlsOpts = (x) => {
  const r = { cert: read(x.cert), key: read(x.key), ca: read(x.ca), ALPNProtocols: x.alpn, minVersion: x.minVersion, maxVersion: x.maxVersion, servername: x.servername };
  if (x.checkHostname === false) r.checkServerIdentity = () => undefined;
  for (const k of Object.keys(r)) if (r[k] === undefined) delete r[k];
  return r;
};
const http = (n) => 'GET /item/' + n + ' HTTP/1.1\r\nHost: web\r\nUser-Agent: lab\r\n\r\n';
const httpReply = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok';
const roles = {
  // Plain TCP: waits for 'expect' bytes (or the end of an HTTP request), replies, closes first.
  'tcp-server'() {
    net.createServer((s) => {
      const remotePort = s.remotePort; let got = Buffer.alloc(0), done = false;
      s.on('data', (d) => {
        got = Buffer.concat([got, d]);
        const complete = o.http ? got.includes('\r\n\r\n') : got.length >= (o.expect ?? 1);
        if (!done && complete) { done = true; s.end(o.http ? httpReply : Buffer.alloc(o.reply ?? 0, 0x53)); }
      });
      s.on('error', () => {});
      s.on('close', () => emit({ event: 'conn', remotePort, bytesRead: s.bytesRead, bytesWritten: s.bytesWritten }));
    }).listen({ port: o.port, host: '::', ipv6Only: false }, () => emit({ event: 'listening' }));
    setInterval(() => {}, 1 << 30);
  },
  async 'tcp-client'() {
    const one = (i) => new Promise((resolve, reject) => {
      const s = net.connect({ host: o.host, port: o.port, localPort: o.localPort }, () => {
        s.write(o.http ? http(i) : Buffer.alloc(o.bytes ?? 1, 0x4c));
        // 'later': a second write after a pause (a connection that outlives an agent restart).
        if (o.later) { emit({ event: 'sent-first', localPort: s.localPort }); setTimeout(() => s.write(Buffer.alloc(o.later.bytes, 0x4d)), o.later.afterMs); }
      });
      let localPort = 0, got = 0;
      s.on('connect', () => (localPort = s.localPort));
      s.on('data', (d) => (got += d.length));
      s.on('end', () => s.end());
      s.on('error', reject);
      s.on('close', () => resolve({ event: 'result', localPort, bytesWritten: s.bytesWritten, bytesRead: s.bytesRead }));
    });
    const count = o.count ?? 1, par = o.parallel ?? 1;
    for (let i = 0; i < count; i += par) {
      const rs = await Promise.all([...Array(Math.min(par, count - i))].map((_, j) => one(i + j)));
      rs.forEach(emit);
      if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs));
    }
    process.exit(0);
  },
  // A long upload: 'chunk' bytes every 'everyMs' until killed (or 'total' sent), each
  // write acknowledged on stdout so a test knows what went out before it pulled the plug.
  'tcp-stream'() {
    let localPort = 0;
    const s = net.connect({ host: o.host, port: o.port }, () => {
      localPort = s.localPort;
      emit({ event: 'connected', localPort });
      let sent = 0;
      const tick = () => {
        if (o.total && sent >= o.total) return s.end();
        s.write(Buffer.alloc(o.chunk ?? 1000, 0x55), () => { sent += o.chunk ?? 1000; emit({ event: 'progress', localPort: s.localPort, bytesWritten: sent }); setTimeout(tick, o.everyMs ?? 100); });
      };
      tick();
    });
    s.on('data', () => {}); // the reply: read, so that 'end' and 'close' come
    s.on('error', (e) => die(String(e)));
    s.on('close', () => { emit({ event: 'result', localPort, bytesWritten: s.bytesWritten, bytesRead: s.bytesRead }); process.exit(0); });
  },
  // TLS over a raw socket we hold, so its byte counts are wire payload bytes.
  'tls-server'() {
    const ctx = tls.createSecureContext(tlsOpts(o));
    net.createServer((raw) => {
      const remotePort = raw.remotePort; let info = {};
      const s = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx, requestCert: !!o.requestCert, rejectUnauthorized: !!o.requestCert, ALPNProtocols: o.alpn });
      s.on('secure', () => { info = { protocol: s.getProtocol(), alpn: s.alpnProtocol || null, peerCertificate: Boolean(s.getPeerCertificate()?.subject) }; });
      s.on('data', () => s.end('pong\n'));
      s.on('error', () => {});
      raw.on('error', () => {});
      raw.on('close', () => emit({ event: 'conn', remotePort, bytesRead: raw.bytesRead, bytesWritten: raw.bytesWritten, ...info }));
    }).listen({ port: o.port, host: '::', ipv6Only: false }, () => emit({ event: 'listening' }));
    setInterval(() => {}, 1 << 30);
  },
  'tls-client'() {
    const raw = net.connect({ host: o.host, port: o.port });
    let localPort = 0, info = {};
    raw.on('connect', () => (localPort = raw.localPort));
    const s = tls.connect({ socket: raw, ...tlsOpts(o) }, () => {
      info = { protocol: s.getProtocol(), alpn: s.alpnProtocol || null, cipher: s.getCipher().standardName };
      s.write('ping\n');
    });
    s.on('data', () => {});
    s.on('end', () => s.end());
    s.on('error', (e) => die(String(e)));
    raw.on('close', () => { emit({ event: 'result', localPort, bytesWritten: raw.bytesWritten, bytesRead: raw.bytesRead, ...info }); process.exit(0); });
  },
  'udp-server'() {
    const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    u.on('message', (m, r) => u.send(m, r.port, r.address));
    u.bind(o.port, '::', () => emit({ event: 'listening' }));
    setInterval(() => {}, 1 << 30);
  },
  async 'udp-client'() {
    const u = dgram.createSocket(o.host.includes(':') ? 'udp6' : 'udp4');
    await new Promise((r) => u.bind(0, r));
    let sent = 0, echoed = 0;
    for (const hex of o.datagrams) {
      const got = new Promise((resolve) => u.once('message', (m) => resolve(m.length)));
      const d = Buffer.from(hex, 'hex');
      u.send(d, o.port, o.host);
      sent += d.length;
      echoed += await got;
    }
    emit({ event: 'result', localPort: u.address().port, bytesWritten: sent, bytesRead: echoed });
    process.exit(0);
  },
};
roles[role]();
`;

export interface PeerLine {
  event: string;
  localPort?: number;
  remotePort?: number;
  bytesWritten: number;
  bytesRead: number;
  [k: string]: unknown;
}

/** What a client socket moved on one connection: the ground truth a flow is checked against. */
export interface Conn {
  serverPort: number;
  clientPort: number;
  toServer: number;
  toClient: number;
}

export const conns = (port: number, rs: PeerLine[]): Conn[] =>
  rs.map((r) => ({ serverPort: port, clientPort: r.localPort!, toServer: r.bytesWritten, toClient: r.bytesRead }));

export async function server(lab: Lab, ns: Netns, role: 'tcp-server' | 'tls-server' | 'udp-server', opts: Record<string, unknown>) {
  const child = lab.exec(ns, ['node', '-e', PEER_JS, role, JSON.stringify({ deadlineMs: 10 * 60_000, ...opts })], { timeoutMs: 10 * 60_000, name: role });
  await child.waitFor('stdout', /"listening"/, 15_000);
  return child;
}

export async function client(lab: Lab, ns: Netns, role: 'tcp-client' | 'tls-client' | 'udp-client', opts: Record<string, unknown>): Promise<PeerLine[]> {
  const r = await lab.run(ns, ['node', '-e', PEER_JS, role, JSON.stringify(opts)], { timeoutMs: 60_000, name: role });
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as PeerLine)
    .filter((e) => e.event === 'result');
}

/**
 * A client role started in the background (for traffic that outlives other steps): the
 * child, and its result lines once it exits 0. `timeoutMs` bounds it (default 3 min).
 */
export function clientInBackground(
  lab: Lab,
  ns: Netns,
  role: 'tcp-client' | 'tcp-stream',
  opts: Record<string, unknown>,
  timeoutMs = 180_000,
): { child: Child; results: Promise<PeerLine[]> } {
  const child = lab.exec(ns, ['node', '-e', PEER_JS, role, JSON.stringify({ deadlineMs: timeoutMs, ...opts })], { timeoutMs: timeoutMs + 5000, name: role });
  const results = child.exited.then((info) => {
    if (info.code !== 0) throw new Error(`${role} failed (${JSON.stringify(info)}): ${child.stderr.trim().slice(-800)}`);
    return peerLines(child.stdout).filter((e) => e.event === 'result');
  });
  results.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  return { child, results };
}

/** The JSON lines a peer printed so far (complete lines only). */
export function peerLines(stdout: string): PeerLine[] {
  return completeLines(stdout).map((l) => JSON.parse(l) as PeerLine);
}

// ---- the agent ----------------------------------------------------------------------------

export interface FlowLine {
  transport: string;
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  verdict: string;
  protocol: string;
  upgradedFrom?: string;
  tls?: { version?: string; sni?: string; alpn?: string[]; cipher?: string; ja4?: string; clientCertificate: string; alpnSelected?: string };
  mesh: string;
  packets: { toServer: number; toClient: number };
  bytes: { toServer: number; toClient: number };
  evidence: string;
  pod?: string;
  peerPod?: string;
  intraPod: boolean;
  interface: string;
  flowId: string;
  final: boolean;
  countersComplete?: boolean;
  midstream?: boolean;
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** The real agent as a child process: stdout parsed as flow lines, stderr as pino log lines. */
export class AgentProcess {
  readonly proc: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private waiters = new Set<() => void>();

  /** `opts.wrap`: a command line the agent's `node …` is appended to (e.g. an `unshare` sandbox that ends in `exec "$@"`). */
  constructor(t: TapLike, args: string[], opts: { wrap?: string[] } = {}) {
    const argv = [process.execPath, CLI, 'agent', ...args];
    const [cmd, ...rest] = [...(opts.wrap ?? []), ...argv] as [string, ...string[]];
    this.proc = spawn(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PLAINSIGHT_LOG_LEVEL: 'info' } });
    this.proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      this.notify();
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        this.exitInfo = { code, signal };
        this.notify();
        resolve(this.exitInfo);
      });
    });
    t.teardown(async () => {
      if (!this.exitInfo) {
        this.proc.kill('SIGKILL');
        await this.exited;
      }
    });
  }

  /** Starts the agent and waits for "agent started". */
  static async start(t: TapLike, args: string[], opts: { wrap?: string[] } = {}): Promise<AgentProcess> {
    const a = new AgentProcess(t, args, opts);
    // Generous: on a 2-core machine shared with benchmarks a start took over 20 s.
    await a.waitLog((l) => l.msg === 'agent started', 60_000);
    return a;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  flows(): FlowLine[] {
    return completeLines(this.stdout).map((l) => JSON.parse(l) as FlowLine);
  }

  logs(): LogLine[] {
    return completeLines(this.stderr).map((l) => JSON.parse(l) as LogLine);
  }

  get metricsPort(): number {
    const l = this.logs().find((x) => x.msg === 'metrics listening');
    return Number(l?.port ?? 0);
  }

  async metrics(): Promise<string> {
    const r = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return r.text();
  }

  async waitLog(pred: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    return this.until(() => this.logs().find(pred), timeoutMs, 'log line');
  }

  /** Waits until `pred` holds over the flow lines so far; returns them. */
  async waitFlows(pred: (lines: FlowLine[]) => boolean, timeoutMs = 10_000, what = 'flow lines'): Promise<FlowLine[]> {
    return this.until(() => {
      const lines = this.flows();
      return pred(lines) ? lines : undefined;
    }, timeoutMs, what);
  }

  private async until<T>(get: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = get();
      if (v !== undefined) return v;
      if (this.exitInfo) throw new Error(`agent exited (${JSON.stringify(this.exitInfo)}) before ${what}: ${this.stderr.slice(-1500)}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; agent stderr: ${this.stderr.slice(-1500)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** CPU seconds (user+system) and peak RSS (MiB) so far, from /proc. */
  usage(): { cpuSeconds: number; rssMiB: number; peakRssMiB: number } {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { cpuSeconds: ticks / 100, rssMiB: kb('VmRSS') / 1024, peakRssMiB: kb('VmHWM') / 1024 };
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.exitInfo) return this.exitInfo;
    this.proc.kill(signal);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    const info = await this.exited;
    clearTimeout(timer);
    return info;
  }

  private notify(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }
}

/** JSON lines that are complete (a chunk may end mid-line). */
function completeLines(text: string): string[] {
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.startsWith('{'));
}

/** Final lines seen at `pod` for connections to `port` (optionally from `clientPort`). */
export function finals(lines: FlowLine[], sel: { pod?: string; port: number; clientPort?: number; transport?: string }): FlowLine[] {
  return lines.filter(
    (l) =>
      l.final &&
      l.server.port === sel.port &&
      l.transport === (sel.transport ?? 'tcp') &&
      (sel.pod === undefined || l.pod === sel.pod) &&
      (sel.clientPort === undefined || l.client.port === sel.clientPort),
  );
}

/** Agent arguments for fast tests: short timers, metrics on an ephemeral port. */
export function fastArgs(glob: string, extra: string[] = []): string[] {
  return [
    '--mode', 'local', '--output', 'jsonl', '--netns', glob, '--metrics-addr', '127.0.0.1:0',
    '--idle-timeout', '3s', '--drain-interval', '200ms', '--classify-after', '1s', '--rescan-interval', '1s',
    ...extra,
  ];
}
