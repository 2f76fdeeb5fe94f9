// Pre-flight checks for the datapath, so a bad environment is one clear line before any
// kernel call fails with a bare errno: capabilities (every missing one named, with what it
// is for), kernel BTF, libbpf, bpffs.

import { existsSync, readFileSync } from 'node:fs';
import { PlainsightError } from '../errors.js';
import { describeMissing, grantHint, missingCapabilities, type PrivilegeNeeds } from './capabilities.js';
import { ensureLibbpf } from './libbpf.js';

const KERNEL_BTF = '/sys/kernel/btf/vmlinux';
export const DEFAULT_BPFFS = '/sys/fs/bpf';

const NO_EXTRA_NEEDS: PrivilegeNeeds = { enterNetns: false, packetSockets: false, otherProcesses: false };

/**
 * The first reason the datapath cannot run here, or undefined. Without `needs`, only
 * loading and attaching the programs is checked; the agent passes what its mode needs so
 * every missing capability is named at once, before anything fails halfway.
 */
export function bpfEnvironmentProblem(needs: PrivilegeNeeds = NO_EXTRA_NEEDS): PlainsightError | undefined {
  if (process.platform !== 'linux') {
    return new PlainsightError('PLAINSIGHT_ERR_BPF_NOT_ROOT', 'the eBPF datapath needs Linux');
  }
  const missing = missingCapabilities(needs);
  if (missing.length > 0) {
    // The code predates the per-capability message; kept so scripts matching it still work.
    return new PlainsightError('PLAINSIGHT_ERR_BPF_NOT_ROOT', `missing ${describeMissing(missing)}`, { hint: grantHint(missing) });
  }
  if (!existsSync(KERNEL_BTF)) {
    return new PlainsightError('PLAINSIGHT_ERR_BPF_NO_BTF', `the kernel has no BTF (${KERNEL_BTF} is missing)`);
  }
  try {
    ensureLibbpf();
  } catch (e) {
    return e as PlainsightError;
  }
  return undefined;
}

/** What an agent in `mode` will do, privilege-wise (see capabilities.ts for the measurements). */
export function agentPrivilegeNeeds(c: { mode: 'local' | 'kubernetes'; loopback: boolean }): PrivilegeNeeds {
  return {
    // Local mode lists each namespace's interfaces with `ip -n` (setns); Kubernetes mode
    // reads them from /proc and enters a namespace only to open a socket filter.
    enterNetns: c.mode === 'local' || c.loopback,
    packetSockets: c.loopback,
    otherProcesses: c.mode === 'kubernetes',
  };
}

export function requireBpfEnvironment(needs?: PrivilegeNeeds): void {
  const problem = bpfEnvironmentProblem(needs);
  if (problem) throw problem;
}

/** For pinning (links/maps that survive restarts): bpffs must be mounted at `path`. */
export function requireBpffs(path = DEFAULT_BPFFS): void {
  let mounts = '';
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    /* treated as not mounted */
  }
  const mounted = mounts.split('\n').some((l) => {
    const [, where, type] = l.split(' ');
    return where === path && type === 'bpf';
  });
  if (!mounted) throw new PlainsightError('PLAINSIGHT_ERR_BPF_NO_BPFFS', `no BPF filesystem mounted at ${path}`);
}
