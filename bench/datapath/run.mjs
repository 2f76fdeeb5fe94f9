#!/usr/bin/env node
// Datapath benchmark (issue 3), everything measured in the same run on this machine:
//   1. iperf3 throughput between two pods: no agent / the agent / `tcpdump -i <veth> -w
//      /dev/null` (the ksniff way), interleaved and repeated, medians and ratios;
//   2. new TCP flows per second the agent follows with 0 lost samples (load from N
//      client processes; the rate is the machine's limit when the load generator is);
//   3. agent CPU and RSS, and RSS with 100k live flows in the map and the flow table.
//
//   node bench/datapath/run.mjs [--seconds 5] [--repeat 3] [--only throughput|flows|live]
//                               [--agent-arg=--low-memory ...] [--json]
//
// Needs root, iperf3, tcpdump, a built tree (npm run build). Pods: network namespaces
// psbench-<hex>-{a,b} on a root bridge, 198.19.N.0/24; all removed on exit.

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    repeat: { type: 'string', default: '3' },
    only: { type: 'string' }, // throughput | flows | live
    'agent-arg': { type: 'string', multiple: true, default: [] }, // extra agent arguments, e.g. --agent-arg=--low-memory
    json: { type: 'boolean' },
  },
});
const SECONDS = Number(opt.seconds);
const REPEAT = Number(opt.repeat);

const sh = (...argv) => execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (...argv) => {
  try {
    sh(...argv);
  } catch {
    /* gone */
  }
};
const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

// ---- the node: two pods on a bridge ---------------------------------------------------------

const id = randomBytes(2).toString('hex');
const N = randomInt(100, 250);
const BR = `psbb-${id}`;
const pods = ['a', 'b'].map((x, i) => ({ ns: `psbench-${id}-${x}`, host: `psbv-${id}-${x}`, ip: `198.19.${N}.${10 + i}` }));
const children = new Set();

function cleanup() {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const p of pods) quiet('ip', 'netns', 'del', p.ns);
  for (const p of pods) quiet('ip', 'link', 'del', p.host);
  quiet('ip', 'link', 'del', BR);
}
process.on('exit', cleanup);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));

function setup() {
  sh('ip', 'link', 'add', BR, 'type', 'bridge');
  sh('ip', 'link', 'set', BR, 'up');
  for (const p of pods) {
    sh('ip', 'netns', 'add', p.ns);
    sh('ip', '-n', p.ns, 'link', 'set', 'lo', 'up');
    sh('ip', 'link', 'add', p.host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', p.ns);
    sh('ip', 'link', 'set', p.host, 'master', BR);
    sh('ip', 'link', 'set', p.host, 'up');
    sh('ip', '-n', p.ns, 'addr', 'add', `${p.ip}/24`, 'dev', 'eth0');
    sh('ip', '-n', p.ns, 'link', 'set', 'eth0', 'up');
  }
}

/** A child in its own process group (killed on exit). */
function start(argv, { ns, stdout = 'pipe' } = {}) {
  const full = ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv;
  const c = spawn(full[0], full.slice(1), { detached: true, stdio: ['ignore', stdout, 'pipe'] });
  c.out = '';
  c.err = '';
  c.stdout?.setEncoding('utf8').on('data', (d) => (c.out += d));
  c.stderr.setEncoding('utf8').on('data', (d) => (c.err += d));
  c.done = new Promise((r) => c.on('close', (code) => r(code)));
  children.add(c);
  c.done.then(() => children.delete(c));
  return c;
}

async function stop(c, sig = 'SIGTERM') {
  try {
    process.kill(-c.pid, sig);
  } catch {
    /* gone */
  }
  const t = setTimeout(() => quiet('kill', '-9', `-${c.pid}`), 10_000);
  await c.done;
  clearTimeout(t);
}

async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await sleep(50);
  }
}

// ---- the agent ------------------------------------------------------------------------------

async function startAgent(extra = []) {
  const a = start([process.execPath, CLI, 'agent', '--mode', 'local', '--netns', `psbench-${id}-*`, '--metrics-addr', '127.0.0.1:0', '--output', 'jsonl', ...opt['agent-arg'], ...extra], {
    stdout: 'ignore', // jsonl written to /dev/null: the cost of formatting it is included
  });
  await waitFor(() => a.err.includes('"agent started"') || a.exitCode !== null, 20_000, 'agent start');
  if (a.exitCode !== null) throw new Error(`agent exited: ${a.err}`);
  a.port = Number(/"msg":"metrics listening"/.test(a.err) ? /"port":(\d+)[^\n]*"metrics listening"/.exec(a.err)[1] : 0);
  return a;
}

async function metrics(a) {
  const text = await (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text();
  const get = (re) => {
    let sum = 0;
    for (const m of text.matchAll(re)) sum += Number(m[1]);
    return sum;
  };
  return {
    lost: get(/^plainsight_agent_lost_samples_total (\S+)$/gm),
    samples: get(/^plainsight_agent_samples_total (\S+)$/gm),
    tracked: get(/^plainsight_agent_flows_tracked (\S+)$/gm),
    finals: get(/^plainsight_agent_flows_reported_total\{[^}]*final="true"[^}]*\} (\S+)$/gm),
    reported: get(/^plainsight_agent_flows_reported_total\{[^}]*final="false"[^}]*\} (\S+)$/gm),
    evictions: get(/^plainsight_agent_evictions_total (\S+)$/gm),
    fill: get(/^plainsight_agent_map_fill_ratio (\S+)$/gm),
    drainSum: get(/^plainsight_agent_drain_seconds_sum (\S+)$/gm),
    drainCount: get(/^plainsight_agent_drain_seconds_count (\S+)$/gm),
    budgetExhausted: get(/^plainsight_agent_ring_budget_exhausted_total (\S+)$/gm),
    heapUsedMiB: get(/^plainsight_agent_memory_bytes\{kind="heap_used"\} (\S+)$/gm) / 1048576,
    heapTotalMiB: get(/^plainsight_agent_memory_bytes\{kind="heap_total"\} (\S+)$/gm) / 1048576,
  };
}

function usage(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { cpu: (Number(f[11]) + Number(f[12])) / 100, rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024, at: Date.now() };
}

const cpuPct = (u0, u1) => (100 * (u1.cpu - u0.cpu)) / ((u1.at - u0.at) / 1000);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- 1. throughput ----------------------------------------------------------------------------

async function iperf() {
  const out = sh('ip', 'netns', 'exec', pods[0].ns, 'iperf3', '-c', pods[1].ip, '-t', String(SECONDS), '-J', '-O', '1');
  return JSON.parse(out).end.sum_received.bits_per_second / 1e9;
}

async function throughput() {
  // The machine is shared: throughput drifts between runs. Each round measures no agent,
  // the agent, tcpdump, then no agent again; a round's ratios are against the mean of its
  // two baselines, and the result is the median over rounds.
  const server = start(['iperf3', '-s'], { ns: pods[1].ns });
  await sleep(500);
  const rounds = [];
  const agentCpu = [];
  for (let r = 0; r < REPEAT; r++) {
    const before = await iperf();
    const a = await startAgent();
    const u0 = usage(a.pid);
    const agent = await iperf();
    agentCpu.push(cpuPct(u0, usage(a.pid)));
    await stop(a);
    const td = start(['tcpdump', '-i', pods[1].host, '-w', '/dev/null', '-s', '0', '-n', '-B', '16384']);
    await waitFor(() => td.err.includes('listening on'), 10_000, 'tcpdump');
    const tcpdump = await iperf();
    await stop(td, 'SIGINT');
    const after = await iperf();
    const base = (before + after) / 2;
    rounds.push({ before, agent, tcpdump, after, agentRatio: agent / base, tcpdumpRatio: tcpdump / base });
    log(`  round ${r + 1}: none ${before.toFixed(2)} / agent ${agent.toFixed(2)} / tcpdump ${tcpdump.toFixed(2)} / none ${after.toFixed(2)} Gbit/s → agent ${(agent / base).toFixed(3)}×, tcpdump ${(tcpdump / base).toFixed(3)}×`);
  }
  await stop(server);
  return {
    gbps: {
      none: median(rounds.flatMap((x) => [x.before, x.after])),
      agent: median(rounds.map((x) => x.agent)),
      tcpdump: median(rounds.map((x) => x.tcpdump)),
    },
    ratio: { agent: median(rounds.map((x) => x.agentRatio)), tcpdump: median(rounds.map((x) => x.tcpdumpRatio)) },
    agentCpuPct: median(agentCpu),
    rounds,
  };
}

// ---- 2. new flows per second --------------------------------------------------------------------

const SERVER_JS = `require('net').createServer((s) => { s.once('data', () => s.end('ok')); s.on('error', () => {}); }).listen(9000, () => console.log('up'));`;
const LOAD_JS = `
const net = require('net');
const [host, ms, conc] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
let n = 0, errors = 0; const end = Date.now() + ms;
function one() {
  if (Date.now() > end) return;
  const s = net.connect(9000, host, () => s.write('hello'));
  s.on('data', () => {}); s.on('end', () => s.end());
  s.on('error', () => errors++);
  s.on('close', (e) => { if (!e) n++; one(); });
}
for (let i = 0; i < conc; i++) one();
setTimeout(() => { console.log(JSON.stringify({ n, errors })); process.exit(0); }, ms + 2000);
`;

async function newFlows() {
  const server = start(['node', '-e', SERVER_JS], { ns: pods[1].ns });
  await waitFor(() => server.out.includes('up'), 10_000, 'flow server');
  const levels = [];
  for (const procs of [1, 2, 4]) {
    const a = await startAgent(['--idle-timeout', '5s', '--drain-interval', '500ms']);
    const m0 = await metrics(a);
    const u0 = usage(a.pid);
    const ms = SECONDS * 1000;
    const loads = [...Array(procs)].map(() => start(['node', '-e', LOAD_JS, pods[1].ip, String(ms), '64'], { ns: pods[0].ns }));
    await Promise.all(loads.map((l) => l.done));
    const u1 = usage(a.pid);
    const conns = loads.reduce((s, l) => s + JSON.parse(l.out.trim().split('\n').pop()).n, 0);
    // Let every flow expire and be reported.
    await sleep(7000);
    const m1 = await metrics(a);
    await stop(a);
    const level = {
      loadProcesses: procs,
      connections: conns,
      connsPerSec: Math.round(conns / SECONDS),
      lostSamples: m1.lost - m0.lost,
      samples: m1.samples - m0.samples,
      flowsFinal: m1.finals - m0.finals,
      evictions: m1.evictions,
      ringBudgetExhausted: m1.budgetExhausted,
      agentCpuPct: Math.round(cpuPct(u0, u1)),
      agentPeakRssMiB: Math.round(u1.hwmMiB),
      meanDrainMs: Number(((1000 * m1.drainSum) / Math.max(1, m1.drainCount)).toFixed(2)),
    };
    log(`  ${procs} load process(es): ${level.connsPerSec} conn/s, lost ${level.lostSamples}, flows final ${level.flowsFinal} (expect ${2 * conns}), agent CPU ${level.agentCpuPct}%`);
    levels.push(level);
  }
  await stop(server);
  return levels;
}

// ---- 3. RSS with 100k live flows -----------------------------------------------------------------

const UDP_JS = `
const d = require('dgram').createSocket('udp4');
const [host, count] = [process.argv[1], Number(process.argv[2])];
(async () => {
  for (let i = 0; i < count; i++) {
    await new Promise((r) => d.send(Buffer.from('x'), 10000 + (i % 50000), host, r));
    if (i % 100 === 0) await new Promise((r) => setTimeout(r, 5)); // ~20k flows/s (0 loss at that rate)
  }
  process.exit(0);
})();`;

async function liveFlows(extra = []) {
  // Each datagram is one flow at each of the two veths: 50k destination ports → 100k flows.
  const a = await startAgent(['--max-flows', '262144', '--idle-timeout', '120s', '--drain-interval', '1s', ...extra]);
  const u0 = usage(a.pid);
  const sender = start(['node', '-e', UDP_JS, pods[1].ip, '50000'], { ns: pods[0].ns });
  await sender.done;
  let m;
  const t0 = Date.now();
  for (;;) {
    m = await metrics(a);
    if (m.tracked >= 100_000 || Date.now() - t0 > 30_000) break;
    await sleep(500);
  }
  // The table full and every flow classified (one line each): drains in steady state.
  for (const t1 = Date.now(); Date.now() - t1 < 30_000; await sleep(500)) {
    const x = await metrics(a);
    if (x.reported >= 100_000) break;
  }
  await sleep(2000);
  const before = await metrics(a);
  const uSteady = usage(a.pid);
  await sleep(5000);
  m = await metrics(a);
  const u1 = usage(a.pid);
  const r = {
    flowsTracked: m.tracked,
    mapFill: Number(m.fill.toFixed(3)),
    lostSamples: m.lost,
    rssMiB: Math.round(u1.rssMiB),
    peakRssMiB: Math.round(u1.hwmMiB),
    idleRssMiB: Math.round(u0.rssMiB),
    heapUsedMiB: Math.round(m.heapUsedMiB),
    heapTotalMiB: Math.round(m.heapTotalMiB),
    meanDrainMs: Number(((1000 * m.drainSum) / Math.max(1, m.drainCount)).toFixed(1)),
    steadyDrainMs: Number(((1000 * (m.drainSum - before.drainSum)) / Math.max(1, m.drainCount - before.drainCount)).toFixed(1)),
    steadyAgentCpuPct: Math.round(cpuPct(uSteady, u1)),
  };
  await stop(a);
  log(`  ${r.flowsTracked} flows tracked: RSS ${r.rssMiB} MiB (peak ${r.peakRssMiB}, idle ${r.idleRssMiB}; JS heap ${r.heapUsedMiB} used / ${r.heapTotalMiB} total), steady state: drain ${r.steadyDrainMs} ms/s, agent CPU ${r.steadyAgentCpuPct}%, lost ${r.lostSamples}`);
  return r;
}

// ---- main -------------------------------------------------------------------------------------

if (process.getuid?.() !== 0) {
  log('bench/datapath needs root (network namespaces, eBPF)');
  process.exit(1);
}
setup();
log(`datapath bench: ${SECONDS}s runs, ${REPEAT} rounds, kernel ${sh('uname', '-r').trim()}, ${sh('nproc').trim()} CPUs`);
const want = (part) => !opt.only || opt.only === part;
const EMPTY_TP = { gbps: { none: 0, agent: 0, tcpdump: 0 }, ratio: { agent: 0, tcpdump: 0 }, agentCpuPct: 0, runs: {} };
log('1. iperf3 pod → pod');
const tp = want('throughput') ? await throughput() : EMPTY_TP;
log('2. new TCP flows/s');
const nf = want('flows') ? await newFlows() : [];
log('3. 100k live flows');
const NO_LIVE = { flowsTracked: 0, rssMiB: 0, peakRssMiB: 0, idleRssMiB: 0, heapUsedMiB: 0, steadyDrainMs: 0, steadyAgentCpuPct: 0 };
const lf = want('live') ? await liveFlows() : NO_LIVE;
log('3b. 100k live flows, --low-memory');
const lfLow = want('live') ? await liveFlows(['--low-memory']) : NO_LIVE;
const zeroLoss = nf.filter((l) => l.lostSamples === 0);
const best = zeroLoss.sort((x, y) => y.connsPerSec - x.connsPerSec)[0];
const result = { throughput: tp, newFlows: nf, bestZeroLossConnsPerSec: best?.connsPerSec ?? 0, liveFlows: lf, liveFlowsLowMemory: lfLow };
if (opt.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
else {
  process.stdout.write(
    [
      `throughput (median of ${REPEAT} rounds of ${SECONDS}s iperf3; ratios against each round's own baseline): none ${tp.gbps.none.toFixed(2)} Gbit/s; agent ${tp.gbps.agent.toFixed(2)} (${tp.ratio.agent.toFixed(3)}×, agent CPU ${tp.agentCpuPct.toFixed(1)}%); tcpdump ${tp.gbps.tcpdump.toFixed(2)} (${tp.ratio.tcpdump.toFixed(3)}×)`,
      `new TCP flows: ${nf.map((l) => `${l.connsPerSec}/s lost ${l.lostSamples} agent ${l.agentCpuPct}% CPU`).join('; ')} → best with 0 loss ${result.bestZeroLossConnsPerSec}/s`,
      `100k live flows: ${lf.flowsTracked} tracked, RSS ${lf.rssMiB} MiB (peak ${lf.peakRssMiB}, idle ${lf.idleRssMiB}; JS heap ${lf.heapUsedMiB} MiB used), steady state: ${lf.steadyDrainMs} ms of drain per second, agent CPU ${lf.steadyAgentCpuPct}%`,
      `100k live flows, --low-memory: RSS ${lfLow.rssMiB} MiB (peak ${lfLow.peakRssMiB}; JS heap ${lfLow.heapUsedMiB} MiB used), steady state: ${lfLow.steadyDrainMs} ms of drain per second, agent CPU ${lfLow.steadyAgentCpuPct}%`,
      '',
    ].join('\n'),
  );
}
