// `plainsight demo [--duration N] [--json]`: the one-minute live demo. Builds two small
// "nodes" of network-namespace pods with real TLS stacks, meshes' handshakes, nginx,
// PostgreSQL and Redis (cli/demo/scenarios.ts), runs the real aggregator and the real agent
// as child processes, and shows what plainsight says about every edge while it runs.
// Ctrl-C (or the end of --duration) tears everything down; so does any failure.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ListFlowsResponse__Output } from '../../proto/gen/types/plainsight/v1/ListFlowsResponse.js';
import type { GetCoverageResponse__Output } from '../../proto/gen/types/plainsight/v1/GetCoverageResponse.js';
import { bpfEnvironmentProblem } from '../../agent/src/bpf/environment.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { parse } from '../args.js';
import { deadline, queryClient, type QueryClient } from '../aggregator-client.js';
import { flowOut, type FlowOut } from './flows.js';
import { rowOut, type CoverageOut } from './coverage.js';
import { terminalWidth } from '../table.js';
import { DemoLab, cleanLeftovers, runningDemo, tail, type Proc } from '../demo/lab.js';
import { buildEdges, renderLive, renderReport, report, type AgentLine, type DemoReport } from '../demo/report.js';
import { buildTopology, missingTools, onPath, startServers, startTraffic } from '../demo/scenarios.js';

const HELP = `Usage: plainsight demo [--duration N] [--json] [--no-prometheus]

Builds a local lab — network namespaces as pods on two "nodes", with real servers and
clients (Consul- and Istio-style sidecars, node-local proxies, egress through nginx,
PostgreSQL, Redis) — runs the agent and the aggregator on it, and shows a live table of
every edge: verdict, protocol, TLS version, mesh, SNI, bytes, and coverage per namespace.
Needs root (namespaces, eBPF). Ctrl-C stops it and removes everything it created.

Options:
  --duration N      run N seconds without interaction, then print a final report
  --json            the final report as one JSON object on stdout (progress on stderr)
  --no-prometheus   do not start Prometheus even if it is installed
`;

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = fileURLToPath(new URL('../main.js', import.meta.url));

function usage(msg: string): PlainsightError {
  return new PlainsightError('PLAINSIGHT_ERR_USAGE', `demo: ${msg}`, { hint: 'run `plainsight demo --help` for usage' });
}

/** One actionable line per set-up problem, before anything is created. */
function preflight(): void {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    throw new PlainsightError('PLAINSIGHT_ERR_DEMO_NOT_ROOT', 'demo: building network namespaces and loading eBPF needs root');
  }
  const other = runningDemo();
  if (other) throw new PlainsightError('PLAINSIGHT_ERR_DEMO_RUNNING', `demo: another demo is running (pid ${other})`);
  const problem = bpfEnvironmentProblem();
  if (problem) {
    throw new PlainsightError(problem.code === 'PLAINSIGHT_ERR_BPF_NOT_ROOT' ? 'PLAINSIGHT_ERR_DEMO_NOT_ROOT' : 'PLAINSIGHT_ERR_DEMO_BPF', `demo: ${problem.message}`, {
      hint: problem.hint,
    });
  }
  let libbpf = false;
  try {
    libbpf = /libbpf\.so\.1\b/.test(execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    libbpf = true; // no ldconfig to ask: let the agent find out
  }
  if (!libbpf) throw new PlainsightError('PLAINSIGHT_ERR_DEMO_BPF', 'demo: libbpf.so.1 is not installed', { hint: 'apt-get install libbpf1 (and run `npm run build`)' });
  if (!existsSync(`${REPO}bpf/build/flow.bpf.o`)) {
    const clang = onPath('clang') ? '' : ' (clang is not installed: apt-get install clang llvm libbpf-dev)';
    throw new PlainsightError('PLAINSIGHT_ERR_DEMO_BPF', `demo: the eBPF object bpf/build/flow.bpf.o is missing${clang}`);
  }
  const missing = missingTools();
  if (missing.length) {
    const pkgs = [...new Set(missing.map((m) => m.pkg))].join(' ');
    throw new PlainsightError('PLAINSIGHT_ERR_DEMO_TOOL_MISSING', `demo: ${missing.map((m) => m.tool).join(', ')} not found`, {
      hint: `apt-get install ${pkgs} (or run \`bash scripts/setup.sh\`)`,
    });
  }
}

/** `preferred` if nothing listens there on 127.0.0.1, else a free port the kernel picks. */
async function port(preferred: number): Promise<number> {
  const tryPort = (p: number): Promise<number | undefined> =>
    new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(undefined));
      s.listen(p, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : undefined));
      });
    });
  return (await tryPort(preferred)) ?? (await tryPort(0))!;
}

function startError(what: string, e: unknown, proc?: Proc): PlainsightError {
  const detail = proc ? tail(proc.stderr || proc.stdout, 300) : e instanceof Error ? e.message : String(e);
  return new PlainsightError('PLAINSIGHT_ERR_DEMO_START', `demo: ${what} failed to start: ${detail.replace(/\s*\n\s*/g, ' ')}`, { cause: e });
}

async function query(q: QueryClient): Promise<{ flows: FlowOut[]; coverage: DemoReport['coverage'] }> {
  const flows: FlowOut[] = [];
  let pageToken = '';
  do {
    const page = await new Promise<ListFlowsResponse__Output>((resolve, reject) =>
      q.client.ListFlows({ filter: {}, sinceUnixNs: '0', pageSize: 1000, pageToken }, q.metadata, deadline(5000), (err, r) => (err || !r ? reject(err) : resolve(r))),
    );
    for (const f of page.flows) flows.push(flowOut(f));
    pageToken = page.nextPageToken;
  } while (pageToken);
  const cov = await new Promise<GetCoverageResponse__Output>((resolve, reject) =>
    q.client.GetCoverage({ by: 'COVERAGE_GROUPING_NAMESPACE', filter: {}, sinceUnixNs: '0' }, q.metadata, deadline(5000), (err, r) => (err || !r ? reject(err) : resolve(r))),
  );
  const row = (r: GetCoverageResponse__Output['total']): CoverageOut => ({ ...rowOut(r, 'namespace'), namespace: r?.namespace || 'total' });
  return { flows, coverage: { rows: [...cov.rows.map(row), row(cov.total)], total: row(cov.total) } };
}

export async function runDemo(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { duration: { type: 'string' }, json: { type: 'boolean' }, 'no-prometheus': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    'demo',
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length) throw usage(`unexpected argument "${positionals[0]}"`);
  let duration: number | undefined;
  if (values.duration !== undefined) {
    duration = Number(values.duration);
    if (!Number.isInteger(duration) || duration < 5 || duration > 3600) throw usage(`--duration wants whole seconds in 5..3600, not "${values.duration}"`);
  }
  const json = values.json === true;
  if (json && duration === undefined) throw usage('--json needs --duration N (the report is printed at the end)');
  preflight();

  const say = (s: string): void => void (json ? process.stderr : process.stdout).write(s);
  const removed = cleanLeftovers();
  if (removed.length) process.stderr.write(`plainsight demo: removed ${removed.length} leftovers of an earlier run (${removed.slice(0, 3).join(', ')}${removed.length > 3 ? ', …' : ''})\n`);

  const started = Date.now();
  const lab = new DemoLab();
  const onExit = (): void => lab.closeSync();
  process.on('exit', onExit);
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  let signals = 0;
  let firstSignalAt = 0;
  const onSignal = (): void => {
    // Ctrl-C under `npm run` arrives twice at once (the terminal's, and npm's relay): a
    // second signal only cuts the orderly stop short when it comes later.
    if (signals > 0 && Date.now() - firstSignalAt > 1000) {
      lab.closeSync();
      process.exit(130);
    }
    if (signals++ === 0) firstSignalAt = Date.now();
    stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  let q: QueryClient | undefined;
  let stopTraffic = (): void => undefined;
  try {
    const topo = buildTopology(lab);
    // Ctrl-C during set-up: tear down at the next step, no report.
    const interrupted = (): boolean => signals > 0;

    // The aggregator, then the agent (child processes: a crash of one is a message, not a hung demo).
    const [grpcPort, metricsPort, agentPort] = [await port(50051), await port(9100), await port(9101)];
    const env = { PLAINSIGHT_LOG_LEVEL: 'info' };
    const aggregator = lab.exec('', [process.execPath, CLI, 'aggregator', '--grpc-addr', `127.0.0.1:${grpcPort}`, '--metrics-addr', `127.0.0.1:${metricsPort}`], { name: 'aggregator', env });
    await aggregator.waitFor(/aggregator listening/, 15_000).catch((e: unknown) => {
      throw startError('the aggregator', e, aggregator);
    });
    const netnsArgs = topo.podNetns.flatMap((ns) => ['--netns', ns]);
    const a = lab.exec(
      '',
      [process.execPath, CLI, 'agent', '--aggregator', `127.0.0.1:${grpcPort}`, '--metrics-addr', `127.0.0.1:${agentPort}`, '--node', 'demo-node', '--output', 'jsonl', '--classify-after', '1s', ...netnsArgs],
      { name: 'agent', env },
    );
    const agentLines: AgentLine[] = [];
    let partial = '';
    a.proc.stdout?.on('data', (d: string) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        if (!l.includes('"intraPod":true')) continue; // the aggregator has the rest
        try {
          agentLines.push(JSON.parse(l) as AgentLine);
        } catch {
          /* not a flow line */
        }
      }
      if (agentLines.length > 20_000) agentLines.splice(0, 10_000);
    });
    await a.waitFor(/"agent started"/, 30_000).catch((e: unknown) => {
      throw startError('the agent', e, a);
    });
    if (interrupted()) return 130;
    const endpoints: Record<string, string> = {
      grpc: `127.0.0.1:${grpcPort}`,
      metrics: `http://127.0.0.1:${metricsPort}/metrics`,
      agentMetrics: `http://127.0.0.1:${agentPort}/metrics`,
    };

    // Prometheus, when installed: scrapes the aggregator into a temporary TSDB.
    if (!values['no-prometheus'] && onPath('prometheus')) {
      const promPort = await port(9090);
      const dir = lab.path('prometheus');
      mkdirSync(dir);
      writeFileSync(
        `${dir}/prometheus.yml`,
        `global: { scrape_interval: 5s }\nscrape_configs:\n  - job_name: plainsight-aggregator\n    static_configs: [{ targets: ['127.0.0.1:${metricsPort}'] }]\n  - job_name: plainsight-agent\n    static_configs: [{ targets: ['127.0.0.1:${agentPort}'] }]\n`,
      );
      const prom = lab.exec('', ['prometheus', `--config.file=${dir}/prometheus.yml`, `--storage.tsdb.path=${dir}/data`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], { name: 'prometheus' });
      await sleep(300);
      if (prom.running) endpoints.prometheus = `http://127.0.0.1:${promPort}/graph?g0.expr=plainsight_flows_total`;
      else process.stderr.write(`plainsight demo: prometheus did not start (${tail(prom.stderr, 200)}); going on without it\n`);
    }

    say(
      `plainsight demo: ${topo.podNetns.length} pods on 2 nodes (namespaces ps-demo-*), agent and aggregator running\n` +
        `  gRPC API   ${endpoints.grpc}   (try: plainsight flows --aggregator ${endpoints.grpc})\n` +
        `  /metrics   ${endpoints.metrics}   (agent: ${endpoints.agentMetrics})\n` +
        (endpoints.prometheus ? `  Prometheus ${endpoints.prometheus}\n` : '') +
        `  starting servers (nginx, PostgreSQL, Redis, sidecars, proxies)…\n`,
    );
    await startServers(lab, topo).catch((e: unknown) => {
      throw startError('a demo server', e);
    });

    if (interrupted()) return 130;
    const intervalMs = 1500;
    const runMs = (duration ?? 600) * 1000;
    stopTraffic = startTraffic(lab, topo, { intervalMs, rounds: Math.ceil(runMs / intervalMs) + 1, deadlineMs: runMs });
    say(`  traffic flowing${duration ? ` for ${duration} s` : ' (Ctrl-C stops the demo and removes everything)'}\n\n`);
    q = queryClient({ aggregator: endpoints.grpc }, 'demo');

    // The live view until the duration ends or a signal arrives.
    const tty = !json && process.stdout.isTTY === true;
    const end = duration ? Date.now() + duration * 1000 : Infinity;
    let lastPlain = 0;
    let timer: NodeJS.Timeout | undefined;
    const done = Promise.race([stopped, duration ? new Promise<void>((r) => (timer = setTimeout(r, duration! * 1000))) : new Promise<void>(() => undefined)]);
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      if (!a.running) throw startError('the agent', new Error('exited'), a);
      const view = await query(q).catch(() => undefined);
      if (view && !json) {
        const edges = buildEdges(view.flows, agentLines);
        const left = end === Infinity ? 'Ctrl-C to stop' : `${Math.max(0, Math.round((end - Date.now()) / 1000))} s left`;
        let head = `plainsight demo — ${Math.round((Date.now() - started) / 1000)} s, ${left} — gRPC ${endpoints.grpc}, metrics ${endpoints.metrics}${endpoints.prometheus ? `, Prometheus ${endpoints.prometheus.replace(/\/graph.*/, '')}` : ''}`;
        if (head.length > terminalWidth() - 1) head = `${head.slice(0, terminalWidth() - 2)}…`;
        head += '\n\n';
        if (tty) {
          // Home, each line cleared to its end, the rest of the screen cleared: no flicker.
          const screen = `${head}${renderLive(edges, view.coverage, terminalWidth() - 1, (process.stdout.rows ?? 40) - 3)}`;
          process.stdout.write(`\u001b[H${screen.replace(/\n/g, '\u001b[K\n')}\u001b[J`);
        } else if (edges.length > 0 && Date.now() - lastPlain > 10_000) {
          lastPlain = Date.now();
          process.stdout.write(`${head}${renderLive(edges, view.coverage, terminalWidth())}\n`);
        }
      } else if (json && Date.now() - lastPlain > 5000) {
        lastPlain = Date.now();
        process.stderr.write(`plainsight demo: ${Math.round((Date.now() - started) / 1000)} s, ${view?.flows.length ?? 0} flows so far\n`);
      }
      await Promise.race([done, sleep(tty ? 1000 : 2000)]);
    }
    clearTimeout(timer);

    // Stop the traffic, let the agent report every flow as final, then read the aggregator.
    stopTraffic();
    await a.stop(10_000);
    const last = await query(q).catch((e: unknown) => {
      throw startError('the final query to the aggregator', e);
    });
    const r = report(buildEdges(last.flows, agentLines), last.coverage, endpoints, Math.round((Date.now() - started) / 1000));
    if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      if (tty) process.stdout.write('\u001b[H\u001b[2J');
      process.stdout.write(renderReport(r, terminalWidth()));
    }
    return 0;
  } finally {
    stopTraffic();
    q?.close();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGHUP', onSignal);
    await lab.close();
    process.removeListener('exit', onExit);
    if (!json) process.stderr.write('plainsight demo: stopped; namespaces, processes and temporary files removed\n');
  }
}
