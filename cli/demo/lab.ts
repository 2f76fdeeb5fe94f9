// The demo's "nodes": network namespaces standing in for pods, each with eth0 a veth whose
// host end sits on a bridge in the root namespace (the way a CNI plugin wires pods, and
// where the agent attaches). Two bridges — two "nodes" — joined by a veth "trunk"; one
// more namespace plays the internet. Addresses only from 198.18.0.0/15 (RFC 2544), all
// on-link (/15), the bridges without addresses: nothing is routed through the host.
//
// Everything created is named so that a killed run can be cleaned up by the next one:
// namespaces `ps-demo-*`, root links `psd-*`, $TMPDIR/plainsight-demo-*, and a pid file
// in /run listing the root-namespace children. Children run in their own process groups;
// close() kills the groups, anything left in the namespaces, then deletes namespaces and
// links, then the temporary directory. closeSync() is the same for process exit.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const NETNS_PREFIX = 'ps-demo-';
const LINK_PREFIX = 'psd-';
const PID_FILE = '/run/plainsight-demo.pid';
const TMP_PREFIX = 'plainsight-demo-';
const NETNS_DIR = '/var/run/netns';

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function quiet(fn: () => void): void {
  try {
    fn();
  } catch {
    /* already gone */
  }
}

function nsPids(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Namespaces `ps-demo-*` that exist now. */
export function demoNamespaces(): string[] {
  try {
    return readdirSync(NETNS_DIR).filter((n) => n.startsWith(NETNS_PREFIX));
  } catch {
    return [];
  }
}

function demoLinks(): string[] {
  try {
    return readdirSync('/sys/class/net').filter((n) => n.startsWith(LINK_PREFIX));
  } catch {
    return [];
  }
}

/** The pid of a demo still running, if any. */
export function runningDemo(): number | undefined {
  try {
    const pid = Number(readFileSync(PID_FILE, 'utf8').split('\n')[0]);
    if (!(pid > 0) || pid === process.pid) return undefined;
    // Alive (not a zombie) and still a demo (the pid was not reused).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('demo') ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes what a killed demo left: its root-namespace children (agent, aggregator,
 * Prometheus: process groups listed in the pid file, checked by command line), namespaces
 * with their processes, root links. Returns what it removed.
 */
export function cleanLeftovers(): string[] {
  const removed: string[] = [];
  let groups: number[] = [];
  try {
    groups = readFileSync(PID_FILE, 'utf8').split('\n').slice(1).filter(Boolean).map(Number);
  } catch {
    /* no earlier run */
  }
  for (const pgid of groups) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pgid}/cmdline`, 'utf8');
    } catch {
      continue; // gone
    }
    if (!/dist\/cli\/main\.js|prometheus/.test(cmd)) continue; // the pid was reused by something else
    quiet(() => process.kill(-pgid, 'SIGKILL'));
    removed.push(`pid ${pgid}`);
  }
  for (const ns of demoNamespaces()) {
    for (const pid of nsPids(ns)) quiet(() => process.kill(pid, 'SIGKILL'));
    quiet(() => ip(['netns', 'del', ns]));
    removed.push(ns);
  }
  for (const l of demoLinks()) {
    quiet(() => ip(['link', 'del', l]));
    removed.push(l);
  }
  for (const d of readdirSync(tmpdir()).filter((n) => n.startsWith(TMP_PREFIX))) {
    quiet(() => rmSync(join(tmpdir(), d), { recursive: true, force: true }));
    removed.push(join(tmpdir(), d));
  }
  return removed;
}

export interface Pod {
  /** Short name shown to people, e.g. "gateway". */
  name: string;
  /** The netns name: `ps-demo-<name>` (the agent's workload name in local mode). */
  netns: string;
  ip: string;
  node: string;
}

export class Proc {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private done = false;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    private readonly stopSignal: NodeJS.Signals = 'SIGTERM',
  ) {
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.stdout = (this.stdout + d).slice(-1 << 20);
    });
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderr = (this.stderr + d).slice(-64 << 10);
    });
    this.exited = new Promise((resolve) => {
      proc.on('error', (e) => {
        this.stderr += String(e);
        this.done = true;
        resolve(null);
      });
      proc.on('close', (code) => {
        this.done = true;
        resolve(code);
      });
    });
  }

  get running(): boolean {
    return !this.done;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.done || !this.proc.pid) return;
    quiet(() => process.kill(-this.proc.pid!, sig));
  }

  async stop(graceMs = 3000): Promise<void> {
    if (this.done) return;
    this.signal(this.stopSignal);
    const t = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }

  /** Resolves when `re` appears on stdout or stderr; rejects if the process exits first or on timeout. */
  async waitFor(re: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.stdout) && !re.test(this.stderr)) {
      if (this.done) throw new Error(`${this.name} exited: ${tail(this.stderr || this.stdout)}`);
      if (Date.now() > deadline) throw new Error(`${this.name} not ready after ${timeoutMs} ms: ${tail(this.stderr || this.stdout)}`);
      await sleep(50);
    }
  }
}

export function tail(s: string, n = 400): string {
  const t = s.trim();
  return t.length > n ? `…${t.slice(-n)}` : t || '(no output)';
}

export class DemoLab {
  readonly dir: string;
  readonly pods: Pod[] = [];
  private readonly namespaces: string[] = [];
  private readonly links: string[] = [];
  private readonly procs = new Set<Proc>();
  private readonly bridges = new Map<string, string>();
  private linkN = 0;
  private closed = false;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), TMP_PREFIX));
    writeFileSync(PID_FILE, `${process.pid}\n`);
  }

  /** A "node": a bridge in the root namespace. Nodes are joined to the first one by a trunk veth. */
  node(name: string): void {
    const br = `${LINK_PREFIX}${name}`.slice(0, 15);
    this.links.push(br);
    ip(['link', 'add', br, 'type', 'bridge']);
    ip(['link', 'set', br, 'up']);
    const first = [...this.bridges.values()][0];
    this.bridges.set(name, br);
    if (first) {
      const a = `${LINK_PREFIX}t${this.linkN}a`;
      const b = `${LINK_PREFIX}t${this.linkN++}b`;
      this.links.push(a);
      ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
      ip(['link', 'set', a, 'master', first]);
      ip(['link', 'set', b, 'master', br]);
      ip(['link', 'set', a, 'up']);
      ip(['link', 'set', b, 'up']);
    }
  }

  /** A namespace `ps-demo-<name>` on `node`'s bridge with `addrs` (first = its IP). */
  pod(name: string, node: string, addrs: string[]): Pod {
    const netns = `${NETNS_PREFIX}${name}`;
    const br = this.bridges.get(node);
    if (!br) throw new Error(`no node ${node}`);
    ip(['netns', 'add', netns]);
    this.namespaces.push(netns);
    ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    const host = `${LINK_PREFIX}v${this.linkN++}`;
    this.links.push(host);
    ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    ip(['link', 'set', host, 'master', br]);
    ip(['link', 'set', host, 'up']);
    for (const a of addrs) ip(['-n', netns, 'addr', 'add', `${a}/15`, 'dev', 'eth0']);
    ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
    const pod = { name, netns, ip: addrs[0]!, node };
    this.pods.push(pod);
    return pod;
  }

  /** Starts argv inside the namespace (or in the root namespace for ns ''), in its own process group. */
  exec(ns: string, argv: string[], o: { name?: string; user?: string; stopSignal?: NodeJS.Signals; env?: Record<string, string> } = {}): Proc {
    if (this.closed) throw new Error('demo is stopping');
    const asUser = o.user ? ['setpriv', '--reuid', o.user, '--regid', o.user, '--init-groups', '--'] : [];
    const full = ns ? ['ip', 'netns', 'exec', ns, ...asUser, ...argv] : [...asUser, ...argv];
    const proc = spawn(full[0]!, full.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir, env: { ...process.env, ...o.env } });
    // Root-namespace children are not found through a namespace: remember them for cleanLeftovers().
    if (!ns && proc.pid) quiet(() => appendFileSync(PID_FILE, `${proc.pid}\n`));
    const p = new Proc(o.name ?? argv[0]!, proc, o.stopSignal);
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  /** exec and wait; rejects with the tail of its output on a non-zero exit. */
  async run(ns: string, argv: string[], o: { name?: string; user?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<string> {
    const p = this.exec(ns, argv, o);
    const t = setTimeout(() => p.signal('SIGKILL'), o.timeoutMs ?? 30_000);
    const code = await p.exited;
    clearTimeout(t);
    if (code !== 0) throw new Error(`${p.name} failed (exit ${code}): ${tail(p.stderr || p.stdout)}`);
    return p.stdout;
  }

  /** Waits until something in `ns` listens on TCP `port` (read from /proc, no probe connection). */
  async waitListen(ns: string, port: number, proc: Proc, timeoutMs = 15_000): Promise<void> {
    const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!proc.running) {
        await proc.exited;
        throw new Error(`${proc.name} exited before listening on ${port}: ${tail(proc.stderr || proc.stdout)}`);
      }
      for (const pid of nsPids(ns)) {
        for (const f of ['tcp', 'tcp6']) {
          let text = '';
          try {
            text = readFileSync(`/proc/${pid}/net/${f}`, 'utf8');
          } catch {
            continue;
          }
          for (const line of text.split('\n').slice(1)) {
            const c = line.trim().split(/\s+/);
            if (c[1]?.endsWith(hex) && c[3] === '0A') return;
          }
        }
      }
      if (Date.now() > deadline) throw new Error(`${proc.name}: nothing listened on ${port} in ${ns} within ${timeoutMs} ms: ${tail(proc.stderr)}`);
      await sleep(30);
    }
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** Stops every child (its stop signal, then SIGKILL), then removes namespaces, links and files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.procs].map((p) => p.stop()));
    this.closeSync();
  }

  /** The synchronous last resort (process exit). Idempotent. */
  closeSync(): void {
    this.closed = true;
    for (const p of this.procs) p.signal('SIGKILL');
    for (const ns of this.namespaces.splice(0).reverse()) {
      for (const pid of nsPids(ns)) quiet(() => process.kill(pid, 'SIGKILL'));
      for (let i = 0; i < 5; i++) {
        try {
          ip(['netns', 'del', ns]);
          break;
        } catch {
          if (!existsSync(join(NETNS_DIR, ns))) break;
          execFileSync('sleep', ['0.05']);
        }
      }
    }
    for (const l of this.links.splice(0).reverse()) quiet(() => ip(['link', 'del', l]));
    quiet(() => rmSync(this.dir, { recursive: true, force: true }));
    quiet(() => {
      if (readFileSync(PID_FILE, 'utf8').split('\n')[0] === String(process.pid)) rmSync(PID_FILE);
    });
  }
}
