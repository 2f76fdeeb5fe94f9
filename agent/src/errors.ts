// Stable error codes: PLAINSIGHT_ERR_<AREA>_<WHAT>. Each carries a sentence a user can act
// on (what failed, why, what to do) and the exit code the CLI uses. Documented in README.

export const ERRORS = {
  PLAINSIGHT_ERR_USAGE: { exit: 2, hint: 'run `plainsight --help` for usage' },
  PLAINSIGHT_ERR_CAPTURE_OPEN: { exit: 1, hint: 'check the path and that you may read it' },
  PLAINSIGHT_ERR_CAPTURE_FORMAT: { exit: 2, hint: 'give a pcap or pcapng file, e.g. from `tcpdump -w FILE`' },
  PLAINSIGHT_ERR_CAPTURE_LINKTYPE: {
    exit: 2,
    hint: 'supported link types: Ethernet, Linux cooked (v1/v2), raw IP, BSD loopback; re-capture with `tcpdump -i <interface>`',
  },
  PLAINSIGHT_ERR_CAPTURE_CORRUPT: { exit: 1, hint: 'the file is damaged; re-capture it or cut it with `editcap`' },
  PLAINSIGHT_ERR_BPF_LIBBPF_MISSING: { exit: 1, hint: 'install libbpf 1.x (Debian/Ubuntu: `apt-get install libbpf1`)' },
  PLAINSIGHT_ERR_BPF_NOT_ROOT: {
    exit: 1,
    hint: 'run as root, or grant CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_RAW (CAP_BPF + CAP_PERFMON instead of CAP_SYS_ADMIN when no pod namespace is entered; CAP_SYS_PTRACE in Kubernetes mode)',
  },
  PLAINSIGHT_ERR_BPF_NO_BTF: {
    exit: 1,
    hint: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (it provides /sys/kernel/btf/vmlinux; most distribution kernels since 5.8 do)',
  },
  PLAINSIGHT_ERR_BPF_NO_BPFFS: {
    exit: 1,
    hint: 'mount the BPF filesystem: `mount -t bpf bpf /sys/fs/bpf` (in Kubernetes, mount the host\'s /sys/fs/bpf into the agent)',
  },
  PLAINSIGHT_ERR_BPF_OBJECT: { exit: 1, hint: 'the BPF object is missing or from another build; run `npm run build`' },
  PLAINSIGHT_ERR_BPF_LOAD: {
    exit: 1,
    hint: 'the kernel refused the eBPF program; rerun with PLAINSIGHT_DEBUG=1 for the verifier log and report it with `uname -r`',
  },
  PLAINSIGHT_ERR_BPF_ATTACH: {
    exit: 1,
    hint: 'check that the interface exists (`ip link`) and that plainsight runs in the root network namespace with CAP_NET_ADMIN',
  },
  PLAINSIGHT_ERR_BPF_MAP: { exit: 1, hint: 'a kernel map operation failed; rerun with PLAINSIGHT_DEBUG=1 and report it' },
  PLAINSIGHT_ERR_AGENT_LISTEN: { exit: 1, hint: 'choose a free address with --metrics-addr HOST:PORT' },
  PLAINSIGHT_ERR_AGENT_INTERFACE: { exit: 1, hint: 'check the name with `ip link` (the agent looks in the root network namespace)' },
  PLAINSIGHT_ERR_BPF_NETNS: {
    exit: 1,
    hint: 'the network namespace is gone or cannot be entered; check `ip netns list` and CAP_SYS_ADMIN',
  },
  PLAINSIGHT_ERR_INVENTORY_KUBECONFIG: {
    exit: 1,
    hint: 'in a pod the in-cluster configuration is used (ServiceAccount token); elsewhere pass --kubeconfig FILE',
  },
  PLAINSIGHT_ERR_INVENTORY_PROC: { exit: 1, hint: "run with hostPID: true (the default --proc-root /proc then lists every pid of the node), or point --proc-root at a mount of the host's /proc" },
  PLAINSIGHT_ERR_AGG_LISTEN: { exit: 1, hint: 'choose a free address with --grpc-addr / --metrics-addr HOST:PORT' },
  PLAINSIGHT_ERR_AGG_TLS: {
    exit: 1,
    hint: 'give PEM files readable by plainsight: --tls-cert, --tls-key and --tls-ca together (`scripts/dev-certs.sh DIR` makes a development set)',
  },
  PLAINSIGHT_ERR_AGG_TOKEN: { exit: 1, hint: 'give --token-file a readable file holding one non-empty line' },
  PLAINSIGHT_ERR_AGG_DATA_DIR: { exit: 1, hint: 'give --data-dir a directory plainsight may create and write' },
  PLAINSIGHT_ERR_AGG_WAL_WRITE: { exit: 1, hint: 'free space in --data-dir (or fix its permissions); batches are refused, and agents resend them, until the ingest log can be written' },
  PLAINSIGHT_ERR_GRPC_UNAVAILABLE: {
    exit: 1,
    hint: 'check that the aggregator runs and listens there (`plainsight aggregator --grpc-addr`), or pass --aggregator HOST:PORT',
  },
  PLAINSIGHT_ERR_GRPC_UNAUTHENTICATED: {
    exit: 1,
    hint: 'the aggregator wants a bearer token: pass --token-file (or PLAINSIGHT_TOKEN), and client certificates with --tls-* when it uses mTLS',
  },
  PLAINSIGHT_ERR_GRPC_DEADLINE: { exit: 1, hint: 'the aggregator did not answer in time; check its load and the network, or narrow the query' },
  PLAINSIGHT_ERR_GRPC_FAILED: { exit: 1, hint: 'the aggregator refused the request; see its logs' },
  PLAINSIGHT_ERR_DEMO_NOT_ROOT: { exit: 1, hint: 'run it as root: `sudo npm run demo` (it creates network namespaces and loads eBPF programs)' },
  PLAINSIGHT_ERR_DEMO_BPF: { exit: 1, hint: 'run `npm run build` (needs clang and libbpf-dev: `bash scripts/setup.sh` installs them)' },
  PLAINSIGHT_ERR_DEMO_TOOL_MISSING: { exit: 1, hint: 'install the missing packages (`bash scripts/setup.sh` installs all of them)' },
  PLAINSIGHT_ERR_DEMO_RUNNING: { exit: 1, hint: 'stop the other demo (Ctrl-C, or kill that pid) and start again' },
  PLAINSIGHT_ERR_DEMO_START: { exit: 1, hint: 'rerun with PLAINSIGHT_DEBUG=1 for the full output and report it' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class PlainsightError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly hint: string;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PlainsightError';
    this.code = code;
    this.exitCode = ERRORS[code].exit;
    this.hint = options?.hint ?? ERRORS[code].hint;
  }

  /** The one line the CLI prints: what failed, why, what to do. */
  line(): string {
    return `plainsight: ${this.message} (${this.code}); ${this.hint}`;
  }
}

export function isPlainsightError(e: unknown): e is PlainsightError {
  return e instanceof PlainsightError;
}
