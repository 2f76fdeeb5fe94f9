// The real agent in Kubernetes mode (`plainsight agent --mode kubernetes --kubeconfig F
// --output jsonl`, NODE_NAME set) against a fake API server (test/lab/fake-kube.ts: the
// JSON shapes of test/fixtures/k8s, field selector and watch streams honoured) and netns
// "pods" whose addresses are the fixture pods' status.podIPs, each with a process in it so
// /proc leads to its netns. Checks: pods attached by namespace/name with their workload
// (Deployment through the ReplicaSet read from the API, StatefulSet), a pod of another
// node and a hostNetwork pod not attached, a pod added and deleted by watch events
// attached and detached, a Service ClusterIP named, kubelet probe traffic (node address →
// probe port) flagged, and a 403 from the API: one RBAC line, the agent keeps running and
// recovers when the API answers. Needs root and eBPF; skips with the reason otherwise.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { Lab } from '../lab/lab.js';
import { cliMissingReason } from '../lab/plainsight.js';
import { AgentProcess, LabNode, bpfSkipReason, client, finals, server, type FlowLine, type NodePod } from '../lab/agent-lab.js';
import { FakeKube, fixture } from '../lab/fake-kube.js';

const skip = bpfSkipReason() ?? cliMissingReason();

type K8sLine = FlowLine & { peerService?: string; peerNode?: string; probe?: boolean };

function podFor(name: string, node: string, hostIp: string, p: NodePod, owner?: { kind: string; name: string; apiVersion: string }): V1Pod {
  const pod = fixture<V1Pod>('pod.json');
  pod.metadata!.name = name;
  pod.metadata!.generateName = undefined;
  // No pod-template-hash: the Deployment can only come from the ReplicaSet read from the API.
  pod.metadata!.labels = { app: name.split('-')[0]! };
  pod.metadata!.ownerReferences = owner ? [{ ...owner, uid: randomBytes(8).toString('hex'), controller: true, blockOwnerDeletion: true }] : [];
  pod.spec!.nodeName = node;
  pod.status!.hostIP = hostIp;
  pod.status!.hostIPs = [{ ip: hostIp }];
  pod.status!.podIP = p.ip4;
  pod.status!.podIPs = [{ ip: p.ip4 }, { ip: p.ip6 }];
  return pod;
}

function agentArgs(kubeconfig: string): string[] {
  return [
    '--mode', 'kubernetes', '--kubeconfig', kubeconfig, '--output', 'jsonl', '--metrics-addr', '127.0.0.1:0',
    '--idle-timeout', '3s', '--drain-interval', '200ms', '--classify-after', '1s', '--rescan-interval', '1s',
  ];
}

/** An HTTP request from the root namespace, bound to the node address (what the kubelet does). */
function probeFromNode(nodeIp: string, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: nodeIp }, () => s.write('GET /healthz HTTP/1.1\r\nHost: pod\r\nUser-Agent: kube-probe/1.31\r\n\r\n'));
    s.on('data', () => undefined);
    s.on('end', () => s.end());
    s.on('error', reject);
    let localPort = 0;
    s.on('connect', () => (localPort = s.localPort ?? 0));
    s.on('close', () => resolve(localPort));
  });
}

t.test('agent --mode kubernetes against a fake API server', { skip }, async (t) => {
  const lab = await Lab.open(t, 'k8s');
  const node = await LabNode.create(t, lab, 2);
  const [web, db] = node.pods as [NodePod, NodePod];
  const nodeName = `lab-node-${randomBytes(3).toString('hex')}`;
  const nodeIp = `198.19.${node.subnet}.1`;
  const clusterIp = `198.19.${node.subnet}.200`;
  // The node's own address (kubelet probes leave from it) on the bridge; the Service's
  // ClusterIP routed to the web pod (no kube-proxy here: the client still sends to it).
  execFileSync('ip', ['addr', 'add', `${nodeIp}/24`, 'dev', node.bridge]);
  execFileSync('ip', ['-n', web.ns.name, 'addr', 'add', `${clusterIp}/32`, 'dev', 'eth0']);
  // A process in each pod: what /proc leads the agent through.
  await server(lab, web.ns, 'tcp-server', { port: 8080, http: true });
  await server(lab, db.ns, 'tcp-server', { port: 5432, expect: 1, reply: 1 });

  const kube = await FakeKube.start();
  t.teardown(() => kube.close());
  const webName = 'web-5d9c7b6f4-x7k2q';
  kube.putSingle('/apis/apps/v1/namespaces/default/replicasets/web-5d9c7b6f4', fixture('replicaset.json') as never);
  kube.putSingle('/apis/batch/v1/namespaces/ops/jobs/backup-29391840', fixture('job.json') as never);
  kube.upsert('pods', podFor(webName, nodeName, nodeIp, web, { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d9c7b6f4' }) as never);
  const dbPod = podFor('db-0', nodeName, nodeIp, db, { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db' });
  delete dbPod.spec!.containers[0]!.readinessProbe;
  delete dbPod.spec!.containers[0]!.livenessProbe;
  kube.upsert('pods', dbPod as never);
  // Another node's pod with an address of this node's pods' subnet: the field selector keeps it out.
  const other = podFor('elsewhere-0', 'node-other', '10.0.0.12', { ...db, ip4: `198.19.${node.subnet}.99`, ip6: 'fd00::99' });
  kube.upsert('pods', other as never);
  // A hostNetwork pod: the node's address, no veth.
  const proxy = podFor('kube-proxy-q2x8z', nodeName, nodeIp, { ...db, ip4: nodeIp, ip6: 'fd00::1' }, { apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'kube-proxy' });
  proxy.metadata!.namespace = 'kube-system';
  proxy.spec!.hostNetwork = true;
  kube.upsert('pods', proxy as never);
  const svc = fixture<{ metadata: { name: string }; spec: { clusterIP: string; clusterIPs: string[] } }>('service.json');
  svc.spec.clusterIP = clusterIp;
  svc.spec.clusterIPs = [clusterIp];
  kube.upsert('services', svc as never);

  const savedNode = process.env.NODE_NAME;
  process.env.NODE_NAME = nodeName;
  t.teardown(() => {
    if (savedNode === undefined) delete process.env.NODE_NAME;
    else process.env.NODE_NAME = savedNode;
  });
  const kubeconfig = kube.kubeconfig(lab.dir);
  const agent = await AgentProcess.start(t, agentArgs(kubeconfig));

  await t.test('pods of this node attached with namespace/name and workload', async (t) => {
    const w = await agent.waitLog((l) => l.msg === 'pod attached' && l.pod === `default/${webName}`, 15_000);
    t.ok((w.hooks as string[]).includes(`tc/${web.hostIfindex}`), `TCX on the web pod's host veth ${web.hostIf}: ${JSON.stringify(w.hooks)}`);
    const d = await agent.waitLog((l) => l.msg === 'pod attached' && l.pod === 'default/db-0', 15_000);
    t.ok((d.hooks as string[]).includes(`tc/${db.hostIfindex}`), 'TCX on the db pod\'s host veth');
    await agent.waitLog((l) => l.msg === 'pod found in its network namespace' && l.pod === `default/${webName}` && (l.workload as { kind: string }).kind === 'Deployment', 15_000);
    const found = agent.logs().filter((l) => l.msg === 'pod found in its network namespace');
    t.match(found.filter((l) => l.pod === `default/${webName}`).at(-1), { workload: { kind: 'Deployment', name: 'web' } }, 'ReplicaSet → Deployment via the API');
    t.match(found.find((l) => l.pod === 'default/db-0'), { workload: { kind: 'StatefulSet', name: 'db' } });
    t.ok(kube.requests.some((r) => r.startsWith('GET /apis/apps/v1/namespaces/default/replicasets/web-5d9c7b6f4')), 'the ReplicaSet was read');
    t.ok(kube.requests.some((r) => r.includes(`fieldSelector=spec.nodeName%3D${nodeName}`) && r.includes('watch=true')), 'pods watched with the node field selector');
    const attached = agent.logs().filter((l) => l.msg === 'pod attached').map((l) => l.pod);
    t.notOk(attached.some((p) => String(p).includes('elsewhere') || String(p).includes('kube-proxy')), `not attached: another node's pod, a hostNetwork pod (${attached.join(', ')})`);
  });

  await t.test('flows: peer pods, the Service, kubelet probes', async (t) => {
    const [direct] = await client(lab, db.ns, 'tcp-client', { host: web.ip4, port: 8080, http: true });
    const [viaSvc] = await client(lab, db.ns, 'tcp-client', { host: clusterIp, port: 8080, http: true });
    const probePort = await probeFromNode(nodeIp, web.ip4, 8080);
    const webKey = `default/${webName}`;
    const lines = (await agent.waitFlows(
      (ls) =>
        finals(ls, { pod: 'default/db-0', port: 8080, clientPort: direct!.localPort }).length > 0 &&
        finals(ls, { pod: 'default/db-0', port: 8080, clientPort: viaSvc!.localPort }).length > 0 &&
        finals(ls, { pod: webKey, port: 8080, clientPort: probePort }).length > 0,
      20_000,
      `final lines for the direct (${direct!.localPort}), Service (${viaSvc!.localPort}) and probe (${probePort}) connections; lines so far: ${JSON.stringify(agent.flows().map((l) => [l.pod, l.client, l.server, l.final]))}`,
    )) as K8sLine[];
    const d = finals(lines, { pod: 'default/db-0', port: 8080, clientPort: direct!.localPort })[0] as K8sLine;
    t.match(d, { verdict: 'plaintext', protocol: 'http/1.1', peerPod: webKey }, 'db → web: the peer pod by namespace/name');
    t.notOk(d.probe, 'pod-to-pod traffic is not a probe');
    const atWeb = finals(lines, { pod: webKey, port: 8080, clientPort: direct!.localPort })[0] as K8sLine | undefined;
    t.equal(atWeb?.peerPod, 'default/db-0', 'web side: the peer is db-0');
    t.notOk(atWeb?.probe, 'a pod reaching the probe port is not a probe');
    const s = finals(lines, { pod: 'default/db-0', port: 8080, clientPort: viaSvc!.localPort })[0] as K8sLine;
    t.match(s, { server: { ip: clusterIp }, peerService: 'default/web' }, 'the ClusterIP is named after its Service');
    const p = finals(lines, { pod: webKey, port: 8080, clientPort: probePort })[0] as K8sLine;
    t.match(p, { client: { ip: nodeIp }, probe: true, peerNode: nodeName, verdict: 'plaintext' }, 'node address → probe port: labelled probe');
  });

  await t.test('a pod added and deleted by watch events', async (t) => {
    const p = await node.addPod();
    lab.exec(p.ns, ['sleep', '300'], { timeoutMs: 300_000, name: 'sleep' });
    const name = 'backup-29391840-7xk2p';
    const pod = podFor(name, nodeName, nodeIp, p, { apiVersion: 'batch/v1', kind: 'Job', name: 'backup-29391840' });
    pod.metadata!.namespace = 'ops';
    kube.upsert('pods', pod as never);
    const a = await agent.waitLog((l) => l.msg === 'pod attached' && l.pod === `ops/${name}`, 15_000);
    t.ok((a.hooks as string[]).includes(`tc/${p.hostIfindex}`), 'attached on its host veth');
    await agent.waitLog((l) => l.msg === 'pod found in its network namespace' && l.pod === `ops/${name}` && (l.workload as { kind: string }).kind === 'CronJob', 15_000);
    t.pass('Job → CronJob');
    kube.remove('pods', 'ops', name);
    await agent.waitLog((l) => /pod detached/.test(l.msg) && l.pod === `ops/${name}`, 15_000);
    t.pass('DELETED: detached');
  });

  await t.test('clean stop', async (t) => {
    t.match(await agent.stop(), { code: 0 }, 'SIGTERM: exit 0');
  });

  await t.test('403 from the API: one RBAC line, keeps running, recovers', async (t) => {
    kube.forbidden = true;
    const a2 = await AgentProcess.start(t, agentArgs(kubeconfig));
    const rbac = await a2.waitLog((l) => /^RBAC: /.test(l.msg), 10_000);
    t.match(rbac, { level: 40, msg: /cannot list\/watch (pods|services).*apply the chart's ClusterRole/ }, `one actionable line: ${rbac.msg}`);
    await new Promise((r) => setTimeout(r, 3500)); // retries at 1 s, 2 s …
    t.ok(a2.running, 'still running');
    const h = await fetch(`http://127.0.0.1:${a2.metricsPort}/healthz`);
    t.equal(h.status, 200, '/healthz answers: the datapath runs');
    const lines = a2.logs().filter((l) => /^RBAC: /.test(l.msg));
    t.ok(lines.length <= 2, `not repeated per retry: ${lines.length} line(s) for pods and services`);
    t.ok(kube.requests.filter((r) => r.startsWith('GET /api/v1/pods')).length >= 3, 'retried');
    kube.forbidden = false;
    await a2.waitLog((l) => l.msg === 'Kubernetes API answers: watching pods', 20_000);
    await a2.waitLog((l) => l.msg === 'pod attached' && l.pod === `default/${webName}`, 15_000);
    t.pass('recovered: pods attached once the API answers');
    t.match(await a2.stop(), { code: 0 });
  });
});
