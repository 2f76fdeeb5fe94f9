// One workload (HTTP, TLS 1.3, mTLS 1.2, DNS; over IPv4 and IPv6), captured at the same
// time in every way a user might: Ethernet on a veth (µs and ns pcap, server and client
// side), Linux cooked v1/v2 on `any`, pcapng from dumpcap and from editcap. Every file
// must give the same verdicts; several files at once must tag each flow with its file.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { labCerts } from '../lab/certs.js';
import { canonicalIp6, Lab, labSkipReason } from '../lab/lab.js';
import { peerClient, peerServer, serverTls } from '../lab/peers.js';
import { classifyOrFail, describe, type ClassifyJson, type FlowJson } from '../lab/plainsight.js';
import { conversations } from '../lab/tshark.js';

const execFileP = promisify(execFile);
const skip = labSkipReason();

/** What must not depend on how the traffic was captured. */
function essence(f: FlowJson): string {
  return JSON.stringify({
    verdict: f.verdict, protocol: f.protocol, upgradedFrom: f.upgradedFrom ?? null, mesh: f.mesh,
    tls: f.tls ? { version: f.tls.version, sni: f.tls.sni, alpn: f.tls.alpn, cipher: f.tls.cipher, ja4: f.tls.ja4, cc: f.tls.clientCertificate } : null,
    bytes: f.bytes,
  });
}

function flowKey(f: FlowJson): string {
  const ip = f.client.ip.includes(':') ? canonicalIp6(f.client.ip) : f.client.ip;
  return `${f.transport} ${ip}:${f.client.port} → ${f.server.port}`;
}

/** Lab flows only (TCP/UDP between the two endpoints), keyed. */
function labFlows(out: ClassifyJson, ports: number[]): Map<string, FlowJson> {
  return new Map(out.flows.filter((f) => ports.includes(f.server.port)).map((f) => [flowKey(f), f]));
}

t.test('same verdicts from every link type and file format', { skip }, async (t) => {
  const lab = await Lab.open(t, 'formats');
  const { client, server } = await lab.pair();
  const certs = await labCerts();

  const caps = {
    ethernet: await lab.capture(server.ns, server.ifname, 'ethernet.pcap'),
    nanoClientSide: await lab.capture(client.ns, client.ifname, 'client-nano.pcap', { nano: true }),
    sll2: await lab.capture(server.ns, 'any', 'any-sll2.pcap', { linkType: 'LINUX_SLL2' }),
    sll: await lab.capture(server.ns, 'any', 'any-sll.pcap', { linkType: 'LINUX_SLL' }),
    dumpcap: await lab.capture(server.ns, server.ifname, 'dumpcap.pcapng', { tool: 'dumpcap' }),
  };

  await peerServer(lab, server.ns, 'http-server', { port: 8080, responseBytes: 5000 });
  await peerServer(lab, server.ns, 'tls-server', { port: 8443, ...serverTls(certs.server), alpn: ['h2'], minVersion: 'TLSv1.3' });
  await peerServer(lab, server.ns, 'tls-server', { port: 8450, ...serverTls(certs.server), requestCert: true, rejectUnauthorized: true, maxVersion: 'TLSv1.2' });
  await peerServer(lab, server.ns, 'dns-server', { port: 53, host: server.ip4 });
  const results: Record<string, number> = {};
  for (const [fam, host] of [['v4', server.ip4], ['v6', server.ip6]] as const) {
    const tlsBase = { host, ca: certs.server.ca, servername: 'server.lab' };
    results[`http-${fam}`] = (await peerClient(lab, client.ns, 'http-client', { host, port: 8080, bodyBytes: 3000 }))[0]?.localPort ?? 0;
    results[`tls-${fam}`] = (await peerClient(lab, client.ns, 'tls-client', { ...tlsBase, port: 8443, alpn: ['h2'] }))[0]?.localPort ?? 0;
    results[`mtls-${fam}`] = (await peerClient(lab, client.ns, 'tls-client', { ...tlsBase, port: 8450, cert: certs.client.cert, key: certs.client.key }))[0]?.localPort ?? 0;
  }
  await peerClient(lab, client.ns, 'dns-client', { server: server.ip4 });
  for (const [name, c] of Object.entries(caps)) {
    const st = await c.stop();
    t.equal(st.droppedByKernel + st.droppedByInterface, 0, `(${name}: the capture dropped nothing)`, { stats: st });
  }

  const files: Record<string, string> = Object.fromEntries(Object.entries(caps).map(([k, c]) => [k, c.file]));
  files.editcapPcapng = lab.path('editcap.pcapng');
  await execFileP('editcap', ['-F', 'pcapng', files.ethernet!, files.editcapPcapng]);

  // The captures themselves: right encapsulation and format, same conversations.
  const expectEncap: Record<string, RegExp> = {
    ethernet: /Ethernet/, nanoClientSide: /Ethernet/, sll2: /cooked-mode capture v2/, sll: /cooked-mode capture(?! v2)/, dumpcap: /Ethernet/, editcapPcapng: /Ethernet/,
  };
  const expectType: Record<string, RegExp> = {
    ethernet: /microsecond pcap|- pcap/, nanoClientSide: /nanosecond pcap/, sll2: /pcap/, sll: /pcap/, dumpcap: /pcapng/, editcapPcapng: /pcapng/,
  };
  const ports = [8080, 8443, 8450, 53];
  const baseConvs = (await conversations(files.ethernet!)).filter((c) => ports.includes(c.server.port));
  t.equal(baseConvs.length, 7, '(7 lab conversations: 3 per address family + DNS)');
  for (const [name, file] of Object.entries(files)) {
    const { stdout } = await execFileP('capinfos', ['-t', '-E', file]);
    t.match(stdout, expectEncap[name]!, `(${name}: encapsulation)`);
    t.match(stdout, expectType[name]!, `(${name}: file type)`);
    const convs = (await conversations(file)).filter((c) => ports.includes(c.server.port));
    t.same(convs.map((c) => c.bytes), baseConvs.map((c) => c.bytes), `(${name}: tshark sees the same conversations and bytes)`);
  }

  const outs: Record<string, ClassifyJson> = {};
  for (const [name, file] of Object.entries(files)) {
    const out = await classifyOrFail(t, [file]);
    if (!out) return;
    outs[name] = out;
  }
  const base = labFlows(outs.ethernet!, ports);

  t.test('expected verdicts (Ethernet, IPv4 and IPv6)', async (t) => {
    const c6 = canonicalIp6(client.ip6);
    for (const [fam, ip] of [['v4', client.ip4], ['v6', c6]] as const) {
      const get = (what: string, port: number) => base.get(`tcp ${ip}:${results[`${what}-${fam}`]} → ${port}`);
      const http = get('http', 8080);
      const tls = get('tls', 8443);
      const mtls = get('mtls', 8450);
      t.match(http, { verdict: 'plaintext', protocol: 'http/1.1' }, `${fam} http: ${describe(http)}`);
      t.match(tls, { verdict: 'tls', tls: { version: '1.3', sni: 'server.lab', alpn: ['h2'], clientCertificate: 'none' } }, `${fam} tls: ${describe(tls)}`);
      t.match(mtls, { verdict: 'mtls', tls: { version: '1.2', clientCertificate: 'observed' } }, `${fam} mtls: ${describe(mtls)}`);
    }
    const v6 = [...base.values()].filter((f) => f.client.ip.includes(':'));
    t.equal(v6.length, 3, 'three IPv6 flows');
    for (const f of v6) {
      t.equal(f.client.ip, c6, `IPv6 client address in RFC 5952 form (${f.client.ip})`);
      t.equal(f.server.ip, canonicalIp6(server.ip6), `IPv6 server address in RFC 5952 form (${f.server.ip})`);
    }
    const dns = [...base.values()].find((f) => f.transport === 'udp');
    t.match(dns, { verdict: 'plaintext', protocol: 'dns' }, `dns: ${describe(dns)}`);
  });

  for (const name of Object.keys(files).filter((n) => n !== 'ethernet')) {
    t.test(`${name} gives the same flows and verdicts as Ethernet pcap`, async (t) => {
      const got = labFlows(outs[name]!, ports);
      t.same([...got.keys()].sort(), [...base.keys()].sort(), 'same flows');
      for (const [k, f] of base) t.equal(got.get(k) && essence(got.get(k)!), essence(f), k);
    });
  }

  t.test('several files: every flow carries "file", as given', async (t) => {
    const a = files.ethernet!;
    const b = files.sll2!;
    const out = await classifyOrFail(t, [a, b]);
    if (!out) return;
    t.equal(out.flows.length, outs.ethernet!.flows.length + outs.sll2!.flows.length, 'flows of both files');
    t.ok(out.flows.every((f) => f.file === a || f.file === b), 'each flow has file = one of the paths given', { files: [...new Set(out.flows.map((f) => f.file))] });
    t.equal(out.flows.filter((f) => f.file === a).length, outs.ethernet!.flows.length, `flows from ${a}`);
    t.equal(out.flows.filter((f) => f.file === b).length, outs.sll2!.flows.length, `flows from ${b}`);
    t.equal(out.summary.flows, out.flows.length, 'summary covers both');
  });
});
