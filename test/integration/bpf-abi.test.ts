// One ABI, asserted on both sides: bpf/include/flow_abi.h compiled by the host compiler
// prints every size, offset and constant, which must equal agent/src/bpf/flow-abi.ts; and
// the BTF of the built object (the layout clang -target bpf really used) must agree too.
// Needs clang (and bpftool + a built object for the BTF half); no root.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as abi from '../../agent/src/bpf/flow-abi.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OBJECT = join(ROOT, 'bpf/build/flow.bpf.o');

function has(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Splits a flow-abi.ts layout into its size and its field offsets. */
function layout(l: { readonly size: number } & Readonly<Record<string, number>>): { size: number; fields: Record<string, number> } {
  const { size, ...fields } = l;
  return { size, fields };
}

/** struct name → { size, field offsets } as the TS side describes them. */
const TS_LAYOUT: Record<string, { size: number; fields: Record<string, number> }> = {
  ps_flow_key: layout(abi.KEY),
  ps_flow_dir: layout(abi.DIR),
  ps_flow_value: layout(abi.VALUE),
  ps_sample_hdr: layout(abi.SAMPLE_HDR),
  ps_flow_config: layout(abi.CONFIG),
  ps_stats: { size: abi.STATS_SIZE, fields: Object.fromEntries(abi.STATS_FIELDS.map((f, i) => [f, i * 8])) },
};

const CONSTANTS = {
  PS_ABI_VERSION: abi.PS_ABI_VERSION,
  PS_DEFAULT_MAX_FLOWS: abi.PS_DEFAULT_MAX_FLOWS,
  PS_DEFAULT_RINGBUF_BYTES: abi.PS_DEFAULT_RINGBUF_BYTES,
  PS_DEFAULT_SAMPLES_PER_DIR: abi.PS_DEFAULT_SAMPLES_PER_DIR,
  PS_SAMPLE_MAX_PAYLOAD: abi.PS_SAMPLE_MAX_PAYLOAD,
  PS_SIDE_A: abi.PS_SIDE_A,
  PS_SIDE_B: abi.PS_SIDE_B,
  PS_DIR_TO_SERVER: abi.PS_DIR_TO_SERVER,
  PS_DIR_TO_CLIENT: abi.PS_DIR_TO_CLIENT,
  PS_HOOK_TC_INGRESS: abi.PS_HOOK_TC_INGRESS,
  PS_HOOK_TC_EGRESS: abi.PS_HOOK_TC_EGRESS,
  PS_HOOK_SOCKET_IN: abi.PS_HOOK_SOCKET_IN,
  PS_HOOK_SOCKET_OUT: abi.PS_HOOK_SOCKET_OUT,
  PS_FLOW_F_SYN_SEEN: abi.PS_FLOW_F_SYN_SEEN,
  PS_FLOW_F_MIDSTREAM: abi.PS_FLOW_F_MIDSTREAM,
  PS_IFINDEX_SOCKET_TAG: abi.PS_IFINDEX_SOCKET_TAG,
};

/** A C program printing the header's view as JSON. */
function cProgram(): string {
  const lines: string[] = ['#include <stdio.h>', '#include <stddef.h>', '#include "flow_abi.h"', 'int main(void) {', 'printf("{");'];
  const parts: string[] = [];
  for (const [name, l] of Object.entries(TS_LAYOUT)) {
    parts.push(`printf("\\"${name}\\":{\\"size\\":%zu", sizeof(struct ${name}));`);
    for (const f of Object.keys(l.fields)) {
      // dir[] is an array: offsetof of its first element.
      const member = name === 'ps_flow_value' && f === 'dir' ? 'dir[0]' : f;
      parts.push(`printf(",\\"${f}\\":%zu", offsetof(struct ${name}, ${member}));`);
    }
    parts.push('printf("},");');
  }
  for (const c of Object.keys(CONSTANTS)) parts.push(`printf("\\"${c}\\":%llu,", (unsigned long long)(${c}));`);
  parts.push('printf("\\"end\\":0}\\n");');
  return [...lines, ...parts, 'return 0; }'].join('\n');
}

t.test('flow_abi.h (host compiler) matches flow-abi.ts', { skip: has('clang') ? undefined : 'needs clang' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-abi-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'abi.c'), cProgram());
  execFileSync('clang', ['-Wall', '-Werror', '-I', join(ROOT, 'bpf/include'), '-o', join(dir, 'abi'), join(dir, 'abi.c')]);
  const c = JSON.parse(execFileSync(join(dir, 'abi'), { encoding: 'utf8' })) as Record<string, unknown>;
  for (const [name, l] of Object.entries(TS_LAYOUT)) t.same(c[name], { size: l.size, ...l.fields }, `struct ${name}`);
  for (const [k, v] of Object.entries(CONSTANTS)) t.equal(c[k], v, k);
  t.equal(abi.SAMPLE_SIZE, abi.SAMPLE_HDR.size + abi.PS_SAMPLE_MAX_PAYLOAD);
});

t.test('the BPF object was compiled with the same layout (BTF)', {
  skip: !has('bpftool') ? 'needs bpftool' : !existsSync(OBJECT) ? 'run `npm run build` first' : undefined,
}, async (t) => {
  const raw = execFileSync('bpftool', ['btf', 'dump', 'file', OBJECT, 'format', 'raw'], { encoding: 'utf8' });
  // Types reachable from maps and globals are in BTF. The ring buffer record is not (the
  // map is untyped): its layout is checked by the host compile above and end to end by
  // bpf-load/bpf-flow, which decode real samples.
  const IN_BTF = ['ps_flow_key', 'ps_flow_dir', 'ps_flow_value', 'ps_flow_config', 'ps_stats'];
  for (const [name, l] of Object.entries(TS_LAYOUT).filter(([n]) => IN_BTF.includes(n))) {
    // [8] STRUCT 'ps_flow_key' size=44 vlen=7 \n\t'ifindex' type_id=9 bits_offset=0 …
    const m = new RegExp(`STRUCT '${name}' size=(\\d+) vlen=(\\d+)\\n((?:\\t.*\\n?)*)`).exec(raw);
    if (!m) {
      t.fail(`struct ${name} in BTF`);
      continue;
    }
    t.equal(Number(m[1]), l.size, `${name} size`);
    const members = Object.fromEntries(
      [...m[3]!.matchAll(/'(\w+)' type_id=\d+ bits_offset=(\d+)/g)].map((x) => [x[1]!, Number(x[2]) / 8]),
    );
    for (const [f, off] of Object.entries(l.fields)) t.equal(members[f], off, `${name}.${f}`);
  }
});
