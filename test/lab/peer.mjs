// The lab's small servers and clients, run as child processes inside a network namespace:
//   node peer.mjs ROLE '{"json":"options"}'
// Plain JavaScript (Node 20 cannot run .ts without a loader); typed wrappers live in peers.ts.
// Protocol: one JSON object per line on stdout — {"event":"listening"}, {"event":"conn",…}
// per server-side connection, {"event":"result",…} per client connection. Clients exit 0
// when every connection went as asked, non-zero otherwise. Every client has a deadline.

import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import dns from 'node:dns';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

const [role, json] = process.argv.slice(2);
const o = JSON.parse(json ?? '{}');
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const fail = (msg) => {
  process.stderr.write(`peer ${role}: ${msg}\n`);
  process.exit(1);
};
process.on('uncaughtException', (e) => fail(e.stack ?? String(e)));
process.on('unhandledRejection', (e) => fail(e?.stack ?? String(e)));
setTimeout(() => fail(`deadline ${o.deadlineMs ?? 30000} ms passed`), o.deadlineMs ?? 30000).unref?.();
const keepAlive = () => setInterval(() => {}, 1 << 30); // servers run until killed

/** TLS options from the JSON ones: files are paths; undefined fields left out. */
function tlsOptions(x) {
  const read = (p) => (p ? fs.readFileSync(p) : undefined);
  const out = {
    cert: read(x.cert),
    key: read(x.key),
    ca: read(x.ca),
    minVersion: x.minVersion,
    maxVersion: x.maxVersion,
    ALPNProtocols: x.alpn,
    requestCert: x.requestCert,
    rejectUnauthorized: x.rejectUnauthorized,
    servername: x.servername,
    ciphers: x.ciphers,
  };
  if (x.checkHostname === false) out.checkServerIdentity = () => undefined;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

function listen(server, port, host) {
  server.listen({ port, host: host ?? '::', ipv6Only: false }, () => emit({ event: 'listening', port }));
}

function body(n) {
  return Buffer.alloc(n, 0x61);
}

/** `n` bytes that look random (SHA-256 in counter mode over `seed`): reproducible noise. */
function noise(n, seed) {
  const out = Buffer.alloc(n);
  for (let i = 0, off = 0; off < n; i++) off += createHash('sha256').update(`${seed}/${i}`).digest().copy(out, off);
  return out;
}

const roles = {
  // Plain HTTP/1.1: answers every request with `responseBytes` bytes, then closes.
  'http-server'() {
    const server = http.createServer((req, res) => {
      let got = 0;
      req.on('data', (d) => (got += d.length));
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': o.responseBytes ?? 0, connection: 'close' });
        res.end(body(o.responseBytes ?? 0));
      });
    });
    server.on('connection', (s) => {
      const remotePort = s.remotePort;
      s.on('close', () => emit({ event: 'conn', remotePort, bytesRead: s.bytesRead, bytesWritten: s.bytesWritten }));
    });
    listen(server, o.port, o.host);
    keepAlive();
  },

  // One POST of `bodyBytes` bytes over a fresh connection; reports socket byte counts.
  'http-client'() {
    const req = http.request({
      host: o.host, port: o.port, method: 'POST', path: o.path ?? '/upload', agent: false, localPort: o.localPort,
      headers: { 'content-type': 'application/octet-stream', 'content-length': o.bodyBytes ?? 0 },
    });
    req.on('socket', (s) => {
      let localPort = 0; // gone from the socket once closed
      s.on('connect', () => (localPort = s.localPort));
      s.on('close', () => {
        emit({ event: 'result', localPort, bytesWritten: s.bytesWritten, bytesRead: s.bytesRead, status: req.res?.statusCode, received });
        process.exit(req.res?.statusCode === 200 ? 0 : 1);
      });
    });
    let received = 0;
    req.on('response', (res) => res.on('data', (d) => (received += d.length)));
    req.end(body(o.bodyBytes ?? 0));
  },

  // HTTP/2 cleartext (prior knowledge). gRPC-style requests get a gRPC-style answer.
  'h2c-server'() {
    const server = http2.createServer();
    server.on('stream', (stream, headers) => {
      stream.on('data', () => {});
      stream.on('end', () => {
        if (String(headers['content-type'] ?? '').startsWith('application/grpc')) {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' }));
          stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]));
        } else {
          stream.respond({ ':status': 200, 'content-type': 'text/plain' });
          stream.end(body(o.responseBytes ?? 16));
        }
      });
    });
    server.on('connection', (s) => {
      const remotePort = s.remotePort;
      s.on('close', () => emit({ event: 'conn', remotePort }));
    });
    listen(server, o.port, o.host);
    keepAlive();
  },

  'h2c-client'() {
    const host = o.host.includes(':') ? `[${o.host}]` : o.host;
    const session = http2.connect(`http://${host}:${o.port}`);
    session.on('error', (e) => fail(String(e)));
    const headers = o.grpc
      ? { ':method': 'POST', ':path': '/plainsight.lab.v1.Echo/Say', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '5S' }
      : { ':method': 'GET', ':path': o.path ?? '/' };
    const req = session.request(headers);
    let status = 0;
    req.on('response', (h) => (status = h[':status']));
    req.on('data', () => {});
    req.on('end', () => {
      const localPort = session.socket.localPort;
      session.close(() => {
        emit({ event: 'result', localPort, status });
        process.exit(status === 200 ? 0 : 1);
      });
    });
    req.end(o.grpc ? Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x01, 0x78]) : undefined);
  },

  // TLS server: answers each client message with "pong" and closes.
  'tls-server'() {
    const server = tls.createServer(tlsOptions(o), (s) => {
      const info = {
        event: 'conn', remotePort: s.remotePort, protocol: s.getProtocol(), alpn: s.alpnProtocol || null,
        cipher: s.getCipher()?.standardName, authorized: s.authorized, peerCertificate: Boolean(s.getPeerCertificate()?.subject),
      };
      s.on('data', () => s.end('pong\n'));
      s.on('error', () => {});
      s.on('close', () => emit(info));
    });
    server.on('tlsClientError', (e, s) => emit({ event: 'tlsClientError', remotePort: s?.remotePort, error: String(e.code ?? e.message) }));
    listen(server, o.port, o.host);
    keepAlive();
  },

  // `count` sequential TLS connections: "ping" → "pong". Fresh handshakes unless `resume`.
  async 'tls-client'() {
    const count = o.count ?? 1;
    let session; // resume: offer the previous connection's session (ticket / PSK)
    for (let i = 0; i < count; i++) {
      const r = await new Promise((resolve, reject) => {
        const s = tls.connect({ host: o.host, port: o.port, ...tlsOptions(o), ...(o.resume && session ? { session } : {}) });
        s.on('session', (sess) => (session = sess));
        let localPort = 0;
        let info = {};
        let got = '';
        s.on('secureConnect', () => {
          localPort = s.localPort;
          info = { protocol: s.getProtocol(), alpn: s.alpnProtocol || null, cipher: s.getCipher()?.standardName, authorized: s.authorized, resumed: s.isSessionReused() };
          // firstWrite: bytes of application data sent at once (an eager client, like an HTTP request).
          s.write(o.firstWrite ? Buffer.alloc(o.firstWrite, 0x62) : 'ping\n');
        });
        s.on('data', (d) => (got += d));
        s.on('error', reject);
        s.on('close', () => resolve({ event: 'result', localPort, ...info, reply: got.trim() }));
      });
      emit(r);
      if (r.reply !== 'pong') fail(`connection ${i}: no pong (got ${JSON.stringify(r.reply)})`);
    }
    process.exit(0);
  },

  // HTTPS (HTTP/1.1 over TLS), for curl through a proxy and the like.
  'https-server'() {
    const server = https.createServer(tlsOptions(o), (req, res) => {
      req.resume();
      req.on('end', () => res.end('ok\n'));
    });
    listen(server, o.port, o.host);
    keepAlive();
  },

  // SMTP with STARTTLS (RFC 3207): greeting, EHLO, STARTTLS, then TLS on the same socket.
  'smtp-server'() {
    const secureContext = tls.createSecureContext(tlsOptions(o));
    const lines = (sock, onLine) => {
      let buf = '';
      const onData = (d) => {
        buf += d.toString('latin1');
        let i;
        while ((i = buf.indexOf('\r\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (onLine(line) === 'stop') {
            sock.removeListener('data', onData);
            return;
          }
        }
      };
      sock.on('data', onData);
    };
    const server = net.createServer((plain) => {
      const remotePort = plain.remotePort;
      plain.on('error', () => {});
      plain.write('220 mail.lab ESMTP plainsight-lab\r\n');
      lines(plain, (line) => {
        const verb = line.split(' ')[0].toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') plain.write('250-mail.lab\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n');
        else if (verb === 'STARTTLS') {
          plain.write('220 2.0.0 Ready to start TLS\r\n');
          // Wrap only after the reply went out, with the socket's plaintext reader removed.
          plain.removeAllListeners('data');
          const s = new tls.TLSSocket(plain, { isServer: true, secureContext, requestCert: Boolean(o.requestCert), rejectUnauthorized: false });
          s.on('error', () => {});
          s.on('secure', () => {
            lines(s, (l) => {
              const v = l.split(' ')[0].toUpperCase();
              if (v === 'EHLO') s.write('250-mail.lab\r\n250 8BITMIME\r\n');
              else if (v === 'QUIT') {
                s.end('221 2.0.0 Bye\r\n');
                return 'stop';
              } else s.write('250 2.0.0 OK\r\n');
            });
          });
          s.on('close', () => emit({ event: 'conn', remotePort, tls: true }));
          return 'stop';
        } else if (verb === 'QUIT') {
          plain.end('221 2.0.0 Bye\r\n');
          return 'stop';
        } else plain.write('502 5.5.2 Not implemented\r\n');
      });
    });
    listen(server, o.port, o.host);
    keepAlive();
  },

  // SMTP client: EHLO, STARTTLS, TLS, EHLO, QUIT.
  'smtp-client'() {
    const plain = net.connect(o.port, o.host);
    let buf = '';
    let stage = 'greeting';
    const onData = (d) => {
      buf += d.toString('latin1');
      if (!/\r\n$/.test(buf) || /^\d{3}-/m.test(buf.split('\r\n').slice(-2)[0])) return;
      const reply = buf;
      buf = '';
      if (stage === 'greeting' && reply.startsWith('220')) {
        stage = 'ehlo';
        plain.write('EHLO client.lab\r\n');
      } else if (stage === 'ehlo' && reply.startsWith('250')) {
        stage = 'starttls';
        plain.write('STARTTLS\r\n');
      } else if (stage === 'starttls' && reply.startsWith('220')) {
        plain.removeListener('data', onData);
        const s = tls.connect({ socket: plain, ...tlsOptions(o) }, () => {
          const localPort = plain.localPort;
          s.write('EHLO client.lab\r\nQUIT\r\n');
          s.on('data', () => {});
          s.on('end', () => {
            emit({ event: 'result', localPort, protocol: s.getProtocol() });
            process.exit(0);
          });
        });
        s.on('error', (e) => fail(String(e)));
      } else fail(`unexpected reply in ${stage}: ${reply.trim()}`);
    };
    plain.on('data', onData);
    plain.on('error', (e) => fail(String(e)));
  },

  // An HTTP proxy that only does CONNECT (RFC 9110 §9.3.6), the way egress proxies do.
  'connect-proxy'() {
    const server = http.createServer((req, res) => res.writeHead(405).end());
    server.on('connect', (req, client, head) => {
      const i = req.url.lastIndexOf(':');
      const host = req.url.slice(0, i).replace(/^\[|\]$/g, '');
      const up = net.connect(Number(req.url.slice(i + 1)), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) up.write(head);
        up.pipe(client);
        client.pipe(up);
      });
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
      emit({ event: 'conn', remotePort: client.remotePort, target: req.url });
    });
    listen(server, o.port, o.host);
    keepAlive();
  },

  // Opaque high-entropy bytes, no protocol at all (what a classifier must not call encrypted):
  // TCP: answers the first chunk with `bytes` of noise and closes; UDP: one datagram back.
  'raw-server'() {
    if (o.proto === 'udp') {
      const sock = dgram.createSocket({ type: o.host?.includes(':') ? 'udp6' : 'udp4' });
      sock.on('message', (_m, rinfo) => {
        sock.send(noise(o.bytes ?? 200, `${o.seed}/server`), rinfo.port, rinfo.address);
        emit({ event: 'conn', remotePort: rinfo.port });
      });
      sock.bind(o.port, o.host, () => emit({ event: 'listening', port: o.port }));
    } else {
      const server = net.createServer((s) => {
        const remotePort = s.remotePort;
        s.once('data', () => s.end(noise(o.bytes ?? 2000, `${o.seed}/server`)));
        s.on('error', () => {});
        s.on('close', () => emit({ event: 'conn', remotePort }));
      });
      listen(server, o.port, o.host);
    }
    keepAlive();
  },

  'raw-client'() {
    const payload = noise(o.bytes ?? 2000, `${o.seed}/client`);
    if (o.proto === 'udp') {
      const sock = dgram.createSocket({ type: o.host.includes(':') ? 'udp6' : 'udp4' });
      sock.on('message', () => {
        emit({ event: 'result', localPort: sock.address().port });
        process.exit(0);
      });
      sock.send(payload, o.port, o.host);
      return;
    }
    const s = net.connect(o.port, o.host, () => s.write(payload));
    let localPort = 0;
    let got = 0;
    s.on('connect', () => (localPort = s.localPort));
    s.on('data', (d) => (got += d.length));
    s.on('error', (e) => fail(String(e)));
    s.on('close', () => {
      emit({ event: 'result', localPort, received: got });
      process.exit(got > 0 ? 0 : 1);
    });
  },

  // A DNS responder (UDP): A queries get `answer` (default 198.18.0.53), others NOERROR/empty.
  'dns-server'() {
    const sock = dgram.createSocket({ type: o.host?.includes(':') ? 'udp6' : 'udp4' });
    sock.on('message', (q, rinfo) => {
      if (q.length < 12) return;
      let p = 12;
      while (p < q.length && q[p] !== 0) p += q[p] + 1;
      const qend = p + 5; // zero label + QTYPE + QCLASS
      const qtype = q.readUInt16BE(p + 1);
      const question = q.subarray(12, qend);
      const header = Buffer.alloc(12);
      header.writeUInt16BE(q.readUInt16BE(0), 0); // id
      header.writeUInt16BE(0x8180 | (q.readUInt16BE(2) & 0x0100), 2); // QR, RD copied, RA
      header.writeUInt16BE(1, 4);
      const answers = [];
      if (qtype === 1) {
        const a = Buffer.alloc(16);
        a.writeUInt16BE(0xc00c, 0); // name: pointer to the question
        a.writeUInt16BE(1, 2);
        a.writeUInt16BE(1, 4);
        a.writeUInt32BE(60, 6);
        a.writeUInt16BE(4, 10);
        Buffer.from((o.answer ?? '198.18.0.53').split('.').map(Number)).copy(a, 12);
        answers.push(a);
      }
      header.writeUInt16BE(answers.length, 6);
      sock.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address);
      emit({ event: 'conn', remotePort: rinfo.port, qtype });
    });
    sock.bind(o.port ?? 53, o.host, () => emit({ event: 'listening', port: o.port ?? 53 }));
    keepAlive();
  },

  // A real resolver client: Node's dns.Resolver (c-ares) pointed at the lab server.
  async 'dns-client'() {
    const r = new dns.promises.Resolver({ timeout: 3000, tries: 1 });
    const server = o.server.includes(':') ? `[${o.server}]:${o.port ?? 53}` : `${o.server}:${o.port ?? 53}`;
    r.setServers([server]);
    const addrs = await r.resolve4(o.name ?? 'web.default.svc.cluster.local');
    emit({ event: 'result', addrs });
    process.exit(0);
  },
};

const fn = roles[role];
if (!fn) fail(`unknown role; one of ${Object.keys(roles).join(', ')}`);
await fn();
