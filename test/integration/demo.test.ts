// `plainsight demo --duration N --json` end to end: the real lab (netns pods on two
// "nodes", sidecars, proxies, nginx, PostgreSQL, Redis), the real agent and aggregator as
// child processes, and the verdict of every scenario hop from the final report. Then
// Ctrl-C on a live (interactive) demo, and that nothing `ps-demo-*` is left either time.
// Needs root, eBPF and the demo's servers; skips with the reason otherwise.

import t from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CLI, cliMissingReason } from '../lab/plainsight.js';
import { bpfSkipReason } from '../lab/agent-lab.js';
import { missingTools } from '../../cli/demo/scenarios.js';
import type { DemoReport, HopResult } from '../../cli/demo/report.js';

function demoSkipReason(): string | undefined {
  const missing = missingTools();
  return missing.length ? `the demo needs ${missing.map((m) => m.tool).join(', ')}` : undefined;
}

const skip = bpfSkipReason() ?? cliMissingReason() ?? demoSkipReason();

function leftovers(): string[] {
  const ns = (() => {
    try {
      return readdirSync('/var/run/netns').filter((n) => n.startsWith('ps-demo-'));
    } catch {
      return [];
    }
  })();
  return [...ns, ...readdirSync('/sys/class/net').filter((n) => n.startsWith('psd-')), ...readdirSync(tmpdir()).filter((n) => n.startsWith('plainsight-demo-'))];
}

function runCli(args: string[], o: { onStdout?: (all: string, kill: (s: NodeJS.Signals) => void) => void; timeoutMs: number }) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs);
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      o.onStdout?.(stdout, (s) => p.kill(s));
    });
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('plainsight demo --duration --json', { skip }, async (t) => {
  const r = await runCli(['demo', '--duration', '10', '--json', '--no-prometheus'], { timeoutMs: 90_000 });
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.slice(-800)})`);
  const report = JSON.parse(r.stdout) as DemoReport;
  t.same(leftovers(), [], 'no ps-demo-* namespace, psd-* link or temporary directory left');

  const hop = (scenario: string, name: RegExp): HopResult => {
    const h = report.scenarios.find((s) => s.id === scenario)?.hops.find((x) => name.test(x.hop));
    if (!h) throw new Error(`no hop ${name} in scenario ${scenario}`);
    t.ok(h.observed, `${h.hop}: observed`);
    return h;
  };
  const o = (h: HopResult) => h.observed!;

  // 1: plain HTTP flagged; Consul sidecar mTLS; the loopback hop intra-pod, plaintext, not flagged.
  const plain = o(hop('1', /plain HTTP/));
  t.match(plain, { verdict: 'plaintext', protocol: 'http/1.1', flagged: true, intraPod: false }, 'gateway → web:8080 is plaintext and flagged');
  const consul = o(hop('1', /Consul/));
  t.match(consul, { verdict: 'mtls', mesh: 'consul', tlsVersion: '1.2', port: 21000 }, 'gateway → web sidecar: mTLS, mesh consul');
  t.match(consul.sni, /\.consul$/);
  const lo1 = o(hop('1', /loopback/));
  t.match(lo1, { verdict: 'plaintext', intraPod: true, flagged: false, port: 8080 }, 'sidecar → app: intra-pod plaintext, not flagged');

  // 2: Istio.
  const istio = o(hop('2', /Istio/));
  t.match(istio, { verdict: 'mtls', mesh: 'istio', tlsVersion: '1.3', sni: 'outbound_.8000_._.httpbin.default.svc.cluster.local' }, 'sleep → httpbin: mTLS, mesh istio');
  for (const h of report.scenarios.find((s) => s.id === '2')!.hops.filter((x) => /loopback/.test(x.hop))) {
    t.match(h.observed, { verdict: 'plaintext', intraPod: true, flagged: false }, `${h.hop}: intra-pod`);
  }

  // 3: the node-local plaintext hop and TLS between the node proxies on 4141.
  t.match(o(hop('3', /shop → node-local proxy/)), { verdict: 'plaintext', flagged: true, dst: 'node1-proxy', port: 3128 }, 'pod → node-local proxy: plaintext, flagged');
  const p2p = o(hop('3', /4141/));
  t.ok(['tls', 'mtls'].includes(p2p.verdict), `proxy → proxy on 4141 is ${p2p.verdict}`);
  t.equal(p2p.port, 4141);

  // 4: egress.
  t.match(o(hop('4', /plain HTTP/)), { verdict: 'plaintext', flagged: true, port: 80, dst: 'external:198.19.80.80' }, 'plaintext egress on :80, flagged');
  t.match(o(hop('4', /TLS origination/)), { verdict: 'tls', port: 443, sni: 'api.example.com', dstLabel: 'external/api.example.com' }, 'TLS origination with SNI');
  t.match(o(hop('4', /mutual TLS/)), { verdict: 'mtls', port: 443 }, 'mTLS origination to nginx');

  // Databases.
  t.match(o(hop('db', /postgres/)), { verdict: 'tls', upgradedFrom: 'postgresql', port: 5432 }, 'psql sslmode=require: TLS upgraded from postgresql');
  t.match(o(hop('db', /redis/)), { verdict: 'plaintext', protocol: 'redis', flagged: true }, 'redis: plaintext');

  t.equal(report.ok, true, 'every hop as expected');
  t.ok(report.coverage.rows.length > 0, 'coverage rows from the aggregator');
  t.match(report.endpoints, { grpc: /^127\.0\.0\.1:\d+$/, metrics: /\/metrics$/ });
});

t.test('plainsight demo: Ctrl-C tears everything down', { skip }, async (t) => {
  let sent = false;
  const r = await runCli(['demo', '--no-prometheus'], {
    timeoutMs: 60_000,
    onStdout: (all, kill) => {
      if (!sent && /traffic flowing/.test(all)) {
        sent = true;
        setTimeout(() => kill('SIGINT'), 2000);
      }
    },
  });
  t.ok(sent, `the demo started (stderr: ${r.stderr.slice(-600)})`);
  t.equal(r.code, 0, 'exit 0 after SIGINT');
  t.match(r.stdout, /final report/, 'prints the final report');
  t.same(leftovers(), [], 'no ps-demo-* namespace, psd-* link or temporary directory left');
});

t.test('plainsight demo: usage errors', async (t) => {
  const r = await runCli(['demo', '--json'], { timeoutMs: 20_000 });
  t.equal(r.code, 2);
  t.match(r.stderr, /PLAINSIGHT_ERR_USAGE/);
});
