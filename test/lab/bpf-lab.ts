// Helpers for the eBPF datapath tests (not a test itself): a "pod" the way Kubernetes
// builds one — a network namespace whose eth0 is one end of a veth pair, the other end
// (`ps-xxxxxx`) in the root namespace, where the agent attaches — plus small TCP/UDP peers.
//
// Addresses: 198.19.N.0/24 (RFC 2544 benchmarking range; test/lab uses 198.18.N) and
// fd00:7073:N::/64. The namespaces come from test/lab's Lab (closed in t.teardown, also
// on exit and signals); deleting a namespace deletes its veth pair with it.

import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import dgram from 'node:dgram';
import { bpfEnvironmentProblem } from '../../agent/src/bpf/environment.js';
import { defaultObjectPath } from '../../agent/src/bpf/flow.js';
import { Lab, labSkipReason, type Child, type Netns } from '../lab/lab.js';

/** Why the datapath tests cannot run here (they say so and skip), or undefined. */
export function bpfSkipReason(): string | undefined {
  const lab = labSkipReason();
  if (lab) return lab;
  const problem = bpfEnvironmentProblem();
  if (problem) return `${problem.message} (${problem.code})`;
  try {
    defaultObjectPath();
  } catch {
    return 'bpf/build/flow.bpf.o is missing: run `npm run build` first';
  }
  return undefined;
}

export interface Pod {
  ns: Netns;
  /** /var/run/netns/<name>: what setns opens. */
  netnsPath: string;
  /** Host-side veth in the root namespace (where TCX attaches) and its index there. */
  hostIf: string;
  hostIfindex: number;
  hostIp4: string;
  podIp4: string;
  hostIp6: string;
  podIp6: string;
}

function sh(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function freeSubnet(): number {
  for (let i = 0; i < 50; i++) {
    const n = randomInt(1, 255);
    if (sh(['ip', '-4', 'route', 'show', `198.19.${n}.0/24`]).trim() === '') return n;
  }
  throw new Error('no free 198.19.N.0/24 subnet in the root namespace');
}

interface TapLike {
  teardown(fn: () => unknown): void;
}

/** A pod namespace with a host-side veth in the root namespace, addressed and up. */
export async function makePod(t: TapLike, lab: Lab): Promise<Pod> {
  const ns = await lab.netns('bpf');
  const hostIf = `ps-${randomBytes(3).toString('hex')}`;
  const n = freeSubnet();
  const pod: Pod = {
    ns,
    netnsPath: `/var/run/netns/${ns.name}`,
    hostIf,
    hostIfindex: 0,
    hostIp4: `198.19.${n}.1`,
    podIp4: `198.19.${n}.2`,
    hostIp6: `fd00:7073:${n.toString(16)}::1`,
    podIp6: `fd00:7073:${n.toString(16)}::2`,
  };
  // Registered before creating it, so a failure half-way still removes the link.
  t.teardown(() => {
    try {
      sh(['ip', 'link', 'del', hostIf]);
    } catch {
      /* already gone with its namespace */
    }
  });
  sh(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
  sh(['ip', 'addr', 'add', `${pod.hostIp4}/24`, 'dev', hostIf]);
  sh(['ip', 'addr', 'add', `${pod.hostIp6}/64`, 'dev', hostIf, 'nodad']);
  sh(['ip', 'link', 'set', hostIf, 'up']);
  sh(['ip', '-n', ns.name, 'addr', 'add', `${pod.podIp4}/24`, 'dev', 'eth0']);
  sh(['ip', '-n', ns.name, 'addr', 'add', `${pod.podIp6}/64`, 'dev', 'eth0', 'nodad']);
  sh(['ip', '-n', ns.name, 'link', 'set', 'eth0', 'up']);
  pod.hostIfindex = Number(sh(['cat', `/sys/class/net/${hostIf}/ifindex`]).trim());
  if (!existsSync(pod.netnsPath)) throw new Error(`${pod.netnsPath} missing after ip netns add`);
  return pod;
}

// ---- peers ------------------------------------------------------------------------------

/**
 * TCP server (dual-stack, all addresses): per connection, once `expect` bytes arrived it
 * replies `reply` bytes and closes first (so its side, not the client's, holds TIME_WAIT
 * and clients may reuse their port). UDP server: echoes each datagram. One JSON line per
 * connection/datagram on stdout.
 */
const SERVER_JS = `
const [mode, port, expect, reply] = JSON.parse(process.argv[1]);
if (mode === 'tcp') {
  require('net').createServer((s) => {
    let n = 0, done = false;
    s.on('data', (d) => {
      n += d.length;
      if (!done && n >= expect) { done = true; s.end(Buffer.alloc(reply, 0x53)); }
    });
    s.on('error', () => {});
    s.on('close', () => console.log(JSON.stringify({ remotePort: s.remotePort, received: n })));
  }).listen(port, '::');
} else {
  const u = require('dgram').createSocket({ type: 'udp6', ipv6Only: false });
  u.on('message', (m, r) => { u.send(m, r.port, r.address); console.log(JSON.stringify({ remotePort: r.port, received: m.length })); });
  u.bind(port, '::');
}
`;

export interface ServerLine {
  remotePort: number;
  received: number;
}

export async function startServer(
  lab: Lab,
  ns: Netns,
  opts: { proto: 'tcp' | 'udp'; port: number; expect?: number; reply?: number },
): Promise<Child> {
  const child = lab.exec(ns, ['node', '-e', SERVER_JS, JSON.stringify([opts.proto, opts.port, opts.expect ?? 1, opts.reply ?? 0])], {
    timeoutMs: 5 * 60_000,
    name: `${opts.proto}-server`,
  });
  await lab.waitListen(ns, opts.port, { proto: opts.proto, child });
  return child;
}

/** Client side of the TCP server above, from this process (the root namespace). */
export function tcpExchange(
  host: string,
  port: number,
  send: Buffer,
  reply: number,
  localPort?: number,
): Promise<{ localPort: number; received: number }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localPort }, () => s.write(send));
    let received = 0;
    let local = 0;
    s.on('connect', () => (local = s.localPort ?? 0));
    s.on('data', (d) => (received += d.length));
    s.on('end', () => s.end());
    s.on('close', (hadError) => {
      if (hadError || received !== reply) reject(new Error(`exchange with ${host}:${port} got ${received}/${reply} bytes`));
      else resolve({ localPort: local, received });
    });
    s.on('error', reject);
    s.setTimeout(20_000, () => s.destroy(new Error('timeout')));
  });
}

/** Sends each datagram and waits for its echo. */
export async function udpExchange(host: string, port: number, sizes: number[]): Promise<number> {
  const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((r) => s.bind(0, r));
    for (const size of sizes) {
      const echoed = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no UDP echo')), 5000);
        s.once('message', (m) => {
          clearTimeout(timer);
          resolve(m.length);
        });
      });
      s.send(Buffer.alloc(size, 0x55), port, host);
      if ((await echoed) !== size) throw new Error('short UDP echo');
    }
    return s.address().port;
  } finally {
    s.close();
  }
}

/** A TCP client run inside `ns` (e.g. over its loopback): sends `bytes`, expects `reply`. */
export async function tcpClientIn(lab: Lab, ns: Netns, host: string, port: number, bytes: number, reply: number): Promise<void> {
  const js = `
const [host, port, bytes, reply] = JSON.parse(process.argv[1]);
const s = require('net').connect(port, host, () => s.write(Buffer.alloc(bytes, 0x4c)));
let n = 0; s.on('data', (d) => n += d.length); s.on('end', () => s.end());
s.on('close', () => process.exit(n === reply ? 0 : 3)); s.on('error', (e) => { console.error(e); process.exit(4); });`;
  await lab.run(ns, ['node', '-e', js, JSON.stringify([host, port, bytes, reply])], { name: 'tcp-client' });
}

/** Lines of `tc filter show dev IF DIR` (empty when nothing is attached). */
export function tcFilters(ifname: string, direction: 'ingress' | 'egress'): string[] {
  return sh(['tc', 'filter', 'show', 'dev', ifname, direction])
    .split('\n')
    .filter((l) => l.trim() !== '');
}

/** Whether a BPF program id still exists in the kernel. */
export function progExists(id: number): boolean {
  try {
    sh(['bpftool', 'prog', 'show', 'id', String(id)]);
    return true;
  } catch {
    return false;
  }
}

/** Waits up to `ms` for programs to be freed (after an RCU grace period); the ones still there. */
export async function progsRemaining(ids: number[], ms = 2000): Promise<number[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = ids.filter(progExists);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export { Lab };
