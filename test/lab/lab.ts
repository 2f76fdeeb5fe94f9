// The test lab: network namespaces standing in for pods, joined by veth pairs or a
// bridge, with real processes run inside them and captured with tcpdump/dumpcap.
//
//   const lab = await Lab.open(t, 'tls');          // closed by t.teardown, and on exit/signals
//   const { client, server } = await lab.pair();   // two netns, one veth, 198.18.N.0/24 + fd00:5053:0:N::/64
//   const cap = await lab.capture(server.ns, server.ifname, 'tls.pcap');
//   const srv = lab.exec(server.ns, ['node', ...]); await lab.waitListen(server.ns, 8443);
//   await lab.run(client.ns, ['curl', ...]);
//   await cap.stop();
//
// Addresses only ever come from 198.18.0.0/15 (RFC 2544 benchmarking) and fd00::/8.
// Readiness is seen in /proc/<pid>/net/* (no probe connection ever shows up in a capture).
// Every child runs in its own process group with a deadline; close() kills the groups,
// then anything still living in the lab's namespaces, then deletes the namespaces.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, isAbsolute } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Netns {
  /** `ps-<purpose>-<random>`; what `ip netns` knows it by. */
  readonly name: string;
}

/** One side of a link: the interface inside `ns` and its addresses (no prefix length). */
export interface Endpoint {
  readonly ns: Netns;
  readonly ifname: string;
  readonly ip4: string;
  /** '' when the link's MTU is below IPv6's minimum (1280). */
  readonly ip6: string;
  readonly mac: string;
}

export interface LinkOptions {
  /** Both ends' MTU. Below 1280 the link gets no IPv6 address (IPv6's minimum MTU). */
  mtu?: number;
  /** false: TSO/GSO/GRO off on both ends. */
  offloads?: boolean;
}

export interface ExecOptions {
  /** Killed (whole process group, SIGKILL) after this long. Default 60 s. */
  timeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
  /**
   * Run as this user, e.g. postgres: `setpriv --reuid U --regid U --init-groups`, which
   * execs (no intermediate process that could die first and orphan the child).
   */
  user?: string;
  /** Signal close() sends first (default SIGTERM), e.g. SIGINT for a fast postgres shutdown. */
  stopSignal?: NodeJS.Signals;
  /** Text written to stdin then closed; 'pipe' keeps stdin open (write with child.stdin); default: /dev/null. */
  stdin?: string | 'pipe';
  /** Shown in errors; defaults to argv[0]. */
  name?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export interface RunResult extends ExitInfo {
  stdout: string;
  stderr: string;
}

export interface CaptureOptions {
  /** tcpdump `-y`, e.g. 'LINUX_SLL2' (only on the `any` interface). */
  linkType?: string;
  /** pcap with nanosecond timestamps (`--time-stamp-precision=nano`). */
  nano?: boolean;
  /** 'tcpdump' (pcap, the default) or 'dumpcap' (pcapng). */
  tool?: 'tcpdump' | 'dumpcap';
  /** A capture filter (BPF syntax), e.g. 'tcp or udp'. */
  filter?: string;
  /** Time allowed after the last packet before stopping. Default 300 ms. */
  settleMs?: number;
  /** stop() rejects when the kernel dropped packets (an unfaithful record) unless this is true. */
  allowDrops?: boolean;
}

export interface CaptureStats {
  captured: number;
  /** Packets the kernel dropped (socket buffer full): a capture with drops is not a faithful record. */
  droppedByKernel: number;
  droppedByInterface: number;
}

export interface Capture {
  /** Absolute path of the capture file. */
  readonly file: string;
  /**
   * Waits `settleMs`, sends SIGINT, waits for the tool to flush and exit; returns its
   * counters. Rejects if packets were dropped (unless `allowDrops`).
   */
  stop(): Promise<CaptureStats>;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** Why the lab cannot run here, or undefined when it can. Tests pass it as `{ skip }`. */
export function labSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'the lab needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'the lab needs root (ip netns, tcpdump)';
  for (const tool of ['ip', 'tcpdump']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `the lab needs ${tool} on PATH`;
    }
  }
  try {
    const probe = `ps-probe-${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'ignore' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
  } catch {
    return 'cannot create network namespaces here (ip netns add failed)';
  }
  return undefined;
}

/** A running child process inside a namespace. */
export class Child {
  readonly proc: ChildProcess;
  readonly name: string;
  stdout = '';
  stderr = '';
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;
  private timedOut = false;
  private readonly timer: NodeJS.Timeout;
  private readonly waiters = new Set<() => void>();

  readonly stopSignal: NodeJS.Signals;

  constructor(proc: ChildProcess, name: string, timeoutMs: number, stopSignal: NodeJS.Signals = 'SIGTERM') {
    this.proc = proc;
    this.name = name;
    this.stopSignal = stopSignal;
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      this.notify();
    });
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      this.notify();
    });
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.signalGroup('SIGKILL');
    }, timeoutMs);
    this.timer.unref();
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(this.timer);
        this.exitInfo = { code, signal, timedOut: this.timedOut };
        this.notify();
        resolve(this.exitInfo);
      };
      // 'close' waits for stdio to drain, so stdout/stderr are complete when it fires.
      proc.on('close', done);
      proc.on('error', (e) => {
        this.stderr += String(e);
        done(null, null);
      });
    });
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Sends a signal to the child's whole process group (it leads its own group). */
  signalGroup(signal: NodeJS.Signals): void {
    if (this.exitInfo !== undefined || this.pid <= 0) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      /* already gone */
    }
  }

  /** `signal` (default: its stop signal) to the group, SIGKILL after `graceMs`; resolves when it has exited. */
  async kill(signal: NodeJS.Signals = this.stopSignal, graceMs = 3000): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    this.signalGroup(signal);
    const t = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
    const info = await this.exited;
    clearTimeout(t);
    return info;
  }

  /** Resolves with the first match of `re` in the stream; rejects on exit or timeout. */
  async waitFor(stream: 'stdout' | 'stderr', re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this[stream].match(re);
      if (m) return m;
      if (this.exitInfo) throw new Error(`${this.name} exited (${describeExit(this.exitInfo)}) before printing ${re}: ${tail(this.stderr || this.stdout)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name} did not print ${re} within ${timeoutMs} ms: ${tail(this.stderr || this.stdout)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.add(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** stdout parsed as JSON lines (the peers' protocol). */
  events<T = Record<string, unknown>>(): T[] {
    return this.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as T);
  }

  private notify(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }
}

function describeExit(e: ExitInfo): string {
  if (e.timedOut) return 'killed after its deadline';
  return e.signal ? `signal ${e.signal}` : `code ${e.code}`;
}

function tail(s: string, n = 600): string {
  const t = s.trim();
  return t.length > n ? '…' + t.slice(-n) : t || '(no output)';
}

// Every open lab, so that the process-exit and signal handlers can clean up synchronously.
const openLabs = new Set<Lab>();
let handlersInstalled = false;

function installProcessHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of openLabs) lab.closeSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const lab of openLabs) lab.closeSync();
      process.kill(process.pid, sig);
    });
  }
}

interface TapLike {
  teardown(fn: () => unknown): void;
  passing?(): boolean;
  comment?(...args: unknown[]): void;
}

export class Lab {
  readonly purpose: string;
  /** Working directory (captures, configs). Removed on close unless PS_LAB_KEEP=1 or the test failed. */
  readonly dir: string;
  private readonly namespaces: Netns[] = [];
  private readonly children = new Set<Child>();
  private readonly linkCount = new Map<string, number>();
  private subnet = 0;
  /** close() started: no new namespaces or children. */
  private closed = false;
  /** Everything torn down (by close() or closeSync()). */
  private done = false;

  private constructor(purpose: string) {
    if (!/^[a-z0-9]{1,12}$/.test(purpose)) throw new Error(`lab purpose must be 1-12 of [a-z0-9]: ${purpose}`);
    this.purpose = purpose;
    this.dir = mkdtempSync(join(tmpdir(), `ps-lab-${purpose}-`));
    installProcessHandlers();
    openLabs.add(this);
  }

  /** A lab whose close() is registered with `t.teardown` (and with process exit/signals). */
  static async open(t: TapLike | undefined, purpose: string): Promise<Lab> {
    const lab = new Lab(purpose);
    t?.teardown(async () => {
      const keep = process.env.PS_LAB_KEEP === '1' || (t.passing !== undefined && !t.passing());
      if (keep) t.comment?.(`lab files kept in ${lab.dir}`);
      await lab.close({ keepDir: keep });
    });
    return lab;
  }

  /** Runs `fn` with a fresh lab and closes it afterwards, whatever happens. */
  static async with<T>(purpose: string, fn: (lab: Lab) => Promise<T>): Promise<T> {
    const lab = new Lab(purpose);
    try {
      return await fn(lab);
    } finally {
      await lab.close();
    }
  }

  /** Names of the namespaces this lab created (still existing until close). */
  get netnsNames(): string[] {
    return this.namespaces.map((n) => n.name);
  }

  /** A path inside the lab's directory. */
  path(name: string): string {
    return isAbsolute(name) ? name : join(this.dir, name);
  }

  /** A new namespace `ps-<purpose>-<random>` with `lo` up. */
  async netns(role = this.purpose): Promise<Netns> {
    this.assertOpen();
    const name = `ps-${role}-${randomBytes(3).toString('hex')}`;
    await this.ip(['netns', 'add', name]);
    const ns = { name };
    this.namespaces.push(ns);
    await this.ip(['-n', name, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /**
   * A veth pair between two namespaces, addressed 198.18.N.1/.2 and fd00:5053:0:N::1/2.
   * `mtu` sets both ends; `offloads: false` turns off TSO/GSO/GRO (ethtool), so that what a
   * capture sees is MTU-sized segments as on a physical wire, not 64 KiB GSO packets.
   */
  async veth(a: Netns, b: Netns, opts: LinkOptions = {}): Promise<[Endpoint, Endpoint]> {
    const n = this.nextSubnet();
    const ia = this.nextIfname(a);
    const ib = this.nextIfname(b);
    await this.ip(['-n', a.name, 'link', 'add', ia, 'type', 'veth', 'peer', 'name', ib, 'netns', b.name]);
    for (const [ns, ifname] of [[a, ia], [b, ib]] as const) {
      if (opts.mtu) await this.ip(['-n', ns.name, 'link', 'set', ifname, 'mtu', String(opts.mtu)]);
      if (opts.offloads === false) await this.run(ns, ['ethtool', '-K', ifname, 'tso', 'off', 'gso', 'off', 'gro', 'off'], { name: 'ethtool' });
    }
    const v6 = (opts.mtu ?? 1500) >= 1280;
    const ea = await this.addressUp(a, ia, n, 1, v6);
    const eb = await this.addressUp(b, ib, n, 2, v6);
    return [ea, eb];
  }

  /** The common case: a client namespace and a server namespace joined by one veth. */
  async pair(opts: LinkOptions = {}): Promise<{ client: Endpoint; server: Endpoint }> {
    const server = await this.netns(`${this.purpose}s`);
    const client = await this.netns(`${this.purpose}c`);
    const [s, c] = await this.veth(server, client, opts);
    return { client: c, server: s };
  }

  /**
   * A "node": a bridge namespace with one veth per member namespace (like pods on a
   * host), all members in one subnet 198.18.N.0/24 (.1, .2, …). `hostSide[i]` is the
   * bridge-namespace end of member i's veth — where a node agent would attach.
   */
  async bridge(members: Netns[]): Promise<{ node: Netns; members: Endpoint[]; hostSide: string[] }> {
    if (members.length > 250) throw new Error('at most 250 bridge members');
    const node = await this.netns(`${this.purpose}br`);
    const n = this.nextSubnet();
    await this.ip(['-n', node.name, 'link', 'add', 'br0', 'type', 'bridge']);
    await this.ip(['-n', node.name, 'link', 'set', 'br0', 'up']);
    const eps: Endpoint[] = [];
    const hostSide: string[] = [];
    for (const [i, m] of members.entries()) {
      const inner = this.nextIfname(m);
      const outer = `veth${i}`;
      await this.ip(['-n', m.name, 'link', 'add', inner, 'type', 'veth', 'peer', 'name', outer, 'netns', node.name]);
      await this.ip(['-n', node.name, 'link', 'set', outer, 'master', 'br0']);
      await this.ip(['-n', node.name, 'link', 'set', outer, 'up']);
      eps.push(await this.addressUp(m, inner, n, i + 1));
      hostSide.push(outer);
    }
    return { node, members: eps, hostSide };
  }

  /** Starts `argv` inside `ns` (via `ip netns exec`) in its own process group. */
  exec(ns: Netns | string, argv: string[], opts: ExecOptions = {}): Child {
    this.assertOpen();
    const nsName = typeof ns === 'string' ? ns : ns.name;
    const asUser = opts.user ? ['setpriv', '--reuid', opts.user, '--regid', opts.user, '--init-groups', '--'] : [];
    const full = ['netns', 'exec', nsName, ...asUser, ...argv];
    const stdinMode = opts.stdin === undefined ? 'ignore' : 'pipe';
    const proc = spawn('ip', full, {
      detached: true, // own process group: kill(-pid) reaches its children too
      stdio: [stdinMode, 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd ?? this.dir,
    });
    const child = new Child(proc, opts.name ?? argv[0] ?? 'child', opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, opts.stopSignal);
    if (typeof opts.stdin === 'string' && opts.stdin !== 'pipe') {
      proc.stdin?.on('error', () => undefined);
      proc.stdin?.end(opts.stdin);
    }
    this.children.add(child);
    void child.exited.then(() => this.children.delete(child));
    return child;
  }

  /** exec and wait; throws (with the tail of stderr) on a non-zero exit unless check is false. */
  async run(ns: Netns | string, argv: string[], opts: ExecOptions & { check?: boolean } = {}): Promise<RunResult> {
    const child = this.exec(ns, argv, { timeoutMs: 30_000, ...opts });
    const info = await child.exited;
    const res = { ...info, stdout: child.stdout, stderr: child.stderr };
    if ((opts.check ?? true) && (info.code !== 0 || info.timedOut)) {
      throw new Error(`${child.name} failed (${describeExit(info)}): ${tail(child.stderr || child.stdout)}`);
    }
    return res;
  }

  /**
   * Waits until something in `ns` listens on `port` (TCP LISTEN, or a bound UDP socket),
   * by reading /proc/<pid>/net/* of a process inside the namespace: no probe connection,
   * so nothing extra shows up in a capture. Rejects early if `child` exits.
   */
  async waitListen(ns: Netns | string, port: number, opts: { proto?: 'tcp' | 'udp'; timeoutMs?: number; child?: Child } = {}): Promise<void> {
    const nsName = typeof ns === 'string' ? ns : ns.name;
    const proto = opts.proto ?? 'tcp';
    const timeoutMs = opts.timeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
    for (;;) {
      if (opts.child && !opts.child.running) {
        const info = await opts.child.exited;
        throw new Error(`${opts.child.name} exited (${describeExit(info)}) before listening on ${proto}/${port}: ${tail(opts.child.stderr || opts.child.stdout)}`);
      }
      const pids = opts.child?.running ? [opts.child.pid] : nsPids(nsName);
      for (const pid of pids) {
        if (procListens(pid, proto, hexPort)) return;
      }
      if (Date.now() > deadline) throw new Error(`nothing listened on ${proto}/${port} in ${nsName} within ${timeoutMs} ms`);
      await sleep(25);
    }
  }

  /** Starts a capture on `iface` inside `ns`; resolves once the tool is listening. */
  async capture(ns: Netns | string, iface: string, file: string, opts: CaptureOptions = {}): Promise<Capture> {
    const path = this.path(file);
    const tool = opts.tool ?? 'tcpdump';
    let argv: string[];
    let ready: RegExp;
    if (tool === 'tcpdump') {
      // --immediate-mode: without it libpcap's TPACKET_V3 blocks hold packets until a
      // timeout, and a SIGINT drops whatever is still in the block.
      argv = ['tcpdump', '-i', iface, '-w', path, '-U', '-s', '0', '-n', '--immediate-mode', '-Z', 'root', '-B', '16384'];
      if (opts.linkType) argv.push('-y', opts.linkType);
      if (opts.nano) argv.push('--time-stamp-precision=nano');
      if (opts.filter) argv.push(opts.filter);
      ready = /listening on/;
    } else {
      if (opts.linkType || opts.nano) throw new Error('linkType/nano are tcpdump options');
      argv = ['dumpcap', '-q', '-i', iface, '-w', path, '-s', '0'];
      if (opts.filter) argv.push('-f', opts.filter);
      ready = /Capturing on/;
    }
    const child = this.exec(ns, argv, { timeoutMs: 10 * 60_000, name: tool });
    await child.waitFor('stderr', ready, 10_000);
    const settleMs = opts.settleMs ?? (tool === 'dumpcap' ? 1200 : 300);
    return {
      file: path,
      stop: async () => {
        if (!child.running) {
          const info = await child.exited;
          throw new Error(`${tool} had already exited (${describeExit(info)}): ${tail(child.stderr)}`);
        }
        await sleep(settleMs);
        child.signalGroup('SIGINT');
        const t = setTimeout(() => child.signalGroup('SIGKILL'), 5000);
        const info = await child.exited;
        clearTimeout(t);
        if (info.timedOut || info.signal === 'SIGKILL') throw new Error(`${tool} did not stop cleanly: ${tail(child.stderr)}`);
        const stats = captureStats(tool, child.stderr);
        if (!opts.allowDrops && stats.droppedByKernel + stats.droppedByInterface > 0) {
          throw new Error(`${tool} on ${iface} dropped packets (${JSON.stringify(stats)}): ${path} is not a faithful record`);
        }
        return stats;
      },
    };
  }

  /** Kills every child (process groups, then anything left in the namespaces) and deletes the namespaces. */
  async close(opts: { keepDir?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.children].map((c) => c.kill()));
    for (const ns of [...this.namespaces].reverse()) {
      if (this.done) break; // closeSync() ran meanwhile (process exit during teardown)
      for (const pid of nsPids(ns.name)) killQuietly(pid, 'SIGKILL');
      for (let i = 0; i < 20; i++) {
        try {
          execFileSync('ip', ['netns', 'del', ns.name], { stdio: 'ignore' });
          break;
        } catch {
          if (!existsNetns(ns.name)) break;
          await sleep(50);
        }
      }
    }
    this.namespaces.length = 0;
    this.done = true;
    if (!opts.keepDir && process.env.PS_LAB_KEEP !== '1') rmSync(this.dir, { recursive: true, force: true });
    openLabs.delete(this);
  }

  /** The synchronous last resort, for process exit and signals; also finishes an interrupted close(). */
  closeSync(): void {
    if (this.done) return;
    this.closed = true;
    this.done = true;
    for (const c of this.children) c.signalGroup('SIGKILL');
    for (const ns of [...this.namespaces].reverse()) {
      for (const pid of nsPids(ns.name)) killQuietly(pid, 'SIGKILL');
      try {
        execFileSync('ip', ['netns', 'del', ns.name], { stdio: 'ignore' });
      } catch {
        /* best effort */
      }
    }
    this.namespaces.length = 0;
    openLabs.delete(this);
  }

  private async ip(args: string[]): Promise<void> {
    const proc = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
    if (code !== 0) throw new Error(`ip ${args.join(' ')} failed: ${err.trim()}`);
  }

  private async addressUp(ns: Netns, ifname: string, subnet: number, host: number, v6 = true): Promise<Endpoint> {
    const ip4 = `198.18.${subnet}.${host}`;
    const ip6 = canonicalIp6(`fd00:5053:0:${subnet.toString(16)}::${host.toString(16)}`);
    const mac = `02:50:53:${hex2(subnet)}:00:${hex2(host)}`;
    await this.ip(['-n', ns.name, 'link', 'set', ifname, 'address', mac]);
    await this.ip(['-n', ns.name, 'addr', 'add', `${ip4}/24`, 'dev', ifname]);
    // nodad: usable at once, no 1-2 s of "tentative" during which bind() fails.
    if (v6) await this.ip(['-n', ns.name, 'addr', 'add', `${ip6}/64`, 'dev', ifname, 'nodad']);
    await this.ip(['-n', ns.name, 'link', 'set', ifname, 'up']);
    return { ns, ifname, ip4, ip6: v6 ? ip6 : '', mac };
  }

  private nextSubnet(): number {
    if (this.subnet > 255) throw new Error('out of lab subnets');
    return this.subnet++;
  }

  private nextIfname(ns: Netns): string {
    const k = this.linkCount.get(ns.name) ?? 0;
    this.linkCount.set(ns.name, k + 1);
    return `eth${k}`;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('lab is closed');
  }
}

/** The counters tcpdump/dumpcap print on exit. */
function captureStats(tool: 'tcpdump' | 'dumpcap', stderr: string): CaptureStats {
  if (tool === 'dumpcap') {
    // "Packets received/dropped on interface 'eth0': 57/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0)"
    const m = stderr.match(/received\/dropped on interface '[^']*': (\d+)\/(\d+) \(pcap:(\d+)\/dumpcap:(\d+)\/flushed:(\d+)\/ps_ifdrop:(\d+)\)/);
    const n = (i: number) => Number(m?.[i] ?? 0);
    return { captured: n(1), droppedByKernel: n(3) + n(4) + n(5), droppedByInterface: n(6) };
  }
  const count = (re: RegExp) => Number(stderr.match(re)?.[1] ?? 0);
  return {
    captured: count(/(\d+) packets? captured/),
    droppedByKernel: count(/(\d+) packets? dropped by kernel/),
    droppedByInterface: count(/(\d+) packets? dropped by interface/),
  };
}

/** RFC 5952 text form (lower case, longest zero run compressed), via the URL parser. */
export function canonicalIp6(ip: string): string {
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

function hex2(n: number): string {
  return (n & 0xff).toString(16).padStart(2, '0');
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

function existsNetns(ns: string): boolean {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .some((l) => l.split(' ')[0] === ns);
  } catch {
    return false;
  }
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

/** /proc/<pid>/net/{tcp,tcp6,udp,udp6}: a LISTEN (0A) TCP socket, or any UDP socket, on the port. */
function procListens(pid: number, proto: 'tcp' | 'udp', hexPort: string): boolean {
  for (const f of [proto, `${proto}6`]) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${f}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      const state = cols[3];
      if (!local || !local.endsWith(`:${hexPort}`)) continue;
      if (proto === 'udp' || state === '0A') return true;
    }
  }
  return false;
}

/** `Lab.with` as a function: a fresh lab for the duration of `fn`, closed whatever happens. */
export function withLab<T>(purpose: string, fn: (lab: Lab) => Promise<T>): Promise<T> {
  return Lab.with(purpose, fn);
}
