// The soak's "node" (setup copied from bench/datapath): two pods — network namespaces
// pssoak-<hex>-{a,b} with their eth0 on a root bridge, 198.19.N.0/24 — children in their
// own process groups (killed on exit), the real agent, and readers for what the soak
// samples: the agent's /metrics, /proc/<pid> (RSS, CPU), /healthz latency from outside,
// and the kernel's own stats map (bpftool), to check the lost-samples metric against it.

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { appendFileSync, readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

// PLAINSIGHT_SOAK_CLI: another build of the CLI (e.g. an instrumented copy of dist/).
export const CLI = process.env.PLAINSIGHT_SOAK_CLI ?? fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
export const LOAD = fileURLToPath(new URL('./load.mjs', import.meta.url));
const PROFILE = new URL('./profile.mjs', import.meta.url).href;

export const sh = (...argv) => execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (...argv) => {
  try {
    sh(...argv);
  } catch {
    /* gone */
  }
};
export const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

export class SoakNode {
  constructor() {
    this.id = randomBytes(2).toString('hex');
    const n = randomInt(100, 250);
    this.bridge = `pssb-${this.id}`;
    this.glob = `pssoak-${this.id}-*`;
    this.pods = ['a', 'b'].map((x, i) => ({ ns: `pssoak-${this.id}-${x}`, host: `pssv-${this.id}-${x}`, ip: `198.19.${n}.${10 + i}` }));
    this.children = new Set();
    process.on('exit', () => this.cleanup());
    for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));
  }

  setup() {
    sh('ip', 'link', 'add', this.bridge, 'type', 'bridge');
    sh('ip', 'link', 'set', this.bridge, 'up');
    for (const p of this.pods) {
      sh('ip', 'netns', 'add', p.ns);
      sh('ip', '-n', p.ns, 'link', 'set', 'lo', 'up');
      sh('ip', 'link', 'add', p.host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', p.ns);
      sh('ip', 'link', 'set', p.host, 'master', this.bridge);
      sh('ip', 'link', 'set', p.host, 'up');
      sh('ip', '-n', p.ns, 'addr', 'add', `${p.ip}/24`, 'dev', 'eth0');
      sh('ip', '-n', p.ns, 'link', 'set', 'eth0', 'up');
    }
  }

  cleanup() {
    for (const c of this.children) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const p of this.pods) quiet('ip', 'netns', 'del', p.ns);
    for (const p of this.pods) quiet('ip', 'link', 'del', p.host);
    quiet('ip', 'link', 'del', this.bridge);
  }

  /** A child in its own process group (killed on exit). stdout kept only if 'pipe'. */
  start(argv, { ns, stdout = 'pipe', stderrFile } = {}) {
    const full = ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv;
    const c = spawn(full[0], full.slice(1), { detached: true, stdio: ['ignore', stdout, 'pipe'] });
    c.out = '';
    c.err = '';
    c.stdout?.setEncoding('utf8').on('data', (d) => (c.out = (c.out + d).slice(-65536)));
    c.stderr.setEncoding('utf8').on('data', (d) => {
      c.err = (c.err + d).slice(-262144);
      if (stderrFile) appendFileSync(stderrFile, d);
    });
    c.done = new Promise((r) => c.on('close', (code) => r(code)));
    this.children.add(c);
    c.done.then(() => this.children.delete(c));
    return c;
  }

  async stop(c, sig = 'SIGTERM') {
    try {
      process.kill(-c.pid, sig);
    } catch {
      /* gone */
    }
    const t = setTimeout(() => quiet('kill', '-9', `-${c.pid}`), 15_000);
    await c.done;
    clearTimeout(t);
  }

  /** The agent on both pods' host veths; jsonl to /dev/null, so formatting it costs as in production. */
  async startAgent(args, { profileDir, logFile, nodeArgs = [] } = {}) {
    const prof = profileDir ? ['--import', PROFILE] : [];
    if (profileDir) process.env.PLAINSIGHT_SOAK_PROFILE_DIR = profileDir;
    // nodeArgs: V8/node flags (e.g. --max-old-space-size=256), as the chart's NODE_OPTIONS sets them.
    const a = this.start([process.execPath, ...nodeArgs, ...prof, CLI, 'agent', '--mode', 'local', '--netns', this.glob, '--metrics-addr', '127.0.0.1:0', '--output', 'jsonl', ...args], { stdout: 'ignore', stderrFile: logFile });
    await waitFor(() => a.err.includes('"agent started"') || a.exitCode !== null, 30_000, 'agent start');
    if (a.exitCode !== null) throw new Error(`agent exited: ${a.err}`);
    a.port = Number(/"port":(\d+)[^\n]*"metrics listening"/.exec(a.err)?.[1] ?? 0);
    return a;
  }
}

export async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await sleep(50);
  }
}

/** The agent's self-metrics this soak follows (sums over label sets). */
export async function agentMetrics(port) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  return parseMetrics(text);
}

export function parseMetrics(text) {
  const get = (name, labels = '') => {
    const re = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm');
    let sum = 0;
    let seen = false;
    for (const m of text.matchAll(re)) {
      if (labels && !(m[1] ?? '').includes(labels)) continue;
      sum += Number(m[2]);
      seen = true;
    }
    return seen ? sum : NaN;
  };
  return {
    lost: get('plainsight_agent_lost_samples_total'),
    samples: get('plainsight_agent_samples_total'),
    tracked: get('plainsight_agent_flows_tracked'),
    finals: get('plainsight_agent_flows_reported_total', 'final="true"'),
    evictions: get('plainsight_agent_evictions_total'),
    fill: get('plainsight_agent_map_fill_ratio'),
    budgetExhausted: get('plainsight_agent_ring_budget_exhausted_total'),
    lagP99: get('plainsight_agent_event_loop_lag_seconds'),
    lagMax: get('plainsight_agent_event_loop_lag_max_seconds'),
    drainSum: get('plainsight_agent_drain_seconds_sum'),
    drainCount: get('plainsight_agent_drain_seconds_count'),
    heapUsedMiB: get('plainsight_agent_memory_bytes', 'kind="heap_used"') / 1048576,
    heapTotalMiB: get('plainsight_agent_memory_bytes', 'kind="heap_total"') / 1048576,
    externalMiB: get('plainsight_agent_memory_bytes', 'kind="external"') / 1048576,
    rssMiB: get('plainsight_agent_memory_bytes', 'kind="rss"') / 1048576,
  };
}

/** CPU seconds, RSS (anonymous and file-backed parts) and peak RSS (MiB) of a process, from /proc. */
export function usage(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { cpu: (Number(f[11]) + Number(f[12])) / 100, rssMiB: kb('VmRSS') / 1024, anonMiB: kb('RssAnon') / 1024, fileMiB: kb('RssFile') / 1024, hwmMiB: kb('VmHWM') / 1024, at: Date.now() };
}

/** Milliseconds until /healthz answered 200 (a fresh connection each time), or Infinity past `timeoutMs`. */
export function healthzMs(port, timeoutMs = 10_000) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - t0 : Infinity));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(Infinity));
  });
}

/** The agent's kernel stats (ps_stats, summed over CPUs), read with bpftool from the map its fds hold. */
export function kernelStats(pid) {
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const id = /^map_id:\s+(\d+)/m.exec(info)?.[1];
    if (!id) continue;
    const show = JSON.parse(sh('bpftool', '-j', 'map', 'show', 'id', id));
    if (show.name !== 'ps_stats') continue;
    const dump = JSON.parse(sh('bpftool', '-j', 'map', 'dump', 'id', id));
    const sum = {};
    for (const entry of dump) {
      for (const v of entry.formatted?.values ?? entry.values ?? []) {
        for (const [k, x] of Object.entries(v.value ?? {})) sum[k] = (sum[k] ?? 0) + Number(x);
      }
    }
    return sum;
  }
  return undefined;
}
