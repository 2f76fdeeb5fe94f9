// findUpgrade on real upgrades: `openssl s_client -starttls …`, psql and curl as clients;
// small fake servers that speak the plaintext part and then hand the socket to node's TLS
// server, all recorded by a relay. Hand-made bytes for refusals and edge cases.

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import t, { type Test } from 'tap';
import { detectPlaintextTcp } from '../../agent/src/classify/plaintext.js';
import { findUpgrade, type Upgrade } from '../../agent/src/classify/upgrade.js';
import { bytes, have, lines, listen, mysqlGreeting, run, selfSigned, startTls, tcpRelay, text, type Recording } from '../lab/wire-lab.js';

const cert = selfSigned();
t.teardown(cert.cleanup);
const EMPTY = new Uint8Array(0);

async function capture(server: net.Server, drive: (port: number) => Promise<unknown>): Promise<Recording> {
  const port = await listen(server);
  const relay = await tcpRelay(port);
  try {
    await drive(relay.port);
    const [rec] = await relay.settled(1, 5000);
    if (!rec) throw new Error('no connection recorded');
    return rec;
  } finally {
    await relay.close();
    server.close();
  }
}

const isTlsAt = (b: Uint8Array, off: number): boolean => b[off] === 0x16 && b[off + 1] === 0x03;

/** An upgrade whose offsets land on TLS records in both directions. */
function checkUpgrade(t: Tap, rec: Recording, from: string, evidence?: RegExp): Upgrade | null {
  const u = findUpgrade(rec.client, rec.server, 40000, 40001);
  if (!u || 'refused' in u) {
    t.fail(`expected an upgrade from ${from}, got ${JSON.stringify(u)}`);
    return null;
  }
  t.equal(u.from, from, `from ${from} (${u.evidence})`);
  t.ok(isTlsAt(rec.client, u.clientOffset), 'client offset starts a TLS record');
  t.ok(isTlsAt(rec.server, u.serverOffset), 'server offset starts a TLS record');
  if (evidence) t.match(u.evidence, evidence);
  // the plaintext detector does not call a completed upgrade plaintext-only by mistake… it may name the
  // start (e.g. smtp), which the composition only uses when the upgrade fails; it must never throw
  detectPlaintextTcp(rec.client, rec.server, 40000, 40001);
  return u;
}
type Tap = Test;

/** A fake line server that answers `answer(line)`; 'TLS' as an answer writes `tlsReply` then starts TLS. */
function lineServer(banner: string | Uint8Array, answer: (line: string) => string | undefined, tlsReply: string): net.Server {
  return net.createServer((s) => {
    s.on('error', () => {});
    if (banner.length) s.write(banner);
    lines(s, (l) => {
      const a = answer(l);
      if (a === 'TLS') {
        s.write(tlsReply);
        startTls(s, cert);
        return 'stop';
      }
      if (a === undefined) {
        s.end();
        return 'stop';
      }
      s.write(a);
    });
  });
}

const opensslStarttls = (proto: string) => (port: number) =>
  run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-starttls', proto, '-servername', 'localhost'], 8000);

t.test('STARTTLS family with openssl s_client', { skip: have('openssl') ? false : 'openssl not installed' }, async (t) => {
  const smtp = await capture(
    lineServer('220 mx.example ESMTP\r\n', (l) => (/^EHLO/i.test(l) ? '250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n' : l === 'STARTTLS' ? 'TLS' : undefined), '220 2.0.0 Ready to start TLS\r\n'),
    opensslStarttls('smtp'),
  );
  checkUpgrade(t, smtp, 'smtp', /STARTTLS answered 220/);

  const imap = await capture(
    lineServer('* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n', (l) => {
      const [tag, cmd] = l.split(' ');
      if (cmd === 'CAPABILITY') return `* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n${tag} OK done\r\n`;
      if (cmd === 'STARTTLS') return 'TLS';
      return undefined;
    }, '. OK Begin TLS negotiation now\r\n'),
    opensslStarttls('imap'),
  );
  checkUpgrade(t, imap, 'imap', /STARTTLS answered OK/);

  const pop3 = await capture(lineServer('+OK POP3 ready\r\n', (l) => (l === 'STLS' ? 'TLS' : l === 'CAPA' ? '+OK\r\nSTLS\r\n.\r\n' : undefined), '+OK Begin TLS\r\n'), opensslStarttls('pop3'));
  checkUpgrade(t, pop3, 'pop3', /STLS answered \+OK/);

  const ftp = await capture(lineServer('220-Welcome\r\n220 FTP ready\r\n', (l) => (/^AUTH TLS/i.test(l) ? 'TLS' : undefined), '234 AUTH TLS OK\r\n'), opensslStarttls('ftp'));
  checkUpgrade(t, ftp, 'ftp', /AUTH TLS answered 234/);

  const pg = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      s.write('S');
      startTls(s, cert);
    });
  }), opensslStarttls('postgres'));
  checkUpgrade(t, pg, 'postgresql', /SSLRequest answered 'S'/);

  const mysql = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.write(mysqlGreeting());
    // A MySQL client does not wait after its SSLRequest: when the ClientHello arrives in
    // the same read, hand those bytes back so the TLS layer sees them.
    s.once('data', (d: Buffer) => {
      const SSL_REQUEST_PACKET = 36;
      s.pause();
      if (d.length > SSL_REQUEST_PACKET) s.unshift(d.subarray(SSL_REQUEST_PACKET));
      startTls(s, cert);
    });
  }), opensslStarttls('mysql'));
  t.equal(mysql.client.length >= 36 && mysql.client[3], 1, '(openssl sent a sequence-1 packet)');
  const mu = checkUpgrade(t, mysql, 'mysql', /SSLRequest/);
  t.equal(mu?.clientOffset, 36, 'TLS starts after the 32-byte SSLRequest and its header');

  const ldap = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      s.write(Buffer.from([0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]));
      startTls(s, cert);
    });
  }), opensslStarttls('ldap'));
  checkUpgrade(t, ldap, 'ldap', /StartTLS accepted/);

  // refused: the server answers 454; openssl carries on with a ClientHello regardless
  const smtpNo = await capture(
    lineServer('220 mx ESMTP\r\n', (l) => (/^EHLO/i.test(l) ? '250-mx\r\n250 STARTTLS\r\n' : l === 'STARTTLS' ? '454 4.7.0 TLS not available\r\n' : undefined), ''),
    opensslStarttls('smtp'),
  );
  t.match(findUpgrade(smtpNo.client, smtpNo.server, 40000, 25), { from: 'smtp', refused: true, evidence: 'STARTTLS refused (454)' });
  t.equal(detectPlaintextTcp(smtpNo.client, smtpNo.server, 40000, 25)?.protocol, 'smtp', 'the flow stays plaintext smtp');
});

t.test('PostgreSQL with psql', { skip: have('psql') ? false : 'psql not installed' }, async (t) => {
  const env = { ...process.env, PGPASSWORD: 'pw', PGCONNECT_TIMEOUT: '5' };
  const conn = (port: number, sslmode: string): string => `host=127.0.0.1 port=${port} user=alice dbname=db sslmode=${sslmode} gssencmode=disable`;
  const accepted = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      s.write('S');
      startTls(s, cert, (tlsSock) => setTimeout(() => tlsSock.destroy(), 200));
    });
  }), (port) => run('psql', [conn(port, 'require'), '-c', 'select 1'], 8000, env));
  checkUpgrade(t, accepted, 'postgresql');
  const refusedRec = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.write('N'));
  }), (port) => run('psql', [conn(port, 'require'), '-c', 'select 1'], 8000, env));
  t.match(findUpgrade(refusedRec.client, refusedRec.server, 40000, 5432), { from: 'postgresql', refused: true });
  t.match(detectPlaintextTcp(refusedRec.client, refusedRec.server, 40000, 5432), { protocol: 'postgresql', evidence: /SSLRequest refused/ });
});

t.test('HTTP CONNECT and PROXY protocol (curl)', { skip: have('curl') ? false : 'curl not installed' }, async (t) => {
  const target = https.createServer({ key: cert.key, cert: cert.cert }, (_req, res) => res.end('ok'));
  const targetPort = await listen(target);
  t.teardown(() => target.close());
  const proxy = http.createServer((_req, res) => {
    res.statusCode = 405;
    res.end();
  });
  proxy.on('connect', (_req, sock, head) => {
    const up = net.connect(targetPort, '127.0.0.1', () => {
      sock.write('HTTP/1.1 200 Connection established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
  });
  const rec = await capture(proxy, (port) => run('curl', ['-sk', '-x', `http://127.0.0.1:${port}`, `https://localhost:${targetPort}/secret`], 8000));
  const u = checkUpgrade(t, rec, 'http-connect', /HTTP CONNECT answered 200/);
  t.notOk(u?.evidence.includes('localhost'), 'no CONNECT target in evidence');

  const denied = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n'));
  }), (port) => run('curl', ['-sk', '-x', `http://127.0.0.1:${port}`, 'https://localhost:1/'], 8000));
  t.match(findUpgrade(denied.client, denied.server, 40000, 3128), { from: 'http-connect', refused: true, evidence: 'HTTP CONNECT answered 407' });

  // curl --haproxy-protocol: a PROXY v1 line, then the ClientHello; the fake load balancer
  // strips the line and forwards the rest to the https server
  const pp = await capture(net.createServer((s) => {
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const i = buf.indexOf('\r\n');
      if (i < 0) return;
      s.off('data', onData);
      const up = net.connect(targetPort, '127.0.0.1');
      up.on('error', () => s.destroy());
      up.write(buf.subarray(i + 2));
      up.pipe(s);
      s.pipe(up);
    };
    s.on('data', onData);
  }), (port) => run('curl', ['-sk', '--haproxy-protocol', `https://127.0.0.1:${port}/`], 8000));
  t.match(new TextDecoder().decode(pp.client.subarray(0, 10)), /^PROXY TCP4/, '(curl sent a PROXY v1 line)');
  checkUpgrade(t, pp, 'proxy-protocol', /PROXY protocol v1 header then TLS/);
});

const hello = bytes([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]);
const serverHello = bytes([0x16, 0x03, 0x03, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00]);

t.test('hand-made: offsets, refusals, streams that do not go on with TLS', async (t) => {
  const ssl = bytes([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  const gss = bytes([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
  t.match(findUpgrade(bytes(ssl, hello), bytes('S', serverHello), 1, 5432), { from: 'postgresql', clientOffset: 8, serverOffset: 1 });
  t.match(findUpgrade(bytes(gss, ssl, hello), bytes('N', 'S', serverHello), 1, 5432), { from: 'postgresql', clientOffset: 16, serverOffset: 2 }, 'GSSENCRequest refused, then SSLRequest accepted');
  t.match(findUpgrade(bytes(ssl, hello), EMPTY, 1, 5432), { from: 'postgresql', clientOffset: 8 }, 'client direction only');
  t.match(findUpgrade(bytes(ssl, 'garbage!'), bytes('S', 'xyz'), 1, 5432), { from: 'postgresql', refused: true }, "'S' but no TLS followed");
  t.equal(findUpgrade(bytes(gss, [1, 2, 3]), text('G'), 1, 5432), null, 'GSSAPI encryption is not a TLS upgrade');
  t.equal(findUpgrade(ssl, EMPTY, 1, 5432), null, 'asked, outcome not captured');

  // AMQP 1.0 TLS header, echoed
  const amqpTls = text('AMQP\x02\x01\x00\x00');
  t.match(findUpgrade(bytes(amqpTls, hello), bytes(amqpTls, serverHello), 1, 5671), { from: 'amqp', clientOffset: 8, serverOffset: 8 });

  // MySQL with the directions swapped (SYN not captured, the server spoke first)
  const sslReq = bytes([32, 0, 0, 1], [0x05, 0xae, 0xff, 0x01], [0, 0, 0, 1], [0xff], new Uint8Array(23));
  const greeting = mysqlGreeting();
  t.match(findUpgrade(bytes(sslReq, hello), bytes(greeting, serverHello), 1, 3306), { from: 'mysql', clientOffset: 36, serverOffset: greeting.length });
  t.match(findUpgrade(bytes(greeting, serverHello), bytes(sslReq, hello), 3306, 1), { from: 'mysql', clientOffset: greeting.length, serverOffset: 36 }, 'swapped');
  t.match(findUpgrade(bytes(sslReq, 'not tls at all'), greeting, 1, 3306), { from: 'mysql', refused: true });

  // SMTP with pipelining: EHLO, then STARTTLS; replies in order
  const c = bytes('EHLO me\r\nSTARTTLS\r\n', hello);
  const s = bytes('220-mx\r\n220 mx ESMTP\r\n250-mx\r\n250-STARTTLS\r\n250 8BITMIME\r\n220 go ahead\r\n', serverHello);
  const su = findUpgrade(c, s, 1, 25);
  t.match(su, { from: 'smtp', clientOffset: 19 });
  t.equal(s[(su as Upgrade).serverOffset], 0x16);
  t.match(findUpgrade(bytes('EHLO me\r\nSTARTTLS\r\n', 'QUIT\r\n'), text('220 mx\r\n250 mx\r\n220 go\r\n'), 1, 25), { refused: true, evidence: /no TLS followed/ });
  // IMAP: untagged lines and a literal before the tagged answer; and a NO
  const ic = bytes('a1 STARTTLS\r\n', hello);
  const is = bytes('* OK ready\r\n* ID {5}\r\na1 OK\r\na1 OK go\r\n', serverHello);
  t.match(findUpgrade(ic, is, 1, 143), { from: 'imap', clientOffset: 13 }, 'literal skipped');
  t.match(findUpgrade(ic, text('* OK ready\r\na1 NO not now\r\n'), 1, 143), { from: 'imap', refused: true, evidence: 'STARTTLS refused (NO)' });
  // POP3: CAPA's multi-line body, then STLS -ERR
  t.match(findUpgrade(text('CAPA\r\nSTLS\r\n'), text('+OK hi\r\n+OK\r\nSTLS\r\n.\r\n-ERR no\r\n'), 1, 110), { from: 'pop3', refused: true });
  t.match(findUpgrade(bytes('CAPA\r\nSTLS\r\n', hello), bytes('+OK hi\r\n+OK\r\nSTLS\r\n.\r\n+OK go\r\n', serverHello), 1, 110), { from: 'pop3', clientOffset: 12 });
  // FTP refused
  t.match(findUpgrade(text('AUTH TLS\r\n'), text('220 ftp\r\n500 no\r\n'), 1, 21), { from: 'ftp', refused: true, evidence: 'AUTH TLS refused (500)' });
  // PROXY v2 then TLS
  const v2 = bytes([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 12], new Uint8Array(12));
  t.match(findUpgrade(bytes(v2, hello), serverHello, 1, 443), { from: 'proxy-protocol', clientOffset: 28, serverOffset: 0, evidence: /v2/ });
  t.equal(findUpgrade(bytes(v2, 'GET / HTTP/1.1\r\n\r\n'), EMPTY, 1, 80), null, 'PROXY then plaintext: no upgrade');
  // PROXY then STARTTLS: offsets include the header
  const ppSmtp = findUpgrade(bytes('PROXY TCP4 1.2.3.4 5.6.7.8 1 25\r\n', 'STARTTLS\r\n', hello), bytes('220 mx\r\n220 go\r\n', serverHello), 1, 25);
  t.match(ppSmtp, { from: 'smtp', clientOffset: 43, evidence: /PROXY protocol v1 header; STARTTLS/ });
  // plain flows: nothing
  t.equal(findUpgrade(text('GET / HTTP/1.1\r\n\r\n'), text('HTTP/1.1 200 OK\r\n\r\n'), 1, 80), null);
  t.equal(findUpgrade(EMPTY, EMPTY, 1, 2), null);
});
