// No payload leaves the node: netns pods exchange traffic full of unique secret markers —
// HTTP request path, query string, Host, Authorization: Bearer, Cookie, a POST body, the
// response's Set-Cookie and body (curl ↔ a node server); SQL text and its result
// (psql ↔ PostgreSQL, plaintext); Redis keys and values (redis-cli ↔ redis-server); SMTP
// envelope, headers and message (curl smtp:// ↔ a minimal SMTP server); and HTTPS whose
// request and response carry markers (only the SNI, handshake metadata, may be seen). The
// real agent (eBPF, --output jsonl) streams to the real aggregator over plaintext gRPC
// (so the bytes are readable) with an ingest log (--data-dir).
//
// Everything that leaves the agent or the aggregator is searched for the marker, raw and
// hex/base64-encoded: a tcpdump capture of the agent→aggregator connection (all bytes,
// HTTP/2 frames included; gRPC is uncompressed by default, and the pod names and SNI seen
// raw in it prove that), the agent's jsonl stdout and log stderr, both /metrics, the
// aggregator's logs, `flows --json` and `coverage --json`, and every file of the data dir.
// Each is also checked to hold the flows (SNI, pod names), so a broken pipeline cannot pass.
// Needs root and eBPF; skips with the reason otherwise.

import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { labCerts } from '../lab/certs.js';
import { Lab } from '../lab/lab.js';
import { cliMissingReason, runCli } from '../lab/plainsight.js';
import { AggregatorProcess, metricSum, tempDir } from '../lab/aggregator.js';
import { AgentProcess, LabNode, bpfSkipReason, fastArgs, finals, type FlowLine, type NodePod } from '../lab/agent-lab.js';
import { curl, psql, redisCli, startPostgres, startRedis } from '../lab/peers.js';
import type { FlowOut } from '../../cli/commands/flows.js';

const skip = bpfSkipReason() ?? cliMissingReason();

// One token in every secret: finding it anywhere, in any encoding, is a leak.
const TOKEN = `zq${randomBytes(6).toString('hex')}`;
const secret = (what: string): string => `${TOKEN}${what}`;

/** The token as it would look hex- or base64-encoded (base64 at each of the 3 byte alignments). */
function encodings(token: string): Buffer[] {
  const raw = Buffer.from(token);
  const out = [raw, Buffer.from(raw.toString('hex')), Buffer.from(raw.toString('hex').toUpperCase())];
  for (let k = 0; k < 3; k++) {
    const b64 = Buffer.concat([Buffer.alloc(k, 0x20), raw]).toString('base64');
    const from = k === 0 ? 0 : 4;
    const to = Math.floor((k + raw.length) / 3) * 4;
    out.push(Buffer.from(b64.slice(from, to)));
  }
  return out;
}

function leaks(data: Buffer | string): boolean {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  return encodings(TOKEN).some((e) => buf.includes(e));
}

/** The context of the first leak, for the failure message. */
function leakContext(data: Buffer | string): string {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  for (const e of encodings(TOKEN)) {
    const i = buf.indexOf(e);
    if (i >= 0) return JSON.stringify(buf.subarray(Math.max(0, i - 120), i + 120).toString('latin1'));
  }
  return '';
}

// The server pod: HTTP (markers in Set-Cookie and body), HTTPS (marker in the body), and
// just enough SMTP for curl to deliver a message.
const SECRET_SERVER = String.raw`
const [o] = [JSON.parse(process.argv[1])];
const fs = require('fs'), http = require('http'), https = require('https'), net = require('net');
const handler = (req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'set-cookie': 'sid=' + o.secret + 'setcookie', 'content-type': 'text/plain', connection: 'close' });
    res.end('account balance for ' + o.secret + 'responsebody\n');
  });
};
http.createServer(handler).listen(o.http, '0.0.0.0');
https.createServer({ cert: fs.readFileSync(o.cert), key: fs.readFileSync(o.key) }, handler).listen(o.https, '0.0.0.0');
net.createServer((s) => {
  let data = false, buf = '';
  s.write('220 mail.lab ESMTP\r\n');
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 2);
      if (data) { if (line === '.') { data = false; s.write('250 2.0.0 queued as ' + o.secret + 'queueid\r\n'); } continue; }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO' || verb === 'HELO') s.write('250-mail.lab\r\n250 8BITMIME\r\n');
      else if (verb === 'DATA') { data = true; s.write('354 go ahead\r\n'); }
      else if (verb === 'QUIT') s.end('221 bye\r\n');
      else s.write('250 ok\r\n');
    }
  });
  s.on('error', () => {});
}).listen(o.smtp, '0.0.0.0');
setInterval(() => {}, 1 << 30);
`;

/** tcpdump on a root-namespace interface (Lab.capture runs inside its namespaces only). */
async function captureRoot(t: { teardown(fn: () => unknown): void }, iface: string, file: string, filter: string): Promise<() => Promise<Buffer>> {
  const proc = spawn('tcpdump', ['-i', iface, '-w', file, '-U', '-s', '0', '-n', '--immediate-mode', '-Z', 'root', '-B', '16384', filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()));
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const deadline = Date.now() + 15_000;
  while (!/listening on/.test(stderr)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`tcpdump did not start: ${stderr}`);
    await sleep(50);
  }
  return async () => {
    await sleep(500);
    proc.kill('SIGINT');
    await exited;
    if (!/0 packets dropped by kernel/.test(stderr)) throw new Error(`tcpdump dropped packets, not a faithful record: ${stderr}`);
    return readFileSync(file);
  };
}

/** The capture's HTTP/2 as tshark decodes it (HPACK headers, DATA frames): no encoding can hide a marker there. */
async function http2Decoded(file: string, port: number): Promise<{ headers: string; data: Buffer }> {
  const run = async (...fields: string[]): Promise<string> => {
    const args = ['-n', '-r', file, '-d', `tcp.port==${port},http2`, '-T', 'fields', '-E', 'aggregator=|', '-E', 'separator=/t'];
    return (await promisify(execFile)('tshark', [...args, ...fields.flatMap((f) => ['-e', f])], { maxBuffer: 256 << 20, timeout: 60_000 })).stdout;
  };
  // One line per header: "name: value".
  const headers = (await run('http2.header.name', 'http2.header.value'))
    .split('\n')
    .flatMap((l) => {
      const [names = '', values = ''] = l.split('\t');
      const vs = values.split('|');
      return names ? names.split('|').map((n, i) => `${n}: ${vs[i] ?? ''}`) : [];
    })
    .join('\n');
  const data = Buffer.from((await run('http2.data.data')).replace(/[^0-9a-f]/gi, ''), 'hex');
  return { headers, data };
}

function hasTshark(): boolean {
  try {
    return statSync('/usr/bin/tshark').isFile();
  } catch {
    return false;
  }
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

t.test('no payload beyond handshake metadata leaves the node', { skip }, async (t) => {
  const lab = await Lab.open(t, 'privacy');
  const node = await LabNode.create(t, lab, 2);
  const [srv, cli] = node.pods as [NodePod, NodePod];
  const certs = await labCerts({ serverSans: [`DNS:sni-${TOKEN.slice(2, 8)}.lab`] });
  // Allowed to leave (handshake metadata), so it must not contain the token.
  const sni = `sni-${TOKEN.slice(2, 8)}.lab`;
  const ports = { http: 8080, https: 8443, smtp: 2525, pg: 5432, redis: 6379 };

  const dataDir = tempDir(t, 'ps-privacy-data-');
  const agg = await AggregatorProcess.start(t, ['--data-dir', dataDir]);
  const stopCapture = await captureRoot(t, 'lo', join(lab.dir, 'grpc.pcap'), `tcp port ${agg.grpcPort}`);
  const agent = await AgentProcess.start(t, fastArgs(node.glob, ['--aggregator', agg.address, '--node', `privacy-${TOKEN.slice(2, 6)}`]));
  await agent.waitLog((l) => l.msg === 'pod attached' && l.pod === srv.name, 15_000);
  await agent.waitLog((l) => l.msg === 'pod attached' && l.pod === cli.name, 15_000);

  // ---- traffic full of secrets ----
  const srvChild = lab.exec(srv.ns, ['node', '-e', SECRET_SERVER, JSON.stringify({ secret: TOKEN, http: ports.http, https: ports.https, smtp: ports.smtp, cert: certs.server.cert, key: certs.server.key })], {
    timeoutMs: 10 * 60_000,
    name: 'secret-server',
  });
  for (const p of [ports.http, ports.https, ports.smtp]) await lab.waitListen(srv.ns, p, { child: srvChild });
  // The pods' own wire: where the markers are, to show the search finds them.
  const podWire = await lab.capture(srv.ns, 'eth0', 'pods.pcap', { filter: 'tcp' });
  await startPostgres(lab, srv.ns, { host: srv.ip4, port: ports.pg, certs: certs.server });
  await startRedis(lab, srv.ns, { hosts: [srv.ip4], port: ports.redis });

  const httpOut = await curl(lab, cli.ns, [
    '-X', 'POST', `http://${srv.ip4}:${ports.http}/${secret('path')}/transfer?account=${secret('query')}`,
    '-H', `Host: ${secret('host')}.internal`,
    '-H', `Authorization: Bearer ${secret('bearer')}`,
    '-H', `Cookie: session=${secret('cookie')}`,
    '-H', `X-Api-Key: ${secret('apikey')}`,
    '--data-binary', `{"card":"${secret('body')}","cvv":"${secret('cvv')}"}`,
  ]);
  t.match(httpOut, secret('responsebody'), 'HTTP: the response body carried its marker');
  const httpsOut = await curl(lab, cli.ns, [
    '--cacert', certs.server.ca, '--resolve', `${sni}:${ports.https}:${srv.ip4}`,
    `https://${sni}:${ports.https}/${secret('tlspath')}?q=${secret('tlsquery')}`, '-H', `Authorization: Bearer ${secret('tlsbearer')}`,
  ]);
  t.match(httpsOut, secret('responsebody'), 'HTTPS: the response body carried its marker');
  const sql = await psql(lab, cli.ns, {
    host: srv.ip4, port: ports.pg, sslmode: 'disable',
    sql: `select '${secret('sqlvalue')}' as ${secret('sqlcolumn')} where '${secret('sqlpassword')}' <> ''`,
  });
  t.equal(sql, secret('sqlvalue'), 'SQL: the result carried its marker');
  t.equal(await redisCli(lab, cli.ns, { host: srv.ip4, port: ports.redis, args: ['SET', secret('rediskey'), secret('redisvalue')] }), 'OK');
  t.equal(await redisCli(lab, cli.ns, { host: srv.ip4, port: ports.redis, args: ['GET', secret('rediskey')] }), secret('redisvalue'));
  const mail = join(lab.dir, 'mail.txt');
  writeFileSync(mail, `From: ${secret('from')}@lab\r\nTo: ${secret('to')}@lab\r\nSubject: ${secret('subject')}\r\n\r\nwire ${secret('mailbody')} now\r\n`);
  await lab.run(cli.ns, ['curl', '-sS', '--max-time', '10', `smtp://${srv.ip4}:${ports.smtp}`, '--mail-from', `${secret('mailfrom')}@lab`, '--mail-rcpt', `${secret('rcpt')}@lab`, '-T', mail], {
    timeoutMs: 15_000,
    name: 'curl smtp',
  });

  await podWire.stop();
  t.ok(leaks(readFileSync(podWire.file)), "control: the search finds the markers on the pods' wire");

  // ---- the flows made it to the agent's output and the aggregator ----
  const atClient = (ls: FlowLine[], port: number): FlowLine | undefined => finals(ls, { pod: cli.name, port })[0];
  const lines = await agent.waitFlows((ls) => Object.values(ports).every((p) => atClient(ls, p)), 30_000, 'final lines for every server port');
  t.match(atClient(lines, ports.http), { verdict: 'plaintext', protocol: 'http/1.1', peerPod: srv.name }, 'HTTP seen');
  t.match(atClient(lines, ports.https), { verdict: 'tls', tls: { sni } }, 'HTTPS seen, with its SNI');
  t.match(atClient(lines, ports.pg), { verdict: 'plaintext', protocol: 'postgresql' }, 'PostgreSQL seen');
  t.match(atClient(lines, ports.redis), { verdict: 'plaintext' }, 'Redis seen');
  t.match(atClient(lines, ports.smtp), { verdict: 'plaintext' }, 'SMTP seen');
  for (const p of Object.values(ports)) t.comment(`port ${p}: ${JSON.stringify(atClient(lines, p))}`);

  let flows: FlowOut[] = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await runCli(['flows', '--aggregator', agg.address, '--json']);
    if (r.code !== 0) throw new Error(`flows --json failed: ${r.stderr}`);
    flows = (JSON.parse(r.stdout) as { flows: FlowOut[] }).flows;
    if (Object.values(ports).every((p) => flows.some((f) => f.server.port === p && f.ended))) break;
    if (Date.now() > deadline) break;
    await sleep(500);
  }
  const flowsJson = JSON.stringify(flows);
  t.ok(Object.values(ports).every((p) => flows.some((f) => f.server.port === p)), 'the aggregator has every flow');
  t.ok(flowsJson.includes(sni) && flowsJson.includes(srv.name), 'flows --json names the SNI and the pods');
  const coverage = await runCli(['coverage', '--aggregator', agg.address, '--json']);
  t.equal(coverage.code, 0, 'coverage --json');
  const agentMetrics = await agent.metrics();
  const aggMetrics = await agg.metrics();
  t.ok(metricSum(aggMetrics, 'plainsight_flows_total') >= 5, 'the aggregator counted the flows');
  t.match(agentMetrics, /plainsight_/, 'agent metrics read');

  // ---- stop everything, so logs, the ingest log and the capture are complete ----
  t.equal((await agent.stop()).code, 0, 'agent stopped cleanly');
  const pcap = await stopCapture();
  await agg.stop();
  const wal = filesUnder(dataDir).map((f) => ({ f, data: readFileSync(f) }));

  const outputs: [string, Buffer | string][] = [
    ['agent→aggregator gRPC capture', pcap],
    ['agent stdout (jsonl)', agent.stdout],
    ['agent stderr (logs)', agent.stderr],
    ['agent /metrics', agentMetrics],
    ['aggregator /metrics', aggMetrics],
    ['aggregator stdout+stderr (logs)', agg.stdout + agg.stderr],
    ['flows --json', flowsJson],
    ['coverage --json', coverage.stdout],
    ...wal.map(({ f, data }): [string, Buffer] => [`data dir ${f.slice(dataDir.length)}`, data]),
  ];
  if (hasTshark()) {
    const h2 = await http2Decoded(join(lab.dir, 'grpc.pcap'), agg.grpcPort);
    t.match(h2.headers, '/plainsight.v1.IngestService/Report', 'tshark decodes the agent\'s Report stream');
    t.match(h2.headers, /^content-type: application\/grpc/m, 'headers decoded');
    t.notMatch(h2.headers, /^grpc-encoding: (?!identity$)/m, 'no gRPC compression');
    t.ok(h2.data.includes(Buffer.from(sni)), 'the decoded DATA frames hold the SNI');
    outputs.push(['gRPC HTTP/2 headers (HPACK-decoded by tshark)', h2.headers], ['gRPC DATA frames (tshark)', h2.data]);
  } else {
    t.comment('tshark not installed: HTTP/2 not decoded (the raw capture is searched all the same)');
  }
  t.ok(wal.length > 0 && wal.some(({ data }) => data.length > 0), `the data dir has an ingest log (${wal.map(({ f, data }) => `${f.slice(dataDir.length)}: ${data.length} B`).join(', ')})`);
  // Positive controls: the flows really are in what we search (uncompressed, readable).
  t.ok(pcap.includes(Buffer.from(sni)) && pcap.includes(Buffer.from(srv.name)), 'the capture holds the SNI and pod names in clear: gRPC bodies are readable');
  t.ok(wal.some(({ data }) => data.includes(Buffer.from(sni))), 'the ingest log holds the SNI in clear');
  t.ok(agent.stdout.includes(sni), 'the jsonl holds the SNI');
  t.comment(`searched ${outputs.length} outputs, ${outputs.reduce((a, [, d]) => a + d.length, 0)} bytes (capture: ${pcap.length} B), for ${TOKEN} raw, hex and base64`);
  for (const [what, data] of outputs) t.notOk(leaks(data), `no payload in ${what}${leaks(data) ? `: ${leakContext(data)}` : ''}`);
});
