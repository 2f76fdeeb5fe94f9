// The aggregator for tests: the real process (`node dist/cli/main.js aggregator`), a real
// Prometheus server scraping it, and flows from the classifier's real output turned into
// what an agent sends (ExportFlow).
//
//   const agg = await AggregatorProcess.start(t, ['--token-file', f]);   // stopped by t.teardown
//   const prom = await PrometheusServer.start(t, agg.metricsPort);       // 1 s scrape interval
//   await prom.waitFor('sum(plainsight_flows_total)', (v) => v >= 4);

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { CLI, classifyOrFail } from './plainsight.js';
import type { Endpoint, Lab } from './lab.js';
import { peerClient, peerServer } from './peers.js';
import type { FlowJson } from './plainsight.js';
import type { ExportFlow } from '../../agent/src/export/index.js';

interface TapLike {
  teardown(fn: () => unknown): void;
}

export function tempDir(t: TapLike, prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A free TCP port on 127.0.0.1 (closed again; a small race, fine for tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export class AggregatorProcess {
  stdout = '';
  stderr = '';
  grpcPort = 0;
  metricsPort = 0;
  readonly exited: Promise<number | null>;

  private constructor(readonly proc: ChildProcess) {
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => proc.on('close', (code) => resolve(code)));
  }

  /** Starts `plainsight aggregator` on 127.0.0.1 (random ports unless args give them) and waits until it listens. */
  /** `opts.wrap`: a command line the aggregator's `node …` is appended to (e.g. an `unshare` sandbox ending in `exec "$@"`). */
  static async start(t: TapLike, args: string[] = [], opts: { wrap?: string[] } = {}): Promise<AggregatorProcess> {
    const defaults = [];
    if (!args.includes('--grpc-addr')) defaults.push('--grpc-addr', '127.0.0.1:0');
    if (!args.includes('--metrics-addr')) defaults.push('--metrics-addr', '127.0.0.1:0');
    const [cmd, ...rest] = [...(opts.wrap ?? []), process.execPath, CLI, 'aggregator', ...defaults, ...args] as [string, ...string[]];
    const proc = spawn(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    const a = new AggregatorProcess(proc);
    t.teardown(() => a.stop());
    const deadline = Date.now() + 15_000;
    for (;;) {
      const line = a.logs().find((l) => l.msg === 'aggregator listening');
      if (line) {
        a.grpcPort = Number(line.grpcPort);
        a.metricsPort = Number(line.metricsPort);
        return a;
      }
      if (proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`aggregator did not start (exit ${proc.exitCode}): ${a.stderr.trim().slice(-1000)} ${a.stdout.trim().slice(-1000)}`);
      }
      await sleep(50);
    }
  }

  get address(): string {
    return `127.0.0.1:${this.grpcPort}`;
  }

  logs(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const l of this.stdout.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        out.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        /* partial line */
      }
    }
    return out;
  }

  async metrics(): Promise<string> {
    const r = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return r.text();
  }

  /** SIGKILL: no goodbye, no flush. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      const code = await this.exited;
      clearTimeout(t);
      return code;
    }
    return this.exited;
  }
}

/** Sum of a metric's samples whose labels include `match` (exposition text). */
export function metricSum(text: string, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labels = parseLabels(line.slice(name.length, line.lastIndexOf(' ')));
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export function prometheusSkipReason(): string | undefined {
  return existsSync('/usr/bin/prometheus') ? undefined : 'prometheus is not installed (Debian package `prometheus`; scripts/setup.sh)';
}

/** A real Prometheus server on 127.0.0.1 scraping one target every second. */
export class PrometheusServer {
  private log = '';
  private constructor(
    private readonly proc: ChildProcess,
    readonly port: number,
  ) {
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.log = (this.log + d).slice(-4000)));
  }

  /** `ruleFiles`: absolute paths of Prometheus rule files to load (evaluated every 1 s). */
  static async start(t: TapLike, target: string, bin = '/usr/bin/prometheus', ruleFiles: readonly string[] = []): Promise<PrometheusServer> {
    const dir = tempDir(t, 'ps-prom-');
    const port = await freePort();
    const rules = ruleFiles.length ? `rule_files:\n${ruleFiles.map((f) => `  - ${JSON.stringify(f)}\n`).join('')}` : '';
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n${rules}scrape_configs:\n  - job_name: plainsight-aggregator\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n    static_configs:\n      - targets: ['${target}']\n`,
    );
    const proc = spawn(
      bin,
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const p = new PrometheusServer(proc, port);
    const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()));
    t.teardown(async () => {
      proc.kill('SIGTERM');
      const k = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(k);
    });
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/-/ready`);
        if (r.ok) return p;
      } catch {
        /* not yet */
      }
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`prometheus did not become ready: ${p.log}`);
      await sleep(100);
    }
  }

  async query(q: string): Promise<PromSample[]> {
    const r = await fetch(`http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await r.json()) as { status: string; data?: { result: PromSample[] }; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus query ${q} failed: ${body.error}`);
    return body.data!.result;
  }

  /** Polls until `ok(result)`; returns the last result either way. */
  async waitFor(q: string, ok: (r: PromSample[]) => boolean, timeoutMs = 20_000): Promise<PromSample[]> {
    const deadline = Date.now() + timeoutMs;
    let last: PromSample[] = [];
    while (Date.now() < deadline) {
      last = await this.query(q);
      if (ok(last)) return last;
      await sleep(250);
    }
    return last;
  }
}

/** The classifier's flows (classify --json) as an agent on `node` would report them. */
export function exportFlows(flows: readonly FlowJson[], node: string, opts: { final?: boolean; nowMs?: number } = {}): ExportFlow[] {
  const now = opts.nowMs ?? Date.now();
  return flows.map((f, i) => {
    const e: ExportFlow = {
      flowId: `${node}-${f.transport}-${f.client.ip}-${f.client.port}-${f.server.ip}-${f.server.port}-${i}`,
      transport: f.transport,
      client: f.client,
      server: f.server,
      verdict: f.verdict,
      protocol: f.protocol,
      mesh: f.mesh,
      packets: f.packets,
      bytes: f.bytes,
      firstSeenMs: now - 1000,
      lastSeenMs: now,
      evidence: f.evidence,
      final: opts.final ?? true,
    };
    if (f.upgradedFrom) e.upgradedFrom = f.upgradedFrom;
    if (f.tls) e.tls = f.tls;
    return e;
  });
}

/** Open file descriptors of a process (sockets included): what a flood of connections costs it. */
export function fdCount(pid: number | 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * One real plaintext HTTP flow between two lab namespaces, captured and classified by the
 * CLI: the template the aggregator tests multiply into many connections. Undefined (and a
 * failed assertion) when the lab could not produce it.
 */
export async function realHttpFlow(t: Test, lab: Lab): Promise<{ base: FlowJson; client: Endpoint; server: Endpoint } | undefined> {
  const { client, server } = await lab.pair();
  const cap = await lab.capture(server.ns, server.ifname, 'one.pcap', { filter: 'tcp' });
  await peerServer(lab, server.ns, 'http-server', { port: 8080, responseBytes: 3000 });
  await peerClient(lab, client.ns, 'http-client', { host: server.ip4, port: 8080, bodyBytes: 700 });
  await cap.stop();
  const out = await classifyOrFail(t, [cap.file]);
  const base = out?.flows.find((f) => f.server.port === 8080);
  if (!base) {
    t.fail('no HTTP flow classified');
    return undefined;
  }
  return { base, client, server };
}
