// Types for the parts of node.mjs the CI soak test shares with the bench.

/** Milliseconds until /healthz answered 200 (a fresh connection each time), or Infinity past `timeoutMs`. */
export function healthzMs(port: number, timeoutMs?: number): Promise<number>;

/** The agent's kernel stats (ps_stats, summed over CPUs), read with bpftool from the map its fds hold. */
export function kernelStats(pid: number): Record<string, number> | undefined;
