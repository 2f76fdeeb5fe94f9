// Who an address is: the agents' inventories map pod IPs to namespace/workload; anything
// else is `external`, named by the SNI the client asked for when there is one.

export interface PodInfo {
  name: string;
  namespace: string;
  workload: string;
  node: string;
  ips: string[];
}

export interface Identity {
  namespace: string;
  workload: string;
  pod: string;
  node: string;
}

export const EXTERNAL = 'external';
/** Namespace of an intra-pod flow whose pod the reporting agent's inventory does not (yet) hold. */
export const UNKNOWN_POD_NAMESPACE = 'unknown';

/** Shared identities kept for this many external names (SNIs) before the cache starts over. */
const MAX_EXTERNAL_NAMES = 10_000;

export class IdentityResolver {
  private readonly byAgent = new Map<string, PodInfo[]>();
  private byIp = new Map<string, Identity>();
  /** agentId → pod name → identity (intra-pod flows: the agent names the pod, loopback IPs say nothing). */
  private byPod = new Map<string, Map<string, Identity>>();
  /** Identities of pods an agent named but its inventory lacks, by agent + name (bounded like `external`). */
  private readonly unknownPods = new Map<string, Identity>();
  private readonly external = new Map<string, Identity>();

  /** Replaces one agent's pods (its inventory is complete each time). */
  setInventory(agentId: string, pods: PodInfo[]): void {
    this.byAgent.set(agentId, pods);
    this.rebuild();
  }

  /** True when the agent had an inventory. */
  removeAgent(agentId: string): boolean {
    if (!this.byAgent.delete(agentId)) return false;
    this.rebuild();
    return true;
  }

  get podCount(): number {
    return this.byIp.size;
  }

  /** `sni` names an external server (only pass it for the server end). */
  resolve(ip: string, sni?: string): Identity {
    const known = this.byIp.get(ip) ?? this.byIp.get(mapped4(ip));
    if (known) return known;
    // One shared object per external name: every update of an unresolved flow asks again.
    const workload = sni ? sni : 'unknown';
    let ext = this.external.get(workload);
    if (!ext) {
      if (this.external.size >= MAX_EXTERNAL_NAMES) this.external.clear();
      ext = { namespace: EXTERNAL, workload, pod: '', node: '' };
      this.external.set(workload, ext);
    }
    return ext;
  }

  /**
   * The pod an agent reported an intra-pod (loopback) flow in: both ends are that pod.
   * Never `external`: a pod the agent's inventory lacks is namespace "unknown", workload = its name.
   */
  resolvePod(agentId: string, pod: string, node: string): Identity {
    const known = this.byPod.get(agentId)?.get(pod);
    if (known) return known;
    const key = `${agentId}\u0000${pod}`;
    let id = this.unknownPods.get(key);
    if (!id) {
      if (this.unknownPods.size >= MAX_EXTERNAL_NAMES) this.unknownPods.clear();
      id = { namespace: UNKNOWN_POD_NAMESPACE, workload: pod || 'unknown', pod, node };
      this.unknownPods.set(key, id);
    }
    return id;
  }

  private rebuild(): void {
    const m = new Map<string, Identity>();
    const byPod = new Map<string, Map<string, Identity>>();
    for (const [agentId, pods] of this.byAgent) {
      const named = new Map<string, Identity>();
      byPod.set(agentId, named);
      for (const p of pods) {
        const id: Identity = { namespace: p.namespace || 'default', workload: p.workload || p.name, pod: p.name, node: p.node };
        for (const ip of p.ips) m.set(ip, id);
        // Same name in two namespaces on one node: the first keeps it (agents report the name only).
        if (!named.has(p.name)) named.set(p.name, id);
      }
    }
    this.byIp = m;
    this.byPod = byPod;
  }
}

/** ::ffff:198.18.0.1 → 198.18.0.1 (dual-stack sockets report v4 peers that way). */
function mapped4(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}
