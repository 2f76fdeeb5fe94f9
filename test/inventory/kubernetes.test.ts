// Kubernetes inventory, the parts that need no root: workload derivation from
// ownerReferences, kubelet probe matching, the enter-free /proc parsers, the API failure
// lines, kubeconfig loading, and the inventory (@kubernetes/client-node informers) against
// the fake API server (fixtures/k8s shapes) with a fake host /proc.

import t, { type Test } from 'tap';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { ApiException, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { LocalPod } from '../../agent/src/inventory/local.js';
import { apiErrorInfo, apiFailureMessage, deriveWorkload, KubernetesInventory, loadKubeConfig, isProbe, ownerKey, ownerLookups, parseFibTrie, parseIfInet6, probePorts, scanNetns } from '../../agent/src/inventory/kubernetes.js';
import { FakeKube, fixture } from '../lab/fake-kube.js';

const webPod = (): V1Pod => fixture<V1Pod>('pod.json');

function ownedBy(kind: string, name: string, labels: Record<string, string> = {}): V1Pod {
  const p = webPod();
  p.metadata!.labels = labels;
  p.metadata!.ownerReferences = [{ apiVersion: 'apps/v1', kind, name, uid: 'u', controller: true }];
  return p;
}

t.test('workload from ownerReferences', async (t) => {
  const p = webPod();
  t.same(ownerLookups(p), [{ kind: 'ReplicaSet', namespace: 'default', name: 'web-5d9c7b6f4' }], 'a ReplicaSet owner is looked up');
  const rs = fixture<{ metadata: { ownerReferences: { kind: string; name: string }[] } }>('replicaset.json');
  const owners = new Map([[ownerKey('ReplicaSet', 'default', 'web-5d9c7b6f4'), rs.metadata.ownerReferences[0]! as never]]);
  t.same(deriveWorkload(p, owners), { kind: 'Deployment', name: 'web' }, 'ReplicaSet → its Deployment (read from the API)');
  t.same(deriveWorkload(p), { kind: 'Deployment', name: 'web' }, 'not read yet: the name minus pod-template-hash');
  t.same(deriveWorkload(ownedBy('ReplicaSet', 'api-7f8d9c', { 'pod-template-hash': 'zzz' })), { kind: 'ReplicaSet', name: 'api-7f8d9c' }, 'hash not a suffix: the ReplicaSet');
  t.same(deriveWorkload(p, new Map([[ownerKey('ReplicaSet', 'default', 'web-5d9c7b6f4'), null]])), { kind: 'ReplicaSet', name: 'web-5d9c7b6f4' }, 'a bare ReplicaSet');
  t.same(deriveWorkload(ownedBy('StatefulSet', 'db')), { kind: 'StatefulSet', name: 'db' });
  t.same(deriveWorkload(ownedBy('DaemonSet', 'node-exporter')), { kind: 'DaemonSet', name: 'node-exporter' });
  const job = fixture<{ metadata: { ownerReferences: { kind: string; name: string }[] } }>('job.json');
  const jp = ownedBy('Job', 'backup-29391840');
  jp.metadata!.namespace = 'ops';
  t.same(ownerLookups(jp), [{ kind: 'Job', namespace: 'ops', name: 'backup-29391840' }]);
  t.same(deriveWorkload(jp, new Map([[ownerKey('Job', 'ops', 'backup-29391840'), job.metadata.ownerReferences[0]! as never]])), { kind: 'CronJob', name: 'backup' }, 'Job → its CronJob (read)');
  t.same(deriveWorkload(jp), { kind: 'CronJob', name: 'backup' }, 'Job not read: <cronjob>-<minutes> by name');
  t.same(deriveWorkload(ownedBy('Job', 'migrate')), { kind: 'Job', name: 'migrate' }, 'a plain Job');
  const bare = webPod();
  delete bare.metadata!.ownerReferences;
  t.same(deriveWorkload(bare), { kind: 'Pod', name: 'web-5d9c7b6f4-x7k2q' }, 'no owner: the pod itself');
});

t.test('kubelet probes', async (t) => {
  const p = webPod();
  t.same([...probePorts(p)], [8080], 'named port "http" and tcpSocket 8080 → 8080');
  const c = p.spec!.containers[0]!;
  c.startupProbe = { grpc: { port: 9090 } };
  c.livenessProbe = { httpGet: { port: '8081' as never } };
  c.readinessProbe = { exec: { command: ['true'] } };
  t.same([...probePorts(p)].sort(), [8081, 9090], 'grpc, a numeric string; exec probes have no port');
  const nodeIps = new Set(['10.0.0.11']);
  const probes = new Map([['10.244.1.23', new Set([8080])]]);
  t.ok(isProbe('10.0.0.11', { ip: '10.244.1.23', port: 8080 }, nodeIps, probes), 'node → probe port: a probe');
  t.notOk(isProbe('10.244.1.9', { ip: '10.244.1.23', port: 8080 }, nodeIps, probes), 'another pod → probe port: not a probe');
  t.notOk(isProbe('10.0.0.11', { ip: '10.244.1.23', port: 5432 }, nodeIps, probes), 'node → another port: not a probe');
});

t.test('netns files read without entering', async (t) => {
  const fib = `Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 198.19.7.0/24 2 0 2
        +-- 198.19.7.0/28 2 0 2
           |-- 198.19.7.0
              /24 link UNICAST
           |-- 198.19.7.10
              /32 host LOCAL
        |-- 198.19.7.255
           /32 link BROADCAST
Local:
  +-- 127.0.0.0/8 2 0 2
     |-- 127.0.0.1
        /32 host LOCAL
`;
  t.same(parseFibTrie(fib), ['198.19.7.10'], 'only /32 host LOCAL, loopback left out');
  const v6 = `fd007073000700000000000000000010 02 40 00 80     eth0
fe80000000000000a8c1abfffe000001 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
`;
  t.same(parseIfInet6(v6), [{ address: 'fd00:7073:7::10', ifindex: 2, ifname: 'eth0' }], 'global scope only, compressed like `ip`');
});

t.test('API failures say what to do', async (t) => {
  // What @kubernetes/client-node rejects or emits with: an ApiException from a list (the
  // Status in its body), the Watch's Error with statusCode, a network error with its code.
  const forbidden = new ApiException(403, 'Unknown API Status Code!', JSON.stringify(fixture('status-403.json')), {});
  t.match(apiFailureMessage('pods', forbidden, 'https://k'), /^RBAC: .*cannot list\/watch pods.*apply the chart's ClusterRole/);
  t.match(apiErrorInfo(forbidden), { status: 403, detail: /forbidden/ }, 'the Status message kept');
  t.match(apiFailureMessage('pods', Object.assign(new Error('Unauthorized'), { statusCode: 401 }), 'https://k'), /401.*token/);
  const refused = Object.assign(new Error('request to https://k/api/v1/services failed, reason: connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  t.match(apiFailureMessage('services', refused, 'https://k'), /cannot reach the Kubernetes API at https:\/\/k .*ECONNREFUSED.*datapath keeps running/);
});

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A KubernetesInventory against `kubeconfig`, with its log lines and the pods it reports. */
function inventory(t: Test, kubeconfig: string, procRoot: string) {
  const logs: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const reports: LocalPod[][] = [];
  const inv = new KubernetesInventory({ node: 'node-a', procRoot, kubeconfig, rescanMs: 200, backoff: { initialMs: 100, maxMs: 400 } }, (pods) => reports.push(pods), log);
  t.teardown(() => inv.close());
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 100 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
    t.ok(pred(), what);
  };
  const names = (): string[] => (reports.at(-1) ?? []).map((p) => p.name);
  return { inv, logs, until, names };
}

/** A fake host /proc: one pid per pod address, each in a netns of its own (scanNetns reads it). */
function fakeProc(dir: string, ips: string[]): string {
  const root = `${dir}/proc`;
  mkdirSync(root);
  ips.forEach((ip, i) => {
    const base = `${root}/${100 + i}`;
    mkdirSync(`${base}/ns`, { recursive: true });
    mkdirSync(`${base}/net`, { recursive: true });
    symlinkSync(`net:[40265330${i}]`, `${base}/ns/net`);
    writeFileSync(`${base}/net/fib_trie`, `Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- ${ip}\n        /32 host LOCAL\n`);
    writeFileSync(`${base}/net/dev`, 'Inter-|   Receive\n face |bytes\n  eth0: 0 0\n');
  });
  return root;
}

t.test('inventory against the fake API server (@kubernetes/client-node)', async (t) => {
  const kube = await FakeKube.start();
  t.teardown(() => kube.close());
  const mk = (name: string, node: string, ip: string): V1Pod => {
    const p = webPod();
    p.metadata!.name = name;
    p.spec!.nodeName = node;
    p.status!.podIP = ip;
    p.status!.podIPs = [{ ip }];
    return p;
  };
  kube.putSingle('/apis/apps/v1/namespaces/default/replicasets/web-5d9c7b6f4', fixture('replicaset.json') as never);
  kube.upsert('pods', mk('a', 'node-a', '10.244.1.1') as never);
  kube.upsert('pods', mk('b', 'node-b', '10.244.1.2') as never);
  kube.upsert('services', fixture('service.json') as never);
  const dir = t.testdir({});
  const { inv, logs, until, names } = inventory(t, kube.kubeconfig(dir), fakeProc(dir, ['10.244.1.1', '10.244.1.2', '10.244.1.3', '10.244.1.5']));
  await inv.start();
  t.equal(inv.server, kube.url, 'the kubeconfig\'s cluster, over TLS with its certificate-authority');
  await until(() => names().join() === 'default/a', 'list honours the field selector: only this node\'s pod');
  t.ok(kube.requests.some((r) => /^GET \/api\/v1\/pods\?.*fieldSelector=spec\.nodeName%3Dnode-a/.test(r) && !r.includes('watch=')), 'pods listed with the node field selector');
  t.ok(kube.requests.some((r) => /^GET \/api\/v1\/pods\?.*watch=true/.test(r) && /resourceVersion=\d+/.test(r) && r.includes('fieldSelector=spec.nodeName%3Dnode-a')), 'watched from the list resourceVersion, with the field selector');
  await until(() => kube.requests.some((r) => r.startsWith('GET /apis/apps/v1/namespaces/default/replicasets/web-5d9c7b6f4')), 'the ReplicaSet owner read (AppsV1Api)');
  t.match(inv.identities(), [{ name: 'service/web', namespace: 'default', ips: ['10.96.14.7'] }], 'the Service\'s ClusterIP');

  kube.upsert('pods', mk('c', 'node-a', '10.244.1.3') as never);
  kube.upsert('pods', mk('d', 'node-b', '10.244.1.2') as never);
  await until(() => names().join() === 'default/a,default/c', 'ADDED on this node arrives by watch; another node\'s does not');
  kube.remove('pods', 'default', 'a');
  await until(() => names().join() === 'default/c', 'DELETED arrives by watch');

  const lists = (): number => kube.requests.filter((r) => r.startsWith('GET /api/v1/pods?') && !r.includes('watch=')).length;
  const before = lists();
  kube.compact(); // watches end; resuming from the old resourceVersion gets 410 Gone
  kube.upsert('pods', mk('e', 'node-a', '10.244.1.5') as never);
  await until(() => lists() > before && names().join() === 'default/c,default/e', '410 Gone: relisted, the pod added meanwhile is there');
  t.notOk(logs.some((l) => l.level >= 40), `no warning for a 410 (${JSON.stringify(logs.filter((l) => l.level >= 40))})`);

  kube.forbidden = true;
  kube.compact(); // the watches reconnect to a 403
  await until(() => logs.filter((l) => l.level === 40 && /^RBAC: /.test(l.msg)).length === 2, 'a 403: one RBAC line for pods, one for services');
  await new Promise((r) => setTimeout(r, 800)); // retries at 100, 200, 400 ms …
  t.equal(logs.filter((l) => l.level === 40 && /^RBAC: /.test(l.msg)).length, 2, 'not repeated per retry');
  // A refused watch: client-node's Watch keeps the status, not the Status message.
  t.match(logs.find((l) => /^RBAC: .*pods/.test(l.msg)), { level: 40, status: 403, detail: /forbidden/i });
  t.ok(logs.filter((l) => l.level === 20 && /^RBAC: .*pods/.test(l.msg)).length >= 2, 'retried with backoff');
  kube.forbidden = false;
  await until(() => logs.some((l) => l.msg === 'Kubernetes API answers: watching pods') && logs.some((l) => l.msg === 'Kubernetes API answers: watching services'), 'recovery logged per resource');
  kube.upsert('pods', mk('f', 'node-a', '10.244.1.3') as never);
  kube.remove('pods', 'default', 'c');
  await until(() => names().join() === 'default/e,default/f', 'watching again');
});

t.test('forbidden from the start: the list\'s Status message kept', async (t) => {
  const kube = await FakeKube.start();
  t.teardown(() => kube.close());
  kube.forbidden = true;
  const dir = t.testdir({});
  const { inv, logs, until } = inventory(t, kube.kubeconfig(dir), fakeProc(dir, []));
  await inv.start();
  await until(() => logs.filter((l) => l.level === 40).length === 2, 'one line per resource');
  t.match(logs.find((l) => /^RBAC: .*pods/.test(l.msg)), { status: 403, detail: /pods is forbidden: User "system:serviceaccount/ });
});

t.test('unreachable API server: one clear line, retried', async (t) => {
  const dir = t.testdir({});
  const kube = await FakeKube.start();
  const kubeconfig = kube.kubeconfig(dir);
  await kube.close(); // nothing listens there any more
  const { inv, logs, until } = inventory(t, kubeconfig, fakeProc(dir, []));
  await inv.start();
  await until(() => logs.filter((l) => /^cannot reach the Kubernetes API/.test(l.msg)).length === 2, 'one line per resource');
  t.match(logs.find((l) => /^cannot reach/.test(l.msg))?.msg, /ECONNREFUSED.*the datapath keeps running/);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(logs.filter((l) => l.level === 40).length, 2, 'retries are not warned again');
});

t.test('kubeconfig and in-cluster configuration', async (t) => {
  const dir = t.testdir({
    'config.yaml': `apiVersion: v1
kind: Config
current-context: prod
clusters:
  - name: other
    cluster: { server: "https://wrong:6443" }
  - name: c1
    cluster:
      server: https://10.0.0.1:6443
      certificate-authority: ca.crt
users:
  - name: agent
    user:
      token: abc
contexts:
  - name: prod
    context: { cluster: c1, user: agent }
`,
    'ca.crt': 'CA PEM',
  });
  const saved = process.env.KUBERNETES_SERVICE_HOST;
  delete process.env.KUBERNETES_SERVICE_HOST;
  t.teardown(() => {
    if (saved !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved;
  });
  const kc = loadKubeConfig(`${dir}/config.yaml`);
  t.equal(kc.getCurrentCluster()?.server, 'https://10.0.0.1:6443', 'the current context\'s cluster');
  t.equal(kc.getCurrentCluster()?.caFile, `${dir}/ca.crt`, 'a certificate-authority file relative to the kubeconfig');
  t.equal(kc.getCurrentUser()?.token, 'abc');
  t.throws(() => loadKubeConfig(`${dir}/missing`), { code: 'PLAINSIGHT_ERR_INVENTORY_KUBECONFIG', message: /cannot read the kubeconfig/ });
  process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
  process.env.KUBERNETES_SERVICE_PORT ??= '443';
  try {
    let inCluster: KubeConfig | Error;
    try {
      inCluster = loadKubeConfig();
    } catch (err) {
      inCluster = err as Error;
    }
    // On a machine that is not a pod the ServiceAccount files are missing: a clear error.
    if (inCluster instanceof Error) t.match(inCluster, { code: 'PLAINSIGHT_ERR_INVENTORY_KUBECONFIG', message: /in-cluster configuration incomplete/ });
    else t.equal(inCluster.getCurrentCluster()?.server, 'https://10.96.0.1:443');
  } finally {
    delete process.env.KUBERNETES_SERVICE_HOST;
  }
});

t.test('scanNetns: pids grouped by netns, host veth by iflink both ways', async (t) => {
  const { mkdirSync, symlinkSync, writeFileSync } = await import('node:fs');
  const root = t.testdir({});
  const fib = (ip: string) => `Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- ${ip}\n        /32 host LOCAL\n`;
  const proc = (pid: number, inode: string, ip: string, links: Record<string, [number, number]> | undefined) => {
    const base = `${root}/proc/${pid}`;
    mkdirSync(`${base}/ns`, { recursive: true });
    mkdirSync(`${base}/net`, { recursive: true });
    symlinkSync(inode, `${base}/ns/net`); // readlink gives "net:[N]", as procfs does
    writeFileSync(`${base}/net/fib_trie`, fib(ip));
    writeFileSync(`${base}/net/if_inet6`, '');
    writeFileSync(`${base}/net/dev`, 'Inter-|   Receive\n face |bytes\n    lo: 0 0\n  eth0: 0 0\n');
    for (const [ifname, [ifindex, iflink]] of Object.entries(links ?? {})) {
      const d = `${base}/root/sys/class/net/${ifname}`;
      mkdirSync(d, { recursive: true });
      writeFileSync(`${d}/ifindex`, `${ifindex}\n`);
      writeFileSync(`${d}/iflink`, `${iflink}\n`);
    }
  };
  // Two processes in pod A's netns (the lower pid is used), one in pod B's (no sysfs of its own).
  proc(200, 'net:[4026532001]', '10.244.1.5', { lo: [1, 1], eth0: [2, 41] });
  proc(150, 'net:[4026532001]', '10.244.1.5', { lo: [1, 1], eth0: [2, 41] });
  proc(300, 'net:[4026532002]', '10.244.1.6', undefined);
  // A veth whose ifindex matches but whose peer is another ifindex: not pod A's.
  proc(400, 'net:[4026532003]', '10.244.1.7', { lo: [1, 1], eth0: [3, 42] });
  const host = `${root}/hostnet`;
  for (const [name, ifindex, iflink] of [['vethA', 41, 2], ['vethX', 42, 9], ['eth0', 2, 2]] as const) {
    mkdirSync(`${host}/${name}`, { recursive: true });
    writeFileSync(`${host}/${name}/ifindex`, `${ifindex}\n`);
    writeFileSync(`${host}/${name}/iflink`, `${iflink}\n`);
  }
  const views = scanNetns(`${root}/proc`, host).sort((a, b) => a.pid - b.pid);
  t.same(views.map((v) => [v.pid, v.addresses]), [[150, ['10.244.1.5']], [300, ['10.244.1.6']], [400, ['10.244.1.7']]], 'one view per netns, its lowest pid');
  t.same(views[0]!.interfaces.find((i) => i.ifname === 'eth0'), { ifname: 'eth0', ifindex: 2, host: { ifname: 'vethA', ifindex: 41 } }, 'eth0 ↔ vethA (iflink both ways)');
  t.notOk(views[0]!.interfaces.find((i) => i.ifname === 'lo')?.host, 'loopback: no host side');
  t.same(views[1]!.interfaces.map((i) => i.ifname), ['lo', 'eth0'], 'no sysfs: names from net/dev, no host side');
  t.notOk(views[2]!.interfaces.find((i) => i.ifname === 'eth0')?.host, 'a host veth pointing elsewhere is not taken');
  t.throws(() => scanNetns(`${root}/nope`), { code: 'PLAINSIGHT_ERR_INVENTORY_PROC' });
});
