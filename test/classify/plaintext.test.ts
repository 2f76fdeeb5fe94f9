// detectPlaintextTcp / detectPlaintextUdp on bytes spoken by real software on 127.0.0.1
// (node http/http2, curl, psql, redis-cli + redis-server, node's DNS resolver), recorded
// by a relay; hand-made bytes where nothing local speaks the protocol (kafka, mongodb,
// amqp, memcached, mysql, snmp, ntp, sip) and for edge cases.

import dgram from 'node:dgram';
import dns from 'node:dns';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import t, { type Test } from 'tap';
import { detectEncryptedTcp, detectEncryptedUdp } from '../../agent/src/classify/encrypted-other.js';
import { detectPlaintextTcp, detectPlaintextUdp, type Match } from '../../agent/src/classify/plaintext.js';
import { findUpgrade } from '../../agent/src/classify/upgrade.js';
import { bytes, closeServer, have, lines, listen, mysqlGreeting, run, tcpRelay, text, type Recording } from '../lab/wire-lab.js';

const EMPTY = new Uint8Array(0);

/** Record one connection: `serve` is the server, `drive` runs the client against the relay port. */
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

function tcp(rec: Recording, clientPort = 40000, serverPort = 40001): Match | null {
  return detectPlaintextTcp(rec.client, rec.server, clientPort, serverPort);
}

/** What must hold for every plaintext recording: named, no encrypted-other verdict, no upgrade. */
function checkPlain(t: Test, rec: Recording, protocol: string, secrets: string[], ports: [number, number] = [40000, 40001], refusedUpgrade = false): Match | null {
  const m = tcp(rec, ...ports);
  t.equal(m?.protocol, protocol, `protocol ${protocol} (${m?.evidence})`);
  for (const s of secrets) t.notOk(m?.evidence.includes(s), `evidence does not carry "${s}"`);
  t.equal(detectEncryptedTcp(rec.client, rec.server, ...ports), null, 'not encrypted-other');
  const up = findUpgrade(rec.client, rec.server, ...ports);
  if (refusedUpgrade) t.match(up, { from: protocol, refused: true }, 'upgrade asked and refused');
  else t.equal(up, null, 'no upgrade');
  // the same flow seen from one side only is still named
  if (rec.client.length > 0) t.equal(detectPlaintextTcp(rec.client, EMPTY, ...ports)?.protocol ?? null, m?.protocol ?? null, 'client direction alone');
  return m;
}

t.test('HTTP/1.1 and HTTP/1.0 (node http server; node and curl clients)', async (t) => {
  const handler: http.RequestListener = (req, res) => {
    req.resume();
    req.on('end', () => res.end('hello body secret'));
  };
  const rec = await capture(http.createServer(handler), (port) => new Promise<void>((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/secret/path?token=abc', agent: false, headers: { authorization: 'Bearer s3cr3t' } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end('request body');
  }));
  const m = checkPlain(t, rec, 'http/1.1', ['/secret', 'token', 's3cr3t', 'hello', 'request body']);
  t.match(m?.evidence, /HTTP\/1\.1 request POST, response 200/);
  t.equal(detectPlaintextTcp(EMPTY, rec.server, 40000, 40001)?.protocol, 'http/1.1', 'response direction alone');

  if (have('curl')) {
    const rec10 = await capture(http.createServer(handler), (port) => run('curl', ['-s', '--http1.0', `http://127.0.0.1:${port}/x`]));
    checkPlain(t, rec10, 'http/1.0', []);
    // curl --http2 on a cleartext URL asks for "Upgrade: h2c"; node's http server ignores it and answers 200
    const recUp = await capture(http.createServer(handler), (port) => run('curl', ['-s', '--http2', `http://127.0.0.1:${port}/x`]));
    t.match(new TextDecoder().decode(recUp.client), /Upgrade: h2c/i, '(curl offered h2c)');
    checkPlain(t, recUp, 'http/1.1', []);
  }
});

t.test('h2c and gRPC (node http2 cleartext)', async (t) => {
  const mk = (): http2.Http2Server => {
    const s = http2.createServer();
    s.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'content-type': headers['content-type'] ?? 'text/plain' });
      stream.end('x');
    });
    return s;
  };
  const drive = (headers: http2.OutgoingHttpHeaders) => (port: number) => new Promise<void>((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':path': '/pkg.Service/Method', ':method': 'POST', ...headers });
    req.on('response', () => {});
    req.resume();
    req.on('end', () => {
      session.close();
      resolve();
    });
    req.end();
  });
  const h2c = await capture(mk(), drive({}));
  const m = checkPlain(t, h2c, 'h2c', ['pkg.Service']);
  t.match(m?.evidence, /preface/);
  const grpc = await capture(mk(), drive({ 'content-type': 'application/grpc', te: 'trailers' }));
  checkPlain(t, grpc, 'grpc', ['pkg.Service']);
  const grpcProto = await capture(mk(), drive({ 'content-type': 'application/grpc+proto' }));
  checkPlain(t, grpcProto, 'grpc', []);
  // the server's HEADERS alone (client HEADERS cut by the capture) also tell
  const prefaceOnly = h2c.client.subarray(0, 24);
  t.equal(detectPlaintextTcp(prefaceOnly, grpc.server, 1, 2)?.protocol, 'grpc', 'server HEADERS say grpc');
  t.equal(detectPlaintextTcp(grpc.client.subarray(0, 16), EMPTY, 1, 2)?.protocol, 'h2c', 'preface cut at 16 bytes');
  // HTTP/1.1 Upgrade: h2c answered 101 (hand-made: node does not implement the upgrade)
  const upReq = text('GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
  const up101 = bytes('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n', [0, 0, 0, 4, 0, 0, 0, 0, 0]);
  t.match(detectPlaintextTcp(upReq, up101, 1, 80), { protocol: 'h2c', evidence: /Upgrade: h2c \(101/ });
  t.match(detectPlaintextTcp(upReq, text('HTTP/1.1 200 OK\r\n\r\n'), 1, 80), { protocol: 'http/1.1' }, 'upgrade ignored');
});

t.test('Redis (redis-cli against redis-server)', { skip: have('redis-server') && have('redis-cli') ? false : 'redis-server/redis-cli not installed' }, async (t) => {
  const probe = net.createServer();
  const port = await listen(probe);
  await closeServer(probe);
  const srv = await import('node:child_process').then((cp) => cp.spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
  t.teardown(() => {
    srv.kill('SIGTERM');
  });
  for (let i = 0; i < 50; i++) {
    if ((await run('redis-cli', ['-p', String(port), 'PING'])).stdout.includes('PONG')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const relay = await tcpRelay(port);
  t.teardown(() => relay.close());
  await run('redis-cli', ['-p', String(relay.port), 'SET', 'secretkey', 'secretvalue']);
  await run('redis-cli', ['-p', String(relay.port), 'PING']);
  const [set, ping] = await relay.settled(2);
  // redis-cli may send COMMAND DOCS first in interactive mode; with arguments it sends the command
  const m = checkPlain(t, set, 'redis', ['secretkey', 'secretvalue'], [40000, 6379]);
  t.match(m?.evidence, /^RESP command [A-Z]+/);
  checkPlain(t, ping, 'redis', []);
  t.match(detectPlaintextTcp(text('PING\r\n'), text('+PONG\r\n'), 1, 6379), { protocol: 'redis', evidence: /inline command PING/ });
  t.match(detectPlaintextTcp(EMPTY, text('+PONG\r\n'), 1, 6379), { protocol: 'redis' }, 'reply on the Redis port');
  t.equal(detectPlaintextTcp(EMPTY, text('+PONG\r\n'), 1, 7000), null, 'reply alone elsewhere proves nothing');
});

/** A fake PostgreSQL server: answers SSLRequest/GSSENCRequest 'N', then an ErrorResponse to the StartupMessage. */
function fakePostgres(): net.Server {
  return net.createServer((sock) => {
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8) {
        const len = buf.readUInt32BE(0);
        const code = buf.readUInt32BE(4);
        if (len === 8 && (code === 80877103 || code === 80877104)) {
          sock.write('N');
          buf = buf.subarray(8);
          continue;
        }
        if (buf.length < len) return;
        const msg = Buffer.from('SFATAL\0C28000\0Mno\0\0', 'latin1');
        const head = Buffer.alloc(5);
        head.write('E', 0, 'latin1');
        head.writeUInt32BE(4 + msg.length, 1);
        sock.end(Buffer.concat([head, msg]));
        return;
      }
    });
  });
}

t.test('PostgreSQL (psql against a fake server)', { skip: have('psql') ? false : 'psql not installed' }, async (t) => {
  const env = { ...process.env, PGPASSWORD: 'pw', PGCONNECT_TIMEOUT: '5' };
  const prefer = await capture(fakePostgres(), (port) => run('psql', [`host=127.0.0.1 port=${port} user=alice dbname=secretdb sslmode=prefer gssencmode=disable`, '-c', 'select 1'], 10000, env));
  t.equal(Buffer.from(prefer.client.subarray(4, 8)).readUInt32BE(0), 80877103, '(psql asked SSLRequest)');
  const m = checkPlain(t, prefer, 'postgresql', ['alice', 'secretdb'], [40000, 5432], true);
  t.match(m?.evidence, /SSLRequest refused \('N'\); StartupMessage protocol 3\.0/);
  const disable = await capture(fakePostgres(), (port) => run('psql', [`host=127.0.0.1 port=${port} user=alice dbname=secretdb sslmode=disable gssencmode=disable`, '-c', 'select 1'], 10000, env));
  const d = checkPlain(t, disable, 'postgresql', ['alice', 'secretdb']);
  t.equal(d?.evidence, 'StartupMessage protocol 3.0');
  // the client direction alone after an SSLRequest: the StartupMessage shows the answer was 'N'
  t.match(detectPlaintextTcp(prefer.client, EMPTY, 1, 5432), { protocol: 'postgresql' });
  // SSLRequest with nothing after it: the outcome is unknown, so no plaintext verdict
  t.equal(detectPlaintextTcp(prefer.client.subarray(0, 8), EMPTY, 1, 5432), null, 'SSLRequest alone');
  t.equal(detectPlaintextTcp(prefer.client.subarray(0, 8), text('S'), 1, 5432), null, "answered 'S'");
  t.match(detectPlaintextTcp(bytes([0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2]), EMPTY, 1, 5432), { protocol: 'postgresql', evidence: 'CancelRequest' });
});

t.test('LDAP, MQTT, RTSP (curl against fake servers)', { skip: have('curl') ? false : 'curl not installed' }, async (t) => {
  const ldap = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.write(Buffer.from([0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00])));
    setTimeout(() => s.destroy(), 300);
  }), (port) => run('curl', ['-s', '-u', 'cn=secretuser:secretpw', `ldap://127.0.0.1:${port}/dc=example?cn?sub?(cn=x)`], 5000));
  const m = checkPlain(t, ldap, 'ldap', ['secretuser', 'secretpw', 'example']);
  t.match(m?.evidence, /^bindRequest v3 \(simple\)/);

  const mqtt = await capture(net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.end(Buffer.from([0x20, 0x02, 0x00, 0x05])));
  }), (port) => run('curl', ['-s', `mqtt://127.0.0.1:${port}/secret/topic`], 5000));
  t.match(checkPlain(t, mqtt, 'mqtt', ['secret']), { evidence: /CONNECT protocol MQTT 3\.1\.1/ });

  const rtsp = await capture(net.createServer((s) => {
    s.on('error', () => {});
    lines(s, (l) => {
      if (l === '') {
        s.end('RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS\r\n\r\n');
        return 'stop';
      }
    });
  }), (port) => run('curl', ['-s', `rtsp://127.0.0.1:${port}/secret/stream`], 5000));
  t.match(checkPlain(t, rtsp, 'rtsp', ['secret']), { evidence: /RTSP request OPTIONS, response 200/ });
});

/** A fake line server: banner, then `answer(line)` for each client line (undefined closes). */
function lineServer(banner: string, answer: (line: string) => string | undefined): net.Server {
  return net.createServer((s) => {
    s.on('error', () => {});
    s.write(banner);
    lines(s, (l) => {
      const a = answer(l);
      if (a === undefined) {
        s.end();
        return 'stop';
      }
      s.write(a);
    });
  });
}

t.test('SMTP, IMAP, POP3, FTP (curl against fake servers)', { skip: have('curl') ? false : 'curl not installed' }, async (t) => {
  const smtp = await capture(lineServer('220 mx.secret.example ESMTP\r\n', (l) => (/^EHLO/i.test(l) ? '250-mx\r\n250 SIZE 1000\r\n' : /^MAIL/i.test(l) ? '250 ok\r\n' : undefined)),
    (port) => run('curl', ['-s', `smtp://127.0.0.1:${port}`, '--mail-from', 'alice@secret.example', '--mail-rcpt', 'bob@secret.example', '-T', '/dev/null'], 5000));
  t.match(checkPlain(t, smtp, 'smtp', ['secret', 'alice'], [40000, 25]), { evidence: '220 banner; client EHLO' });

  const imap = await capture(lineServer('* OK [CAPABILITY IMAP4rev1] ready\r\n', (l) => {
    const [tag, cmd] = l.split(' ');
    if (cmd === 'CAPABILITY') return `* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n${tag} OK done\r\n`;
    return undefined;
  }), (port) => run('curl', ['-s', '-u', 'alice:secretpw', `imap://127.0.0.1:${port}/INBOX`], 5000));
  t.match(checkPlain(t, imap, 'imap', ['alice', 'secretpw']), { evidence: /^\* OK greeting/ });

  const pop3 = await capture(lineServer('+OK Dovecot ready.\r\n', (l) => (l === 'CAPA' ? '+OK\r\nUSER\r\n.\r\n' : /^USER/.test(l) ? '+OK\r\n' : undefined)),
    (port) => run('curl', ['-s', '-u', 'alice:secretpw', `pop3://127.0.0.1:${port}/`], 5000));
  t.match(checkPlain(t, pop3, 'pop3', ['alice', 'secretpw']), { evidence: /\+OK greeting; client (CAPA|USER)/ });

  const ftp = await capture(lineServer('220 (vsFTPd 3.0.3)\r\n', (l) => (/^USER/.test(l) ? '331 pw\r\n' : /^PASS/.test(l) ? '530 no\r\n' : undefined)),
    (port) => run('curl', ['-s', '-u', 'alice:secretpw', `ftp://127.0.0.1:${port}/`], 5000));
  t.match(checkPlain(t, ftp, 'ftp', ['alice', 'secretpw'], [40000, 21]), { evidence: '220 banner; client USER' });
  t.equal(detectPlaintextTcp(ftp.client, EMPTY, 40000, 40001), null, 'USER alone, no banner, no port: FTP or POP3, undecided');

  // banners alone
  t.equal(detectPlaintextTcp(EMPTY, text('220 mx.example.com ESMTP Postfix\r\n'), 1, 2)?.protocol, 'smtp');
  t.equal(detectPlaintextTcp(EMPTY, text('220 ProFTPD Server ready.\r\n'), 1, 2)?.protocol, 'ftp');
  t.equal(detectPlaintextTcp(EMPTY, text('220 welcome\r\n'), 1, 25)?.protocol, 'smtp', 'bare 220 on port 25');
  t.equal(detectPlaintextTcp(EMPTY, text('220 welcome\r\n'), 1, 2), null, 'bare 220 elsewhere: undecided');
  t.equal(detectPlaintextTcp(EMPTY, text('+OK Dovecot ready.\r\n'), 1, 110)?.protocol, 'pop3');
  t.equal(detectPlaintextTcp(EMPTY, text('* OK Dovecot ready.\r\n'), 1, 2)?.protocol, 'imap');
  // directions swapped (SYN not captured: the server spoke first)
  t.equal(detectPlaintextTcp(smtp.server, smtp.client, 25, 40000)?.protocol, 'smtp', 'swapped directions');
});

t.test('DNS over UDP and TCP (node resolver against a fake server)', async (t) => {
  const udp = dgram.createSocket('udp4');
  const udpIn: Buffer[] = [];
  const udpOut: Buffer[] = [];
  const tcpIn: Buffer[] = [];
  const tcpOut: Buffer[] = [];
  // the question's end: header + QNAME + QTYPE + QCLASS
  const questionEnd = (q: Buffer): number => {
    let i = 12;
    while (q[i] !== 0) i += q[i] + 1;
    return i + 5;
  };
  const answer = (q: Buffer, truncate: boolean): Buffer => {
    const r = Buffer.from(q.subarray(0, questionEnd(q)));
    r[2] = 0x80 | (r[2] & 0x79) | (truncate ? 0x02 : 0); // QR, keep opcode/RD, TC
    r[3] = 0x83; // RA, NXDOMAIN
    r.writeUInt16BE(0, 6);
    r.writeUInt16BE(0, 8);
    r.writeUInt16BE(0, 10);
    return r;
  };
  udp.on('message', (msg, rinfo) => {
    udpIn.push(Buffer.from(msg));
    const r = answer(msg, msg.includes(Buffer.from('viatcp')));
    udpOut.push(r);
    udp.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;
  const tcpServer = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      tcpIn.push(Buffer.from(d));
      const q = d.subarray(2);
      const r = answer(Buffer.from(q), false);
      const framed = Buffer.concat([Buffer.from([r.length >> 8, r.length & 0xff]), r]);
      tcpOut.push(framed);
      s.write(framed);
    });
  });
  await new Promise<void>((resolve) => tcpServer.listen(port, '127.0.0.1', resolve));
  t.teardown(() => {
    udp.close();
    tcpServer.close();
  });
  const resolver = new dns.promises.Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  await resolver.resolve4('secret-host.example').catch(() => {});
  await resolver.resolveTxt('viatcp.secret.example').catch(() => {});
  t.ok(udpIn.length >= 1, '(UDP query received)');
  const m = detectPlaintextUdp([udpIn[0]], [udpOut[0]], 40000, 53);
  t.match(m, { protocol: 'dns', evidence: /DNS query over UDP \(opcode QUERY, type A\)/ });
  t.notOk(m?.evidence.includes('secret'), 'no query name in evidence');
  t.equal(detectPlaintextUdp([], [udpOut[0]], 40000, 53)?.protocol, 'dns', 'response alone');
  t.equal(detectEncryptedUdp([udpIn[0]], [udpOut[0]], 40000, 53), null);
  t.ok(tcpIn.length >= 1, '(c-ares retried over TCP after TC=1)');
  const tm = detectPlaintextTcp(Buffer.concat(tcpIn), Buffer.concat(tcpOut), 40000, 53);
  t.match(tm, { protocol: 'dns', evidence: /DNS query over TCP \(opcode QUERY, type TXT\)/ });
  t.equal(detectPlaintextTcp(EMPTY, Buffer.concat(tcpOut), 40000, 53)?.protocol, 'dns', 'TCP response alone');
  // mDNS query with the unicast-response bit in the class
  const mdns = bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], [5], '_http', [4], '_tcp', [5], 'local', [0], [0, 12, 0x80, 1]);
  t.match(detectPlaintextUdp([mdns], [], 5353, 5353), { protocol: 'dns', evidence: /mDNS query/ });
});

// ---- hand-made bytes: protocols with no local implementation

/** Kafka ApiVersions v3 request as librdkafka sends it (header v2 with tagged fields). */
const kafkaApiVersions = bytes([0, 0, 0, 0x23, 0, 18, 0, 3, 0, 0, 0, 1, 0, 7], 'rdkafka', [0], [0x12], 'apache-kafka-java', [0x06], '3.7.0', [0]);
/** MongoDB OP_MSG { hello: 1, $db: "admin" }. */
function mongoHello(): Uint8Array {
  const doc = bytes([0x10], 'hello', [0, 1, 0, 0, 0], [0x02], '$db', [0], [6, 0, 0, 0], 'admin', [0], [0]);
  const docLen = doc.length + 4;
  const body = bytes([0, 0, 0, 0], [0], [docLen & 0xff, docLen >> 8, 0, 0], doc);
  const total = 16 + body.length;
  return bytes([total & 0xff, total >> 8, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0xdd, 0x07, 0, 0], body);
}
/** OP_QUERY isMaster on admin.$cmd (legacy drivers' first message). */
function mongoQuery(): Uint8Array {
  const doc = bytes([0x10], 'isMaster', [0, 1, 0, 0, 0], [0]);
  const docLen = doc.length + 4;
  const body = bytes([0, 0, 0, 0], 'admin.$cmd', [0], [0, 0, 0, 0], [0xff, 0xff, 0xff, 0xff], [docLen, 0, 0, 0], doc);
  const total = 16 + body.length;
  return bytes([total, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0xd4, 0x07, 0, 0], body);
}
/** HandshakeResponse41 for user "alice" without CLIENT_SSL. */
const mysqlLogin = ((): Uint8Array => {
  const payload = bytes([0x85, 0xa6, 0xff, 0x01], [0, 0, 0, 1], [0xff], new Uint8Array(23), 'alice', [0], [0], 'caching_sha2_password', [0]);
  return bytes([payload.length, 0, 0, 1], payload);
})();

t.test('hand-made binary protocols', async (t) => {
  t.match(detectPlaintextTcp(kafkaApiVersions, EMPTY, 1, 9092), { protocol: 'kafka', evidence: 'request api_key 18 (ApiVersions) v3' });
  t.notOk(detectPlaintextTcp(kafkaApiVersions, EMPTY, 1, 9092)?.evidence.includes('rdkafka'), 'no client id in evidence');
  t.match(detectPlaintextTcp(mongoHello(), EMPTY, 1, 27017), { protocol: 'mongodb', evidence: 'OP_MSG header' });
  t.match(detectPlaintextTcp(mongoQuery(), EMPTY, 1, 27017), { protocol: 'mongodb', evidence: 'OP_QUERY header' });
  t.match(detectPlaintextTcp(text('AMQP\x00\x00\x09\x01'), EMPTY, 1, 5672), { protocol: 'amqp', evidence: 'AMQP 0-9-1 protocol header' });
  t.match(detectPlaintextTcp(text('AMQP\x03\x01\x00\x00'), EMPTY, 1, 5672), { protocol: 'amqp' });
  t.equal(detectPlaintextTcp(text('AMQP\x02\x01\x00\x00'), EMPTY, 1, 5671), null, 'AMQP TLS header is not plaintext');
  const mqtt5 = bytes([0x10, 0x10, 0, 4], 'MQTT', [5, 0x02, 0, 60, 0, 0, 3], 'cli');
  t.match(detectPlaintextTcp(mqtt5, EMPTY, 1, 1883), { protocol: 'mqtt', evidence: 'CONNECT protocol MQTT 5.0' });
  const mqtt31 = bytes([0x10, 0x13, 0, 6], 'MQIsdp', [3, 0x02, 0, 60, 0, 3], 'cli');
  t.match(detectPlaintextTcp(mqtt31, EMPTY, 1, 1883), { protocol: 'mqtt', evidence: 'CONNECT protocol MQIsdp 3.1' });
  t.equal(detectPlaintextTcp(bytes([0x10, 0x10, 0, 4], 'MQTT', [4, 0x03, 0, 60]), EMPTY, 1, 1883), null, 'reserved connect flag set');

  const greeting = mysqlGreeting(0xf7ff & ~0x0800); // no CLIENT_SSL
  t.match(detectPlaintextTcp(mysqlLogin, greeting, 40000, 3306), { protocol: 'mysql', evidence: /server greeting protocol 10 \(server 8\.0\.36\); HandshakeResponse41 without CLIENT_SSL/ });
  t.notOk(detectPlaintextTcp(mysqlLogin, greeting, 40000, 3306)?.evidence.includes('alice'));
  t.match(detectPlaintextTcp(EMPTY, greeting, 40000, 3306), { protocol: 'mysql' }, 'greeting alone');
  t.match(detectPlaintextTcp(greeting, mysqlLogin, 3306, 40000), { protocol: 'mysql' }, 'swapped directions');
  t.match(detectPlaintextTcp(mysqlLogin, EMPTY, 40000, 3306), { protocol: 'mysql' }, 'login alone');

  // memcached text, meta and binary
  t.match(detectPlaintextTcp(text('get secretkey\r\n'), text('END\r\n'), 1, 11211), { protocol: 'memcached', evidence: 'text command get' });
  t.match(detectPlaintextTcp(text('set k 0 60 5\r\nhello\r\n'), EMPTY, 1, 11211), { protocol: 'memcached', evidence: 'text command set' });
  t.match(detectPlaintextTcp(text('mg foo v\r\n'), EMPTY, 1, 11211), { protocol: 'memcached', evidence: 'text command mg' });
  t.match(detectPlaintextTcp(text('stats\r\n'), EMPTY, 1, 11211), { protocol: 'memcached' });
  t.equal(detectPlaintextTcp(text('set k x 60 5\r\n'), EMPTY, 1, 11211)?.protocol, undefined, 'flags not a number');
  const binGet = bytes([0x80, 0x00, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 'key');
  t.match(detectPlaintextTcp(binGet, EMPTY, 1, 11211), { protocol: 'memcached', evidence: 'binary request Get' });

  // LDAP searchRequest and StartTLS
  const search = bytes([0x30, 0x25, 0x02, 0x01, 0x02, 0x63, 0x20, 0x04, 0x0b], 'dc=example,', [0x0a, 0x01, 0x02, 0x0a, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x01, 0x00, 0x87, 0x0b], 'objectClass');
  t.match(detectPlaintextTcp(search, EMPTY, 1, 389), { protocol: 'ldap', evidence: 'searchRequest' });
});

t.test('UDP: SNMP, NTP, SIP, SSDP, memcached', async (t) => {
  const snmp = bytes([0x30, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06], 'public', [0xa0, 0x19, 0x02, 0x04, 0x12, 0x34, 0x56, 0x78, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x05, 0x00]);
  const m = detectPlaintextUdp([snmp], [], 40000, 161);
  t.match(m, { protocol: 'snmp', evidence: 'SNMPv2c GetRequest' });
  t.notOk(m?.evidence.includes('public'), 'community string is a credential');
  const ntp = new Uint8Array(48);
  ntp[0] = 0x23; // LI 0, VN 4, mode 3
  t.match(detectPlaintextUdp([ntp], [], 40000, 123), { protocol: 'ntp', evidence: 'NTPv4 client packet' });
  t.equal(detectPlaintextUdp([ntp], [], 40000, 9999), null, 'NTP only on port 123');
  const sip = text('OPTIONS sip:bob@secret.example SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n');
  t.match(detectPlaintextUdp([sip], [], 5060, 5060), { protocol: 'sip', evidence: 'SIP/2.0 request OPTIONS over UDP' });
  const ssdp = text('M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n\r\n');
  t.match(detectPlaintextUdp([ssdp], [], 40000, 1900), { protocol: 'http/1.1' });
  const mc = bytes([0, 1, 0, 0, 0, 1, 0, 0], 'get foo\r\n');
  t.match(detectPlaintextUdp([mc], [], 40000, 11211), { protocol: 'memcached' });
});

t.test('PROXY protocol header in front of plaintext', async (t) => {
  const v1 = text('PROXY TCP4 10.0.0.1 10.0.0.2 51234 80\r\nGET /secret HTTP/1.1\r\nHost: a\r\n\r\n');
  t.match(detectPlaintextTcp(v1, text('HTTP/1.1 204 No Content\r\n\r\n'), 1, 80), { protocol: 'http/1.1', evidence: /behind a PROXY protocol v1 header/ });
  const v2 = bytes([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 12], [10, 0, 0, 1, 10, 0, 0, 2, 0xc8, 0x22, 0, 80], 'GET / HTTP/1.1\r\n\r\n');
  t.match(detectPlaintextTcp(v2, EMPTY, 1, 80), { protocol: 'http/1.1', evidence: /PROXY protocol v2/ });
});

t.test('truncation and near misses', async (t) => {
  t.match(detectPlaintextTcp(text('GET /a/very/long/path/cut/by/the/capture'), EMPTY, 1, 80), { protocol: 'http/1.1', evidence: /cut by the capture/ });
  t.match(detectPlaintextTcp(text('GET / HTTP/1.0\r\n'), EMPTY, 1, 80), { protocol: 'http/1.0' });
  t.equal(detectPlaintextTcp(text('GETX / HTTP/1.1\r\n'), EMPTY, 1, 80)?.protocol, 'http/1.1', 'extension method with a full request line');
  t.equal(detectPlaintextTcp(text('FOO /x'), EMPTY, 1, 80), null, 'unknown method, cut: no');
  t.not(detectPlaintextTcp(text('get / HTTP/1.1\r\n'), EMPTY, 1, 80)?.protocol, 'http/1.1', 'methods are case-sensitive (this is a memcached get)');
  t.equal(detectPlaintextTcp(text('GET / HTTP/1.1\x00\r\n'), EMPTY, 1, 80), null);
  t.equal(detectPlaintextTcp(bytes([0x16, 0x03, 0x01, 0x00, 0x20]), EMPTY, 1, 443), null, 'TLS record is not plaintext');
  t.equal(detectPlaintextTcp(EMPTY, EMPTY, 1, 2), null, 'nothing');
  for (let n = 0; n <= kafkaApiVersions.length; n++) detectPlaintextTcp(kafkaApiVersions.subarray(0, n), EMPTY, 1, 9092);
  for (let n = 0; n <= mysqlLogin.length; n++) detectPlaintextTcp(mysqlLogin.subarray(0, n), mysqlGreeting().subarray(0, n), 1, 3306);
  t.pass('every prefix of the hand-made messages is handled without throwing');
  t.equal(detectPlaintextTcp(kafkaApiVersions.subarray(0, 10), EMPTY, 1, 9092), null, 'a Kafka header cut before client_id is not enough');
});
