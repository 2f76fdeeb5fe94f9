// Pre-flight checks for the datapath, so a bad environment is one clear line before any
// kernel call fails with a bare errno: privileges, kernel BTF, libbpf, bpffs.

import { existsSync, readFileSync } from 'node:fs';
import { PlainsightError } from '../errors.js';
import { ensureLibbpf } from './libbpf.js';

const KERNEL_BTF = '/sys/kernel/btf/vmlinux';
export const DEFAULT_BPFFS = '/sys/fs/bpf';

// Capability bits (linux/capability.h).
const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

function effectiveCaps(): bigint {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : 0n;
  } catch {
    return 0n;
  }
}

function has(caps: bigint, bit: number): boolean {
  return (caps & (1n << BigInt(bit))) !== 0n;
}

/**
 * The first reason the datapath cannot run here, or undefined. CAP_SYS_ADMIN covers BPF
 * and perfmon on every kernel; without it, 5.8+ needs CAP_BPF + CAP_PERFMON.
 */
export function bpfEnvironmentProblem(): PlainsightError | undefined {
  if (process.platform !== 'linux') {
    return new PlainsightError('PLAINSIGHT_ERR_BPF_NOT_ROOT', 'the eBPF datapath needs Linux');
  }
  const caps = effectiveCaps();
  const bpfOk = has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
  if (!bpfOk || !has(caps, CAP_NET_ADMIN)) {
    return new PlainsightError('PLAINSIGHT_ERR_BPF_NOT_ROOT', 'missing privileges to load and attach eBPF programs');
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

export function requireBpfEnvironment(): void {
  const problem = bpfEnvironmentProblem();
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
