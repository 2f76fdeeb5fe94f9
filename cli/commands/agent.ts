// `plainsight agent [--mode local|kubernetes] [--aggregator HOST:PORT] [--netns NAME...] [--interface IF...]
// [--metrics-addr :9101] [--output jsonl|none]`: the node agent. Runs until SIGTERM/SIGINT.

import v8 from 'node:v8';
import { DEFAULT_CONFIG, type AgentConfig } from '../../agent/src/agent.js';
import type { AttachMode } from '../../agent/src/bpf/flow.js';
import { PS_SAMPLE_MAX_PAYLOAD } from '../../agent/src/bpf/flow-abi.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { runAgent } from '../../agent/src/main.js';
import { parseListenAddr } from '../../agent/src/metrics.js';
import { parse } from '../args.js';
import { untilStopSignal } from '../signals.js';

const HELP = `Usage: plainsight agent [--mode local|kubernetes] [--aggregator HOST:PORT] [--netns NAME...]
                        [--interface IF...] [--metrics-addr :9101] [--output jsonl|none]
                        [--kubeconfig FILE] [--proc-root DIR]

Observes every pod of this node and classifies its traffic live (eBPF; needs root or
CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_RAW, plus CAP_SYS_PTRACE in Kubernetes mode; it
names any that is missing). In local mode every network namespace under /var/run/netns
is a pod named after it. In Kubernetes mode the pods of
this node (NODE_NAME) come from the API server and their network namespaces from the
processes under --proc-root (the host's /proc: run with hostPID).

Options:
  --mode local|kubernetes local (network namespaces as pods, the default) or kubernetes
  --kubeconfig FILE       kubernetes: API server and credentials (default: in-cluster
                          ServiceAccount, else $KUBECONFIG / ~/.kube/config)
  --proc-root DIR         kubernetes: the host's /proc (default /proc; needs hostPID)
  --netns NAME            only these namespaces (repeatable; globs: 'web-*'); default all
  --interface IF          also observe this root-namespace interface (repeatable)
  --metrics-addr ADDR     /metrics and /healthz on HOST:PORT (default :9101; 'off' disables)
  --output jsonl|none     jsonl: one flow summary per line on stdout (default)
  --aggregator HOST:PORT  also stream flow summaries to the aggregator (gRPC); never blocks
                          capture: unacknowledged batches are buffered and replayed
  --export-buffer N       bytes of unacknowledged batches kept (default 16777216); older
                          batches beyond it are dropped, counted and reported in-band
  --tls-cert/--tls-key/--tls-ca FILE  mTLS to the aggregator (scripts/dev-certs.sh makes them)
  --node NAME             this node's name (default: $NODE_NAME, else the host name)
  --attach auto|tcx|clsact  hook type on host veths (default auto: TCX, clsact before 6.6)
  --no-loopback           do not observe pods' loopback (intra-pod traffic)
  --idle-timeout DUR      a flow idle this long is final and leaves the map (default 30s)
  --classify-after DUR    classify a flow this long after its first payload at the latest (default 2s)
  --drain-interval DUR    kernel counters read this often (default 1s)
  --rescan-interval DUR   namespaces rescanned this often besides the watch (default 5s)
  --max-flows N           kernel flow map capacity (default 65536)
  --ring-bytes N          sample ring buffer bytes, a power of two (default 8388608)
  --samples N             payload packets sampled per flow direction (default 6)
  --sample-bytes N        payload bytes copied per sample, 1..4096 (default 4096)
  --low-memory            trade CPU for memory: V8 optimizes for size and collects garbage
                          early (100k live flows: ~130 MiB RSS instead of ~210, slower bursts)

Output: each flow gives a line when classified ("final": false, counters so far) and a
line when it ends — idle, replaced by a new connection on the same ports, evicted, or at
shutdown — ("final": true, complete totals, not deltas). Logs (JSON) go to stderr.
`;

function usage(message: string): PlainsightError {
  return new PlainsightError('PLAINSIGHT_ERR_USAGE', `agent: ${message}`, { hint: 'run `plainsight agent --help` for usage' });
}

/** "30s", "500ms", "2m", or plain milliseconds. */
export function parseDuration(name: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  if (!m) throw usage(`--${name} wants a duration like 500ms, 30s or 2m, not "${v}"`);
  const n = Number(m[1]) * (m[2] === 'm' ? 60_000 : m[2] === 's' ? 1000 : 1);
  if (!(n > 0)) throw usage(`--${name} must be positive`);
  return n;
}

function parseCount(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw usage(`--${name} must be an integer in ${min}..${max}, not "${v}"`);
  return n;
}

export function agentConfig(argv: string[]): (AgentConfig & { lowMemory: boolean }) | 'help' {
  const { values, positionals } = parse(
    argv,
    {
      mode: { type: 'string' },
      netns: { type: 'string', multiple: true },
      interface: { type: 'string', multiple: true },
      'metrics-addr': { type: 'string' },
      output: { type: 'string' },
      attach: { type: 'string' },
      'no-loopback': { type: 'boolean' },
      'idle-timeout': { type: 'string' },
      'classify-after': { type: 'string' },
      'drain-interval': { type: 'string' },
      'rescan-interval': { type: 'string' },
      'max-flows': { type: 'string' },
      'ring-bytes': { type: 'string' },
      samples: { type: 'string' },
      'sample-bytes': { type: 'string' },
      'low-memory': { type: 'boolean' },
      aggregator: { type: 'string' },
      node: { type: 'string' },
      'export-buffer': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-server-name': { type: 'string' },
      kubeconfig: { type: 'string' },
      'proc-root': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'agent',
  );
  if (values.help) return 'help';
  if (positionals.length) throw usage(`unexpected argument "${positionals[0]}"`);
  const c: AgentConfig & { lowMemory: boolean } = { ...DEFAULT_CONFIG, netns: [], interfaces: [], lowMemory: Boolean(values['low-memory']) };
  const mode = values.mode ?? 'local';
  if (mode !== 'local' && mode !== 'kubernetes') throw usage(`--mode must be local or kubernetes, not "${mode}"`);
  c.mode = mode;
  if (mode === 'kubernetes') {
    if (values.netns?.length) throw usage('--netns is for --mode local; in Kubernetes mode the pods of this node are observed');
    const node = values.node ?? process.env.NODE_NAME;
    if (!node) throw usage('--mode kubernetes needs this node\'s name: set NODE_NAME (the chart passes it from the downward API, spec.nodeName) or --node NAME');
    c.node = node;
    if (values.kubeconfig !== undefined) c.kubeconfig = values.kubeconfig;
    c.procRoot = values['proc-root'] ?? '/proc';
  } else if (values.kubeconfig !== undefined || values['proc-root'] !== undefined) {
    throw usage('--kubeconfig and --proc-root are for --mode kubernetes');
  }
  if (values.aggregator !== undefined) {
    if (!/^[^\s]+:\d{1,5}$/.test(values.aggregator)) throw usage(`--aggregator wants HOST:PORT, not "${values.aggregator}"`);
    c.aggregator = values.aggregator;
  }
  const tlsFiles = [values['tls-cert'], values['tls-key'], values['tls-ca']];
  if (tlsFiles.some((f) => f !== undefined)) {
    const [cert, key, ca] = tlsFiles;
    if (cert === undefined || key === undefined || ca === undefined) throw usage('mTLS to the aggregator needs all of --tls-cert, --tls-key and --tls-ca');
    c.tls = { cert, key, ca, ...(values['tls-server-name'] ? { serverName: values['tls-server-name'] } : {}) };
  }
  if (values.node) c.node = values.node;
  if (values['export-buffer']) c.exportBufferBytes = parseCount('export-buffer', values['export-buffer'], 64 * 1024, 1 << 30);
  c.netns = values.netns ?? [];
  for (const n of c.netns) if (n === '' || n.includes('/')) throw usage(`--netns wants a namespace name or glob, not "${n}"`);
  c.interfaces = values.interface ?? [];
  const addr = values['metrics-addr'] ?? c.metricsAddr;
  if (addr === 'off' || addr === '') c.metricsAddr = '';
  else {
    try {
      parseListenAddr(addr);
    } catch {
      throw usage(`--metrics-addr wants HOST:PORT or :PORT, not "${addr}"`);
    }
    c.metricsAddr = addr;
  }
  const output = values.output ?? 'jsonl';
  if (output !== 'jsonl' && output !== 'none') throw usage(`--output must be jsonl or none, not "${output}"`);
  c.output = output;
  const attach = values.attach ?? 'auto';
  if (!['auto', 'tcx', 'clsact'].includes(attach)) throw usage(`--attach must be auto, tcx or clsact, not "${attach}"`);
  c.attachMode = attach as AttachMode;
  c.loopback = !values['no-loopback'];
  if (values['idle-timeout']) c.idleTimeoutMs = parseDuration('idle-timeout', values['idle-timeout']);
  if (values['classify-after']) c.classifyAfterMs = parseDuration('classify-after', values['classify-after']);
  if (values['drain-interval']) c.drainIntervalMs = parseDuration('drain-interval', values['drain-interval']);
  if (values['rescan-interval']) c.rescanIntervalMs = parseDuration('rescan-interval', values['rescan-interval']);
  if (values['max-flows']) c.maxFlows = parseCount('max-flows', values['max-flows'], 1, 1 << 24);
  if (values['ring-bytes']) c.ringBytes = parseCount('ring-bytes', values['ring-bytes'], 4096, 1 << 30);
  if (values.samples) c.samplesPerDirection = parseCount('samples', values.samples, 1, 255);
  if (values['sample-bytes']) c.sampleBytes = parseCount('sample-bytes', values['sample-bytes'], 1, PS_SAMPLE_MAX_PAYLOAD);
  return c;
}

export async function runAgentCommand(argv: string[]): Promise<number> {
  const config = agentConfig(argv);
  if (config === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  // Set before the flow table grows; V8 reads this heuristic at run time.
  if (config.lowMemory) v8.setFlagsFromString('--optimize-for-size');
  return runAgent(config, untilStopSignal());
}
