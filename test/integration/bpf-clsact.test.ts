// The clsact fallback (kernels without TCX) and what survives a kill -9: clsact filters
// stay attached when the agent dies, so the next start must find its own (by handle and
// priority) and replace or remove them — never add a second, never delete the qdisc.
// Run as a child with PS_BPF_CHILD_IFINDEX set, this file is that dying agent instead.

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLSACT_HANDLE, FlowProgram } from '../../agent/src/bpf/flow.js';
import { BPF_TCX_EGRESS, BPF_TCX_INGRESS, progQuery } from '../../agent/src/bpf/libbpf.js';
import { Lab, bpfSkipReason, makePod, progsRemaining, startServer, tcFilters, tcpExchange, type Pod } from '../lab/bpf-lab.js';

const CHILD_ENV = 'PS_BPF_CHILD_IFINDEX';
const HANDLE_RE = new RegExp(`handle 0x${CLSACT_HANDLE.toString(16)} .* id (\\d+)`);

/** Program ids of our filters on a hook, from `tc filter show`. */
function ourFilterIds(ifname: string, dir: 'ingress' | 'egress'): number[] {
  return tcFilters(ifname, dir)
    .map((l) => HANDLE_RE.exec(l)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(Number);
}

/** An agent attached with clsact on both directions, then killed with SIGKILL. */
async function killedAgent(t: Test, pod: Pod): Promise<void> {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, [CHILD_ENV]: String(pod.hostIfindex) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`child not ready: ${out}`)), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code}: ${out}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

if (process.env[CHILD_ENV]) {
  const ifindex = Number(process.env[CHILD_ENV]);
  const flow = FlowProgram.open();
  flow.attachTcx(ifindex, 'ingress', 'clsact');
  flow.attachTcx(ifindex, 'egress', 'clsact');
  process.stdout.write('READY\n');
  setInterval(() => undefined, 1000); // wait for SIGKILL
} else {
  const skip = bpfSkipReason();

  t.test('clsact fallback, and restarts after kill -9', { skip }, async (t) => {
    const lab = await Lab.open(t, 'bpf');
    const pod = await makePod(t, lab);
    await startServer(lab, pod.ns, { proto: 'tcp', port: 8080, expect: 30_000, reply: 1000 });

    await t.test('filters survive SIGKILL', async (t) => {
      await killedAgent(t, pod);
      t.equal(ourFilterIds(pod.hostIf, 'ingress').length, 1, 'stale ingress filter left behind');
      t.equal(ourFilterIds(pod.hostIf, 'egress').length, 1, 'stale egress filter left behind');
    });

    await t.test('a forced clsact attach replaces the stale filter, and counts once', async (t) => {
      const [staleIngress] = ourFilterIds(pod.hostIf, 'ingress');
      const flow = FlowProgram.open();
      t.teardown(() => flow.close());
      t.equal(flow.attachTcx(pod.hostIfindex, 'ingress', 'clsact').kind, 'clsact');
      const ids = ourFilterIds(pod.hostIf, 'ingress');
      t.equal(ids.length, 1, 'still exactly one filter');
      t.not(ids[0], staleIngress, 'now ours');
      t.equal(flow.removeStaleClsact(pod.hostIfindex), 1, 'the stale egress filter removed');
      t.same(tcFilters(pod.hostIf, 'egress'), [], 'nothing left on egress');

      const { localPort } = await tcpExchange(pod.podIp4, 8080, Buffer.alloc(30_000, 7), 1000);
      await new Promise((r) => setTimeout(r, 100));
      const f = flow.readFlows().find((x) => x.client.port === localPort);
      t.equal(f?.toClient.bytes, 1000, 'pod → host bytes counted once (ingress only)');
      t.equal(f?.toServer.bytes, 0, 'host → pod not hooked');
      flow.close();
      t.same(tcFilters(pod.hostIf, 'ingress'), [], 'close() removed our filter');
      t.same(await progsRemaining(ids), [], 'and its program is gone');
    });

    await t.test('TCX attach removes stale clsact filters: no double counting', async (t) => {
      await killedAgent(t, pod);
      const flow = FlowProgram.open();
      t.teardown(() => flow.close());
      t.equal(flow.attachTcx(pod.hostIfindex, 'ingress').kind, 'tcx');
      t.equal(flow.attachTcx(pod.hostIfindex, 'egress').kind, 'tcx');
      t.same(ourFilterIds(pod.hostIf, 'ingress'), [], 'stale ingress filter gone');
      t.same(ourFilterIds(pod.hostIf, 'egress'), [], 'stale egress filter gone');
      const { localPort } = await tcpExchange(pod.podIp4, 8080, Buffer.alloc(30_000, 7), 1000);
      await new Promise((r) => setTimeout(r, 100));
      const f = flow.readFlows().find((x) => x.client.port === localPort);
      t.same([f?.toServer.bytes, f?.toClient.bytes], [30_000, 1000], 'exact bytes, counted once');
      flow.close();
      t.same(progQuery(pod.hostIfindex, BPF_TCX_INGRESS), []);
      t.same(progQuery(pod.hostIfindex, BPF_TCX_EGRESS), []);
    });
  });
}
