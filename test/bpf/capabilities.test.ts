// The capability pre-flight as a pure function: which capabilities each kind of agent run
// asks for, how a missing set reads, and which capability a refused call lacked. The real
// agent under reduced capability sets is test/integration/agent-privileges.test.ts.

import t from 'tap';
import { capabilityForCall, capabilitySet, describeMissing, grantHint, missingCapabilities } from '../../agent/src/bpf/capabilities.js';
import { agentPrivilegeNeeds } from '../../agent/src/bpf/environment.js';

const names = (needs: ReturnType<typeof agentPrivilegeNeeds>, caps: string[]): string[] => missingCapabilities(needs, capabilitySet(caps)).map((m) => m.cap);

t.test('what each mode needs', async (t) => {
  const local = agentPrivilegeNeeds({ mode: 'local', loopback: true });
  t.same(names(local, []), ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_NET_RAW'], 'nothing held: SYS_ADMIN (covers loading too), NET_ADMIN, NET_RAW');
  t.same(names(local, ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN']), [], 'local mode: the three suffice');
  t.same(names(agentPrivilegeNeeds({ mode: 'local', loopback: false }), ['NET_ADMIN', 'SYS_ADMIN']), [], 'local --no-loopback: no NET_RAW');
  const k8s = agentPrivilegeNeeds({ mode: 'kubernetes', loopback: true });
  t.same(names(k8s, ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN']), ['CAP_SYS_PTRACE'], 'kubernetes: other containers\' /proc needs SYS_PTRACE');
  const narrow = agentPrivilegeNeeds({ mode: 'kubernetes', loopback: false });
  t.same(names(narrow, ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_PTRACE']), [], 'kubernetes --no-loopback: no setns, no packet socket');
  t.same(names(narrow, ['BPF', 'NET_ADMIN', 'SYS_PTRACE']), ['CAP_PERFMON'], 'without SYS_ADMIN, loading needs PERFMON');
  t.same(names(narrow, ['SYS_ADMIN', 'NET_ADMIN', 'SYS_PTRACE']), [], 'SYS_ADMIN stands in for BPF + PERFMON');
});

t.test('one readable line', async (t) => {
  const missing = missingCapabilities(agentPrivilegeNeeds({ mode: 'local', loopback: true }), capabilitySet(['SYS_ADMIN']));
  t.equal(describeMissing(missing), "CAP_NET_ADMIN (attach to pod interfaces with TCX or a clsact qdisc) and CAP_NET_RAW (packet sockets for the pods' loopback; --no-loopback avoids it)");
  t.equal(grantHint(missing), "add NET_ADMIN, NET_RAW to the container's securityContext.capabilities.add (the Helm chart does), or run as root");
  t.equal(capabilitySet(['CAP_BPF', 'BPF', 'NOT_A_CAP']), 1n << 39n);
});

t.test('a refused call names the capability it lacked', async (t) => {
  t.equal(capabilityForCall('setns'), 'CAP_SYS_ADMIN');
  t.equal(capabilityForCall('socket(AF_PACKET)'), 'CAP_NET_RAW');
  t.equal(capabilityForCall('bpf_tc_hook_create'), 'CAP_NET_ADMIN');
  t.equal(capabilityForCall('bpf_link_create'), 'CAP_NET_ADMIN');
  t.match(capabilityForCall('bpf_object__load'), /CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN/);
  t.equal(capabilityForCall('mmap'), undefined);
});
