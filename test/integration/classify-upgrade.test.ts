// Connections that start in plaintext and upgrade to TLS: PostgreSQL SSLRequest (real
// postgres + psql; and the same server with sslmode=disable as the plaintext control),
// SMTP STARTTLS (openssl s_client -starttls smtp, and a node client), and HTTP CONNECT
// through a proxy (curl -x).

import t from 'tap';
import { labCerts } from '../lab/certs.js';
import { Lab, labSkipReason } from '../lab/lab.js';
import { connEvents, curl, opensslClient, peerClient, peerServer, psql, serverTls, startPostgres } from '../lab/peers.js';
import { classifyOrFail, describe, oneFlow } from '../lab/plainsight.js';
import { conversations } from '../lab/tshark.js';

const skip = labSkipReason();

t.test('plaintext starts that upgrade to TLS', { skip }, async (t) => {
  const lab = await Lab.open(t, 'upgrade');
  const { client, server } = await lab.pair();
  const certs = await labCerts();
  const host = server.ip4;
  const ca = certs.server.ca;
  const cap = await lab.capture(server.ns, server.ifname, 'upgrade.pcap');

  // PostgreSQL 15, ssl=on: psql sslmode=require (SSLRequest, 'S', TLS) then sslmode=disable.
  await startPostgres(lab, server.ns, { host, port: 5432, certs: certs.server });
  const pgTls = await psql(lab, client.ns, { host, port: 5432, sslmode: 'require', sql: "select 'tls:' || ssl from pg_stat_ssl where pid = pg_backend_pid()" });
  const pgPlain = await psql(lab, client.ns, { host, port: 5432, sslmode: 'disable', sql: "select 'plain:' || ssl from pg_stat_ssl where pid = pg_backend_pid()" });

  // SMTP STARTTLS on 25 (openssl s_client) and 587 (node client).
  const smtpOpts = { ...serverTls(certs.server) };
  await peerServer(lab, server.ns, 'smtp-server', { port: 25, ...smtpOpts });
  await opensslClient(lab, client.ns, { host, port: 25, servername: 'server.lab', ca, version: '1.3', starttls: 'smtp' });
  const smtp587 = await peerServer(lab, server.ns, 'smtp-server', { port: 587, ...smtpOpts });
  const [nodeSmtp] = await peerClient(lab, client.ns, 'smtp-client', { host, port: 587, ca, servername: 'server.lab' });

  // HTTP CONNECT: curl → proxy (server ns, 3128) → https server (same ns, over lo).
  await peerServer(lab, server.ns, 'https-server', { port: 8443, ...serverTls(certs.server) });
  const proxy = await peerServer(lab, server.ns, 'connect-proxy', { port: 3128 });
  const viaProxy = await curl(lab, client.ns, ['--proxy', `http://${host}:3128`, '--cacert', ca, '--tlsv1.3', 'https://localhost:8443/']);

  await cap.stop();

  t.equal(pgTls, 'tls:true', '(psql sslmode=require: the server reports an SSL connection)');
  t.equal(pgPlain, 'plain:false', '(psql sslmode=disable: no SSL)');
  t.ok(nodeSmtp, '(node SMTP client upgraded and quit)');
  t.ok(connEvents(smtp587).some((e) => e.tls === true), '(smtp server saw TLS)');
  t.equal(viaProxy.trim(), 'ok', '(curl got through the CONNECT proxy)');
  t.match(connEvents(proxy)[0], { target: 'localhost:8443' }, '(proxy saw CONNECT localhost:8443)');

  const out = await classifyOrFail(t, [cap.file]);
  if (!out) return;

  const pgFlows = out.flows.filter((f) => f.transport === 'tcp' && f.server.port === 5432);
  // The two psql runs were sequential: tshark's stream order says which flow is which.
  const order = (await conversations(cap.file)).filter((c) => c.server.port === 5432).map((c) => c.client.port);
  t.equal(order.length, 2, '(two postgres connections in the capture)');

  t.test('PostgreSQL sslmode=require → tls, upgradedFrom postgresql', async (t) => {
    const f = pgFlows.find((x) => x.client.port === order[0]);
    t.ok(f, 'flow found');
    if (f) t.match(f, { verdict: 'tls', upgradedFrom: 'postgresql', tls: { version: '1.3' }, mesh: 'none' }, describe(f));
  });

  t.test('PostgreSQL sslmode=disable → plaintext postgresql', async (t) => {
    const f = pgFlows.find((x) => x.client.port === order[1]);
    t.ok(f, 'flow found');
    if (!f) return;
    t.match(f, { verdict: 'plaintext', protocol: 'postgresql' }, describe(f));
    t.notOk(f.upgradedFrom, 'no upgrade');
    t.notOk(f.tls?.version, 'no TLS details');
  });

  t.test('SMTP STARTTLS (openssl s_client -starttls smtp) → tls, upgradedFrom smtp', async (t) => {
    const f = oneFlow(t, out, { serverPort: 25 }, 'smtp/25');
    if (f) t.match(f, { verdict: 'tls', upgradedFrom: 'smtp', tls: { version: '1.3', sni: 'server.lab' } }, describe(f));
  });

  t.test('SMTP STARTTLS (node client, submission port) → tls, upgradedFrom smtp', async (t) => {
    const f = oneFlow(t, out, { serverPort: 587 }, 'smtp/587');
    if (f) t.match(f, { verdict: 'tls', upgradedFrom: 'smtp', tls: { sni: 'server.lab' } }, describe(f));
  });

  t.test('HTTP CONNECT then TLS → tls, upgradedFrom http-connect', async (t) => {
    const f = oneFlow(t, out, { serverPort: 3128 }, 'connect');
    if (f) t.match(f, { verdict: 'tls', upgradedFrom: 'http-connect', tls: { version: '1.3', sni: 'localhost' } }, describe(f));
  });
});
