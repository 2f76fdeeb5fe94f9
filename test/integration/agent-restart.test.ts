// The agent's life cycle and its edges: kill -9 and restart (TCX links die with the
// process; clsact filters stay and are replaced, never doubled; a connection spanning the
// restart is counted before by the first agent and after by the second, never twice);
// --interface on a root-namespace interface; pods joined by a veth with no host side
// (socket filters inside); map pressure (evictions counted, logged, flagged); a failed
// start that closes what it opened; one-line errors for usage and a bad environment.
// Needs root and eBPF; skips with the reason otherwise.

import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { BPF_TCX_EGRESS, BPF_TCX_INGRESS, progQuery } from '../../agent/src/bpf/libbpf.js';
import { CLSACT_HANDLE } from '../../agent/src/bpf/flow.js';
import { Lab } from '../lab/lab.js';
import { CLI, cliMissingReason, runCli } from '../lab/plainsight.js';
import { tcFilters } from '../lab/bpf-lab.js';
import { AgentProcess, LabNode, bpfSkipReason, client, fastArgs, finals, server, type FlowLine, type NodePod } from '../lab/agent-lab.js';

const skip = bpfSkipReason() ?? cliMissingReason();
const HANDLE_RE = new RegExp(`handle 0x${CLSACT_HANDLE.toString(16)} .* id (\\d+)`);

/** Program ids of our clsact filters on a host veth, both directions. */
function ourFilters(p: NodePod): { ingress: number[]; egress: number[] } {
  const ids = (dir: 'ingress' | 'egress') =>
    tcFilters(p.hostIf, dir)
      .map((l) => HANDLE_RE.exec(l)?.[1])
      .filter((x): x is string => x !== undefined)
      .map(Number);
  return { ingress: ids('ingress'), egress: ids('egress') };
}

function tcx(p: NodePod): number[] {
  return [...progQuery(p.hostIfindex, BPF_TCX_INGRESS), ...progQuery(p.hostIfindex, BPF_TCX_EGRESS)];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const BPFFS = '/sys/fs/bpf';
const bpftoolMissing = (() => {
  try {
    execFileSync('bpftool', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'bpftool is not installed (Debian package `bpftool`)';
  }
})();

/** Every path under bpffs (pins), or [] when nothing is mounted there. */
function bpffsEntries(): string[] {
  try {
    return (readdirSync(BPFFS, { recursive: true }) as string[]).sort();
  } catch {
    return [];
  }
}

/** Program ids hooked to these pods' host veths: our clsact filters and TCX programs. */
function hookedProgs(pods: readonly NodePod[]): number[] {
  return pods.flatMap((p) => [...ourFilters(p).ingress, ...ourFilters(p).egress, ...tcx(p)]);
}

/** `bpftool -j {prog|map} show id N`, or undefined once the kernel has freed it. */
function bpfObject(kind: 'prog' | 'map', id: number): { name?: string; map_ids?: number[] } | undefined {
  try {
    return JSON.parse(execFileSync('bpftool', ['-j', kind, 'show', 'id', String(id)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { name?: string; map_ids?: number[] };
  } catch {
    return undefined;
  }
}

/** The programs (and the maps they use) of one agent, by the ids hooked to our interfaces. */
function agentObjects(pods: readonly NodePod[]): { progs: number[]; maps: number[]; names: string[] } {
  const progs = hookedProgs(pods);
  const info = progs.map((id) => bpfObject('prog', id));
  return { progs, maps: [...new Set(info.flatMap((p) => p?.map_ids ?? []))], names: [...new Set(info.map((p) => p?.name ?? '?'))].sort() };
}

/** Those of `objs` still loaded after up to `timeoutMs` (the kernel frees them after an RCU grace period). */
async function stillLoaded(objs: { progs: number[]; maps: number[] }, timeoutMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = [
      ...objs.progs.filter((id) => bpfObject('prog', id)).map((id) => `prog ${id}`),
      ...objs.maps.filter((id) => bpfObject('map', id)).map((id) => `map ${id}`),
    ];
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(250);
  }
}

t.test('kill -9 and restart', { skip }, async (t) => {
  const lab = await Lab.open(t, 'agentr');
  const node = await LabNode.create(t, lab, 2);
  const [web, app] = node.pods as [NodePod, NodePod];
  await server(lab, web.ns, 'tcp-server', { port: 8080, http: true });
  await server(lab, web.ns, 'tcp-server', { port: 8081, expect: 30_000, reply: 777 });

  for (const mode of ['clsact', 'tcx'] as const) {
    await t.test(`${mode}: no leaked hook, no double counting`, async (t) => {
      const args = fastArgs(node.glob, ['--attach', mode]);
      const pinnedBefore = bpffsEntries();
      const first = await AgentProcess.start(t, args);
      const firstObjs = agentObjects(node.pods);
      const [r1] = await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8080, http: true });
      await first.waitFlows((ls) => finals(ls, { pod: web.name, port: 8080, clientPort: r1!.localPort }).length === 1, 10_000);

      // A connection that outlives the first agent: 10000 bytes now, 20000 after the restart.
      // The later send is on a clock, not a signal: leave the kill + restart ample time
      // (on a loaded 2-core machine a restart took over 4 s, and over 9 s at load 17), or
      // the bytes cross unobserved.
      const spanning = client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8081, bytes: 10_000, later: { afterMs: 15_000, bytes: 20_000 } });
      const before = await first.waitFlows((ls) => ls.some((l) => l.server.port === 8081 && l.pod === web.name && !l.final), 10_000, 'the long connection classified');
      const early = before.find((l) => l.server.port === 8081 && l.pod === web.name)!;
      t.equal(early.bytes.toServer, 10_000, 'first agent: the bytes before the kill');

      const killed = ourFilters(web);
      first.proc.kill('SIGKILL');
      await first.exited;
      if (mode === 'clsact') {
        t.equal(killed.ingress.length + killed.egress.length, 2, 'one filter per direction before the kill');
        t.same(ourFilters(web), killed, 'clsact filters survive SIGKILL (kernel semantics)');
      } else {
        t.same(tcx(web), [], 'TCX links died with the process');
      }

      const second = await AgentProcess.start(t, args);
      const secondObjs = agentObjects(node.pods);
      if (!bpftoolMissing) {
        t.same(firstObjs.names, ['ps_tc_egress', 'ps_tc_ingress'], `the killed agent's programs, found by their hooks: ${firstObjs.progs.length} programs, ${firstObjs.maps.length} maps`);
        t.same(await stillLoaded(firstObjs), [], mode === 'clsact' ? "the killed agent's programs and maps freed once the restart replaced its filters" : "the killed agent's programs and maps freed with its links");
      }
      if (mode === 'clsact') {
        const now = ourFilters(web);
        t.equal(now.ingress.length, 1, 'exactly one ingress filter after the restart');
        t.equal(now.egress.length, 1, 'exactly one egress filter after the restart');
        t.not(now.ingress[0], killed.ingress[0], 'the stale filter was replaced');
      } else {
        t.equal(tcx(web).length, 2, 'exactly one TCX program per direction');
      }
      t.notOk(second.flows().some((l) => l.client.port === r1!.localPort), 'a flow the first agent reported is not reported again');

      const [rs] = await spanning;
      const late = (await second.waitFlows((ls) => finals(ls, { pod: web.name, port: 8081, clientPort: rs!.localPort }).length === 1, 30_000))
        .find((l) => l.final && l.pod === web.name && l.client.port === rs!.localPort)!;
      t.equal(late.midstream, true, 'second agent: seen mid-stream');
      t.equal(late.bytes.toServer, 20_000, 'second agent: only the bytes after the restart');
      t.equal(early.bytes.toServer + late.bytes.toServer, rs!.bytesWritten, 'before + after = what the client sent: nothing counted twice');

      const [r2] = await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8080, http: true });
      const lines = await second.waitFlows((ls) => finals(ls, { pod: web.name, port: 8080, clientPort: r2!.localPort }).length === 1, 10_000);
      const f = finals(lines, { pod: web.name, port: 8080, clientPort: r2!.localPort })[0]!;
      t.same(f.bytes, { toServer: r2!.bytesWritten, toClient: r2!.bytesRead }, 'a new flow after the restart: exact bytes');

      t.same(await second.stop(), { code: 0, signal: null });
      t.same(ourFilters(web), { ingress: [], egress: [] }, 'clean stop: no clsact filter left');
      t.same(tcx(web), [], 'clean stop: no TCX program left');
      if (!bpftoolMissing) {
        t.same(hookedProgs(node.pods), [], 'no program of ours hooked to any of our interfaces');
        t.same(await stillLoaded({ progs: [...firstObjs.progs, ...secondObjs.progs], maps: [...firstObjs.maps, ...secondObjs.maps] }), [], 'no program or map of either agent still loaded (bpftool)');
      } else t.comment(`program/map checks skipped: ${bpftoolMissing}`);
      t.same(bpffsEntries().filter((e) => !pinnedBefore.includes(e)), [], `nothing pinned in ${BPFFS}`);
    });
  }
});

t.test('--interface: a named root-namespace interface, no pod', { skip }, async (t) => {
  const lab = await Lab.open(t, 'agenti');
  const node = await LabNode.create(t, lab, 2);
  const [web, app] = node.pods as [NodePod, NodePod];
  await server(lab, web.ns, 'tcp-server', { port: 8080, http: true });
  const agent = await AgentProcess.start(t, [...fastArgs('ps-none-*'), '--interface', web.hostIf]);
  t.equal(tcx(web).length, 2, 'TCX on the named interface, both directions');
  t.same(tcx(app), [], 'nothing on the others');
  const [r] = await client(lab, app.ns, 'tcp-client', { host: web.ip4, port: 8080, http: true });
  const lines = await agent.waitFlows((ls) => finals(ls, { port: 8080, clientPort: r!.localPort }).length === 1, 10_000);
  const f = finals(lines, { port: 8080, clientPort: r!.localPort })[0]!;
  t.match(f, { interface: web.hostIf, verdict: 'plaintext', protocol: 'http/1.1', intraPod: false });
  t.equal(f.pod, undefined, 'no pod: a host interface');
  t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead });
  t.same(await agent.stop(), { code: 0, signal: null });
  t.same(tcx(web), [], 'detached on stop');
});

t.test('pods joined by a veth with no host side: socket filters inside both', { skip }, async (t) => {
  const lab = await Lab.open(t, 'agentv');
  const { client: c, server: srv } = await lab.pair();
  await server(lab, srv.ns, 'tcp-server', { port: 8080, http: true });
  const agent = await AgentProcess.start(t, [...fastArgs(c.ns.name), '--netns', srv.ns.name]);
  const [r] = await client(lab, c.ns, 'tcp-client', { host: srv.ip4, port: 8080, http: true });
  const lines = await agent.waitFlows((ls) => finals(ls, { port: 8080, clientPort: r!.localPort }).length === 2, 10_000);
  for (const [pod, peer, ifname] of [[c.ns.name, srv.ns.name, c.ifname], [srv.ns.name, c.ns.name, srv.ifname]] as const) {
    const [f] = finals(lines, { pod, port: 8080, clientPort: r!.localPort });
    t.match(f, { interface: `${pod}/${ifname}`, peerPod: peer, intraPod: false, verdict: 'plaintext', protocol: 'http/1.1' }, `seen inside ${pod}`);
    t.same(f?.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead }, 'counted once per side');
  }
  t.same(await agent.stop(), { code: 0, signal: null });
});

t.test('map pressure: evictions counted, logged and flagged, never silent', { skip }, async (t) => {
  const lab = await Lab.open(t, 'agentp');
  const node = await LabNode.create(t, lab, 2);
  const [web, app] = node.pods as [NodePod, NodePod];
  await server(lab, web.ns, 'udp-server', { port: 9999 });
  const agent = await AgentProcess.start(t, fastArgs(node.glob, ['--max-flows', '64', '--no-loopback']));
  // 300 UDP flows (one datagram each, distinct source ports) into a 64-entry map.
  // Each sender prints its port: a port the kernel hands out twice is one flow (UDP has no SYN).
  const js = "const d=require('dgram');(async()=>{for(let i=0;i<300;i++){const s=d.createSocket('udp4');await new Promise(r=>s.send('ping',9999,process.argv[1],r));console.log(s.address().port);s.close();}})()";
  const sent = new Set((await lab.run(app.ns, ['node', '-e', js, web.ip4])).stdout.trim().split('\n').map(Number));
  await agent.waitLog((l) => /flow map full/.test(l.msg), 10_000);
  t.pass('a warning was logged');
  const fill = Number(/^plainsight_agent_map_fill_ratio (\S+)$/m.exec(await agent.metrics())?.[1]);
  t.ok(fill > 0.5, `map fill exported: ${fill}`);
  await sleep(1000);
  const text = await agent.metrics();
  const evictions = Number(/^plainsight_agent_evictions_total (\d+)/m.exec(text)?.[1]);
  t.ok(evictions > 0, `evictions counted: ${evictions}`);
  const incomplete = agent.flows().filter((l) => l.final && l.countersComplete === false);
  t.ok(incomplete.length > 0, `final lines flagged countersComplete=false: ${incomplete.length}`);
  // Evicted is not lost: every flow still gets its final line at both veths (the evicted
  // ones from their samples), and every eviction counted is a flagged line.
  const unreported = (pod: string, ls: FlowLine[]) => {
    const seen = new Set(finals(ls, { pod, port: 9999, transport: 'udp' }).map((l) => l.client.port));
    return [...sent].filter((p) => !seen.has(p));
  };
  const all = await agent.waitFlows((ls) => unreported(web.name, ls).length + unreported(app.name, ls).length === 0, 20_000, 'a final line for each flow at both veths').catch(() => agent.flows());
  t.same(unreported(web.name, all), [], `server veth: a final line for each of the ${sent.size} flows (300 senders)`);
  t.same(unreported(app.name, all), [], `client veth: a final line for each of the ${sent.size} flows`);
  const evicted = Number(/^plainsight_agent_evictions_total (\d+)/m.exec(await agent.metrics())?.[1]);
  const flagged = all.filter((l) => l.final && l.countersComplete === false).length;
  t.ok(flagged >= evicted, `each of the ${evicted} evictions reported as a flagged final line (${flagged})`);
  t.same(await agent.stop(), { code: 0, signal: null });
});

t.test('failed start closes what it opened', { skip }, async (t) => {
  const lab = await Lab.open(t, 'agentf');
  const node = await LabNode.create(t, lab, 1);
  const [pod] = node.pods as [NodePod];
  // The metrics listener opens last, after every hook was attached: a taken port makes
  // the start fail at the very end.
  const holder = await AgentProcess.start(t, fastArgs('ps-none-*'));
  const r = await runCli(['agent', ...fastArgs(node.glob), '--metrics-addr', `127.0.0.1:${holder.metricsPort}`], 30_000);
  await holder.stop();
  t.equal(r.code, 1, 'exit 1');
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('{'));
  t.equal(lines.length, 1, 'one line for the user');
  t.match(lines[0], /PLAINSIGHT_ERR_AGENT_LISTEN/);
  t.same(tcx(pod), [], 'the hooks it had attached were detached');
});

t.test('bad environment and usage: one line, right exit code', { skip: cliMissingReason() }, async (t) => {
  const usage = await runCli(['agent', '--mode', 'cluster']);
  t.equal(usage.code, 2, 'usage error: exit 2');
  t.match(usage.stderr, /^plainsight: agent: --mode must be local or kubernetes.*PLAINSIGHT_ERR_USAGE/);
  t.equal(usage.stderr.trim().split('\n').length, 1);

  const noIf = await runCli(['agent', '--interface', 'nosuch0', '--metrics-addr', 'off'], 30_000);
  if (process.getuid?.() === 0 && !bpfSkipReason()) {
    t.equal(noIf.code, 1, 'missing --interface: exit 1');
    t.match(noIf.stderr, /no interface "nosuch0".*PLAINSIGHT_ERR_AGENT_INTERFACE/);
  }

  // Not root: the same CLI as nobody (without tap's NODE_OPTIONS loaders, which nobody cannot run).
  const asNobody = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', 'env', '-u', 'NODE_OPTIONS', process.execPath, CLI, 'agent', '--metrics-addr', 'off'], { timeout: 30_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, (err, _o, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
    );
  });
  if (process.getuid?.() !== 0) return;
  t.equal(asNobody.code, 1, 'not root: exit 1');
  t.match(asNobody.stderr.trim(), /^plainsight: missing CAP_SYS_ADMIN \([^)]+\), CAP_NET_ADMIN \([^)]+\) and CAP_NET_RAW \([^)]+\) \(PLAINSIGHT_ERR_BPF_NOT_ROOT\); add SYS_ADMIN, NET_ADMIN, NET_RAW to /);
  t.equal(asNobody.stderr.trim().split('\n').length, 1, 'one line, no stack trace', { stderr: asNobody.stderr });
});
