// Which Linux capabilities the agent needs, for what, and which of them this process lacks.
// Measured on 6.18 by running the agent as uid 0 with a reduced bounding set
// (test/integration/agent-privileges.test.ts; README "Least privilege"):
//
//   CAP_NET_ADMIN   attach to host veths (TCX links, clsact qdisc + filters): always
//   CAP_SYS_ADMIN   setns(2) into a pod's netns: local-mode inventory (`ip -n`) and every
//                   socket filter; also implies CAP_BPF + CAP_PERFMON (bpf_capable())
//   CAP_NET_RAW     the AF_PACKET socket each socket filter sits on (pod loopback)
//   CAP_BPF +       load the programs without CAP_SYS_ADMIN (the verifier refuses the
//   CAP_PERFMON     datapath's pointer reads with EACCES unless perfmon_capable())
//   CAP_SYS_PTRACE  Kubernetes mode: /proc/<pid>/ns/net and /proc/<pid>/root of processes
//                   of other uids or with capabilities we lack (PTRACE_MODE_READ)

import { readFileSync } from 'node:fs';

export type Capability = 'CAP_NET_ADMIN' | 'CAP_NET_RAW' | 'CAP_SYS_ADMIN' | 'CAP_SYS_PTRACE' | 'CAP_PERFMON' | 'CAP_BPF';

// Bits from linux/capability.h.
const BIT: Record<Capability, number> = {
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_PTRACE: 19,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
};

/** What the agent will do, so only the capabilities those things need are asked for. */
export interface PrivilegeNeeds {
  /** setns(2) into pod network namespaces: local-mode inventory and socket filters. */
  enterNetns: boolean;
  /** AF_PACKET sockets carrying socket filters (each pod's loopback). */
  packetSockets: boolean;
  /** Another container's /proc/<pid>/ns/net (Kubernetes mode). */
  otherProcesses: boolean;
}

export interface MissingCapability {
  cap: Capability;
  for: string;
}

export function effectiveCaps(status = '/proc/self/status'): bigint {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(status, 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : 0n;
  } catch {
    return 0n;
  }
}

export function hasCap(caps: bigint, cap: Capability): boolean {
  return (caps & (1n << BigInt(BIT[cap]))) !== 0n;
}

/** The capabilities `needs` call for that `caps` lacks, each with what it is for; [] when nothing is missing. */
export function missingCapabilities(needs: PrivilegeNeeds, caps = effectiveCaps()): MissingCapability[] {
  const out: MissingCapability[] = [];
  const lacks = (c: Capability): boolean => !hasCap(caps, c);
  const canLoad = !lacks('CAP_SYS_ADMIN') || (!lacks('CAP_BPF') && !lacks('CAP_PERFMON'));
  if (needs.enterNetns && lacks('CAP_SYS_ADMIN')) {
    // CAP_SYS_ADMIN also lets bpf(2) load the programs: asking for CAP_BPF too would be noise.
    out.push({ cap: 'CAP_SYS_ADMIN', for: `setns into pod network namespaces: local-mode inventory, socket filters on pod loopback${canLoad ? '' : '; also loads the eBPF programs'}` });
  } else if (!canLoad) {
    if (lacks('CAP_BPF')) out.push({ cap: 'CAP_BPF', for: 'load the eBPF programs and create their maps' });
    if (lacks('CAP_PERFMON')) out.push({ cap: 'CAP_PERFMON', for: "the kernel verifier allows the datapath's pointer reads only with it" });
  }
  if (lacks('CAP_NET_ADMIN')) out.push({ cap: 'CAP_NET_ADMIN', for: 'attach to pod interfaces with TCX or a clsact qdisc' });
  if (needs.packetSockets && lacks('CAP_NET_RAW')) out.push({ cap: 'CAP_NET_RAW', for: "packet sockets for the pods' loopback; --no-loopback avoids it" });
  if (needs.otherProcesses && lacks('CAP_SYS_PTRACE')) out.push({ cap: 'CAP_SYS_PTRACE', for: "open other containers' /proc/<pid>/ns/net" });
  return out;
}

/** "CAP_X (why) and CAP_Y (why)". */
export function describeMissing(missing: readonly MissingCapability[]): string {
  const parts = missing.map((m) => `${m.cap} (${m.for})`);
  return parts.length <= 1 ? parts.join('') : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}`;
}

/** The hint for missing capabilities: where to grant them. */
export function grantHint(missing: readonly MissingCapability[]): string {
  const names = missing.map((m) => m.cap.slice(4));
  return `add ${names.join(', ')} to the container's securityContext.capabilities.add (the Helm chart does), or run as root`;
}

/** The capability a syscall/libbpf call failing with EPERM/EACCES lacked, when it is known. */
export function capabilityForCall(call: string): string | undefined {
  if (call === 'setns') return 'CAP_SYS_ADMIN';
  if (call.startsWith('socket(AF_PACKET)')) return 'CAP_NET_RAW';
  if (call.startsWith('bpf_tc_') || call === 'bpf_link_create' || call === 'bpf_prog_query') return 'CAP_NET_ADMIN';
  if (call === 'bpf_object__load' || call.startsWith('bpf_map')) return 'CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN';
  return undefined;
}

/** A capability set from names as Kubernetes writes them ("NET_ADMIN") or with the CAP_ prefix; unknown names are ignored. */
export function capabilitySet(names: readonly string[]): bigint {
  let set = 0n;
  for (const n of names) {
    const bit = BIT[(n.startsWith('CAP_') ? n : `CAP_${n}`) as Capability];
    if (bit !== undefined) set |= 1n << BigInt(bit);
  }
  return set;
}
