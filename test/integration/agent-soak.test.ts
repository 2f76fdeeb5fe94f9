// Load soak, short (issue 7; the long one is bench/soak): the real agent under sustained
// new-flow churn — short TCP connections, TLS handshakes, single-datagram UDP flows from
// bench/soak/load.mjs, as fast as this machine makes them — for ~50 s. While it runs:
// /healthz answers (measured from outside), the event-loop lag metrics (p99 and max) are
// exported with sane values, the flow table never holds more than 1.25 × --max-flows (kept
// small so the bound is really reached), and memory stays bounded; once quiet, the table
// empties and the heap comes back. Then with a 4 KiB ring: lost
// samples are counted, and the count is exactly the kernel's (its ps_stats map, read with
// bpftool). Nothing here asserts a rate: the CPU is shared, only bounds are checked.
// Needs root and eBPF (and bpftool for the kernel's count); skips with the reason otherwise.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Lab, type Netns } from '../lab/lab.js';
import { cliMissingReason } from '../lab/plainsight.js';
import { AgentProcess, LabNode, bpfSkipReason, fastArgs } from '../lab/agent-lab.js';
import { healthzMs, kernelStats } from '../../bench/soak/node.mjs';

const LOAD = fileURLToPath(new URL('../../bench/soak/load.mjs', import.meta.url));
const skip = bpfSkipReason() ?? cliMissingReason();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

const bpftoolMissing = (() => {
  try {
    execFileSync('bpftool', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'bpftool not installed (apt-get install bpftool): the kernel-side count cannot be read';
  }
})();

/** Sum of `name{…labels containing sel…}` in a Prometheus text; NaN when absent. */
function metric(text: string, name: string, sel = ''): number {
  let sum = NaN;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
    if (sel && !(m[1] ?? '').includes(sel)) continue;
    sum = (Number.isNaN(sum) ? 0 : sum) + Number(m[2]);
  }
  return sum;
}

/** Churn from the client pod to the server pod for `seconds`: the load generators, started. */
function churn(lab: Lab, ns: Netns, host: string, seconds: number) {
  const kinds: [string, Record<string, unknown>][] = [
    ['tcp', { host, seconds, concurrency: 64 }],
    ['tcp', { host, seconds, concurrency: 64 }],
    ['tls', { host, seconds, concurrency: 16 }],
    ['udp', { host, seconds, rate: 500 }],
  ];
  return kinds.map(([kind, o]) => lab.exec(ns, ['node', LOAD, kind, JSON.stringify(o)], { timeoutMs: (seconds + 60) * 1000, name: `load ${kind}` }));
}

t.test('agent under sustained new-flow churn', { skip }, async (t) => {
  const lab = await Lab.open(t, 'soak');
  const node = await LabNode.create(t, lab, 2);
  const [cli, srv] = node.pods as [(typeof node.pods)[0], (typeof node.pods)[0]];
  const servers = lab.exec(srv.ns, ['node', LOAD, 'server'], { timeoutMs: 10 * 60_000, name: 'load server' });
  await servers.waitFor('stdout', /"up"/, 20_000);

  await t.test('stays responsive, bounded, within --max-flows', async (t) => {
    const MAX_FLOWS = 8192; // far below what the churn opens in a few seconds: the cap is hit
    const agent = await AgentProcess.start(t, fastArgs(node.glob, ['--output', 'none', '--max-flows', String(MAX_FLOWS)]));
    const port = agent.metricsPort;
    const heapBefore = metric(await agent.metrics(), 'plainsight_agent_memory_bytes', 'kind="heap_used"') / MiB; // also starts a fresh lag window
    const SECONDS = 50;
    const loads = churn(lab, cli.ns, srv.ip4, SECONDS);
    const samples: { t: number; rssMiB: number; tracked: number; lagP99: number; lagMax: number; healthz: number; samplesRead: number }[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < SECONDS * 1000) {
      await sleep(2500);
      t.ok(agent.running, 'agent still running');
      if (!agent.running) break;
      const healthz = await healthzMs(port, 5000);
      const text = await agent.metrics();
      samples.push({
        t: (Date.now() - t0) / 1000,
        rssMiB: agent.usage().rssMiB,
        tracked: metric(text, 'plainsight_agent_flows_tracked'),
        lagP99: metric(text, 'plainsight_agent_event_loop_lag_seconds'),
        lagMax: metric(text, 'plainsight_agent_event_loop_lag_max_seconds'),
        healthz,
        samplesRead: metric(text, 'plainsight_agent_samples_total'),
      });
    }
    for (const l of loads) await l.exited;
    const text = await agent.metrics();
    // Quiet: every flow idles out (--idle-timeout 3s) and the table must empty; the
    // post-burst collection (burst-gc, ≥ 10 s apart) then gives the heap back: its lowest
    // point is what the agent keeps. ~250k flows went through: a leak of a few hundred
    // bytes each would show, V8's own slack (code, feedback, coverage under tap) stays small.
    let tracked = NaN;
    for (const end = Date.now() + 40_000; Date.now() < end && tracked !== 0; ) {
      await sleep(1000);
      tracked = metric(await agent.metrics(), 'plainsight_agent_flows_tracked');
    }
    let heapAfter = Infinity;
    for (const end = Date.now() + 15_000; Date.now() < end && heapAfter >= heapBefore + 32; ) {
      await sleep(1000);
      heapAfter = Math.min(heapAfter, metric(await agent.metrics(), 'plainsight_agent_memory_bytes', 'kind="heap_used"') / MiB);
    }
    const u = agent.usage();
    await agent.stop();
    const show = samples.map((s) => `${s.t.toFixed(0)}s rss ${s.rssMiB.toFixed(0)} tracked ${s.tracked} lag ${(s.lagP99 * 1e3).toFixed(0)}/${(s.lagMax * 1e3).toFixed(0)} ms healthz ${s.healthz.toFixed(0)} ms`).join('\n');
    t.comment(show);

    t.ok(samples.length >= 10, `sampled through the churn (${samples.length} samples)`);
    t.ok(metric(text, 'plainsight_agent_samples_total') > 10_000, 'the churn reached the agent (samples read)');
    t.ok(metric(text, 'plainsight_agent_flows_reported_total', 'final="true"') > 10_000, 'flows were reported');

    // The lag metrics: present in every scrape, real measurements (finite, p99 ≤ max), and
    // never seconds of blocking. Bounds are generous: a shared CPU stretches everything.
    t.ok(samples.every((s) => Number.isFinite(s.lagP99) && Number.isFinite(s.lagMax)), 'lag p99 and max exported in every scrape');
    t.ok(samples.every((s) => s.lagP99 >= 0 && s.lagMax >= s.lagP99 - 1e-3), 'lag p99 ≤ lag max, both ≥ 0');
    t.ok(samples.some((s) => s.lagMax > 0), 'lag is measured (not a constant 0)');
    const lagP99s = samples.map((s) => s.lagP99).sort((a, b) => a - b);
    t.ok(lagP99s[Math.floor(lagP99s.length / 2)]! < 2, `median of the lag p99s under 2 s (${lagP99s.map((x) => x.toFixed(2)).join(' ')})`);

    // /healthz from outside: always answered; within 2 s nearly always.
    t.ok(samples.every((s) => s.healthz < Infinity), 'every /healthz probe answered 200 within 5 s');
    const slow = samples.filter((s) => s.healthz > 2000).length;
    t.ok(slow <= Math.floor(samples.length / 10), `/healthz within 2 s in ≥ 90% of probes (${slow} slower of ${samples.length})`);

    // The table is capped at the kernel map's capacity, however far behind the agent is.
    // (The map's flows plus a quarter more: evicted ones only the ring buffer has shown yet.)
    const maxTracked = Math.max(...samples.map((s) => s.tracked));
    const bound = MAX_FLOWS + Math.max(1024, MAX_FLOWS / 4);
    t.ok(maxTracked <= bound, `flows tracked ≤ 1.25 × --max-flows ${MAX_FLOWS} = ${bound} (max seen ${maxTracked})`);

    // Memory: no growth once warm. What would fail for real: a table or a buffer that keeps
    // what the churn passes through (that grows by hundreds of MiB in 50 s).
    const warm = samples.filter((s) => s.t >= 12 && s.t <= 20);
    const rssWarm = Math.max(...warm.map((s) => s.rssMiB));
    const rssLate = Math.max(...samples.filter((s) => s.t >= SECONDS - 12).map((s) => s.rssMiB));
    t.ok(rssLate < Math.max(2 * rssWarm, 300), `RSS bounded: ${rssLate.toFixed(0)} MiB at the end vs ${rssWarm.toFixed(0)} MiB after warm-up`);
    // Between two post-burst collections (≥ 10 s apart) the garbage of the churn (sample
    // copies in pooled buffers, output objects) makes RSS sawtooth: 370–880 MiB seen under
    // tap, whose coverage instrumentation the agent inherits. Without a bound it is GiBs.
    t.ok(u.peakRssMiB < 1536, `peak RSS ${u.peakRssMiB.toFixed(0)} MiB < 1.5 GiB`);
    t.equal(tracked, 0, 'once quiet, every flow expired: the table is empty');
    t.ok(heapAfter < heapBefore + 96, `once quiet, the JS heap is back near its start: ${heapAfter.toFixed(0)} MiB vs ${heapBefore.toFixed(0)} MiB before the churn`);
  });

  await t.test('a tiny ring overflows: lost samples counted, equal to the kernel count', { skip: bpftoolMissing }, async (t) => {
    // 4 KiB holds a few dozen samples; the reader empties it every 10 ms, the churn fills it faster.
    const agent = await AgentProcess.start(t, fastArgs(node.glob, ['--output', 'none', '--ring-bytes', '4096']));
    const loads = churn(lab, cli.ns, srv.ip4, 10);
    for (const l of loads) await l.exited;
    // Quiet now: wait for a drain to have read the final kernel count (two equal scrapes).
    let lost = NaN;
    for (let i = 0; i < 50; i++) {
      await sleep(500);
      const now = metric(await agent.metrics(), 'plainsight_agent_lost_samples_total');
      if (now === lost) break;
      lost = now;
    }
    const kernel = kernelStats(agent.pid);
    await agent.stop();
    t.ok(kernel, 'found the agent ps_stats map');
    t.ok(lost > 0, `lost samples counted (${lost})`);
    t.equal(lost, kernel?.samples_lost, 'plainsight_agent_lost_samples_total = the kernel ps_stats samples_lost');
    t.ok(
      agent.logs().some((l) => l.msg.startsWith('ring buffer full')),
      'the loss is logged once, with what to do about it',
    );
  });

  await servers.kill();
});
