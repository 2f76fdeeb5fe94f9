// Bad input through the CLI: what a user sees must be one actionable line (and the right
// exit code), never a stack trace; a capture cut short mid-record still yields the flows
// read so far, with a warning.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { labCerts } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { peerClient, peerServer, serverTls } from '../lab/peers.js';
import { cliMissingReason, describe, runCli, type ClassifyJson } from '../lab/plainsight.js';

const execFileP = promisify(execFile);
const cliMissing = cliMissingReason();
const dir = mkdtempSync(join(tmpdir(), 'ps-cli-errors-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const STACK = /^\s+at .+[(:]\d+/m;

function oneLine(t: Test, stderr: string, what: string): void {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  t.equal(lines.length, 1, `${what}: exactly one line on stderr`, { stderr });
  t.match(lines[0] ?? '', /^plainsight: /, `${what}: starts with "plainsight:"`);
  t.notMatch(stderr, STACK, `${what}: no stack trace`);
}

t.test('CLI errors on bad input', async (t) => {
  if (cliMissing) return void t.fail(`cannot run plainsight: ${cliMissing}`);
  t.test('a text file → exit 2, one line', async (t) => {
    const f = join(dir, 'notes.txt');
    writeFileSync(f, 'this is not a capture, just some notes\n'.repeat(20));
    const r = await runCli(['classify', '--json', f]);
    t.equal(r.code, 2, 'exit code 2 (usage: not a pcap/pcapng)');
    oneLine(t, r.stderr, 'text file');
    t.equal(r.stdout.trim(), '', 'nothing on stdout');
  });

  t.test('a file that does not exist → exit 1, one line', async (t) => {
    const f = join(dir, 'no-such-capture.pcap');
    const r = await runCli(['classify', '--json', f]);
    t.equal(r.code, 1, 'exit code 1');
    oneLine(t, r.stderr, 'missing file');
    t.match(r.stderr, 'no-such-capture.pcap', 'names the file');
  });

  t.test('no FILE at all → exit 2 (usage), one line', async (t) => {
    const r = await runCli(['classify', '--json']);
    t.equal(r.code, 2, 'exit code 2');
    oneLine(t, r.stderr, 'no file');
  });
});

t.test('captures cut short', { skip: labSkipReason() }, async (t) => {
  if (cliMissing) return void t.fail(`cannot run plainsight: ${cliMissing}`);
  const lab = await Lab.open(t, 'cut');
  const { client, server } = await lab.pair();
  const certs = await labCerts();
  const pcap = await lab.capture(server.ns, server.ifname, 'full.pcap');
  const pcapng = await lab.capture(server.ns, server.ifname, 'full.pcapng', { tool: 'dumpcap' });
  await peerServer(lab, server.ns, 'http-server', { port: 8080, responseBytes: 20_000 });
  await peerServer(lab, server.ns, 'tls-server', { port: 8443, ...serverTls(certs.server) });
  const [http] = await peerClient(lab, client.ns, 'http-client', { host: server.ip4, port: 8080, bodyBytes: 1000 });
  await peerClient(lab, client.ns, 'tls-client', { host: server.ip4, port: 8443, ca: certs.server.ca, servername: 'server.lab', count: 3 });
  await pcap.stop();
  await pcapng.stop();
  t.ok(http, '(http client completed)');

  for (const [name, full, offsets] of [
    ['pcap', pcap.file, pcapRecordOffsets],
    ['pcapng', pcapng.file, pcapngBlockOffsets],
  ] as const) {
    t.test(`${name} truncated mid-record (head -c) → exit 0, flows so far, a warning`, async (t) => {
      const bytes = readFileSync(full);
      const recs = offsets(bytes);
      // Cut inside the record that starts 60% of the way through the file: the HTTP flow
      // (first) is complete before it, later TLS flows are not.
      const k = Math.floor(recs.length * 0.6);
      const cutAt = (recs[k] ?? 0) + 20;
      const cut = lab.path(`cut.${name}`);
      await execFileP('sh', ['-c', `head -c ${cutAt} "$1" > "$2"`, 'sh', full, cut]);
      const ts = await execFileP('tshark', ['-r', cut], { maxBuffer: 64 << 20 }).then(
        () => '',
        (e: { stderr?: string }) => e.stderr ?? '',
      );
      t.match(ts, /cut short|truncated/i, `(tshark agrees the ${name} is cut mid-record)`);

      const [whole, r] = await Promise.all([runCli(['classify', '--json', full]), runCli(['classify', '--json', cut])]);
      t.equal(r.code, 0, 'exit code 0', { stderr: r.stderr });
      t.notMatch(r.stderr, STACK, 'no stack trace');
      t.ok(r.stderr.trim().length > 0, 'a warning on stderr');
      t.comment(`warning: ${r.stderr.trim()}`);
      let out: ClassifyJson | undefined;
      let wholeOut: ClassifyJson | undefined;
      try {
        out = JSON.parse(r.stdout) as ClassifyJson;
        wholeOut = JSON.parse(whole.stdout) as ClassifyJson;
      } catch {
        t.fail('stdout is not JSON', { stdout: r.stdout.slice(0, 300) });
        return;
      }
      const httpCut = out.flows.find((f) => f.server.port === 8080);
      const httpWhole = wholeOut.flows.find((f) => f.server.port === 8080);
      t.match(httpCut, { verdict: 'plaintext', protocol: 'http/1.1', bytes: httpWhole?.bytes }, `the complete HTTP flow is there, same as in the whole file: ${describe(httpCut)}`);
      t.ok(out.flows.length >= 1 && out.flows.length <= wholeOut.flows.length, `some flows (${out.flows.length} of ${wholeOut.flows.length})`);
    });
  }

  t.test('a pcap with only its file header → exit 0, no flows', async (t) => {
    const empty = lab.path('header-only.pcap');
    writeFileSync(empty, readFileSync(pcap.file).subarray(0, 24));
    const r = await runCli(['classify', '--json', empty]);
    t.equal(r.code, 0, 'exit 0', { stderr: r.stderr });
    const out = JSON.parse(r.stdout || '{}') as ClassifyJson;
    t.same(out.flows, [], 'no flows');
    t.equal(out.summary?.flows, 0, 'summary.flows 0');
  });
});

/** Start offset of every record of a (little-endian, as written here) pcap file. */
function pcapRecordOffsets(b: Buffer): number[] {
  const offs: number[] = [];
  for (let p = 24; p + 16 <= b.length; ) {
    offs.push(p);
    p += 16 + b.readUInt32LE(p + 8);
  }
  return offs;
}

/** Start offset of every block of a (little-endian) pcapng file after the first section header. */
function pcapngBlockOffsets(b: Buffer): number[] {
  const offs: number[] = [];
  for (let p = b.readUInt32LE(4); p + 12 <= b.length; ) {
    offs.push(p);
    p += b.readUInt32LE(p + 4);
  }
  return offs;
}
