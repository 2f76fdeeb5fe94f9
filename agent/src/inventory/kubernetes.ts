// Kubernetes mode inventory: the pods of this node from the API server, each mapped to
// its network namespace and host-side veth without entering any namespace.
//
//   API server ──list+watch (spec.nodeName=$NODE_NAME)──▶ pods ─┐
//              ──list+watch──▶ services (ClusterIPs)            ├─▶ onPods(LocalPod[]) → Agent.reconcile
//   <procRoot>/*/ns/net ─ group pids by netns inode ─▶ netns ───┘
//
// Pod → netns, enter-free (EBPF-NOTES pitfall 6: no setns in the agent's threads):
//   1. every pid under <procRoot> (hostPID) is grouped by the inode of its ns/net link;
//      the agent's own netns (the node's: hostNetwork) is left out;
//   2. a netns's addresses are read from <procRoot>/<pid>/net/fib_trie (IPv4 "/32 host
//      LOCAL" leaves) and net/if_inet6 (IPv6) — procfs shows the net files of the pid's
//      own netns; a pod is the netns holding one of its status.podIPs;
//   3. the netns's interfaces (ifindex, iflink) are read from the sysfs the container
//      runtime mounted for it, <procRoot>/<pid>/root/sys/class/net (every OCI runtime
//      mounts /sys in the container after joining its netns; so does `ip netns exec`);
//      an interface whose iflink is a veth of the node (/sys/class/net here) whose own
//      iflink points back is the pod's host-side veth: attached with TCX from here.
//      Without that sysfs, the pod's interfaces are known by name only (net/dev) and the
//      Agent observes them with socket filters inside the pod.
//
// Workloads from ownerReferences: ReplicaSet → its Deployment (the ReplicaSet's own
// controller, read from the API once and cached; without it, the name minus the
// pod-template-hash), Job → its CronJob likewise, StatefulSet/DaemonSet/… as they are,
// a bare pod is its own workload. Services' ClusterIPs and this node's addresses travel to
// the aggregator with the inventory (namespace/service; namespace "node"), so it names a
// ClusterIP destination after its Service and a node address "node". Kubelet probes
// (source: a node address, destination: a pod port named by one of its liveness/
// readiness/startup probes) are flagged `"probe": true` in the jsonl.
//
// The API is spoken by @kubernetes/client-node: KubeConfig (in-cluster ServiceAccount, or a
// kubeconfig file), a ListWatch informer per collection (list, watch from its
// resourceVersion, relist on 410 Gone), CoreV1/AppsV1/BatchV1Api for lists and owner reads.
// The API server unreachable, or 401/403 (the informer's 'error' event: it stops): one
// warning saying what to do, the informer restarted with backoff (1 s doubling to 30 s),
// the datapath keeps running; recovery is logged.

import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter } from 'node:path';
import { AppsV1Api, BatchV1Api, CoreV1Api, KubeConfig, ListWatch, Watch } from '@kubernetes/client-node';
import type { KubernetesListObject, KubernetesObject, V1OwnerReference, V1Pod, V1Probe, V1Service } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AgentFlowJson } from '../capture/tracker.js';
import { PlainsightError } from '../errors.js';
import type { ExportPod } from '../export/index.js';
import type { LocalPod, PodInterface } from './local.js';

// ---- workloads ------------------------------------------------------------------------------

export interface Workload {
  kind: string;
  name: string;
}

/** `${kind}/${namespace}/${name}` of a ReplicaSet or Job → its controller (null: it has none). */
export type OwnerCache = ReadonlyMap<string, V1OwnerReference | null>;

export const ownerKey = (kind: string, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;

function controllerOf(refs: readonly V1OwnerReference[] | undefined): V1OwnerReference | undefined {
  return refs?.find((r) => r.controller) ?? refs?.[0];
}

/** The owners of `pod` that need an API read to go one level up (ReplicaSet, Job). */
export function ownerLookups(pod: V1Pod): { kind: 'ReplicaSet' | 'Job'; namespace: string; name: string }[] {
  const ref = controllerOf(pod.metadata?.ownerReferences);
  if (!ref || (ref.kind !== 'ReplicaSet' && ref.kind !== 'Job')) return [];
  return [{ kind: ref.kind, namespace: pod.metadata?.namespace ?? 'default', name: ref.name }];
}

/**
 * The pod's workload: ReplicaSet → Deployment, Job → CronJob (through `owners`, else by
 * name), any other controller as it is, no controller → the pod itself.
 */
export function deriveWorkload(pod: V1Pod, owners: OwnerCache = new Map()): Workload {
  const ns = pod.metadata?.namespace ?? 'default';
  const ref = controllerOf(pod.metadata?.ownerReferences);
  if (!ref) return { kind: 'Pod', name: pod.metadata?.name ?? '' };
  if (ref.kind === 'ReplicaSet' || ref.kind === 'Job') {
    const up = owners.get(ownerKey(ref.kind, ns, ref.name));
    if (up) return { kind: up.kind, name: up.name };
    if (up === null) return { kind: ref.kind, name: ref.name }; // a bare ReplicaSet/Job
    if (ref.kind === 'ReplicaSet') {
      // Not read (yet): a Deployment names its ReplicaSets <deployment>-<pod-template-hash>.
      const hash = pod.metadata?.labels?.['pod-template-hash'];
      if (hash && ref.name.endsWith(`-${hash}`)) return { kind: 'Deployment', name: ref.name.slice(0, -hash.length - 1) };
    } else {
      // A CronJob names its Jobs <cronjob>-<scheduled time in minutes since the epoch>.
      const m = /^(.+)-\d{8,10}$/.exec(ref.name);
      if (m) return { kind: 'CronJob', name: m[1]! };
    }
  }
  return { kind: ref.kind, name: ref.name };
}

// ---- probes -----------------------------------------------------------------------------------

/** TCP ports the kubelet probes on this pod (liveness/readiness/startup: httpGet, tcpSocket, grpc). */
export function probePorts(pod: V1Pod): Set<number> {
  const ports = new Set<number>();
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    const named = new Map((c.ports ?? []).filter((p) => p.name).map((p) => [p.name!, p.containerPort]));
    const probes: (V1Probe | undefined)[] = [c.livenessProbe, c.readinessProbe, c.startupProbe];
    for (const p of probes) {
      if (!p) continue;
      const port: number | string | undefined = p.httpGet?.port ?? p.tcpSocket?.port ?? p.grpc?.port;
      if (port === undefined) continue;
      const n = typeof port === 'number' ? port : /^\d+$/.test(port) ? Number(port) : named.get(port);
      if (n !== undefined && n > 0) ports.add(n);
    }
  }
  return ports;
}

/** A kubelet probe: from a node address to a port the destination pod names in a probe. */
export function isProbe(client: string, server: { ip: string; port: number }, nodeIps: ReadonlySet<string>, probes: ReadonlyMap<string, ReadonlySet<number>>): boolean {
  return nodeIps.has(client) && (probes.get(server.ip)?.has(server.port) ?? false);
}

// ---- netns discovery (enter-free) ----------------------------------------------------------

export interface NetnsView {
  inode: string;
  pid: number;
  addresses: string[];
  interfaces: PodInterface[];
}

/** Local IPv4 addresses in a /proc/net/fib_trie dump ("/32 host LOCAL" leaves). */
export function parseFibTrie(text: string): string[] {
  const out = new Set<string>();
  let leaf: string | undefined;
  for (const line of text.split('\n')) {
    const m = /\|-- (\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (m) leaf = m[1];
    else if (leaf && /\/32 host LOCAL/.test(line) && !leaf.startsWith('127.')) out.add(leaf);
  }
  return [...out];
}

/** Global IPv6 addresses in /proc/net/if_inet6 (loopback and link-local left out). */
export function parseIfInet6(text: string): { address: string; ifindex: number; ifname: string }[] {
  const out: { address: string; ifindex: number; ifname: string }[] = [];
  for (const line of text.trim().split('\n')) {
    const [hex, idx, , scope, , ifname] = line.trim().split(/\s+/);
    if (!hex || hex.length !== 32 || !ifname || ifname === 'lo' || scope !== '00') continue;
    const groups = hex.match(/.{4}/g)!.map((g) => parseInt(g, 16).toString(16));
    out.push({ address: canonicalV6(groups.join(':')), ifindex: parseInt(idx ?? '0', 16), ifname });
  }
  return out;
}

/** Compresses the longest run of zero groups, as `ip` and the API server print. */
function canonicalV6(full: string): string {
  const g = full.split(':');
  let best = -1;
  let len = 0;
  for (let i = 0; i < g.length; ) {
    if (g[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < g.length && g[j] === '0') j++;
    if (j - i > len && j - i > 1) [best, len] = [i, j - i];
    i = j;
  }
  if (best < 0) return g.join(':');
  return `${g.slice(0, best).join(':')}::${g.slice(best + len).join(':')}`;
}

const readText = (p: string): string | undefined => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
};

/** ifindex → {name, iflink} of the interfaces under a sysfs class/net directory. */
function sysfsLinks(dir: string): Map<number, { ifname: string; iflink: number }> {
  const out = new Map<number, { ifname: string; iflink: number }>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const ifname of names) {
    const ifindex = Number(readText(`${dir}/${ifname}/ifindex`)?.trim());
    const iflink = Number(readText(`${dir}/${ifname}/iflink`)?.trim());
    if (ifindex > 0) out.set(ifindex, { ifname, iflink: iflink > 0 ? iflink : ifindex });
  }
  return out;
}

/**
 * Every network namespace other than the agent's own that a process under procRoot is
 * in, with its addresses and interfaces. Reads files only; a pid exiting mid-scan is skipped.
 */
export function scanNetns(procRoot: string, hostSysNet = '/sys/class/net'): NetnsView[] {
  let self = '';
  try {
    self = readlinkSync('/proc/self/ns/net');
  } catch {
    /* no procfs: nothing is "self" */
  }
  const byInode = new Map<string, number>();
  let entries: string[] = [];
  try {
    entries = readdirSync(procRoot);
  } catch (cause) {
    throw new PlainsightError('PLAINSIGHT_ERR_INVENTORY_PROC', `cannot read ${procRoot}: run with hostPID (the default /proc then lists every pid of the node), or point --proc-root at the host's /proc`, { cause });
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let link: string;
    try {
      link = readlinkSync(`${procRoot}/${e}/ns/net`);
    } catch {
      continue; // exited, or a kernel thread
    }
    if (link === self) continue;
    const pid = Number(e);
    const seen = byInode.get(link);
    if (seen === undefined || pid < seen) byInode.set(link, pid);
  }
  const host = sysfsLinks(hostSysNet);
  const views: NetnsView[] = [];
  for (const [inode, pid] of byInode) {
    const base = `${procRoot}/${pid}`;
    const fib = readText(`${base}/net/fib_trie`);
    if (fib === undefined) continue;
    const v6 = parseIfInet6(readText(`${base}/net/if_inet6`) ?? '');
    const addresses = [...parseFibTrie(fib), ...v6.map((a) => a.address)];
    const interfaces: PodInterface[] = [];
    const links = sysfsLinks(`${base}/root/sys/class/net`);
    if (links.size > 0) {
      for (const [ifindex, l] of links) {
        const peer = l.iflink !== ifindex ? host.get(l.iflink) : undefined;
        const isHostVeth = peer !== undefined && peer.iflink === ifindex && l.ifname !== 'lo';
        interfaces.push({ ifname: l.ifname, ifindex, ...(isHostVeth ? { host: { ifname: peer.ifname, ifindex: l.iflink } } : {}) });
      }
    } else {
      // No sysfs of its own: names only (net/dev); observed with socket filters inside.
      for (const line of (readText(`${base}/net/dev`) ?? '').split('\n').slice(2)) {
        const ifname = line.split(':')[0]?.trim();
        if (ifname) interfaces.push({ ifname, ifindex: 0 });
      }
    }
    views.push({ inode, pid, addresses, interfaces });
  }
  return views;
}

// ---- the Kubernetes API ----------------------------------------------------------------------

const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

function configError(message: string, cause?: unknown): PlainsightError {
  return new PlainsightError('PLAINSIGHT_ERR_INVENTORY_KUBECONFIG', message, cause === undefined ? undefined : { cause });
}

/**
 * The API configuration: the kubeconfig `file`; else, in a pod (KUBERNETES_SERVICE_HOST),
 * the ServiceAccount; else the first $KUBECONFIG file or ~/.kube/config.
 */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (!file && process.env.KUBERNETES_SERVICE_HOST) {
    // loadFromCluster only names the files; a missing one would fail every request instead.
    const missing = ['ca.crt', 'token'].filter((f) => !existsSync(`${SERVICE_ACCOUNT}/${f}`));
    if (missing.length) throw configError(`in-cluster configuration incomplete: no ${missing.map((f) => `${SERVICE_ACCOUNT}/${f}`).join(', ')} (automountServiceAccountToken disabled?)`);
    kc.loadFromCluster();
    return kc;
  }
  const path = file ?? process.env.KUBECONFIG?.split(delimiter).find(Boolean) ?? `${homedir()}/.kube/config`;
  try {
    kc.loadFromFile(path);
  } catch (cause) {
    throw configError(`cannot read the kubeconfig ${path}: ${(cause as Error).message}`, cause);
  }
  if (!kc.getCurrentCluster()?.server) throw configError(`the kubeconfig ${path} names no cluster server for context "${kc.getCurrentContext()}"`);
  return kc;
}

/**
 * The HTTP status and the API server's message in what @kubernetes/client-node rejects or
 * emits with: ApiException (lists, reads: `code`, `body` a Status), the Watch's Error
 * (`statusCode`), or a network error (`code` such as ECONNREFUSED).
 */
export function apiErrorInfo(err: unknown): { status?: number; detail: string } {
  const e = (err ?? {}) as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown };
  const status = typeof e.code === 'number' ? e.code : typeof e.statusCode === 'number' ? e.statusCode : undefined;
  let body = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      /* not a Status */
    }
  }
  const statusMessage = (body as { message?: unknown } | undefined)?.message;
  if (typeof statusMessage === 'string') return { ...(status !== undefined ? { status } : {}), detail: statusMessage };
  if (status !== undefined) return { status, detail: typeof e.message === 'string' ? e.message : `HTTP ${status}` };
  const cause = (e as { cause?: { code?: unknown } }).cause;
  const code = typeof e.code === 'string' ? e.code : typeof cause?.code === 'string' ? cause.code : undefined;
  return { detail: code ?? (typeof e.message === 'string' ? e.message : String(err)) };
}

/** One line a person can act on, for a failed list/watch of `resource`. */
export function apiFailureMessage(resource: string, err: unknown, server: string): string {
  const { status, detail } = apiErrorInfo(err);
  if (status === 401) return `Kubernetes API at ${server} rejected the agent's credentials (401) listing ${resource}: check the ServiceAccount token (automountServiceAccountToken) or --kubeconfig`;
  if (status === 403) return `RBAC: the plainsight-agent ServiceAccount cannot list/watch ${resource} (403 Forbidden): apply the chart's ClusterRole and ClusterRoleBinding (rbac.create=true)`;
  const why = status !== undefined ? `HTTP ${status}: ${detail}` : detail;
  return `cannot reach the Kubernetes API at ${server} to list ${resource} (${why}): check the API server and the node's network; the datapath keeps running`;
}

/**
 * client-node's Watch, telling `onAnswer` when the API server accepted a watch (200), and
 * closable: ListWatch.stop() aborts only the watch it already holds, so one still being
 * opened (after a list or a retry in flight) is aborted here, and none is opened after.
 */
class InventoryWatch extends Watch {
  private readonly open = new Set<AbortController>();
  private closed = false;

  constructor(
    kc: KubeConfig,
    private readonly onAnswer: () => void,
  ) {
    super(kc);
  }

  override async watch(...[path, query, callback, done]: Parameters<Watch['watch']>): Promise<AbortController> {
    if (this.closed) {
      const none = new AbortController();
      none.abort();
      return none;
    }
    let failed = false;
    let ended = false;
    let controller: AbortController | undefined;
    // A refused watch calls `done(err)` before watch() returns.
    controller = await super.watch(path, query, callback, (err: unknown) => {
      if (err) failed = true;
      ended = true;
      if (controller) this.open.delete(controller);
      done(err);
    });
    if (this.closed) controller.abort();
    else if (!ended) this.open.add(controller);
    if (!failed && !this.closed) this.onAnswer();
    return controller;
  }

  close(): void {
    this.closed = true;
    for (const c of this.open) c.abort();
    this.open.clear();
  }
}

// ---- the inventory --------------------------------------------------------------------------

export interface KubernetesOptions {
  /** This node (NODE_NAME): only its pods are watched. */
  node: string;
  /** The host's /proc (hostPID). */
  procRoot: string;
  /** A kubeconfig file; default: in-cluster, else the usual kubeconfig lookup. */
  kubeconfig?: string;
  /** Netns rescan period (pods whose netns was not found yet are retried). */
  rescanMs: number;
  backoff?: { initialMs?: number; maxMs?: number };
}

interface Tracked {
  pod: V1Pod;
  key: string;
  workload: Workload;
}

type Resource = 'pods' | 'services';

export class KubernetesInventory {
  private kc: KubeConfig | undefined;
  private apps: AppsV1Api | undefined;
  private batch: BatchV1Api | undefined;
  private readonly informers: { pods?: ListWatch<V1Pod>; services?: ListWatch<V1Service> } = {};
  private readonly watches: InventoryWatch[] = [];
  private readonly reads = new Set<Promise<void>>();
  private readonly failing: Partial<Record<Resource, { message: string; delayMs: number; timer?: NodeJS.Timeout }>> = {};
  private readonly owners = new Map<string, V1OwnerReference | null>();
  private readonly ownerFetches = new Set<string>();
  private readonly tracked = new Map<string, Tracked>();
  private services: V1Service[] = [];
  private servicesStale = false;
  private nodeIps = new Set<string>();
  private probes = new Map<string, Set<number>>();
  private serviceIps = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;
  private lastPods = '';

  constructor(
    private readonly opts: KubernetesOptions,
    private readonly onPods: (pods: LocalPod[]) => void,
    private readonly log: Logger,
  ) {}

  get server(): string {
    return this.kc?.getCurrentCluster()?.server ?? '?';
  }

  /**
   * Starts the informers. Throws only for a configuration that cannot work (no kubeconfig);
   * an unreachable or refusing API server is logged and retried.
   */
  async start(): Promise<void> {
    const kc = loadKubeConfig(this.opts.kubeconfig);
    this.kc = kc;
    const core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.batch = kc.makeApiClient(BatchV1Api);
    const fieldSelector = `spec.nodeName=${this.opts.node}`;
    const pods = this.informer<V1Pod>('pods', '/api/v1/pods', () => core.listPodForAllNamespaces({ fieldSelector }), fieldSelector);
    pods.on('change', (pod) => {
      for (const o of ownerLookups(pod)) {
        const read = this.fetchOwner(o.kind, o.namespace, o.name);
        this.reads.add(read);
        void read.finally(() => this.reads.delete(read));
      }
      this.kick();
    });
    this.informers.pods = pods;
    const services = this.informer<V1Service>('services', '/api/v1/services', () => core.listServiceForAllNamespaces());
    services.on('change', () => (this.servicesStale = true));
    this.informers.services = services;
    await Promise.all([pods.start(), services.start()]);
    this.timer = setInterval(() => this.kick(), this.opts.rescanMs);
    this.timer.unref();
    this.log.info({ server: this.server, node: this.opts.node, procRoot: this.opts.procRoot }, 'watching the pods of this node');
  }

  /** A ListWatch (list, watch from its resourceVersion, relist on 410) restarted with backoff after an error. */
  private informer<T extends KubernetesObject>(resource: Resource, path: string, list: () => Promise<KubernetesListObject<T>>, fieldSelector?: string): ListWatch<T> {
    const answered = (): void => this.recovered(resource);
    const watch = new InventoryWatch(this.kc!, answered);
    this.watches.push(watch);
    const informer = new ListWatch<T>(
      path,
      watch,
      async () => {
        const l = await list();
        answered();
        return l;
      },
      false,
      undefined,
      fieldSelector,
    );
    // The informer stops on an error (a 410 it handles itself, by relisting).
    informer.on('error', (err: unknown) => this.failed(resource, informer, err));
    return informer;
  }

  private failed(resource: Resource, informer: ListWatch<KubernetesObject>, err: unknown): void {
    if (this.closed) return; // stop() aborts the watch, which reports an AbortError
    const b = this.opts.backoff ?? {};
    const prev = this.failing[resource];
    if (prev?.timer) clearTimeout(prev.timer);
    const message = apiFailureMessage(resource, err, this.server);
    const { status, detail } = apiErrorInfo(err);
    const delayMs = prev ? Math.min(prev.delayMs * 2, b.maxMs ?? 30_000) : (b.initialMs ?? 1000);
    if (!prev || prev.message !== message) this.log.warn({ resource, status, detail, retryInMs: delayMs }, message);
    else this.log.debug({ resource, retryInMs: delayMs }, message);
    const timer = setTimeout(() => {
      if (!this.closed) void informer.start();
    }, delayMs);
    this.failing[resource] = { message, delayMs, timer };
  }

  private recovered(resource: Resource): void {
    const f = this.failing[resource];
    if (!f) return;
    delete this.failing[resource];
    this.log.info({ resource, server: this.server }, `Kubernetes API answers: watching ${resource}`);
  }

  /** ClusterIP → namespace/name, rebuilt after service events (once per burst, not per event). */
  private serviceByIp(): Map<string, string> {
    if (!this.servicesStale) return this.serviceIps;
    this.servicesStale = false;
    this.services = [...(this.informers.services?.list() ?? [])];
    const m = new Map<string, string>();
    for (const s of this.services) {
      for (const ip of clusterIps(s)) m.set(ip, `${s.metadata?.namespace ?? 'default'}/${s.metadata?.name ?? ''}`);
    }
    this.serviceIps = m;
    return m;
  }

  private async fetchOwner(kind: 'ReplicaSet' | 'Job', namespace: string, name: string): Promise<void> {
    const key = ownerKey(kind, namespace, name);
    if (this.owners.has(key) || this.ownerFetches.has(key)) return;
    this.ownerFetches.add(key);
    try {
      const obj = kind === 'ReplicaSet' ? await this.apps!.readNamespacedReplicaSet({ name, namespace }) : await this.batch!.readNamespacedJob({ name, namespace });
      this.owners.set(key, controllerOf(obj.metadata?.ownerReferences) ?? null);
      if (this.owners.size > 10_000) this.owners.delete(this.owners.keys().next().value!);
      this.kick();
    } catch (err) {
      // Left to the name heuristic; retried on the pod's next event.
      this.log.debug({ kind, namespace, name, ...apiErrorInfo(err) }, 'cannot read the owner; workload from its name');
    } finally {
      this.ownerFetches.delete(key);
    }
  }

  /** A reconcile soon (coalesces bursts). */
  kick(): void {
    if (this.closed || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.reconcile();
    }, 50);
  }

  private reconcile(): void {
    if (this.closed) return;
    const pods = this.informers.pods?.list() ?? [];
    const nodeIps = new Set<string>();
    const probes = new Map<string, Set<number>>();
    const live: V1Pod[] = [];
    for (const p of pods) {
      for (const h of p.status?.hostIPs ?? []) if (h.ip) nodeIps.add(h.ip);
      if (p.status?.hostIP) nodeIps.add(p.status.hostIP);
      const ips = podIps(p);
      if (p.spec?.hostNetwork) {
        for (const ip of ips) nodeIps.add(ip);
        continue; // no veth, no netns of its own: nothing to attach
      }
      if (p.status?.phase !== 'Running' || ips.length === 0 || p.metadata?.deletionTimestamp) continue;
      const ports = probePorts(p);
      if (ports.size) for (const ip of ips) probes.set(ip, ports);
      live.push(p);
    }
    let views: NetnsView[] = [];
    if (live.length) {
      try {
        views = scanNetns(this.opts.procRoot);
      } catch (err) {
        this.log.error({ err }, (err as Error).message);
      }
    }
    // The node's own addresses (kubelet probes come from one of them, e.g. a CNI bridge's).
    for (const ip of parseFibTrie(readText('/proc/net/fib_trie') ?? '')) nodeIps.add(ip);
    const byIp = new Map<string, NetnsView>();
    for (const v of views) for (const a of v.addresses) byIp.set(a, v);
    const out: LocalPod[] = [];
    const tracked = new Map<string, Tracked>();
    const missing: string[] = [];
    for (const p of live) {
      const key = `${p.metadata?.namespace ?? 'default'}/${p.metadata?.name ?? ''}`;
      const ips = podIps(p);
      const view = ips.map((ip) => byIp.get(ip)).find((v) => v !== undefined);
      if (!view) {
        missing.push(key);
        continue;
      }
      const workload = deriveWorkload(p, this.owners);
      tracked.set(key, { pod: p, key, workload });
      out.push({
        name: key,
        namespace: p.metadata?.namespace ?? 'default',
        workload: workload.name,
        netnsPath: `${this.opts.procRoot}/${view.pid}/ns/net`,
        interfaces: view.interfaces,
        addresses: ips,
      });
    }
    this.nodeIps = nodeIps;
    this.probes = probes;
    for (const [k, v] of tracked) {
      const before = this.tracked.get(k)?.workload;
      if (!before || before.kind !== v.workload.kind || before.name !== v.workload.name) this.log.info({ pod: k, workload: v.workload, netns: out.find((p) => p.name === k)?.netnsPath }, 'pod found in its network namespace');
    }
    this.tracked.clear();
    for (const [k, v] of tracked) this.tracked.set(k, v);
    const summary = JSON.stringify([out.map((p) => [p.name, p.workload, p.netnsPath, p.interfaces]), missing]);
    if (summary !== this.lastPods) {
      this.lastPods = summary;
      if (missing.length) this.log.info({ pods: missing }, 'running pods whose network namespace is not found (yet): retried on the next scan');
    }
    out.sort((a, b) => a.name.localeCompare(b.name));
    this.onPods(out);
  }

  /** Services (ClusterIPs) and this node's addresses, for the aggregator's identity map. */
  identities(): ExportPod[] {
    const out: ExportPod[] = [];
    this.serviceByIp();
    for (const s of this.services) {
      const ips = clusterIps(s);
      if (ips.length === 0) continue;
      out.push({ name: `service/${s.metadata?.name ?? ''}`, namespace: s.metadata?.namespace ?? 'default', workload: s.metadata?.name ?? '', ips });
    }
    if (this.nodeIps.size) out.push({ name: this.opts.node, namespace: 'node', workload: 'node', ips: [...this.nodeIps] });
    return out;
  }

  /** Adds Kubernetes facts to a flow line: the Service or node at the other end, probes. */
  annotate(line: AgentFlowJson): void {
    const l = line as AgentFlowJson & { peerService?: string; peerNode?: string; probe?: boolean };
    const svc = this.serviceByIp().get(line.server.ip);
    if (svc) l.peerService = svc;
    if (this.nodeIps.has(line.client.ip) || this.nodeIps.has(line.server.ip)) l.peerNode = this.opts.node;
    if (isProbe(line.client.ip, line.server, this.nodeIps, this.probes)) l.probe = true;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    for (const f of Object.values(this.failing)) if (f?.timer) clearTimeout(f.timer);
    await Promise.all([this.informers.pods?.stop(), this.informers.services?.stop()]);
    for (const w of this.watches) w.close();
    await Promise.allSettled([...this.reads]); // owner reads in flight end by themselves
  }
}

function clusterIps(s: V1Service): string[] {
  return (s.spec?.clusterIPs ?? (s.spec?.clusterIP ? [s.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
}

function podIps(p: V1Pod): string[] {
  const ips = (p.status?.podIPs ?? []).map((x) => x.ip).filter((x): x is string => Boolean(x));
  if (ips.length === 0 && p.status?.podIP) ips.push(p.status.podIP);
  return ips;
}
