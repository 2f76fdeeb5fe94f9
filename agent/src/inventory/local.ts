// Local mode inventory: every network namespace under /var/run/netns (or the ones named
// with --netns, globs allowed) stands for a pod named after it.
//
// For each pod it finds where to observe from, without entering the namespace (EBPF-NOTES
// pitfall 6): `ip -j link` in the root namespace lists host-side veths with the peer's
// namespace id and ifindex (link_netnsid, link_index); `ip -j netns list` maps those ids
// to names; `ip -n POD -j addr` lists the pod's interfaces and addresses. A pod interface
// whose peer is a root-namespace veth is observed there (TCX); any other interface — the
// loopback, or a veth whose peer is in another namespace — through a socket filter inside
// the pod. The `ip` runs are child processes, asynchronous, a few per scan.
//
// Changes are picked up by fs.watch on the directory (namespaces appear and disappear as
// bind mounts there) plus a periodic rescan, for what a watch can miss.

import { execFile } from 'node:child_process';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

const execFileP = promisify(execFile);

export const NETNS_DIR = '/var/run/netns';

export interface PodInterface {
  /** Name inside the pod. */
  ifname: string;
  ifindex: number;
  /** Host-side peer in the root namespace, when there is one. */
  host?: { ifname: string; ifindex: number };
}

export interface LocalPod {
  name: string;
  netnsPath: string;
  interfaces: PodInterface[];
  /** Addresses of the pod's interfaces (loopback excluded), canonical text. */
  addresses: string[];
  /** Kubernetes mode: the pod's namespace (then `name` is `namespace/pod`) and owner workload. */
  namespace?: string;
  workload?: string;
}

interface IpLink {
  ifindex: number;
  ifname: string;
  link_index?: number;
  link_netnsid?: number;
  link_type?: string;
  addr_info?: { family: string; local: string }[];
}

async function ipJson<T>(args: string[]): Promise<T> {
  const { stdout } = await execFileP('ip', ['-j', ...args], { timeout: 10_000, maxBuffer: 16 << 20 });
  const text = stdout.trim();
  return (text === '' ? [] : JSON.parse(text)) as T;
}

/** A --netns pattern: exact name, or a glob with `*` and `?`. */
export function namePattern(patterns: readonly string[]): (name: string) => boolean {
  if (patterns.length === 0) return () => true;
  const res = patterns.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`));
  return (name) => res.some((r) => r.test(name));
}

/** Lists the namespaces and how to observe each one. A namespace that vanishes mid-scan is left out. */
export async function scanPods(match: (name: string) => boolean, log?: Logger): Promise<LocalPod[]> {
  if (!existsSync(NETNS_DIR)) return [];
  // `ip link` first: dumping a veth whose peer is elsewhere allocates the peer's nsid,
  // which `ip netns list` then shows.
  const rootLinks = await ipJson<IpLink[]>(['link', 'show']);
  const netns = await ipJson<{ name: string; id?: number }[]>(['netns', 'list']);
  const hostByPeer = new Map<string, IpLink>(); // `${nsid}/${peer ifindex}` → host veth
  for (const l of rootLinks) {
    if (l.link_netnsid !== undefined && l.link_index !== undefined) hostByPeer.set(`${l.link_netnsid}/${l.link_index}`, l);
  }
  const pods: LocalPod[] = [];
  await Promise.all(
    netns
      .filter((n) => match(n.name))
      .map(async (n) => {
        let links: IpLink[];
        try {
          links = await ipJson<IpLink[]>(['-n', n.name, 'addr', 'show']);
        } catch (err) {
          log?.debug({ err, netns: n.name }, 'namespace vanished during scan');
          return;
        }
        const interfaces: PodInterface[] = [];
        const addresses: string[] = [];
        for (const l of links) {
          const host = n.id !== undefined ? hostByPeer.get(`${n.id}/${l.ifindex}`) : undefined;
          interfaces.push({ ifname: l.ifname, ifindex: l.ifindex, ...(host ? { host: { ifname: host.ifname, ifindex: host.ifindex } } : {}) });
          if (l.link_type === 'loopback') continue;
          for (const a of l.addr_info ?? []) if (a.family === 'inet' || a.family === 'inet6') addresses.push(a.local);
        }
        pods.push({ name: n.name, netnsPath: `${NETNS_DIR}/${n.name}`, interfaces, addresses });
      }),
  );
  return pods.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Watches the namespace directory and rescans: `onScan` gets the full list after every
 * scan (debounced; one scan at a time). close() stops everything.
 */
export class NetnsWatcher {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(
    private readonly match: (name: string) => boolean,
    private readonly onScan: (pods: LocalPod[]) => void | Promise<void>,
    private readonly log: Logger,
    private readonly rescanMs: number,
  ) {}

  /** First scan (awaited), then the watch and the periodic rescan. */
  async start(): Promise<void> {
    await this.scanNow();
    this.watchDir();
    this.timer = setInterval(() => this.kick(), this.rescanMs);
    this.timer.unref();
  }

  private watchDir(): void {
    if (this.closed || this.watcher) return;
    if (!existsSync(NETNS_DIR)) return; // created by the first `ip netns add`; the rescan retries
    try {
      this.watcher = watch(NETNS_DIR, () => this.kick());
      this.watcher.on('error', (err) => {
        this.log.warn({ err }, 'watch on the namespace directory failed; relying on the periodic rescan');
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      this.log.warn({ err }, 'cannot watch the namespace directory; relying on the periodic rescan');
    }
  }

  /** A scan soon (coalesces bursts of events). */
  kick(): void {
    if (this.closed) return;
    if (this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.scanNow();
    }, 50);
  }

  async scanNow(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        if (this.closed) return;
        try {
          const pods = await scanPods(this.match, this.log);
          if (this.closed) return;
          await this.onScan(pods);
        } catch (err) {
          this.log.error({ err }, 'namespace scan failed');
        }
        this.watchDir();
      } while (this.again);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
    this.watcher = undefined;
    await this.running;
  }
}
