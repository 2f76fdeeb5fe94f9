// Least privilege, measured: the real agent as uid 0 with a bounding set cut down by
// `setpriv` (no inheritable/ambient caps, so the capabilities it runs with are exactly the
// set given). Checks:
//   - with exactly the chart's capability list (parsed from agent-daemonset.yaml), in
//     Kubernetes mode against a fake API server like the chart runs it, the agent attaches
//     (TCX on host veths, socket filters on pod loopback) and classifies real traffic;
//   - the kernel agrees: without each one, the datapath step it is for (load, TCX/clsact
//     attach, setns, packet socket, another process's /proc/<pid>/ns/net) is refused, and
//     the error names the capability;
//   - with each of those capabilities removed the agent exits 1 before touching the
//     kernel, with one line naming that capability and what it is for;
//   - the narrower set for --no-loopback (BPF, PERFMON, NET_ADMIN, SYS_PTRACE: no setns,
//     no packet sockets) also works, and without PERFMON it names CAP_PERFMON;
//   - local mode without CAP_NET_RAW names it (the socket filters' packet sockets);
//   - as nobody with no capabilities it names everything missing.
// Needs root and eBPF; skips with the reason otherwise.

import t from 'tap';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { V1Pod } from '@kubernetes/client-node';
import { Lab } from '../lab/lab.js';
import { CLI, REPO_ROOT, cliMissingReason } from '../lab/plainsight.js';
import { AgentProcess, LabNode, bpfSkipReason, client, finals, server, type NodePod } from '../lab/agent-lab.js';
import { FakeKube, fixture } from '../lab/fake-kube.js';

const skip = bpfSkipReason() ?? cliMissingReason();

const DAEMONSET = new URL('../../charts/plainsight/templates/agent-daemonset.yaml', import.meta.url);

/** The capabilities the chart adds (default values: the memlock toggle is on). */
function chartCapabilities(): string[] {
  const ds = readFileSync(DAEMONSET, 'utf8');
  const block = /capabilities:\n\s+drop:\n\s+- ALL\n\s+add:\n([\s\S]*?)\n\s+volumeMounts:/.exec(ds);
  if (!block) throw new Error('no capabilities block in agent-daemonset.yaml');
  return [...block[1]!.matchAll(/^\s+- ([A-Z_]+)$/gm)].map((m) => m[1]!);
}

/** `setpriv` that leaves the agent exactly `caps` (names as Kubernetes writes them). */
function withCaps(caps: readonly string[]): string[] {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  return ['setpriv', `--bounding-set=${bounding}`, '--inh-caps=-all', '--ambient-caps=-all', '--'];
}

/** The agent under `wrap` expected to refuse to start: its exit code and stderr. */
function refused(wrap: string[], args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const argv = [...wrap, process.execPath, CLI, 'agent', ...args];
    execFile(argv[0]!, argv.slice(1), { timeout: 60_000, env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr, stdout }),
    );
  });
}

function podFor(name: string, node: string, hostIp: string, p: NodePod): V1Pod {
  const pod = fixture<V1Pod>('pod.json');
  pod.metadata!.name = name;
  pod.metadata!.generateName = undefined;
  pod.metadata!.labels = { app: name };
  pod.metadata!.ownerReferences = [];
  pod.spec!.nodeName = node;
  delete pod.spec!.containers[0]!.readinessProbe;
  delete pod.spec!.containers[0]!.livenessProbe;
  pod.status!.hostIP = hostIp;
  pod.status!.hostIPs = [{ ip: hostIp }];
  pod.status!.podIP = p.ip4;
  pod.status!.podIPs = [{ ip: p.ip4 }, { ip: p.ip6 }];
  return pod;
}

// The datapath's privileged steps one by one, without the pre-flight: what the kernel
// itself refuses under a capability set, and the capability the error names.
const STEPS_JS = String.raw`
const [flowJs, ifindex, nsPath, pid] = process.argv.slice(1);
const { FlowProgram } = await import(flowJs);
const { readlinkSync } = await import('node:fs');
const out = {};
const step = (name, fn) => { try { const v = fn(); out[name] = typeof v === 'string' ? v : 'ok'; } catch (e) { out[name] = e.message; } };
let f;
step('load', () => (f = FlowProgram.open({})));
if (f) {
  step('tcx', () => f.attachTcx(Number(ifindex), 'ingress', 'tcx').close());
  step('clsact', () => f.attachTcx(Number(ifindex), 'egress', 'clsact').close());
  step('ringbuf', () => f.openSampleRecords(() => {}).close());
  step('socket', () => f.attachSocketFilter(nsPath, 'lo').close());
  f.close();
}
step('procNetns', () => readlinkSync('/proc/' + pid + '/ns/net'));
process.stdout.write(JSON.stringify(out));
`;

const TIMERS = ['--idle-timeout', '3s', '--drain-interval', '200ms', '--classify-after', '1s', '--rescan-interval', '1s'];

t.test('the agent runs with the chart capabilities, and names each one it lacks', { skip }, async (t) => {
  const chartCaps = chartCapabilities();
  t.comment(`chart capabilities: ${chartCaps.join(', ')}`);
  t.ok(chartCaps.length >= 3, 'the chart lists capabilities');

  const lab = await Lab.open(t, 'priv');
  const node = await LabNode.create(t, lab, 2);
  const [web, db] = node.pods as [NodePod, NodePod];
  const nodeName = `lab-node-${randomBytes(3).toString('hex')}`;
  const nodeIp = `198.19.${node.subnet}.1`;
  // A process in each pod: what /proc leads the agent through (root processes with every
  // capability: opening their ns/net needs CAP_SYS_PTRACE from an agent holding fewer).
  const webServer = await server(lab, web.ns, 'tcp-server', { port: 8080, http: true });
  await server(lab, db.ns, 'tcp-server', { port: 5432, expect: 1, reply: 1 });
  const kube = await FakeKube.start();
  t.teardown(() => kube.close());
  kube.upsert('pods', podFor('web-0', nodeName, nodeIp, web) as never);
  kube.upsert('pods', podFor('db-0', nodeName, nodeIp, db) as never);
  const kubeconfig = kube.kubeconfig(lab.dir);
  const saved = process.env.NODE_NAME;
  process.env.NODE_NAME = nodeName;
  t.teardown(() => {
    if (saved === undefined) delete process.env.NODE_NAME;
    else process.env.NODE_NAME = saved;
  });
  const k8sArgs = ['--mode', 'kubernetes', '--kubeconfig', kubeconfig, '--output', 'jsonl', '--metrics-addr', '127.0.0.1:0', ...TIMERS];

  await t.test('exactly the chart set: attaches and classifies pod and intra-pod traffic', async (t) => {
    const agent = await AgentProcess.start(t, k8sArgs, { wrap: withCaps(chartCaps) });
    const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))![1]!;
    t.comment(`agent CapEff ${capEff}`);
    t.not(capEff, '000001ffffffffff', 'the agent does not hold every capability');
    const w = await agent.waitLog((l) => l.msg === 'pod attached' && l.pod === 'default/web-0', 20_000);
    const hooks = w.hooks as string[];
    t.ok(hooks.includes(`tc/${web.hostIfindex}`), `TCX on the host veth: ${JSON.stringify(hooks)}`);
    t.ok(hooks.includes('sock/lo'), 'socket filter on the pod loopback (setns + packet socket)');
    const [direct] = await client(lab, db.ns, 'tcp-client', { host: web.ip4, port: 8080, http: true });
    const [intra] = await client(lab, web.ns, 'tcp-client', { host: '127.0.0.1', port: 8080, http: true });
    const lines = await agent.waitFlows(
      (ls) =>
        finals(ls, { pod: 'default/db-0', port: 8080, clientPort: direct!.localPort }).length > 0 &&
        finals(ls, { pod: 'default/web-0', port: 8080, clientPort: intra!.localPort }).some((l) => l.intraPod),
      30_000,
      'final lines for the pod-to-pod and the intra-pod connection',
    );
    t.match(finals(lines, { pod: 'default/db-0', port: 8080, clientPort: direct!.localPort })[0], { verdict: 'plaintext', protocol: 'http/1.1' }, 'pod-to-pod HTTP classified');
    t.match(finals(lines, { pod: 'default/web-0', port: 8080, clientPort: intra!.localPort }).find((l) => l.intraPod), { verdict: 'plaintext', protocol: 'http/1.1' }, 'intra-pod HTTP classified');
    t.notOk(agent.logs().some((l) => l.level >= 40), `no warnings: ${agent.logs().filter((l) => l.level >= 40).map((l) => l.msg).join('; ')}`);
    t.equal((await agent.stop()).code, 0, 'clean exit');
  });

  await t.test('the kernel agrees: without each capability, the step it is for fails and names it', async (t) => {
    const steps = async (caps: string[]): Promise<Record<string, string>> => {
      const argv = [...withCaps(caps), process.execPath, '--input-type=module', '-e', STEPS_JS, `${REPO_ROOT}dist/agent/src/bpf/flow.js`, String(web.hostIfindex), `/var/run/netns/${web.ns.name}`, String(webServer.pid)];
      const r = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
        execFile(argv[0]!, argv.slice(1), { timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve({ stdout, stderr }))),
      );
      return JSON.parse(r.stdout) as Record<string, string>;
    };
    const all = await steps(chartCaps);
    t.same(all, { load: 'ok', tcx: 'ok', clsact: 'ok', ringbuf: 'ok', socket: 'ok', procNetns: all.procNetns }, 'the chart set: every step works');
    t.match(all.procNetns, /^net:\[\d+\]$/, "the chart set: another process's netns readable");
    const without = (cap: string): string[] => chartCaps.filter((c) => c !== cap);
    const noNetAdmin = await steps(without('NET_ADMIN'));
    t.match(noNetAdmin, { load: 'ok', tcx: /permission denied \(needs CAP_NET_ADMIN\)/, clsact: /permission denied \(needs CAP_NET_ADMIN\)/, socket: 'ok' }, 'no NET_ADMIN: TCX and clsact refused');
    const noNetRaw = await steps(without('NET_RAW'));
    t.match(noNetRaw, { load: 'ok', tcx: 'ok', socket: /packet socket: permission denied \(needs CAP_NET_RAW\)/ }, 'no NET_RAW: the packet socket refused');
    const noSysAdmin = await steps(without('SYS_ADMIN'));
    t.match(noSysAdmin, { load: /permission denied \(needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN\)/ }, 'no SYS_ADMIN (and no BPF/PERFMON): loading refused');
    const bpfInstead = await steps([...without('SYS_ADMIN'), 'BPF', 'PERFMON']);
    t.match(bpfInstead, { load: 'ok', tcx: 'ok', ringbuf: 'ok', socket: /enter network namespace .*permission denied \(needs CAP_SYS_ADMIN\)/ }, 'BPF + PERFMON instead: loads, but setns refused');
    const noPerfmon = await steps([...without('SYS_ADMIN'), 'BPF']);
    t.match(noPerfmon, { load: /permission denied/ }, 'BPF without PERFMON: the verifier refuses the program');
    const noPtrace = await steps(without('SYS_PTRACE'));
    t.match(noPtrace, { load: 'ok', socket: 'ok', procNetns: /EACCES|permission denied/ }, "no SYS_PTRACE: another process's /proc/<pid>/ns/net refused");
    const noResource = await steps(without('SYS_RESOURCE'));
    t.same(Object.values(noResource).filter((v) => v !== 'ok' && !/^net:/.test(v)), [], 'SYS_RESOURCE: not needed on this kernel (5.11+)');
  });

  await t.test('each chart capability removed: exit 1, one line naming it', async (t) => {
    // SYS_RESOURCE is only for kernels before 5.11 (memlock); on this kernel it is not needed.
    for (const cap of chartCaps.filter((c) => c !== 'SYS_RESOURCE')) {
      const r = await refused(withCaps(chartCaps.filter((c) => c !== cap)), k8sArgs);
      const lines = r.stderr.trim().split('\n');
      t.equal(r.code, 1, `without ${cap}: exit 1`);
      t.equal(lines.length, 1, `without ${cap}: one line (${r.stderr.trim()})`);
      t.match(lines[0], new RegExp(`^plainsight: missing CAP_${cap} \\([^)]+\\) \\(PLAINSIGHT_ERR_BPF_NOT_ROOT\\); add ${cap} to the container's securityContext\\.capabilities\\.add`), `without ${cap}: names it and why`);
      t.equal(r.stdout, '', 'no flow output');
    }
  });

  await t.test('--no-loopback: BPF, PERFMON, NET_ADMIN, SYS_PTRACE suffice (no setns, no packet socket)', async (t) => {
    const narrow = ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_PTRACE'];
    const args = [...k8sArgs, '--no-loopback'];
    const agent = await AgentProcess.start(t, args, { wrap: withCaps(narrow) });
    const w = await agent.waitLog((l) => l.msg === 'pod attached' && l.pod === 'default/web-0', 20_000);
    t.same(w.hooks, [`tc/${web.hostIfindex}`], 'TCX only');
    const [direct] = await client(lab, db.ns, 'tcp-client', { host: web.ip4, port: 8080, http: true });
    const lines = await agent.waitFlows((ls) => finals(ls, { pod: 'default/db-0', port: 8080, clientPort: direct!.localPort }).length > 0, 30_000, 'the pod-to-pod final line');
    t.match(finals(lines, { pod: 'default/db-0', port: 8080, clientPort: direct!.localPort })[0], { verdict: 'plaintext', protocol: 'http/1.1' });
    t.equal((await agent.stop()).code, 0);
    // Without CAP_SYS_ADMIN the verifier needs CAP_PERFMON for the datapath's pointer reads.
    const r = await refused(withCaps(narrow.filter((c) => c !== 'PERFMON')), args);
    t.equal(r.code, 1);
    t.match(r.stderr.trim(), /^plainsight: missing CAP_PERFMON \([^)]+\) \(PLAINSIGHT_ERR_BPF_NOT_ROOT\)/, 'names CAP_PERFMON');
    const noBpf = await refused(withCaps(narrow.filter((c) => c !== 'BPF')), args);
    t.match(noBpf.stderr.trim(), /^plainsight: missing CAP_BPF \(/, 'names CAP_BPF');
  });

  await t.test('local mode without NET_RAW names it, with the way around it', async (t) => {
    const r = await refused(withCaps(['NET_ADMIN', 'SYS_ADMIN']), ['--mode', 'local', '--netns', node.glob, '--metrics-addr', 'off']);
    t.equal(r.code, 1);
    t.match(r.stderr.trim(), /^plainsight: missing CAP_NET_RAW \(packet sockets for the pods' loopback; --no-loopback avoids it\)/);
  });

  await t.test('as nobody, no capabilities: every missing one named', async (t) => {
    // Without tap's NODE_OPTIONS hooks (re-added to the env of every child), which nobody cannot run.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const asNobody = ['setpriv', '--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', 'env', '-u', 'NODE_OPTIONS'];
    const r = await refused(asNobody, ['--mode', 'local', '--metrics-addr', 'off'], env);
    t.equal(r.code, 1);
    const line = r.stderr.trim();
    t.equal(line.split('\n').length, 1, line);
    for (const cap of ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_NET_RAW']) t.match(line, `${cap} (`, `names ${cap}`);
    t.notMatch(line, 'CAP_BPF', 'not CAP_BPF: CAP_SYS_ADMIN, needed anyway, covers loading');
  });
});
