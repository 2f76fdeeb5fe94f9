#!/usr/bin/env node
// plainsight classify benchmark — NOT part of the test suite, never run in CI.
//
//   node bench/classify/run.mjs [--regen] [--runs N] [--json] [--small]
//                               [--file CAPTURE] [--tools plainsight,tshark,ndpiReader]
//
// 1. Builds (or reuses, from bench/out/) a ≥100 MB capture of real traffic between
//    two network namespaces: thousands of short HTTP / TLS 1.2 / TLS 1.3 / mTLS /
//    redis connections plus bulk HTTP and TLS transfers, recorded by tcpdump on a
//    veth with MTU 1500 and offloads off. Needs root, ip, ethtool, tcpdump, openssl,
//    redis-server.
// 2. Times, on that same file: plainsight classify --json, tshark -z conv,tcp and
//    ndpiReader; median wall time over N runs plus CPU, packets/s and ratios.
// Progress goes to stderr, results to stdout (--json: one JSON object).
import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { join, dirname, resolve, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateCapture, PLANS } from './generate.mjs';
import { timeCommand, median, countPackets, killRunning, parsePlainsight, parseTshark, parseNdpi } from './measure.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const OUT = join(ROOT, 'bench', 'out');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const GOALS = { tshark: 5, ndpiReader: 1 }; // plainsight must be ≥ this many × faster

const USAGE = `usage: node bench/classify/run.mjs [--regen] [--runs N] [--json] [--small] [--file CAPTURE]
                                   [--tools plainsight,tshark,ndpiReader]
  --regen        regenerate the capture even if bench/out/ has one
  --runs N       timed runs per tool (default 3; the median is reported), after 1 warm-up run
  --json         print the results as one JSON object
  --small        tiny capture (a few MB) for debugging the benchmark itself
  --file CAPTURE benchmark an existing pcap/pcapng instead of generating one
  --tools LIST   comma-separated subset of plainsight,tshark,ndpiReader`;

let args;
try {
  args = parseArgs({
    options: {
      regen: { type: 'boolean', default: false },
      runs: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
      small: { type: 'boolean', default: false },
      file: { type: 'string' },
      tools: { type: 'string', default: 'plainsight,tshark,ndpiReader' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (args.help) { console.log(USAGE); process.exit(0); }
const RUNS = Number(args.runs);
const TOOLS = args.tools.split(',').map((s) => s.trim()).filter(Boolean);
if (!Number.isInteger(RUNS) || RUNS < 1 || TOOLS.some((t) => !['plainsight', 'tshark', 'ndpiReader'].includes(t))) {
  console.error(USAGE);
  process.exit(2);
}

const log = (m) => process.stderr.write(`[bench] ${m}\n`);
const fail = (m) => { console.error(`bench: ${m}`); process.exit(1); };

// ---- cleanup on SIGINT/SIGTERM/exit: kill children, delete namespaces ----
let lab = null;
let partialFile = null;
function cleanupSync() {
  killRunning();
  lab?.downSync();
  if (partialFile) rmSync(partialFile, { force: true });
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { log(`${sig}: cleaning up`); cleanupSync(); process.exit(130); });
}
process.on('exit', cleanupSync);

function have(bin) {
  try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }); return true; } catch { return false; }
}

// ---- 1. the capture ----
async function getCapture() {
  if (args.file) {
    if (!existsSync(args.file)) fail(`--file ${args.file}: no such file`);
    return { file: resolve(args.file), reused: true, meta: null };
  }
  const file = join(OUT, args.small ? 'classify-bench-small.pcap' : 'classify-bench.pcap');
  if (!args.regen && existsSync(file)) {
    let meta = null;
    try { meta = JSON.parse(readFileSync(`${file}.json`, 'utf8')); } catch { /* no metadata */ }
    log(`reusing ${relative(process.cwd(), file)} (${(statSync(file).size / 1e6).toFixed(1)} MB; --regen to rebuild)`);
    return { file, reused: true, meta };
  }
  if (process.getuid?.() !== 0) fail('generating the capture needs root (network namespaces, tcpdump); run as root or pass --file');
  const missing = ['ip', 'ethtool', 'tcpdump', 'openssl', 'redis-server'].filter((b) => !have(b));
  if (missing.length) fail(`generating the capture needs ${missing.join(', ')} (e.g. apt-get install -y ${missing.join(' ')})`);
  mkdirSync(OUT, { recursive: true });
  partialFile = `${file}.partial`;
  log(`generating ${relative(process.cwd(), file)} (${args.small ? 'small' : '≥100 MB'}; takes ~10–30 s)`);
  const meta = await generateCapture({ outFile: file, plan: args.small ? PLANS.small : PLANS.full, log, lab: (l) => { lab = l; } });
  lab = null;
  partialFile = null;
  return { file, reused: false, meta };
}

// ---- 2. the tools ----
function toolSpecs(file) {
  return {
    plainsight: {
      cmd: process.execPath, args: [CLI, 'classify', file, '--json'],
      display: `node dist/cli/main.js classify FILE --json`,
      parse: parsePlainsight,
      available: () => (existsSync(CLI) ? null : `${relative(process.cwd(), CLI)} not found (npm run build)`),
    },
    tshark: {
      cmd: 'tshark', args: ['-r', file, '-q', '-z', 'conv,tcp'],
      display: 'tshark -r FILE -q -z conv,tcp',
      parse: parseTshark,
      available: () => (have('tshark') ? null : 'tshark not installed (apt-get install -y tshark)'),
    },
    ndpiReader: {
      // -q: no report. The warm-up run (not timed) goes without -q to get the flow statistics.
      cmd: 'ndpiReader', args: ['-i', file, '-q'], warmupArgs: ['-i', file],
      display: 'ndpiReader -i FILE -q',
      parse: parseNdpi,
      available: () => (have('ndpiReader') ? null : 'ndpiReader not installed (apt-get install -y libndpi-bin)'),
    },
  };
}

async function main() {
  const tStart = Date.now();
  const loadavgStart = loadavg();
  const cap = await getCapture();
  const bytes = statSync(cap.file).size;
  const { packets, by: countedBy } = countPackets(cap.file);
  log(`capture: ${packets} packets (${countedBy}), ${(bytes / 1e6).toFixed(1)} MB`);

  const specs = toolSpecs(cap.file);
  const results = {};
  for (const name of TOOLS) {
    const s = specs[name];
    const why = s.available();
    if (why) { log(`${name}: skipped — ${why}`); results[name] = { skipped: why, command: s.display }; continue; }
    // warm-up (also fills the page cache), output kept for the flow-count sanity check
    const outPath = join(OUT, `${name}.out`);
    const errPath = join(OUT, `${name}.err`);
    mkdirSync(OUT, { recursive: true });
    log(`${name}: warm-up run`);
    const w = await timeCommand(s.cmd, s.warmupArgs ?? s.args, { stdoutPath: outPath, stderrPath: errPath, timeFile: join(OUT, `${name}.time`) });
    if (w.code !== 0) {
      const err = readFileSync(errPath, 'utf8').trim().split('\n').slice(-5).join(' | ');
      log(`${name}: FAILED (exit ${w.code}): ${err}`);
      results[name] = { failed: `exit ${w.code}: ${err}`, command: s.display };
      continue;
    }
    let parsed = {};
    try { parsed = s.parse(readFileSync(outPath, 'utf8')); } catch (e) { log(`${name}: could not parse output: ${e.message}`); }
    results[name] = { command: s.display, warmupSeconds: w.wall, runs: [], ...parsed };
    log(`${name}: warm-up ${w.wall.toFixed(2)} s, flows ${parsed.flows ?? '?'}`);
  }

  // timed runs, round-robin over tools so drift (thermal, noisy neighbours) hits all alike
  const active = TOOLS.filter((t) => results[t].runs);
  for (let i = 0; i < RUNS; i++) {
    for (const name of active) {
      const s = specs[name];
      const r = await timeCommand(s.cmd, s.args, { stdoutPath: '/dev/null', stderrPath: join(OUT, `${name}.err`), timeFile: join(OUT, `${name}.time`) });
      if (r.code !== 0) fail(`${name} exited ${r.code} on timed run ${i + 1}; see ${join(OUT, `${name}.err`)}`);
      results[name].runs.push(r);
      log(`${name}: run ${i + 1}/${RUNS} ${r.wall.toFixed(2)} s wall, ${r.cpu.toFixed(2)} s cpu`);
    }
  }
  for (const name of active) {
    const r = results[name];
    r.medianSeconds = median(r.runs.map((x) => x.wall));
    r.medianCpuSeconds = median(r.runs.map((x) => x.cpu));
    r.medianUserSeconds = median(r.runs.map((x) => x.user));
    r.medianSysSeconds = median(r.runs.map((x) => x.sys));
    r.maxRssMiB = Math.max(...r.runs.map((x) => x.maxRssKiB)) / 1024;
    r.packetsPerSecond = packets / r.medianSeconds;
    r.mbPerSecond = bytes / 1e6 / r.medianSeconds;
  }
  const ps = results.plainsight?.medianSeconds;
  const ratios = {};
  const cpuRatios = {};
  const goals = {};
  for (const name of ['tshark', 'ndpiReader']) {
    if (ps && results[name]?.medianSeconds) {
      ratios[name] = results[name].medianSeconds / ps; // plainsight is X× faster than <name> (wall)
      cpuRatios[name] = results[name].medianCpuSeconds / results.plainsight.medianCpuSeconds; // same, user+sys CPU
      goals[name] = { required: GOALS[name], met: ratios[name] >= GOALS[name], metByCpu: cpuRatios[name] >= GOALS[name] };
    }
  }
  const meta = cap.meta;
  const report = {
    capture: {
      file: cap.file, bytes, packets, packetsCountedBy: countedBy, reused: cap.reused,
      generatedAt: meta?.generatedAt, generationSeconds: meta?.generationSeconds,
      tcpdumpDropped: meta?.tcpdump?.dropped, traffic: meta?.traffic ? { done: meta.traffic.done, failed: meta.traffic.failed, bulkBytes: meta.traffic.bulkBytes } : undefined,
    },
    runsPerTool: RUNS,
    tools: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { ...v, runs: v.runs?.map(({ wall, user, sys, maxRssKiB }) => ({ wall, user, sys, maxRssKiB })) }])),
    ratios, cpuRatios, goals,
    host: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadavgStart, loadavgEnd: loadavg() },
    totalSeconds: (Date.now() - tStart) / 1000,
  };

  if (args.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    printTable(report);
  }
  const anyFailed = Object.values(results).some((r) => r.failed);
  process.exitCode = anyFailed ? 1 : 0;
}

function fmtInt(n) { return n == null || Number.isNaN(n) ? '?' : Math.round(n).toLocaleString('en-US'); }

function printTable(rep) {
  const c = rep.capture;
  const lines = [];
  lines.push(`capture   ${c.file}`);
  lines.push(`          ${(c.bytes / 1e6).toFixed(1)} MB, ${fmtInt(c.packets)} packets` +
    (c.generationSeconds != null ? `, generated in ${c.generationSeconds.toFixed(0)} s${c.reused ? ' (cached)' : ''}` : '') +
    (c.tcpdumpDropped != null ? `, tcpdump dropped ${c.tcpdumpDropped}` : ''));
  lines.push(`runs      ${rep.runsPerTool} timed runs per tool after 1 warm-up; median wall time`);
  const la = Math.max(rep.host.loadavgStart[0], rep.host.loadavgEnd[0]);
  lines.push(`host      ${rep.host.cpus} CPUs, node ${rep.host.node}, load average ${rep.host.loadavgStart[0].toFixed(2)} → ${rep.host.loadavgEnd[0].toFixed(2)}` +
    (la > rep.host.cpus * 0.5 ? '  (busy host: wall times inflated, trust the CPU columns more)' : ''));
  lines.push('');
  const head = ['tool', 'median s', 'cpu s (u+s)', 'max RSS', 'packets/s', 'MB/s', 'vs plainsight', 'flows'];
  const rows = [head];
  const ps = rep.tools.plainsight?.medianSeconds;
  for (const [name, r] of Object.entries(rep.tools)) {
    if (!r.medianSeconds) { rows.push([name, r.skipped ? 'skipped' : 'FAILED', '', '', '', '', '', '']); continue; }
    let vs = '';
    if (name === 'plainsight') vs = '1.00×';
    else if (ps) vs = r.medianSeconds >= ps ? `${(r.medianSeconds / ps).toFixed(2)}× slower` : `${(ps / r.medianSeconds).toFixed(2)}× faster`;
    rows.push([name, r.medianSeconds.toFixed(3), `${r.medianCpuSeconds.toFixed(2)} (${r.medianUserSeconds.toFixed(2)}+${r.medianSysSeconds.toFixed(2)})`,
      `${r.maxRssMiB.toFixed(0)} MiB`, fmtInt(r.packetsPerSecond), r.mbPerSecond.toFixed(1), vs, fmtInt(r.flows)]);
  }
  const w = head.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const [i, r] of rows.entries()) {
    lines.push(r.map((x, j) => (j === 0 ? String(x).padEnd(w[j]) : String(x).padStart(w[j]))).join('   '));
    if (i === 0) lines.push(w.map((n) => '-'.repeat(n)).join('   '));
  }
  lines.push('');
  for (const [name, r] of Object.entries(rep.tools)) lines.push(`${name.padEnd(11)} ${r.command}${r.skipped ? `   [skipped: ${r.skipped}]` : ''}${r.failed ? `   [FAILED: ${r.failed}]` : ''}`);
  lines.push('');
  // flows sanity check
  const t = rep.tools;
  const flowBits = [];
  if (t.plainsight?.flows != null) flowBits.push(`plainsight ${fmtInt(t.plainsight.flows)} (tcp ${fmtInt(t.plainsight.tcpFlows)}; ${Object.entries(t.plainsight.byVerdict ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')})`);
  if (t.tshark?.flows != null) flowBits.push(`tshark ${fmtInt(t.tshark.flows)} TCP conversations`);
  if (t.ndpiReader?.flows != null) flowBits.push(`ndpiReader ${fmtInt(t.ndpiReader.flows)} unique flows (${Object.entries(t.ndpiReader.detected ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')})`);
  if (flowBits.length) lines.push(`flows     ${flowBits.join('\n          ')}`);
  if (c.traffic?.done) {
    const d = c.traffic.done;
    lines.push(`generated ${d.http} http + ${d.tls13} tls1.3 + ${d.tls12} tls1.2 + ${d.mtls} mtls + ${d.redis} redis short connections, ${d.bulk} bulk transfers (${(c.traffic.bulkBytes / 1048576).toFixed(0)} MiB)`);
  }
  lines.push('');
  if (ps) {
    const r = rep.ratios;
    const part = (r, name, metKey) => (r[name] == null ? `? ${name}`
      : `${r[name].toFixed(2)}× ${name} (goal ≥${GOALS[name]}×: ${rep.goals[name][metKey] ? 'met' : 'NOT met'})`);
    lines.push(`plainsight is ${part(rep.ratios, 'tshark', 'met').replace(/× tshark/, '× faster than tshark')}, ${part(rep.ratios, 'ndpiReader', 'met')}   [median wall time]`);
    lines.push(`plainsight is ${part(rep.cpuRatios, 'tshark', 'metByCpu').replace(/× tshark/, '× faster than tshark')}, ${part(rep.cpuRatios, 'ndpiReader', 'metByCpu')}   [median user+sys CPU]`);
  } else {
    lines.push('plainsight not measured — no ratios');
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e) => {
  log(`error: ${e.message}`);
  cleanupSync();
  process.exit(1);
});
