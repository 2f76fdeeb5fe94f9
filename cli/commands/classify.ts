// `plainsight classify FILE... [--json]`: the offline mode. Same classifier as the agent.

import { classifyCaptures, classifyCapturesJson } from '../../agent/src/offline/index.js';
import { endpointText, type FlowJson } from '../../agent/src/offline/report.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { parse } from '../args.js';
import { progress } from '../progress.js';
import { humanBytes, renderTable, type Column } from '../table.js';

const HELP = `Usage: plainsight classify FILE... [--json]

Reads pcap or pcapng captures (e.g. from \`tcpdump -i any -w FILE\` or ksniff) and prints
one line per flow: verdict (plaintext, tls, mtls, encrypted-other, unknown), protocol,
TLS details, mesh and the evidence. --json prints one JSON object (see README).
`;

export async function runClassify(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, 'classify');
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length === 0) {
    throw new PlainsightError('PLAINSIGHT_ERR_USAGE', 'classify: no capture file given', {
      hint: 'usage: plainsight classify FILE... [--json]',
    });
  }
  const bar = progress('reading');
  const onProgress = (done: number, total: number, file: string): void => bar.update(done, total, file);
  if (values.json) {
    const { json, warnings } = classifyCapturesJson(positionals, onProgress);
    bar.done();
    for (const w of warnings) process.stderr.write(`plainsight: warning: ${w}\n`);
    process.stdout.write(`${json}\n`);
    return 0;
  }
  const result = classifyCaptures(positionals, onProgress);
  bar.done();
  for (const w of result.warnings) process.stderr.write(`plainsight: warning: ${w}\n`);
  process.stdout.write(renderTable(result.flows, columns(positionals.length > 1)));
  const s = result.summary;
  const verdicts = Object.entries(s.byVerdict)
    .map(([v, n]) => `${n} ${v}`)
    .join(', ');
  process.stdout.write(`\n${s.flows} flows (${verdicts || 'none'}), ${s.packets} packets, ${humanBytes(s.bytes)} payload\n`);
  return 0;
}

function columns(withFile: boolean): Column<FlowJson>[] {
  const cols: Column<FlowJson>[] = [
    { header: 'CLIENT', value: (f) => endpointText(f.client), max: 28 },
    { header: 'SERVER', value: (f) => endpointText(f.server), max: 28 },
    { header: 'L4', value: (f) => f.transport },
    { header: 'VERDICT', value: (f) => f.verdict },
    { header: 'PROTOCOL', value: (f) => (f.upgradedFrom ? `${f.protocol}<-${f.upgradedFrom}` : f.protocol), max: 22 },
    { header: 'TLS', value: (f) => f.tls?.version ?? '' },
    { header: 'SNI/MESH', value: (f) => [f.mesh !== 'none' ? f.mesh : '', f.tls?.sni ?? ''].filter(Boolean).join(' '), max: 32 },
    { header: 'CLIENT CERT', value: (f) => f.tls?.clientCertificate ?? '' },
    { header: 'BYTES →', value: (f) => humanBytes(f.bytes.toServer), align: 'right' },
    { header: 'BYTES ←', value: (f) => humanBytes(f.bytes.toClient), align: 'right' },
    { header: 'EVIDENCE', value: (f) => f.evidence, flex: true },
  ];
  if (withFile) cols.unshift({ header: 'FILE', value: (f) => f.file ?? '', max: 20 });
  return cols;
}
