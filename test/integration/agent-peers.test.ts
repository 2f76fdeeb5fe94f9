// The real agent (`plainsight agent --mode local --output jsonl`) between real software
// peers — openssl s_server/s_client, nginx (ssl_verify_client on) with curl, PostgreSQL with
// psql — and a node TLS client whose ClientHello is bigger than one kernel sample (512 B).
// Per connection: the verdict and TLS details the agent printed, and byte counters that are
// non-zero and the same at the client pod's veth and the server pod's veth (exact where
// the peer reports its socket's bytes). Needs root and eBPF; skips with the reason otherwise.

import t from 'tap';
import { labCerts } from '../lab/certs.js';
import { Lab } from '../lab/lab.js';
import { curl, opensslClient, opensslServer, psql, startNginx, startPostgres } from '../lab/peers.js';
import { cliMissingReason } from '../lab/plainsight.js';
import { AgentProcess, LabNode, bpfSkipReason, client, fastArgs, finals, server, type FlowLine } from '../lab/agent-lab.js';

const skip = bpfSkipReason() ?? cliMissingReason();

function show(l: FlowLine | undefined): string {
  if (!l) return '(none)';
  const { pod, peerPod, client: c, server: s, verdict, protocol, upgradedFrom, tls, bytes, evidence } = l;
  return JSON.stringify({ pod, peerPod, c, s, verdict, protocol, upgradedFrom, tls, bytes, evidence });
}

t.test('agent --mode local with real peers', { skip }, async (t) => {
  const lab = await Lab.open(t, 'agpeers');
  const node = await LabNode.create(t, lab, 2);
  const [srv, cli] = node.pods as [typeof node.pods[0], typeof node.pods[0]];
  const certs = await labCerts({ serverSans: ['DNS:server.lab'] });
  const ca = certs.server.ca;
  const top = t; // agents live as long as the whole test, not one subtest
  let agent = await AgentProcess.start(top, fastArgs(node.glob, ['--sample-bytes', '512']));

  /** The one final line of the connection to `port` at each pod; both ends counted the same, non-zero. */
  const bothEnds = async (port: number, clientPort?: number): Promise<FlowLine> => {
    const sel = (pod: string) => ({ pod, port, clientPort });
    const lines = await agent.waitFlows((ls) => finals(ls, sel(cli.name)).length > 0 && finals(ls, sel(srv.name)).length > 0, 20_000, `final lines for port ${port}`);
    const [c, ...cMore] = finals(lines, sel(cli.name));
    const [s, ...sMore] = finals(lines, sel(srv.name));
    t.equal(cMore.length + sMore.length, 0, `one connection to ${port}, one final line per pod`);
    t.equal(c!.peerPod, srv.name);
    t.equal(s!.peerPod, cli.name);
    t.same(c!.bytes, s!.bytes, 'both ends counted the same bytes');
    t.ok(c!.bytes.toServer > 0 && c!.bytes.toClient > 0, `bytes both ways: ${c!.bytes.toServer}/${c!.bytes.toClient}`);
    t.equal(c!.countersComplete, true);
    return c!;
  };

  await t.test('ClientHello cut at --sample-bytes 512: SNI and ALPN from the captured part, no JA4', async (t) => {
    // Long ALPN names push node's ClientHello over 512 bytes in one segment; the kernel
    // copies the first 512 (--sample-bytes), so the agent sees a cut hello.
    const alpn = ['h2', 'http/1.1', ...Array.from({ length: 6 }, (_, i) => `plainsight-long-protocol-name-${i}`)];
    await server(lab, srv.ns, 'tls-server', { port: 8443, cert: certs.server.cert, key: certs.server.key, ca, alpn: ['h2'] });
    const [r] = await client(lab, cli.ns, 'tls-client', { host: srv.ip4, port: 8443, servername: 'server.lab', alpn, ca });
    t.match(r, { protocol: 'TLSv1.3', alpn: 'h2' }, '(the handshake happened as asked)');
    const f = await bothEnds(8443, r!.localPort);
    t.match(f, { verdict: 'tls', protocol: 'tls', tls: { version: '1.3', sni: 'server.lab', alpn, cipher: r!.cipher } }, show(f));
    t.equal(f.tls?.ja4, undefined, 'no JA4 from a truncated hello');
    t.match(f.evidence, /truncated/, 'the evidence says the hello was cut');
    t.same(f.bytes, { toServer: r!.bytesWritten, toClient: r!.bytesRead }, 'bytes = raw socket bytes');

    // The same hello with the default sample size (4096): complete, so JA4 too.
    t.same(await agent.stop('SIGTERM'), { code: 0, signal: null });
    agent = await AgentProcess.start(top, fastArgs(node.glob));
    const [r2] = await client(lab, cli.ns, 'tls-client', { host: srv.ip4, port: 8443, servername: 'server.lab', alpn, ca });
    const f2 = await bothEnds(8443, r2!.localPort);
    t.match(f2, { verdict: 'tls', tls: { version: '1.3', sni: 'server.lab', alpn, clientCertificate: 'none' } }, show(f2));
    t.ok(f2.tls?.ja4?.startsWith('t13d'), `ja4 ${f2.tls?.ja4}`);
    t.same(f2.bytes, { toServer: r2!.bytesWritten, toClient: r2!.bytesRead });
  });

  await t.test('openssl s_server/s_client TLS 1.3 with a client certificate: mtls inferred', async (t) => {
    await opensslServer(lab, srv.ns, { host: srv.ip4, port: 9450, certs: certs.server, version: '1.3', clientAuth: 'require' });
    const out = await opensslClient(lab, cli.ns, { host: srv.ip4, port: 9450, servername: 'server.lab', ca, version: '1.3', cert: certs.client, send: 'hello\n' });
    t.match(out, /New, TLSv1\.3,/, '(s_client negotiated TLS 1.3)');
    const f = await bothEnds(9450);
    t.match(f, { verdict: 'mtls', protocol: 'tls', tls: { version: '1.3', sni: 'server.lab', clientCertificate: 'inferred' } }, show(f));
  });

  await t.test('openssl s_server/s_client TLS 1.2 without a client certificate: tls, none', async (t) => {
    await opensslServer(lab, srv.ns, { host: srv.ip4, port: 9451, certs: certs.server, version: '1.2', clientAuth: 'none' });
    const out = await opensslClient(lab, cli.ns, { host: srv.ip4, port: 9451, servername: 'server.lab', ca, version: '1.2', send: 'hello\n' });
    t.match(out, /New, TLSv1\.2,/, '(s_client negotiated TLS 1.2)');
    const f = await bothEnds(9451);
    t.match(f, { verdict: 'tls', protocol: 'tls', tls: { version: '1.2', sni: 'server.lab', clientCertificate: 'none' } }, show(f));
  });

  await t.test('nginx ssl_verify_client on + curl with a client certificate', async (t) => {
    await startNginx(lab, srv.ns, { listen: [srv.ip4], port: 8460, certs: certs.server, verifyClient: true });
    const args = ['--cacert', ca, '--cert', certs.client.cert, '--key', certs.client.key, '--resolve', `server.lab:8460:${srv.ip4}`, '-w', '\n%{local_port} %{ssl_verify_result}', 'https://server.lab:8460/'];
    const run = async (extra: string[]) => {
      const lines = (await curl(lab, cli.ns, [...extra, ...args])).trim().split('\n');
      return { body: lines[0], localPort: Number(lines.at(-1)!.split(' ')[0]) };
    };
    // curl + nginx on OpenSSL 3 negotiate TLS 1.3 by default: the client Certificate is
    // encrypted, so the agent infers it from the client's second flight.
    const c13 = await run([]);
    t.equal(c13.body, 'ok', '(nginx answered: it verified the client certificate)');
    const f13 = await bothEnds(8460, c13.localPort);
    t.match(f13, { verdict: 'mtls', protocol: 'tls', tls: { version: '1.3', sni: 'server.lab', clientCertificate: 'inferred' } }, show(f13));
    // Capped at TLS 1.2: the client Certificate message is in the clear.
    const c12 = await run(['--tlsv1.2', '--tls-max', '1.2']);
    t.equal(c12.body, 'ok');
    const f12 = await bothEnds(8460, c12.localPort);
    t.match(f12, { verdict: 'mtls', protocol: 'tls', tls: { version: '1.2', sni: 'server.lab', clientCertificate: 'observed' } }, show(f12));
  });

  await t.test('PostgreSQL: psql sslmode=require → tls upgraded from postgresql; sslmode=disable → plaintext', async (t) => {
    await startPostgres(lab, srv.ns, { host: srv.ip4, port: 5432, certs: certs.server });
    t.equal(await psql(lab, cli.ns, { host: srv.ip4, port: 5432, sslmode: 'require', sql: "select 'tls:' || ssl from pg_stat_ssl where pid = pg_backend_pid()" }), 'tls:true');
    const tlsFlow = await bothEnds(5432);
    t.match(tlsFlow, { verdict: 'tls', protocol: 'tls', upgradedFrom: 'postgresql' }, show(tlsFlow));
    t.equal(await psql(lab, cli.ns, { host: srv.ip4, port: 5432, sslmode: 'disable', sql: "select 'plain:' || ssl from pg_stat_ssl where pid = pg_backend_pid()" }), 'plain:false');
    const lines = await agent.waitFlows((ls) => finals(ls, { pod: cli.name, port: 5432 }).length >= 2 && finals(ls, { pod: srv.name, port: 5432 }).length >= 2, 20_000, 'second postgres flow');
    const second = (pod: string) => finals(lines, { pod, port: 5432 }).find((l) => l.client.port !== tlsFlow.client.port);
    const c = second(cli.name);
    const s = second(srv.name);
    t.match(c, { verdict: 'plaintext', protocol: 'postgresql', peerPod: srv.name }, show(c));
    t.same(c?.bytes, s?.bytes, 'both ends counted the same bytes');
    t.ok((c?.bytes.toServer ?? 0) > 0 && (c?.bytes.toClient ?? 0) > 0);
  });

  await t.test('clean stop', async (t) => {
    t.match(await agent.metrics(), /^plainsight_agent_lost_samples_total 0$/m, 'no sample lost');
    t.same(await agent.stop('SIGTERM'), { code: 0, signal: null });
  });
});
