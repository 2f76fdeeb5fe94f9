// The only file that touches koffi: typed wrappers over libbpf 1.x and the few libc calls
// the datapath needs. koffi pointers are unchecked (EBPF-NOTES pitfall 1), so every
// pointer leaves this module branded, and every failure becomes a PlainsightError with
// the errno kept as its cause. Missing kernel support is returned as a value.
//
// Conventions of libbpf 1.x (pitfall 2): int functions return -errno; pointer functions
// return NULL and set errno, which must be read at once with koffi.errno().
// opts structs are laid out by hand in Buffers (sizes from the libbpf 1.1 headers,
// measured in EBPF-NOTES) rather than koffi.struct, so the `sz` field and the trailing
// padding are explicit.

import { closeSync, openSync, constants as fsConstants } from 'node:fs';
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { PlainsightError, type ErrorCode } from '../errors.js';
import { capabilityForCall } from './capabilities.js';

// ---- pointers ------------------------------------------------------------------------

declare const brand: unique symbol;
type Ptr<T extends string> = bigint & { readonly [brand]: T };
export type BpfObject = Ptr<'bpf_object'>;
export type BpfProgram = Ptr<'bpf_program'>;
export type BpfMap = Ptr<'bpf_map'>;
/** An address returned by mmap, valid until munmap. */
export type MappedAddress = Ptr<'mmap'>;

// ---- constants (uapi / libbpf) ---------------------------------------------------------

export const BPF_TCX_INGRESS = 46;
export const BPF_TCX_EGRESS = 47;
export const BPF_TC_INGRESS = 1; // enum bpf_tc_attach_point
export const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_ATTACH_BPF = 50;
const ETH_P_ALL = 0x0003;
const SOCKADDR_LL_SIZE = 20;
const CLONE_NEWNET = 0x40000000;

const LIBBPF_WARN = 0;
const LIBBPF_INFO = 1;
const LOG_LINES_KEPT = 400;
const LOG_LINE_BYTES = 4096;

// struct sizes in libbpf 1.1 (each starts with `size_t sz`)
const TC_HOOK_SIZE = 24;
const TC_OPTS_SIZE = 32;
const TEST_RUN_OPTS_SIZE = 80;

const errnoName = Object.fromEntries(Object.entries(koffi.os.errno).map(([k, v]) => [v, k])) as Record<number, string>;
const E = koffi.os.errno;

/** A failed call, kept as the PlainsightError's cause. */
export class SyscallError extends Error {
  readonly errno: number;
  constructor(call: string, errno: number) {
    super(`${call}: ${errnoName[errno] ?? 'errno'} (${errno})`);
    this.name = 'SyscallError';
    this.errno = errno;
  }
}

/** EPERM/EACCES mean missing privileges whatever the call: say so instead of the call's own code. */
function fail(code: ErrorCode, message: string, call: string, errno: number, extra = ''): PlainsightError {
  const cause = new SyscallError(call, errno);
  if (errno === E.EPERM || errno === E.EACCES) {
    const cap = capabilityForCall(call);
    if (!cap) return new PlainsightError('PLAINSIGHT_ERR_BPF_NOT_ROOT', `${message}: permission denied`, { cause });
    return new PlainsightError('PLAINSIGHT_ERR_BPF_NOT_ROOT', `${message}: permission denied (needs ${cap})`, {
      cause,
      hint: `add ${cap} to the container's securityContext.capabilities.add (without the CAP_ prefix), or run as root`,
    });
  }
  return new PlainsightError(code, `${message}: ${cause.message}${extra}`, { cause });
}

// ---- bindings ------------------------------------------------------------------------

// koffi functions are untyped; the exported wrappers below give each one its real type.
type Fn = (...args: any[]) => any;

interface Bindings {
  openFile: Fn;
  load: Fn;
  close: Fn;
  findProgram: Fn;
  programFd: Fn;
  setAutoload: Fn;
  findMap: Fn;
  mapFd: Fn;
  setMaxEntries: Fn;
  setInitialValue: Fn;
  reuseFd: Fn;
  initialValue: Fn;
  linkCreate: Fn;
  tcHookCreate: Fn;
  tcAttach: Fn;
  tcDetach: Fn;
  tcQuery: Fn;
  progQuery: Fn;
  lookupBatch: Fn;
  getNextKey: Fn;
  lookupElem: Fn;
  deleteElem: Fn;
  testRun: Fn;
  possibleCpus: Fn;
  setPrint: Fn;
  // libc
  socket: Fn;
  setsockopt: Fn;
  bind: Fn;
  closeFd: Fn;
  mmap: Fn;
  munmap: Fn;
  ifNameToIndex: Fn;
  setns: Fn;
  vsnprintf: Fn;
  getpagesize: Fn;
}

let bindings: Bindings | undefined;
const logLines: string[] = [];

function lib(): Bindings {
  if (bindings) return bindings;
  let bpf: LibraryHandle;
  let libc: LibraryHandle;
  try {
    bpf = koffi.load('libbpf.so.1');
    libc = koffi.load('libc.so.6');
  } catch (cause) {
    throw new PlainsightError('PLAINSIGHT_ERR_BPF_LIBBPF_MISSING', 'cannot load libbpf.so.1', { cause });
  }
  koffi.opaque('bpf_object');
  koffi.opaque('bpf_program');
  koffi.opaque('bpf_map');
  const printFn = koffi.proto('int plainsight_libbpf_print_fn(int level, void *fmt, void *args)');
  const b: Bindings = {
    openFile: bpf.func('bpf_object *bpf_object__open_file(const char *path, void *opts)'),
    load: bpf.func('int bpf_object__load(bpf_object *obj)'),
    close: bpf.func('void bpf_object__close(bpf_object *obj)'),
    findProgram: bpf.func('bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)'),
    programFd: bpf.func('int bpf_program__fd(bpf_program *prog)'),
    setAutoload: bpf.func('int bpf_program__set_autoload(bpf_program *prog, bool autoload)'),
    findMap: bpf.func('bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)'),
    mapFd: bpf.func('int bpf_map__fd(bpf_map *map)'),
    setMaxEntries: bpf.func('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
    setInitialValue: bpf.func('int bpf_map__set_initial_value(bpf_map *map, void *data, size_t size)'),
    reuseFd: bpf.func('int bpf_map__reuse_fd(bpf_map *map, int fd)'),
    initialValue: bpf.func('void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *psize)'),
    linkCreate: bpf.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, void *opts)'),
    tcHookCreate: bpf.func('int bpf_tc_hook_create(void *hook)'),
    tcAttach: bpf.func('int bpf_tc_attach(void *hook, void *opts)'),
    tcDetach: bpf.func('int bpf_tc_detach(void *hook, void *opts)'),
    tcQuery: bpf.func('int bpf_tc_query(void *hook, void *opts)'),
    progQuery: bpf.func(
      'int bpf_prog_query(int target_fd, int type, uint32_t query_flags, void *attach_flags, void *prog_ids, void *prog_cnt)',
    ),
    lookupBatch: bpf.func(
      'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, void *opts)',
    ),
    getNextKey: bpf.func('int bpf_map_get_next_key(int fd, void *key, void *next_key)'),
    lookupElem: bpf.func('int bpf_map_lookup_elem(int fd, void *key, void *value)'),
    deleteElem: bpf.func('int bpf_map_delete_elem(int fd, void *key)'),
    testRun: bpf.func('int bpf_prog_test_run_opts(int prog_fd, void *opts)'),
    possibleCpus: bpf.func('int libbpf_num_possible_cpus(void)'),
    setPrint: bpf.func('void *libbpf_set_print(plainsight_libbpf_print_fn *fn)'),
    socket: libc.func('int socket(int domain, int type, int protocol)'),
    setsockopt: libc.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)'),
    bind: libc.func('int bind(int fd, void *addr, uint32_t len)'),
    closeFd: libc.func('int close(int fd)'),
    mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t offset)'),
    munmap: libc.func('int munmap(void *addr, size_t len)'),
    ifNameToIndex: libc.func('uint32_t if_nametoindex(const char *name)'),
    setns: libc.func('int setns(int fd, int nstype)'),
    vsnprintf: libc.func('int vsnprintf(void *str, size_t size, void *fmt, void *ap)'),
    getpagesize: libc.func('int getpagesize(void)'),
  };
  installPrint(b, printFn);
  bindings = b;
  return b;
}

/**
 * libbpf's messages (the verifier log on a failed load among them) go to a bounded buffer
 * instead of stderr; errors quote its tail. The callback runs synchronously on the calling
 * thread — libbpf has no threads of its own (pitfall 4). Process-global by nature.
 */
function installPrint(b: Bindings, printFn: TypeObject): void {
  const line = Buffer.alloc(LOG_LINE_BYTES);
  const debug = process.env.PLAINSIGHT_DEBUG === '1';
  const cb = koffi.register((level: number, fmt: bigint, args: bigint): number => {
    if (level > LIBBPF_INFO && !debug) return 0;
    // va_list is a pointer on x86-64 only; elsewhere keep the unformatted template.
    const n = process.arch === 'x64' ? b.vsnprintf(line, line.length, fmt, args) : -1;
    const text = n >= 0 ? line.subarray(0, Math.min(n, line.length - 1)).toString() : koffi.decode(fmt, 'char', -1);
    for (const l of text.split('\n')) if (l !== '') logLines.push(l);
    if (logLines.length > LOG_LINES_KEPT) logLines.splice(0, logLines.length - LOG_LINES_KEPT);
    if (debug) process.stderr.write(level === LIBBPF_WARN ? `plainsight: ${text}` : text);
    return 0;
  }, koffi.pointer(printFn));
  b.setPrint(cb);
}

/** libbpf's recent messages (oldest first), cleared. */
export function takeLibbpfLog(): string[] {
  return logLines.splice(0, logLines.length);
}

/** Throws PLAINSIGHT_ERR_BPF_LIBBPF_MISSING when libbpf cannot be loaded. */
export function ensureLibbpf(): void {
  lib();
}

function logTail(lines = 25): string {
  const log = takeLibbpfLog();
  return log.length ? `\n${log.slice(-lines).join('\n')}` : '';
}

// ---- objects, programs, maps ----------------------------------------------------------

export function openObject(path: string): BpfObject {
  const b = lib();
  takeLibbpfLog();
  const obj = b.openFile(path, null) as bigint | null;
  if (obj === null || obj === 0n) {
    throw fail('PLAINSIGHT_ERR_BPF_OBJECT', `cannot open BPF object ${path}`, 'bpf_object__open_file', koffi.errno(), logTail(5));
  }
  return obj as BpfObject;
}

/** Creates maps and runs the verifier. The verifier's log ends the message on failure. */
export function loadObject(obj: BpfObject, what: string): void {
  takeLibbpfLog();
  const rc = lib().load(obj) as number;
  if (rc < 0) throw fail('PLAINSIGHT_ERR_BPF_LOAD', `cannot load ${what}`, 'bpf_object__load', -rc, logTail());
}

export function closeObject(obj: BpfObject): void {
  lib().close(obj);
}

export function findProgram(obj: BpfObject, name: string): BpfProgram {
  const p = lib().findProgram(obj, name) as bigint | null;
  if (p === null || p === 0n) {
    throw new PlainsightError('PLAINSIGHT_ERR_BPF_OBJECT', `BPF object has no program ${name}`);
  }
  return p as BpfProgram;
}

export function programFd(prog: BpfProgram): number {
  const fd = lib().programFd(prog) as number;
  if (fd < 0) throw fail('PLAINSIGHT_ERR_BPF_LOAD', 'program is not loaded', 'bpf_program__fd', -fd);
  return fd;
}

export function setAutoload(prog: BpfProgram, autoload: boolean): void {
  const rc = lib().setAutoload(prog, autoload) as number;
  if (rc < 0) throw fail('PLAINSIGHT_ERR_BPF_LOAD', 'cannot change autoload', 'bpf_program__set_autoload', -rc);
}

export function findMap(obj: BpfObject, name: string): BpfMap {
  const m = lib().findMap(obj, name) as bigint | null;
  if (m === null || m === 0n) throw new PlainsightError('PLAINSIGHT_ERR_BPF_OBJECT', `BPF object has no map ${name}`);
  return m as BpfMap;
}

export function mapFd(map: BpfMap): number {
  const fd = lib().mapFd(map) as number;
  if (fd < 0) throw fail('PLAINSIGHT_ERR_BPF_MAP', 'map is not created', 'bpf_map__fd', -fd);
  return fd;
}

/** Before load only. */
export function setMaxEntries(map: BpfMap, entries: number): void {
  const rc = lib().setMaxEntries(map, entries) as number;
  if (rc < 0) throw fail('PLAINSIGHT_ERR_BPF_MAP', `cannot size map to ${entries} entries`, 'bpf_map__set_max_entries', -rc);
}

/** Before load only; `data` must be exactly the map's value size (rodata/data sections). */
export function setInitialValue(map: BpfMap, data: Buffer): void {
  const rc = lib().setInitialValue(map, data, data.length) as number;
  if (rc < 0) {
    throw fail('PLAINSIGHT_ERR_BPF_OBJECT', `cannot set ${data.length}-byte initial value (ABI mismatch?)`, 'bpf_map__set_initial_value', -rc);
  }
}

/** A copy of a data/rodata map's initial value (as compiled, or as set before load). */
export function mapInitialValue(map: BpfMap): Buffer {
  const size = [0];
  const p = lib().initialValue(map, size) as bigint | null;
  if (p === null || p === 0n) throw new PlainsightError('PLAINSIGHT_ERR_BPF_OBJECT', 'map has no initial value');
  // Buffer.from(Uint8Array) copies: the view would dangle once the object is closed.
  return Buffer.from(new Uint8Array(koffi.view(p, size[0]!)));
}

/** Before load: use an existing map (by fd) instead of creating one. The fd is dup'ed. */
export function reuseMapFd(map: BpfMap, fd: number): void {
  const rc = lib().reuseFd(map, fd) as number;
  if (rc < 0) throw fail('PLAINSIGHT_ERR_BPF_MAP', 'cannot share map', 'bpf_map__reuse_fd', -rc);
}

export function possibleCpus(): number {
  const n = lib().possibleCpus() as number;
  if (n <= 0) throw fail('PLAINSIGHT_ERR_BPF_MAP', 'cannot count possible CPUs', 'libbpf_num_possible_cpus', -n);
  return n;
}

// ---- map operations -------------------------------------------------------------------

/**
 * One bpf_map_lookup_batch step. `inBatch` null starts; pass the previous `outBatch` to
 * continue. `done` is true on the last step, which may still return entries (pitfall 10).
 * `tooSmall`: a hash bucket holds more entries than `maxCount`; retry with more room.
 */
export function mapLookupBatch(
  fd: number,
  inBatch: Buffer | null,
  outBatch: Buffer,
  keys: Buffer,
  values: Buffer,
  maxCount: number,
): { count: number; done: boolean; tooSmall: boolean } {
  const count = new Uint32Array([maxCount]);
  const rc = lib().lookupBatch(fd, inBatch, outBatch, keys, values, count, null) as number;
  if (rc === 0) return { count: count[0]!, done: false, tooSmall: false };
  if (rc === -E.ENOENT) return { count: count[0]!, done: true, tooSmall: false };
  if (rc === -E.ENOSPC) return { count: 0, done: false, tooSmall: true };
  throw fail('PLAINSIGHT_ERR_BPF_MAP', 'cannot read flow map', 'bpf_map_lookup_batch', -rc);
}

/** Next key after `key` (null: the first); false at the end. */
export function mapGetNextKey(fd: number, key: Buffer | null, next: Buffer): boolean {
  const rc = lib().getNextKey(fd, key, next) as number;
  if (rc === 0) return true;
  if (rc === -E.ENOENT) return false;
  throw fail('PLAINSIGHT_ERR_BPF_MAP', 'cannot iterate map', 'bpf_map_get_next_key', -rc);
}

/** false when the key is absent. Per-CPU maps fill one value per possible CPU. */
export function mapLookupElem(fd: number, key: Buffer, value: Buffer): boolean {
  const rc = lib().lookupElem(fd, key, value) as number;
  if (rc === 0) return true;
  if (rc === -E.ENOENT) return false;
  throw fail('PLAINSIGHT_ERR_BPF_MAP', 'cannot read map', 'bpf_map_lookup_elem', -rc);
}

/** false when the key was already gone. */
export function mapDeleteElem(fd: number, key: Buffer): boolean {
  const rc = lib().deleteElem(fd, key) as number;
  if (rc === 0) return true;
  if (rc === -E.ENOENT) return false;
  throw fail('PLAINSIGHT_ERR_BPF_MAP', 'cannot delete map entry', 'bpf_map_delete_elem', -rc);
}

// ---- attach: TCX links, clsact filters ------------------------------------------------

/** The kernel has no TCX (before 6.6): attach with clsact instead. */
export const TCX_UNSUPPORTED = Symbol('TCX unsupported');

/**
 * A TCX link (`bpf_link_create` with BPF_TCX_INGRESS/EGRESS; libbpf 1.1 has no
 * bpf_program__attach_tcx). Returns the link fd — closing it detaches — or
 * TCX_UNSUPPORTED when the kernel does not know the attach type.
 */
export function tcxAttach(progFd: number, ifindex: number, attachType: number): number | typeof TCX_UNSUPPORTED {
  const fd = lib().linkCreate(progFd, ifindex, attachType, null) as number;
  if (fd >= 0) return fd;
  const errno = -fd;
  if (errno === E.EINVAL || errno === E.EOPNOTSUPP) return TCX_UNSUPPORTED;
  throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `cannot attach TCX to ifindex ${ifindex}`, 'bpf_link_create', errno);
}

/** Program ids attached at a TCX hook (BPF_TCX_INGRESS/EGRESS), or at a legacy attach type. */
export function progQuery(ifindex: number, attachType: number): number[] {
  const ids = new Uint32Array(64);
  const count = new Uint32Array([ids.length]);
  const flags = new Uint32Array(1);
  const rc = lib().progQuery(ifindex, attachType, 0, flags, ids, count) as number;
  if (rc === -E.EINVAL) return []; // attach type unknown to this kernel: nothing there
  if (rc < 0) throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `cannot query hooks of ifindex ${ifindex}`, 'bpf_prog_query', -rc);
  return [...ids.subarray(0, count[0]!)];
}

function tcHook(ifindex: number, point: number): Buffer {
  const h = Buffer.alloc(TC_HOOK_SIZE);
  h.writeBigUInt64LE(BigInt(TC_HOOK_SIZE), 0); // sz
  h.writeInt32LE(ifindex, 8);
  h.writeInt32LE(point, 12); // attach_point
  return h;
}

function tcOpts(fields: { progFd?: number; flags?: number; handle: number; priority: number }): Buffer {
  const o = Buffer.alloc(TC_OPTS_SIZE);
  o.writeBigUInt64LE(BigInt(TC_OPTS_SIZE), 0); // sz
  o.writeInt32LE(fields.progFd ?? 0, 8);
  o.writeUInt32LE(fields.flags ?? 0, 12);
  // prog_id at 16 stays 0 on input
  o.writeUInt32LE(fields.handle, 20);
  o.writeUInt32LE(fields.priority, 24);
  return o;
}

/**
 * A clsact filter (the pre-6.6 way). Creates the clsact qdisc if missing (never deletes
 * it: other tools' filters live there) and replaces a filter with the same handle and
 * priority — a stale one of ours from a killed agent — instead of adding a second.
 * Returns the attached program id.
 */
export function clsactAttach(progFd: number, ifindex: number, point: number, handle: number, priority: number): number {
  const b = lib();
  const hook = tcHook(ifindex, point);
  const rc = b.tcHookCreate(hook) as number;
  if (rc < 0 && rc !== -E.EEXIST) {
    throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `cannot create clsact qdisc on ifindex ${ifindex}`, 'bpf_tc_hook_create', -rc);
  }
  const opts = tcOpts({ progFd, flags: BPF_TC_F_REPLACE, handle, priority });
  const rc2 = b.tcAttach(hook, opts) as number;
  if (rc2 < 0) throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `cannot attach clsact filter on ifindex ${ifindex}`, 'bpf_tc_attach', -rc2);
  return opts.readUInt32LE(16);
}

/** Removes our filter (by handle and priority); false if it was not there. */
export function clsactDetach(ifindex: number, point: number, handle: number, priority: number): boolean {
  const rc = lib().tcDetach(tcHook(ifindex, point), tcOpts({ handle, priority })) as number;
  if (rc === 0) return true;
  if (rc === -E.ENOENT || rc === -E.ENODEV || rc === -E.EINVAL) return false; // gone, or no clsact qdisc
  throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `cannot detach clsact filter on ifindex ${ifindex}`, 'bpf_tc_detach', -rc);
}

/** The program id of our filter (by handle and priority), or undefined. */
export function clsactQuery(ifindex: number, point: number, handle: number, priority: number): number | undefined {
  const opts = tcOpts({ handle, priority });
  const rc = lib().tcQuery(tcHook(ifindex, point), opts) as number;
  if (rc === 0) return opts.readUInt32LE(16);
  if (rc === -E.ENOENT || rc === -E.ENODEV || rc === -E.EINVAL) return undefined;
  throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `cannot query clsact filters on ifindex ${ifindex}`, 'bpf_tc_query', -rc);
}

// ---- test runs ------------------------------------------------------------------------

/** bpf_prog_test_run_opts: runs a program `repeat` times on `packet` in the kernel. */
export function testRun(progFd: number, packet: Buffer, repeat: number): { retval: number; durationNs: number } {
  const o = Buffer.alloc(TEST_RUN_OPTS_SIZE);
  o.writeBigUInt64LE(BigInt(TEST_RUN_OPTS_SIZE), 0); // sz
  o.writeBigUInt64LE(koffi.address(packet), 8); // data_in
  o.writeUInt32LE(packet.length, 24); // data_size_in
  o.writeInt32LE(repeat, 60);
  const rc = lib().testRun(progFd, o) as number;
  if (rc < 0) throw fail('PLAINSIGHT_ERR_BPF_LOAD', 'test run failed', 'bpf_prog_test_run_opts', -rc);
  return { retval: o.readInt32LE(56), durationNs: o.readUInt32LE(64) };
}

// ---- memory mappings --------------------------------------------------------------------

/** mmap(fd, offset) shared; throws on MAP_FAILED (all ones, not NULL: pitfall 1). */
export function mmapFd(fd: number, length: number, prot: number, offset: number, what: string): MappedAddress {
  const p = lib().mmap(null, length, prot, MAP_SHARED, fd, offset) as bigint | null;
  if (p === null || p === MAP_FAILED || p === 0n) {
    throw fail('PLAINSIGHT_ERR_BPF_MAP', `cannot map ${what}`, 'mmap', koffi.errno());
  }
  return p as MappedAddress;
}

/**
 * An ArrayBuffer over mapped memory, without copying. It dangles after munmap: keep it
 * private to the owner of the mapping and drop it before unmapping.
 */
export function mappedView(addr: MappedAddress, length: number): ArrayBuffer {
  return koffi.view(addr, length);
}

export function munmap(addr: MappedAddress, length: number): void {
  const rc = lib().munmap(addr, length) as number;
  if (rc < 0) throw fail('PLAINSIGHT_ERR_BPF_MAP', 'cannot unmap', 'munmap', koffi.errno());
}

export function pageSize(): number {
  return lib().getpagesize() as number;
}

export function closeFd(fd: number): void {
  lib().closeFd(fd);
}

// ---- network namespaces, interfaces, packet sockets ---------------------------------

/**
 * Runs `fn` with the calling thread inside the network namespace at `path`, then returns.
 * Must stay synchronous and short (pitfall 6): a thread created inside (libuv pool,
 * Worker) would stay in the pod's namespace for good. No await, no fs callbacks in `fn`.
 */
export function withNetns<T>(path: string, fn: () => T): T {
  const b = lib();
  let target: number;
  let home: number;
  try {
    target = openSync(path, fsConstants.O_RDONLY);
  } catch (cause) {
    throw new PlainsightError('PLAINSIGHT_ERR_BPF_NETNS', `cannot open network namespace ${path}`, { cause });
  }
  try {
    home = openSync('/proc/thread-self/ns/net', fsConstants.O_RDONLY);
  } catch (cause) {
    closeSync(target);
    throw new PlainsightError('PLAINSIGHT_ERR_BPF_NETNS', 'cannot open our own network namespace', { cause });
  }
  try {
    if ((b.setns(target, CLONE_NEWNET) as number) < 0) {
      throw fail('PLAINSIGHT_ERR_BPF_NETNS', `cannot enter network namespace ${path}`, 'setns', koffi.errno());
    }
    try {
      return fn();
    } finally {
      if ((b.setns(home, CLONE_NEWNET) as number) < 0) {
        // Continuing in the pod's namespace would silently attach everything there.
        process.stderr.write(`plainsight: cannot return to the original network namespace (errno ${koffi.errno()}); exiting\n`);
        process.exit(70);
      }
    }
  } finally {
    closeSync(home);
    closeSync(target);
  }
}

/** if_nametoindex in the calling thread's namespace. */
export function ifNameToIndex(name: string): number {
  const idx = lib().ifNameToIndex(name) as number;
  if (idx === 0) throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `no interface ${name}`, 'if_nametoindex', koffi.errno());
  return idx;
}

/**
 * An AF_PACKET socket on `ifindex` (calling thread's namespace) with the socket filter
 * attached before bind: created with protocol 0 it receives nothing until bound, so no
 * unfiltered packet is queued first. Non-blocking, close-on-exec.
 */
export function packetSocketWithFilter(progFd: number, ifindex: number): number {
  const b = lib();
  const fd = b.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw fail('PLAINSIGHT_ERR_BPF_ATTACH', 'cannot create packet socket', 'socket(AF_PACKET)', koffi.errno());
  try {
    const prog = new Int32Array([progFd]);
    if ((b.setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, prog, 4) as number) < 0) {
      throw fail('PLAINSIGHT_ERR_BPF_ATTACH', 'cannot attach socket filter', 'setsockopt(SO_ATTACH_BPF)', koffi.errno());
    }
    const sll = Buffer.alloc(SOCKADDR_LL_SIZE);
    sll.writeUInt16LE(AF_PACKET, 0); // sll_family
    sll.writeUInt16BE(ETH_P_ALL, 2); // sll_protocol, network order
    sll.writeInt32LE(ifindex, 4); // sll_ifindex
    if ((b.bind(fd, sll, SOCKADDR_LL_SIZE) as number) < 0) {
      throw fail('PLAINSIGHT_ERR_BPF_ATTACH', `cannot bind packet socket to ifindex ${ifindex}`, 'bind', koffi.errno());
    }
    return fd;
  } catch (e) {
    b.closeFd(fd);
    throw e;
  }
}
