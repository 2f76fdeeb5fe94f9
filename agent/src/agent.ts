// The node agent (local or Kubernetes mode): owns every long-lived resource and closes them in reverse.
//
//   FlowProgram (maps, programs) → sample reader (ring buffer timer) → host interfaces
//   (--interface) → namespace watcher (pods: TCX on host veths, socket filters inside)
//   → drain timer (counters ⨝ samples → classify → jsonl) → metrics server
//
// start() either returns a running agent or closes what it opened and throws. close()
// drains one last time, reports every flow as final, then detaches (links before the
// object). TCX links die with the process; clsact filters (kernels < 6.6) of a killed
// agent are found by handle/priority and replaced at attach, so a restart neither leaks
// nor doubles a hook. A restarted agent starts from an empty map: flows already open are
// reported from the restart on (flagged midstream), never twice.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Attachment, AttachMode } from './bpf/flow.js';
import { FlowProgram } from './bpf/flow.js';
import { agentPrivilegeNeeds, requireBpfEnvironment } from './bpf/environment.js';
import type { RingBufferReader } from './capture/ringbuf.js';
import { FlowTracker, type AgentFlowJson, type ObservationPoint } from './capture/tracker.js';
import { classifierFaults } from './classify/index.js';
import { isPlainsightError, PlainsightError } from './errors.js';
import { Exporter } from './export/index.js';
import { NetnsWatcher, namePattern, type LocalPod } from './inventory/local.js';
import { BurstGc } from './burst-gc.js';
import { KubernetesInventory } from './inventory/kubernetes.js';
import { AgentMetrics, MetricsServer } from './metrics.js';

export interface AgentConfig {
  /** local: netns under /var/run/netns are pods; kubernetes: the pods of this node from the API server. */
  mode: 'local' | 'kubernetes';
  /** Kubernetes mode: a kubeconfig file (default: in-cluster, else the usual lookup). */
  kubeconfig?: string;
  /** Kubernetes mode: the host's /proc (container pids → network namespaces). */
  procRoot?: string;
  /** Namespace names or globs; empty: every namespace under /var/run/netns. */
  netns: string[];
  /** Root-namespace interfaces to observe too. */
  interfaces: string[];
  /** HOST:PORT for /metrics and /healthz; '' disables. */
  metricsAddr: string;
  output: 'jsonl' | 'none';
  attachMode: AttachMode;
  /** Socket filter on each pod's loopback (intra-pod traffic). */
  loopback: boolean;
  maxFlows: number;
  ringBytes: number;
  samplesPerDirection: number;
  sampleBytes: number;
  drainIntervalMs: number;
  idleTimeoutMs: number;
  classifyAfterMs: number;
  rescanIntervalMs: number;
  ringIntervalMs: number;
  ringBudget: number;
  /** HOST:PORT of the aggregator; '' keeps summaries local (jsonl). */
  aggregator: string;
  /** This node's name for the aggregator (NODE_NAME, else the host name). */
  node: string;
  /** Unacknowledged batches kept for the aggregator, in bytes. */
  exportBufferBytes: number;
  /** PEM paths: all three turn the aggregator channel into mTLS. */
  tls?: { cert: string; key: string; ca: string; serverName?: string };
}

export const DEFAULT_CONFIG: AgentConfig = {
  mode: 'local',
  netns: [],
  interfaces: [],
  metricsAddr: ':9101',
  output: 'jsonl',
  attachMode: 'auto',
  loopback: true,
  maxFlows: 65536,
  ringBytes: 8 * 1024 * 1024,
  samplesPerDirection: 6,
  // 4096 (PS_SAMPLE_MAX_PAYLOAD). Measured with real peers (test/integration/agent-peers):
  // at 512, curl's and nginx-bound ClientHellos (OpenSSL 3, ~550-600 B) and a TLS 1.2 server
  // flight in one segment (Certificate … ServerHelloDone, ~1.3 KB) were cut, and since a cut
  // sample ends the contiguous prefix, TLS 1.3 client-certificate inference (client second
  // flight) and TLS 1.2 CertificateRequest detection were lost: mtls read as tls/unknown.
  // Cost: a ring record is header + the bytes really copied (bpf_ringbuf_output from a
  // per-CPU scratch, not a fixed reservation), so small packets cost what they did; only
  // the first samplesPerDirection payload skbs of a flow can be big (≤ 4 KiB + 88 B each,
  // ≤ ~50 KiB per bulk flow), held by the agent only until the flow is classified.
  sampleBytes: 4096,
  drainIntervalMs: 1000,
  idleTimeoutMs: 30_000,
  classifyAfterMs: 2000,
  rescanIntervalMs: 5000,
  ringIntervalMs: 10,
  ringBudget: 8192,
  aggregator: '',
  node: process.env.NODE_NAME ?? hostname(),
  exportBufferBytes: 16 * 1024 * 1024,
};

interface PodState {
  pod: LocalPod;
  /** Desired-attachment id (`tc/<host ifindex>`, `sock/<ifname>`) → its hooks. */
  hooks: Map<string, Attachment[]>;
}

type Closer = { what: string; close: () => void | Promise<void> };

/** Time a ring buffer read inside a drain may take (the ring's own timer reads the rest). */
const PUMP_MS = 5;

export class Agent {
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  metricsServer: MetricsServer | undefined;
  private flow: FlowProgram | undefined;
  private ring: RingBufferReader | undefined;
  private tracker: FlowTracker | undefined;
  private exporter: Exporter | undefined;
  private watcher: NetnsWatcher | undefined;
  private k8s: KubernetesInventory | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  /** The next slice of a drain that ran out of its budget (FlowTracker.more). */
  private moreWork: NodeJS.Immediate | undefined;
  private readonly burstGc = new BurstGc();
  private readonly closers: Closer[] = [];
  private readonly pods = new Map<string, PodState>();
  /** key ifindex (host ifindex, or socket tag) → where it is. */
  private readonly points = new Map<number, ObservationPoint>();
  private podByIp = new Map<string, string>();
  private lastStats = { samples_lost: 0, map_insert_fail: 0 };
  private lastRing = { budgetExhausted: 0, records: 0 };
  private lastDropped = 0;
  private fill = 0;
  private running = false;
  private closing: Promise<void> | undefined;
  private lossWarnedAt = 0;
  private evictionWarnedAt = 0;

  private constructor(
    readonly config: AgentConfig,
    log: Logger,
    private readonly write: (line: AgentFlowJson) => void,
  ) {
    this.log = log;
    this.metrics = new AgentMetrics({
      flowsTracked: () => this.tracker?.size ?? 0,
      mapFillRatio: () => this.fill,
      attachments: () => {
        const n = { tcx: 0, clsact: 0, socket: 0 };
        for (const a of this.flow?.list() ?? []) n[a.kind]++;
        return n;
      },
      pods: () => this.pods.size,
      exporter: () => this.exporter?.stats,
    });
    this.closers.push({ what: 'metrics', close: () => this.metrics.close() });
  }

  /** Starts, or closes what it opened and throws (a PlainsightError with one actionable line). */
  static async start(config: AgentConfig, log: Logger, write: (line: AgentFlowJson) => void): Promise<Agent> {
    requireBpfEnvironment(agentPrivilegeNeeds(config));
    const agent = new Agent(config, log, write);
    try {
      await agent.open();
    } catch (e) {
      await agent.close({ report: false }).catch((err: unknown) => log.error({ err }, 'close after a failed start failed'));
      throw e;
    }
    return agent;
  }

  private async open(): Promise<void> {
    const c = this.config;
    const log = this.log.child({ component: 'datapath' });
    if (c.aggregator !== '') {
      // Opened first so it closes last: the final flow reports go out before it stops.
      const exporter = new Exporter({
        address: c.aggregator,
        node: c.node,
        maxBufferBytes: c.exportBufferBytes,
        intervalMs: c.drainIntervalMs,
        inventory: () => [
          ...[...this.pods.values()].map(({ pod }) => ({
            // Kubernetes mode keys pods `namespace/name`; the aggregator gets them apart.
            name: pod.namespace ? pod.name.slice(pod.namespace.length + 1) : pod.name,
            addresses: pod.addresses,
            ...(pod.namespace ? { namespace: pod.namespace } : {}),
            ...(pod.workload ? { workload: pod.workload } : {}),
          })),
          ...(this.k8s?.identities() ?? []),
        ],
        log: this.log.child({ component: 'export' }),
        ...(c.tls ? { tls: c.tls } : {}),
      });
      this.exporter = exporter;
      this.closers.push({ what: 'exporter', close: () => exporter.close() });
      this.log.info({ component: 'export', aggregator: c.aggregator, mtls: c.tls !== undefined }, 'reporting to the aggregator');
    }
    const flow = FlowProgram.open({ maxFlows: c.maxFlows, ringBytes: c.ringBytes, samplesPerDirection: c.samplesPerDirection, sampleBytes: c.sampleBytes });
    this.flow = flow;
    this.closers.push({ what: 'datapath', close: () => flow.close() });
    log.info({ maxFlows: c.maxFlows, ringBytes: c.ringBytes, samplesPerDirection: c.samplesPerDirection }, 'eBPF programs loaded');

    const tracker = new FlowTracker(
      {
        samplesPerDirection: c.samplesPerDirection,
        idleTimeoutMs: c.idleTimeoutMs,
        closedTimeoutMs: Math.min(c.idleTimeoutMs, 2 * c.drainIntervalMs + 500),
        classifyAfterMs: c.classifyAfterMs,
        maxFlows: c.maxFlows,
      },
      {
        resolve: (ifindex) => this.points.get(ifindex),
        podOf: (ip) => this.podByIp.get(ip),
        emit: (line) => {
          this.metrics.flowsReported.inc({ verdict: line.verdict, final: String(line.final) });
          this.k8s?.annotate(line);
          this.exporter?.add(line);
          this.write(line);
        },
        // Short: a pump runs inside a drain slice, whose own budget it spends.
        pump: () => this.ring?.drain(undefined, PUMP_MS),
        onClassify: (s) => this.metrics.classifySeconds.observe(s),
        onEviction: () => {
          this.metrics.evictions.inc();
          if (Date.now() - this.evictionWarnedAt > 60_000) {
            this.evictionWarnedAt = Date.now();
            this.log.warn(
              { component: 'capture', maxFlows: this.config.maxFlows, fill: this.fill },
              'flow map full: the kernel evicts flows before they end (counters incomplete); raise --max-flows',
            );
          }
        },
      },
    );
    this.tracker = tracker;
    this.ring = flow.openSampleRecords((rec) => tracker.onSampleRecord(rec), {
      intervalMs: c.ringIntervalMs,
      budget: c.ringBudget,
      onError: (err) => log.error({ err }, 'sample handling failed'),
    });

    for (const ifname of c.interfaces) this.attachInterface(ifname);

    if (c.mode === 'local') {
      const inv = this.log.child({ component: 'inventory' });
      const watcher = new NetnsWatcher(namePattern(c.netns), (pods) => this.reconcile(pods), inv, c.rescanIntervalMs);
      this.watcher = watcher;
      this.closers.push({ what: 'inventory', close: () => watcher.close() });
      this.startLinkMonitor(inv);
      await watcher.start();
    } else if (c.mode === 'kubernetes') {
      // The API server may be down or forbid us: start() logs why and retries; the datapath runs on.
      const inv = this.log.child({ component: 'inventory' });
      const k8s = new KubernetesInventory(
        { node: c.node, procRoot: c.procRoot ?? '/proc', rescanMs: c.rescanIntervalMs, ...(c.kubeconfig ? { kubeconfig: c.kubeconfig } : {}) },
        (pods) => this.reconcile(pods),
        inv,
      );
      this.k8s = k8s;
      this.closers.push({ what: 'inventory', close: () => k8s.close() });
      this.startLinkMonitor(inv);
      await k8s.start();
    }

    this.drainTimer = setInterval(() => this.drainTick(), c.drainIntervalMs);
    this.closers.push({ what: 'drain timer', close: () => clearInterval(this.drainTimer) });

    if (c.metricsAddr !== '') {
      const server = await MetricsServer.listen(this.metrics.registry, c.metricsAddr, () => this.running);
      this.metricsServer = server;
      this.closers.push({ what: 'metrics server', close: () => server.close() });
      this.log.info({ component: 'metrics', address: server.address.address, port: server.address.port }, 'metrics listening');
    }
    this.running = true;
    this.log.info({ pods: this.pods.size, interfaces: c.interfaces, attachments: flow.list().length }, 'agent started');
  }

  /** `ip monitor link`: a veth created after its namespace triggers a rescan at once. */
  private startLinkMonitor(log: Logger): void {
    try {
      const child = spawn('ip', ['monitor', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
      child.on('error', (err) => log.warn({ err }, 'ip monitor unavailable; relying on the periodic rescan'));
      child.stdout.on('data', () => {
        this.watcher?.kick();
        this.k8s?.kick();
      });
      child.unref();
      (child.stdout as unknown as { unref?: () => void }).unref?.();
      this.closers.push({ what: 'link monitor', close: () => void child.kill() });
    } catch (err) {
      log.warn({ err }, 'ip monitor unavailable; relying on the periodic rescan');
    }
  }

  private attachInterface(ifname: string): void {
    const flow = this.flow!;
    let ifindex: number;
    try {
      ifindex = Number(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim());
    } catch (cause) {
      throw new PlainsightError('PLAINSIGHT_ERR_AGENT_INTERFACE', `no interface "${ifname}" in the root network namespace`, { cause });
    }
    const removed = flow.removeStaleClsact(ifindex);
    if (removed) this.log.info({ interface: ifname, removed }, 'removed stale clsact filters of a previous agent');
    const kinds = (['ingress', 'egress'] as const).map((d) => flow.attachTcx(ifindex, d, this.config.attachMode).kind);
    this.points.set(ifindex, { interface: ifname, intraPod: false });
    this.log.info({ interface: ifname, ifindex, kind: kinds[0] }, 'interface attached');
  }

  /** Brings the attachments in line with a fresh scan: new pods/interfaces attached, gone ones detached. */
  private reconcile(scanned: LocalPod[]): void {
    if (!this.flow || this.closing) return;
    const log = this.log.child({ component: 'inventory' });
    const names = new Set(scanned.map((p) => p.name));
    for (const [name, st] of this.pods) {
      if (names.has(name)) continue;
      this.detachPod(st);
      this.pods.delete(name);
      // Flows in flight keep their point object; the index must not keep gone pods alive.
      for (const [ifindex, p] of this.points) if (p.pod === name) this.points.delete(ifindex);
      log.info({ pod: name }, 'namespace gone: pod detached');
    }
    const byIp = new Map<string, string>();
    for (const pod of scanned) {
      for (const ip of pod.addresses) byIp.set(ip, pod.name);
      let st = this.pods.get(pod.name);
      const isNew = !st;
      if (!st) {
        st = { pod, hooks: new Map() };
        this.pods.set(pod.name, st);
      }
      st.pod = pod;
      const changed = this.attachPod(st, log);
      if (isNew || changed) {
        log.info(
          { pod: pod.name, hooks: [...st.hooks.keys()], addresses: pod.addresses },
          isNew ? 'pod attached' : 'pod interfaces changed',
        );
      }
    }
    this.podByIp = byIp;
    // The point objects are shared with flows in flight: update their address sets in place.
    for (const st of this.pods.values()) {
      const addrs = new Set(st.pod.addresses);
      for (const p of this.points.values()) if (p.pod === st.pod.name) (p as { podAddresses?: ReadonlySet<string> }).podAddresses = addrs;
    }
  }

  /** Attaches what the pod should have and detaches what it should not anymore. True if anything changed. */
  private attachPod(st: PodState, log: Logger): boolean {
    const flow = this.flow!;
    const want = new Map<string, () => { hooks: Attachment[]; points: [number, ObservationPoint][] }>();
    const addresses = new Set(st.pod.addresses);
    for (const itf of st.pod.interfaces) {
      if (itf.host) {
        const host = itf.host;
        want.set(`tc/${host.ifindex}`, () => {
          flow.removeStaleClsact(host.ifindex);
          const ingress = flow.attachTcx(host.ifindex, 'ingress', this.config.attachMode);
          let egress: Attachment;
          try {
            egress = flow.attachTcx(host.ifindex, 'egress', this.config.attachMode);
          } catch (e) {
            ingress.close(); // both directions or neither
            throw e;
          }
          const hooks = [ingress, egress];
          return { hooks, points: [[host.ifindex, { pod: st.pod.name, interface: host.ifname, intraPod: false, podAddresses: addresses }]] };
        });
      } else {
        const loopback = itf.ifname === 'lo';
        if (loopback && !this.config.loopback) continue;
        want.set(`sock/${itf.ifname}`, () => {
          const att = flow.attachSocketFilter(st.pod.netnsPath, itf.ifname);
          return {
            hooks: [att],
            points: [[att.ifindex, { pod: st.pod.name, interface: `${st.pod.name}/${itf.ifname}`, intraPod: loopback, podAddresses: addresses }]],
          };
        });
      }
    }
    let changed = false;
    for (const [id, hooks] of st.hooks) {
      if (want.has(id)) continue;
      for (const h of [...hooks].reverse()) this.safeClose(h, st.pod.name);
      st.hooks.delete(id);
      changed = true;
    }
    for (const [id, attach] of want) {
      if (st.hooks.has(id)) continue;
      try {
        const { hooks, points } = attach();
        st.hooks.set(id, hooks);
        for (const [ifindex, p] of points) this.points.set(ifindex, p);
        changed = true;
      } catch (err) {
        this.metrics.attachFailures.inc({ kind: id.startsWith('tc/') ? 'tcx' : 'socket' });
        const gone = isPlainsightError(err) && (err.code === 'PLAINSIGHT_ERR_BPF_NETNS' || err.code === 'PLAINSIGHT_ERR_BPF_ATTACH');
        log.warn({ err, pod: st.pod.name, hook: id }, gone ? 'cannot attach (interface or namespace gone?); will retry on the next scan' : 'cannot attach');
      }
    }
    return changed;
  }

  private detachPod(st: PodState): void {
    for (const hooks of [...st.hooks.values()].reverse()) for (const h of [...hooks].reverse()) this.safeClose(h, st.pod.name);
    st.hooks.clear();
  }

  private safeClose(h: Attachment, pod: string): void {
    try {
      h.close();
    } catch (err) {
      // The interface went with its namespace: nothing left to detach.
      this.log.debug({ err, pod, kind: h.kind }, 'detach failed (already gone)');
    }
  }

  /** One drain: ring buffer, kernel counters, join/classify/expire, deletes. Never throws. */
  private drainTick(): void {
    const flow = this.flow;
    const tracker = this.tracker;
    if (!flow || !tracker) return;
    const end = this.metrics.drainSeconds.startTimer();
    clearImmediate(this.moreWork); // this drain starts over from a fresh read
    this.moreWork = undefined;
    try {
      this.ring?.drain();
      const stats = flow.readStats();
      const lost = stats.samples_lost - this.lastStats.samples_lost;
      if (lost > 0) {
        this.metrics.lostSamples.inc(lost);
        this.exporter?.addLostSamples(lost);
        if (Date.now() - this.lossWarnedAt > 60_000) {
          this.lossWarnedAt = Date.now();
          this.log.warn({ component: 'datapath', lost, total: stats.samples_lost }, 'ring buffer full: handshake samples lost (flows may classify as unknown)');
        }
      }
      const failed = stats.map_insert_fail - this.lastStats.map_insert_fail;
      if (failed > 0) this.metrics.mapInsertFailures.inc(failed);
      this.lastStats = { samples_lost: stats.samples_lost, map_insert_fail: stats.map_insert_fail };
      if (this.ring) {
        const rs = this.ring.stats;
        if (rs.budgetExhausted > this.lastRing.budgetExhausted) this.metrics.ringBudgetExhausted.inc(rs.budgetExhausted - this.lastRing.budgetExhausted);
        if (rs.records > this.lastRing.records) this.metrics.samples.inc(rs.records - this.lastRing.records);
        this.lastRing = { budgetExhausted: rs.budgetExhausted, records: rs.records };
      }
      let entries = -1; // stays -1 when the tracker is still visiting its last read
      const expired = tracker.drain(
        (visit) => {
          entries = flow.visitFlows(visit);
        },
        Number(process.hrtime.bigint()),
        this.fill,
      );
      if (entries >= 0) this.fill = entries / this.config.maxFlows;
      const dropped = tracker.stats.samplesDropped - this.lastDropped;
      if (dropped > 0) this.metrics.samplesDropped.inc(dropped);
      this.lastDropped = tracker.stats.samplesDropped;
      for (const raw of expired) flow.deleteFlow(raw);
      this.burstGc.after(tracker.stats.classified);
      if (tracker.behind) this.moreWork = setImmediate(() => this.drainMore());
    } catch (err) {
      this.log.error({ err, component: 'capture' }, 'drain failed');
    } finally {
      end();
    }
  }

  /**
   * The rest of a drain's work, one slice per event-loop turn, so that a backlog (more
   * churn than this agent's CPU share handles) delays /healthz, /metrics and the ring
   * reader by one slice, not by the whole backlog. Stops when done or the next drain starts.
   */
  private drainMore(): void {
    this.moreWork = undefined;
    const flow = this.flow;
    const tracker = this.tracker;
    if (!flow || !tracker || this.closing) return;
    try {
      for (const raw of tracker.more()) flow.deleteFlow(raw);
      if (tracker.behind) this.moreWork = setImmediate(() => this.drainMore());
    } catch (err) {
      this.log.error({ err, component: 'capture' }, 'drain failed');
    }
  }

  /** Summary numbers, for the stop log line and tests. */
  summary(): Record<string, number> {
    const t = this.tracker?.stats;
    return {
      samples: t?.samples ?? 0,
      classified: t?.classified ?? 0,
      finalized: t?.finalized ?? 0,
      evictions: t?.evictions ?? 0,
      incomplete: t?.incomplete ?? 0,
      lostSamples: this.lastStats.samples_lost,
      classifierFaults: classifierFaults.count,
      // The export buffer's bound at work (aggregator away too long): what never left.
      exportDroppedBatches: this.exporter?.stats.droppedBatches ?? 0,
      exportDroppedFlows: this.exporter?.stats.droppedFlows ?? 0,
    };
  }

  /**
   * Stops: one last drain, every flow reported as final (unless report is false), then
   * everything closed in reverse order of opening. Idempotent.
   */
  close(opts: { report?: boolean } = {}): Promise<void> {
    this.closing ??= (async () => {
      this.running = false;
      clearInterval(this.drainTimer);
      clearImmediate(this.moreWork);
      if (opts.report !== false && this.tracker && this.flow) {
        for (let i = 0; i < 16 && (this.ring?.pending() ?? 0) > 0; i++) this.ring?.drain();
        this.drainTick();
        // A backlog: finish that drain's slices now, so final lines carry its counters.
        while (this.tracker.behind) this.tracker.more();
        this.tracker.finalizeAll();
      }
      const errors: unknown[] = [];
      for (const c of this.closers.reverse()) {
        try {
          await c.close();
        } catch (err) {
          errors.push(err);
          this.log.error({ err, what: c.what }, 'close failed');
        }
      }
      this.closers.length = 0;
      this.pods.clear();
      this.log.info({ ...this.summary() }, 'agent stopped');
      if (errors.length) throw errors[0];
    })();
    return this.closing;
  }
}
