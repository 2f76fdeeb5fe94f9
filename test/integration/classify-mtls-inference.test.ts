// How well does the classifier infer a TLS 1.3 client certificate (encrypted on the wire)?
// A batch of real connections per stack — with a client certificate (EC and RSA keys),
// with a certificate requested but none sent, with none requested, and each of those also
// with an eager client that sends application data right after its Finished — one
// capture, one classify, every answer checked. The accuracy is printed as a comment.

import t from 'tap';
import { labCert, labCerts, type CertFiles } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { opensslClient, opensslServer, peerClient, peerServer, serverTls } from '../lab/peers.js';
import { classifyOrFail, describe } from '../lab/plainsight.js';
import { conversations } from '../lab/tshark.js';

const skip = labSkipReason();
const N = 10; // per stack: N with a client certificate, N without
const EAGER = 1500; // bytes of application data an eager client sends at once

interface Case {
  stack: 'node' | 'openssl';
  kind: string;
  withCert: boolean;
  serverPort: number;
  clientPort: number;
}

t.test(`TLS 1.3 client-certificate inference, ${N}+${N} connections per stack (+ eager clients)`, { skip }, async (t) => {
  const lab = await Lab.open(t, 'infer');
  const { client, server } = await lab.pair();
  const certs = await labCerts();
  const rsa = await labCert({ cn: 'rsa-client.lab', usage: 'client', keyType: 'rsa', sans: ['URI:spiffe://cluster.local/ns/default/sa/rsa'] });
  const host = server.ip4;
  const ca = certs.server.ca;
  const cap = await lab.capture(server.ns, server.ifname, 'infer.pcap');
  const cases: Case[] = [];

  // node:tls. 8470 requests a certificate but lets clients without one in; 8471 does not ask.
  await peerServer(lab, server.ns, 'tls-server', { port: 8470, ...serverTls(certs.server), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
  await peerServer(lab, server.ns, 'tls-server', { port: 8471, ...serverTls(certs.server), minVersion: 'TLSv1.3' });
  const nodeRuns: Array<[string, boolean, number, Record<string, unknown>]> = [
    ['client cert (EC)', true, 8470, { cert: certs.client.cert, key: certs.client.key }],
    ['client cert (RSA)', true, 8470, { cert: rsa.cert, key: rsa.key }],
    ['requested, none sent', false, 8470, {}],
    ['not requested', false, 8471, {}],
    ['client cert (EC), eager', true, 8470, { cert: certs.client.cert, key: certs.client.key, firstWrite: EAGER }],
    ['requested, none sent, eager', false, 8470, { firstWrite: EAGER }],
    ['not requested, eager', false, 8471, { firstWrite: EAGER }],
  ];
  for (const [kind, withCert, port, extra] of nodeRuns) {
    const count = kind.endsWith('eager') ? 3 : N / 2;
    const rs = await peerClient(lab, client.ns, 'tls-client', { host, port, ca, servername: 'server.lab', count, ...extra });
    for (const r of rs) cases.push({ stack: 'node', kind, withCert, serverPort: port, clientPort: r.localPort });
  }

  // openssl s_server -verify 1 (requests, does not require) on 9470, no request on 9471.
  await opensslServer(lab, server.ns, { host, port: 9470, certs: certs.server, version: '1.3', clientAuth: 'request' });
  await opensslServer(lab, server.ns, { host, port: 9471, certs: certs.server, version: '1.3', clientAuth: 'none' });
  const eager = `GET / HTTP/1.1\r\nHost: server.lab\r\nX-Pad: ${'p'.repeat(EAGER)}\r\n\r\n`;
  const sslRuns: Array<[string, boolean, number, CertFiles | undefined, string | undefined]> = [];
  for (let i = 0; i < N; i++) sslRuns.push(i % 2 ? ['client cert (RSA)', true, 9470, rsa, undefined] : ['client cert (EC)', true, 9470, certs.client, undefined]);
  for (let i = 0; i < N; i++) sslRuns.push(i % 2 ? ['not requested', false, 9471, undefined, undefined] : ['requested, none sent', false, 9470, undefined, undefined]);
  for (let i = 0; i < 3; i++) {
    sslRuns.push(['client cert (EC), eager', true, 9470, certs.client, eager]);
    sslRuns.push(['requested, none sent, eager', false, 9470, undefined, eager]);
    sslRuns.push(['not requested, eager', false, 9471, undefined, eager]);
  }
  for (const [kind, withCert, port, cert, send] of sslRuns) {
    await opensslClient(lab, client.ns, { host, port, servername: 'server.lab', ca, version: '1.3', cert, send });
    cases.push({ stack: 'openssl', kind, withCert, serverPort: port, clientPort: -1 });
  }
  await cap.stop();

  // s_client does not print its port; the runs were sequential, so the n-th s_client
  // connection in the capture (tshark's stream order) is the n-th run.
  const sslConvs = (await conversations(cap.file)).filter((c) => c.transport === 'tcp' && (c.server.port === 9470 || c.server.port === 9471));
  const sslCases = cases.filter((c) => c.stack === 'openssl');
  t.same(sslConvs.map((c) => c.server.port), sslCases.map((c) => c.serverPort), '(one connection per s_client run, in order)');
  sslCases.forEach((c, i) => (c.clientPort = sslConvs[i]?.client.port ?? -1));
  const allConvs = await conversations(cap.file);
  const eagerSent = cases.filter((c) => c.kind.endsWith('eager')).map((c) => allConvs.find((x) => x.client.port === c.clientPort)?.bytes.toServer ?? 0);
  t.ok(eagerSent.every((b) => b > EAGER), '(eager clients did send their application data)', { eagerSent });

  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;

  const tally = new Map<string, { right: number; total: number; wrong: string[] }>();
  let right = 0;
  let total = 0;
  for (const c of cases) {
    const f = out.flows.find((x) => x.transport === 'tcp' && x.client.port === c.clientPort && x.server.port === c.serverPort);
    const want = c.withCert ? { verdict: 'mtls', cc: 'inferred' } : { verdict: 'tls', cc: 'none' };
    const ok = f?.verdict === want.verdict && f.tls?.clientCertificate === want.cc && f.tls?.version === '1.3';
    const k = `${c.stack} / ${c.kind}`;
    const e = tally.get(k) ?? { right: 0, total: 0, wrong: [] };
    e.total++;
    if (ok) e.right++;
    else e.wrong.push(`port ${c.clientPort}: got ${f ? `${f.verdict}/${f.tls?.clientCertificate}` : 'no flow'}`);
    tally.set(k, e);
    if (!c.kind.endsWith('eager')) {
      right += ok ? 1 : 0;
      total++;
    }
    t.ok(ok, `${k} → ${want.verdict}/${want.cc}`, { flow: describe(f) });
  }
  for (const [k, e] of tally) t.comment(`${k.padEnd(40)} ${e.right}/${e.total}${e.wrong.length ? `  wrong: ${e.wrong.slice(0, 3).join('; ')}` : ''}`);
  t.comment(`TLS 1.3 client-certificate inference accuracy (${N}+${N} per stack): ${right}/${total} = ${((100 * right) / Math.max(total, 1)).toFixed(1)}%`);
});
