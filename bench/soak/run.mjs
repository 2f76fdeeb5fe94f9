#!/usr/bin/env node
// Load soak (issue 7): the real agent on two pods under sustained new-flow churn at the
// machine's limit — short TCP connections, TLS handshakes and single-datagram UDP flows —
// for --minutes, sampled every --interval seconds:
//   agent RSS (/proc VmRSS) and JS heap, flows tracked, lost samples (agent metric, and at
//   the end against the kernel's own ps_stats map), event-loop lag p99 and max (the
//   agent's monitorEventLoopDelay histogram, one window per scrape), /healthz latency
//   measured from outside, connections/s achieved, agent CPU.
// Progress on stderr; per-minute table and ratios on stdout (or --json). Bounded memory
// means: RSS of the last minute within 1.25× of minute 2 (the first after warm-up), and a
// trend (least squares over the second half of the run) under 5 % of it per minute; use
// ≥ 3 minutes.
//
//   node bench/soak/run.mjs [--minutes 5] [--interval 5] [--agent-arg=--low-memory ...]
//                           [--node-arg=--max-old-space-size=256 ...]
//                           [--tcp-procs 2] [--tls-procs 1] [--udp-rate 500] [--agent-log FILE]
//                           [--profile DIR] [--json]
//
// Needs root, openssl, bpftool, a built tree (npm run build). Pods are removed on exit.

import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { LOAD, SoakNode, agentMetrics, healthzMs, kernelStats, log, sh, usage, waitFor } from './node.mjs';

const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    interval: { type: 'string', default: '5' },
    'agent-arg': { type: 'string', multiple: true, default: [] },
    'node-arg': { type: 'string', multiple: true, default: [] }, // flags for node itself (V8 heap caps)
    'tcp-procs': { type: 'string', default: '2' },
    'tls-procs': { type: 'string', default: '1' },
    'udp-rate': { type: 'string', default: '500' },
    'agent-log': { type: 'string' }, // a file: the agent's log lines (stderr) are appended there
    profile: { type: 'string' }, // a directory: the agent writes a V8 CPU profile there on exit
    json: { type: 'boolean' },
  },
});
const MINUTES = Number(opt.minutes);
const INTERVAL_S = Number(opt.interval);
const WARMUP_S = Math.min(60, (MINUTES * 60) / 5);

if (process.getuid?.() !== 0) {
  log('bench/soak needs root (network namespaces, eBPF)');
  process.exit(1);
}

const node = new SoakNode();
node.setup();
const [client, server] = node.pods;
const loadavg = () => sh('cat', '/proc/loadavg').split(' ').slice(0, 3).join(' ');
log(`soak: ${MINUTES} min of churn, sample every ${INTERVAL_S}s, kernel ${sh('uname', '-r').trim()}, ${sh('nproc').trim()} CPUs, load average before ${loadavg()}`);

const srv = node.start(['node', LOAD, 'server'], { ns: server.ns });
await waitFor(() => srv.out.includes('"up"') || srv.exitCode !== null, 20_000, 'load server');
const agent = await node.startAgent(opt['agent-arg'], { profileDir: opt.profile, logFile: opt['agent-log'], nodeArgs: opt['node-arg'] });
await sleep(1000);

const seconds = MINUTES * 60;
const loads = [
  ...[...Array(Number(opt['tcp-procs']))].map(() => ['tcp', { host: server.ip, seconds, concurrency: 64 }]),
  ...[...Array(Number(opt['tls-procs']))].map(() => ['tls', { host: server.ip, seconds, concurrency: 16 }]),
  ['udp', { host: server.ip, seconds, rate: Number(opt['udp-rate']) }],
].map(([kind, o]) => node.start(['node', LOAD, kind, JSON.stringify(o)], { ns: client.ns }));

/** Cumulative {tcp, tls, udp, errors} from the load processes' last progress lines. */
function loadCounts() {
  const c = { tcp: 0, tls: 0, udp: 0, errors: 0 };
  for (const l of loads) {
    const lines = l.out.trim().split('\n').filter((x) => x.startsWith('{'));
    const last = lines.length ? JSON.parse(lines[lines.length - 1]) : undefined;
    if (!last) continue;
    c[last.kind] += last.n;
    c.errors += last.errors;
  }
  return c;
}

const t0 = Date.now();
const samples = [];
let prevU = usage(agent.pid);
let prevC = loadCounts();
let prevM = await agentMetrics(agent.port); // also starts a fresh lag window
const m0 = prevM;
while (Date.now() - t0 < seconds * 1000) {
  await sleep(INTERVAL_S * 1000);
  if (agent.exitCode !== null) throw new Error(`agent exited during the soak: ${agent.err.slice(-2000)}`);
  const health = await healthzMs(agent.port);
  const m = await agentMetrics(agent.port);
  const u = usage(agent.pid);
  const c = loadCounts();
  const dt = (u.at - prevU.at) / 1000;
  const s = {
    t: Math.round((u.at - t0) / 1000),
    rssMiB: u.rssMiB,
    heapMiB: m.heapUsedMiB,
    heapTotalMiB: m.heapTotalMiB,
    externalMiB: m.externalMiB,
    anonMiB: u.anonMiB,
    tracked: m.tracked,
    lost: m.lost - m0.lost,
    samplesPerS: (m.samples - prevM.samples) / dt,
    finalsPerS: (m.finals - prevM.finals) / dt,
    evictions: m.evictions - m0.evictions,
    lagP99Ms: m.lagP99 * 1000,
    lagMaxMs: m.lagMax * 1000,
    healthzMs: health,
    connsPerS: (c.tcp + c.tls - prevC.tcp - prevC.tls) / dt,
    tlsPerS: (c.tls - prevC.tls) / dt,
    udpPerS: (c.udp - prevC.udp) / dt,
    cpuPct: (100 * (u.cpu - prevU.cpu)) / dt,
    drainMsPerS: (1000 * (m.drainSum - prevM.drainSum)) / dt,
  };
  samples.push(s);
  prevU = u;
  prevC = c;
  prevM = m;
  log(
    `  ${String(s.t).padStart(4)}s RSS ${s.rssMiB.toFixed(0)} MiB (anon ${s.anonMiB.toFixed(0)}) heap ${s.heapMiB.toFixed(0)}/${s.heapTotalMiB.toFixed(0)} ext ${s.externalMiB.toFixed(0)} tracked ${s.tracked} | ${s.connsPerS.toFixed(0)} conn/s (tls ${s.tlsPerS.toFixed(0)}) udp ${s.udpPerS.toFixed(0)}/s` +
      ` | lag p99 ${s.lagP99Ms.toFixed(1)} max ${s.lagMaxMs.toFixed(1)} ms healthz ${s.healthzMs.toFixed(1)} ms | CPU ${s.cpuPct.toFixed(0)}% lost ${s.lost} evict ${s.evictions} | load ${loadavg()}`,
  );
}
await Promise.all(loads.map((l) => l.done));
const counts = loadCounts();
// Everything ended: the kernel's count of lost samples and the agent's must agree once a
// drain has read the stats map.
await sleep(3000);
const mEnd = await agentMetrics(agent.port);
const kernel = kernelStats(agent.pid);
const peakRssMiB = usage(agent.pid).hwmMiB;
await node.stop(agent);
await node.stop(srv);

// ---- summary -----------------------------------------------------------------------------------

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const max = (xs) => xs.reduce((a, b) => Math.max(a, b), -Infinity);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
/** Least-squares slope of y over t, per minute. */
function slopePerMin(pts) {
  const n = pts.length;
  if (n < 2) return 0;
  const mt = mean(pts.map((p) => p.t));
  const my = mean(pts.map((p) => p.y));
  const num = pts.reduce((a, p) => a + (p.t - mt) * (p.y - my), 0);
  const den = pts.reduce((a, p) => a + (p.t - mt) ** 2, 0);
  return den ? (num / den) * 60 : 0;
}

const minutes = [];
for (let i = 0; i < Math.ceil(seconds / 60); i++) {
  const xs = samples.filter((s) => s.t > i * 60 && s.t <= (i + 1) * 60);
  if (!xs.length) continue;
  minutes.push({
    minute: i + 1,
    rssMiB: mean(xs.map((s) => s.rssMiB)),
    rssMaxMiB: max(xs.map((s) => s.rssMiB)),
    heapMiB: mean(xs.map((s) => s.heapMiB)),
    heapTotalMiB: mean(xs.map((s) => s.heapTotalMiB)),
    externalMiB: mean(xs.map((s) => s.externalMiB)),
    tracked: max(xs.map((s) => s.tracked)),
    connsPerS: mean(xs.map((s) => s.connsPerS)),
    tlsPerS: mean(xs.map((s) => s.tlsPerS)),
    udpPerS: mean(xs.map((s) => s.udpPerS)),
    lagP99Ms: max(xs.map((s) => s.lagP99Ms)),
    lagMaxMs: max(xs.map((s) => s.lagMaxMs)),
    healthzMaxMs: max(xs.map((s) => s.healthzMs)),
    cpuPct: mean(xs.map((s) => s.cpuPct)),
    lost: xs[xs.length - 1].lost,
  });
}
const steady = samples.filter((s) => s.t > WARMUP_S);
// The trend is judged on the second half: until the flow table reaches its steady size
// (minutes under churn at the agent's limit) RSS rises for a good reason.
const secondHalf = samples.filter((s) => s.t > seconds / 2);
const first = minutes[Math.min(1, minutes.length - 1)]; // minute 2: the first after warm-up
const last = minutes[minutes.length - 1];
const result = {
  minutes: MINUTES,
  agentArgs: opt['agent-arg'],
  nodeArgs: opt['node-arg'],
  loadAverageEnd: loadavg(),
  connections: counts.tcp + counts.tls,
  tlsConnections: counts.tls,
  udpFlows: counts.udp,
  loadErrors: counts.errors,
  connsPerS: mean(steady.map((s) => s.connsPerS)),
  newFlowsPerS: mean(steady.map((s) => 2 * (s.connsPerS + s.udpPerS))), // each flow is seen at both pods' veths
  rss: {
    firstMinuteMiB: first.rssMiB,
    lastMinuteMiB: last.rssMiB,
    ratioLastToFirst: last.rssMiB / first.rssMiB,
    slopeMiBPerMin: slopePerMin(steady.map((s) => ({ t: s.t, y: s.rssMiB }))),
    secondHalfSlopeMiBPerMin: slopePerMin(secondHalf.map((s) => ({ t: s.t, y: s.rssMiB }))),
    maxMiB: max(samples.map((s) => s.rssMiB)),
    peakHwmMiB: peakRssMiB,
  },
  heap: {
    firstMinuteMiB: first.heapMiB,
    lastMinuteMiB: last.heapMiB,
    slopeMiBPerMin: slopePerMin(steady.map((s) => ({ t: s.t, y: s.heapMiB }))),
    totalMaxMiB: max(samples.map((s) => s.heapTotalMiB)),
    externalMaxMiB: max(samples.map((s) => s.externalMiB)),
  },
  // What is not the JS heap: RSS minus V8's heap total (code, native buffers, libbpf mmaps, malloc).
  nonHeapMaxMiB: max(samples.map((s) => s.rssMiB - s.heapTotalMiB)),
  trackedMax: max(samples.map((s) => s.tracked)),
  lagMs: { p99Median: pct(samples.map((s) => s.lagP99Ms), 50), p99Worst: max(samples.map((s) => s.lagP99Ms)), maxWorst: max(samples.map((s) => s.lagMaxMs)) },
  healthzMs: { median: pct(samples.map((s) => s.healthzMs), 50), worst: max(samples.map((s) => s.healthzMs)) },
  agentCpuPct: mean(steady.map((s) => s.cpuPct)),
  drainMsPerS: mean(steady.map((s) => s.drainMsPerS)),
  lostSamples: { agent: mEnd.lost - m0.lost, agentTotal: mEnd.lost, kernelTotal: kernel?.samples_lost ?? null },
  samplesRead: mEnd.samples - m0.samples,
  evictions: mEnd.evictions - m0.evictions,
  perMinute: minutes,
};
result.bounded = result.rss.ratioLastToFirst <= 1.25 && result.rss.secondHalfSlopeMiBPerMin < 0.05 * last.rssMiB;

if (opt.json) process.stdout.write(`${JSON.stringify({ ...result, samples }, null, 2)}\n`);
else {
  const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : String(x));
  const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : String(x));
  const rows = [
    ['min', 'RSS MiB', 'RSS max', 'heap MiB', 'heap total', 'external', 'tracked', 'conn/s', 'tls/s', 'udp/s', 'lag p99 ms', 'lag max ms', 'healthz ms', 'CPU %', 'lost'],
    ...minutes.map((m) => [m.minute, f0(m.rssMiB), f0(m.rssMaxMiB), f0(m.heapMiB), f0(m.heapTotalMiB), f0(m.externalMiB), m.tracked, f0(m.connsPerS), f0(m.tlsPerS), f0(m.udpPerS), f1(m.lagP99Ms), f1(m.lagMaxMs), f1(m.healthzMaxMs), f0(m.cpuPct), m.lost]),
  ].map((r) => r.map(String));
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const table = rows.map((r) => r.map((c, i) => c.padStart(w[i])).join('  ')).join('\n');
  process.stdout.write(
    [
      table,
      '',
      `churn: ${f0(result.connsPerS)} TCP+TLS conn/s (${result.tlsConnections} TLS in all), ${f0(result.newFlowsPerS)} new flows/s at the veths, ${result.loadErrors} client errors`,
      `memory: RSS ${f0(first.rssMiB)} MiB (minute ${first.minute}) → ${f0(last.rssMiB)} MiB (minute ${last.minute}) = ${result.rss.ratioLastToFirst.toFixed(2)}×, trend ${f1(result.rss.slopeMiBPerMin)} MiB/min after warm-up, ${f1(result.rss.secondHalfSlopeMiBPerMin)} MiB/min in the second half, peak ${f0(peakRssMiB)} MiB; heap ${f0(first.heapMiB)} → ${f0(last.heapMiB)} MiB (heap total ≤ ${f0(result.heap.totalMaxMiB)}, external ≤ ${f0(result.heap.externalMaxMiB)}, RSS − heap total ≤ ${f0(result.nonHeapMaxMiB)} MiB) → ${result.bounded ? 'BOUNDED' : 'GROWING'}`,
      `event loop: lag p99 median ${f1(result.lagMs.p99Median)} ms, worst p99 ${f1(result.lagMs.p99Worst)} ms, worst max ${f1(result.lagMs.maxWorst)} ms; /healthz median ${f1(result.healthzMs.median)} ms, worst ${f1(result.healthzMs.worst)} ms`,
      `agent: CPU ${f0(result.agentCpuPct)}%, drain ${f1(result.drainMsPerS)} ms/s, flows tracked ≤ ${result.trackedMax}, evictions ${result.evictions}`,
      `lost samples: agent metric ${result.lostSamples.agentTotal}, kernel ps_stats ${result.lostSamples.kernelTotal} (${result.samplesRead} samples read, ${f1((100 * result.lostSamples.agent) / Math.max(1, result.lostSamples.agent + result.samplesRead))} % lost)`,
      `load average at the end: ${result.loadAverageEnd}`,
      '',
    ].join('\n'),
  );
}
process.exit(result.bounded ? 0 : 3);
