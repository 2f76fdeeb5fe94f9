// Clients that connect and never behave, on every port plainsight listens on: the
// aggregator's gRPC port (plaintext and mTLS), its HTTP port (/metrics), and the agent's
// metrics port (:9101). Hundreds of them at once: idle TCP, bytes that are not HTTP/2, a
// half-sent HTTP/2 preface, the preface or a real TLS ClientHello dribbled a byte at a
// time, HTTP request headers never finished, and HTTP/2 connections whose calls never send
// their request. While they are open, real clients (query API, health check, an agent's
// exporter, Prometheus-style scrapes) must get answers within a deadline; afterwards every
// hostile connection must have been closed by the server and its file descriptors freed.
// The timeouts are set short (--handshake-timeout etc.) so the test does not wait minutes.

import t, { type Test } from 'tap';
import { connect, createServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2Connect, type ClientHttp2Session } from 'node:http2';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { AggregatorProcess, fdCount, metricSum, tempDir } from '../lab/aggregator.js';
import { REPO_ROOT, cliMissingReason } from '../lab/plainsight.js';
import { Exporter, type ExportFlow } from '../../agent/src/export/index.js';
import { AgentMetrics, MetricsServer } from '../../agent/src/metrics.js';
import { proto } from '../../proto/gen/index.js';

const require = createRequire(import.meta.url);
const LOCAL = '127.0.0.1';
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Hostile sockets: each opened, then left to the server to close. */
class Hostiles {
  private readonly all = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly sessions = new Set<ClientHttp2Session>();
  opened = 0;
  closed = 0;

  constructor(t: { teardown(fn: () => unknown): void }) {
    t.teardown(() => {
      for (const x of this.timers) clearInterval(x);
      for (const s of this.all) s.destroy();
      for (const s of this.sessions) s.destroy();
    });
  }

  get open(): number {
    return this.opened - this.closed;
  }

  /** `n` connections to port; `behave` runs once each is connected. Resolves when all are connected. */
  async connect(n: number, port: number, behave: (s: Socket) => void = () => undefined): Promise<void> {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      batch.push(
        new Promise<void>((resolve, reject) => {
          const s = connect(port, LOCAL, () => {
            this.opened++;
            s.once('close', () => this.closed++);
            behave(s);
            resolve();
          });
          this.all.add(s);
          s.on('error', (e) => reject(e));
          s.on('data', () => undefined);
        }),
      );
      // Gentle on the accept queue: a few dozen SYNs at a time.
      if (batch.length % 50 === 0) await Promise.all(batch.slice(-50));
    }
    await Promise.all(batch);
  }

  /** Writes `bytes` one byte every `everyMs` (slowloris). */
  dribble(bytes: Buffer, everyMs: number): (s: Socket) => void {
    return (s) => {
      let i = 0;
      const x = setInterval(() => {
        if (i >= bytes.length || s.destroyed) {
          clearInterval(x);
          this.timers.delete(x);
          return;
        }
        s.write(bytes.subarray(i, ++i));
      }, everyMs);
      this.timers.add(x);
    };
  }

  /** HTTP/2 connections, each opening `streams` calls that never send their request. */
  async streams(n: number, port: number, streams: number, paths: readonly string[]): Promise<void> {
    for (let i = 0; i < n; i++) {
      const session = h2Connect(`http://${LOCAL}:${port}`);
      this.sessions.add(session);
      session.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        session.once('connect', () => resolve());
        session.once('error', reject);
      });
      this.opened++;
      session.once('close', () => this.closed++);
      for (let j = 0; j < streams; j++) {
        const st = session.request({ ':method': 'POST', ':path': paths[j % paths.length]!, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
        st.on('error', () => undefined);
        st.on('data', () => undefined);
      }
    }
  }

  /** Resolves true once the server closed every hostile connection, false after timeoutMs. */
  async allClosed(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.open > 0 && Date.now() < deadline) await sleep(250);
    return this.open === 0;
  }
}

/** Time one real request; fails it past `ms`. */
async function within<T>(ms: number, what: string, f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const value = await Promise.race([f(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
  return { value, ms: Date.now() - t0 };
}

const unary = <R>(f: (cb: (e: grpc.ServiceError | null, r?: R) => void) => void): Promise<R> => new Promise((resolve, reject) => f((e, r) => (e || !r ? reject(e) : resolve(r))));

function healthClient(address: string, creds: grpc.ChannelCredentials): grpc.Client & { Check(r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: { status: string }) => void): void } {
  const def = protoLoader.loadSync(join(dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1/health.proto'), { enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: typeof grpc.Client } } } };
  return new pkg.grpc.health.v1.Health(address, creds) as never;
}

/** Every real client the aggregator serves, once each, with a deadline. */
async function realRequests(t: Test, agg: AggregatorProcess, address: string, creds: grpc.ChannelCredentials, ex: Exporter, seq: number): Promise<void> {
  const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 10_000 });
  const flows = new proto.plainsight.v1.FlowService(address, creds);
  const health = healthClient(address, creds);
  try {
    ex.enqueue([flow(seq)]);
    const acked = await within(15_000, 'exporter ack', () => ex.flushed(15_000));
    t.ok(acked.value, `the exporter's batch acknowledged in ${acked.ms} ms`);
    const list = await within(10_000, 'ListFlows', () => unary<{ flows: unknown[] }>((cb) => flows.ListFlows({ pageSize: 100 }, deadline(), cb)));
    t.ok(list.value.flows.length >= 1, `ListFlows answered in ${list.ms} ms (${list.value.flows.length} flows)`);
    const cov = await within(10_000, 'GetCoverage', () => unary<{ rows: unknown[] }>((cb) => flows.GetCoverage({}, deadline(), cb)));
    t.ok(cov.value.rows.length >= 1, `GetCoverage answered in ${cov.ms} ms`);
    const h = await within(10_000, 'health', () => unary<{ status: string }>((cb) => health.Check({ service: '' }, deadline(), cb)));
    t.equal(h.value.status, 'SERVING', `health check answered in ${h.ms} ms`);
  } finally {
    flows.close();
    health.close();
  }
  if (agg.metricsPort) {
    const m = await within(10_000, '/metrics', async () => (await fetch(`http://${LOCAL}:${agg.metricsPort}/metrics`, { signal: AbortSignal.timeout(10_000) })).text());
    t.ok(metricSum(m.value, 'plainsight_aggregator_ingest_summaries_total') >= 1, `/metrics answered in ${m.ms} ms`);
  }
}

function flow(i: number): ExportFlow {
  const now = Date.now();
  return {
    flowId: `h${i}`, transport: 'tcp', client: { ip: '198.18.7.1', port: 40000 + i }, server: { ip: '198.18.7.2', port: 443 },
    verdict: 'tls', protocol: 'tls', tls: { version: '1.3', clientCertificate: 'none' }, mesh: 'none',
    packets: { toServer: 3, toClient: 3 }, bytes: { toServer: 500, toClient: 900 }, firstSeenMs: now, lastSeenMs: now, final: true, evidence: 'test',
  };
}

/** The process's fd count once `done` holds for it (the server accepts and closes at its own pace), or after 10 s. */
async function fdsWhen(pid: number, done: (fds: number) => boolean): Promise<number> {
  let fds = fdCount(pid);
  for (let i = 0; i < 40 && !done(fds); i++) {
    await sleep(250);
    fds = fdCount(pid);
  }
  return fds;
}

/** A real TLS ClientHello (ALPN h2, as grpc-js sends), captured from node:tls. */
async function clientHello(): Promise<Buffer> {
  const srv = createServer();
  const got = new Promise<Buffer>((resolve) => srv.once('connection', (s) => s.once('data', (d: Buffer) => { resolve(d); s.destroy(); })));
  await new Promise<void>((resolve) => srv.listen(0, LOCAL, resolve));
  const port = (srv.address() as { port: number }).port;
  const c = tlsConnect({ host: LOCAL, port, servername: 'localhost', ALPNProtocols: ['h2'], rejectUnauthorized: false });
  c.on('error', () => undefined);
  const hello = await got;
  c.destroy();
  srv.close();
  return hello;
}

const skip = cliMissingReason() ?? (process.platform === 'linux' ? undefined : 'reads /proc/PID/fd');
const HANDSHAKE_S = 10;
const LIMITS = ['--handshake-timeout', `${HANDSHAKE_S}s`, '--ingest-idle-timeout', `${HANDSHAKE_S}s`, '--connection-idle-timeout', '15s', '--max-streams-per-connection', '20'];
const GRPC_PATHS = ['/plainsight.v1.FlowService/ListFlows', '/plainsight.v1.FlowService/WatchFlows', '/plainsight.v1.IngestService/Report', '/grpc.health.v1.Health/Check'];

t.test('aggregator, plaintext gRPC and HTTP: 620 hostile connections', { skip }, async (t) => {
  const agg = await AggregatorProcess.start(t, LIMITS);
  const pid = agg.proc.pid!;
  const ex = new Exporter({ address: agg.address, node: 'hostile-node', backoff: { initialMs: 100, maxMs: 1000 } });
  t.teardown(() => ex.close(0));
  await realRequests(t, agg, agg.address, grpc.credentials.createInsecure(), ex, 0); // before: the baseline
  await sleep(6000); // the warm-up's keep-alive HTTP connection times out (5 s)
  const baseline = fdCount(pid);

  const h = new Hostiles(t);
  const g = agg.grpcPort;
  await h.connect(100, g); // idle TCP
  await h.connect(60, g, (s) => s.write(PREFACE.subarray(0, 11))); // half a preface, then silence
  await h.connect(60, g, h.dribble(PREFACE, 1000)); // the preface, a byte a second
  await h.connect(40, g, (s) => s.write(randomBytes(512))); // not HTTP/2 at all (closed at once)
  await h.streams(10, g, 30, GRPC_PATHS); // calls that never send their request (20 per connection allowed)
  const m = agg.metricsPort;
  await h.connect(120, m); // idle
  await h.connect(120, m, (s) => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n')); // headers never finished
  await h.connect(110, m, h.dribble(Buffer.from(`GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(100)}\r\n\r\n`), 1000));
  const peak = await fdsWhen(pid, (n) => n >= baseline + 400);
  t.ok(peak >= baseline + 400, `the hostile connections are really open at the server: ${peak} fds (baseline ${baseline})`);
  t.comment(`hostile connections opened: ${h.opened}, open now: ${h.open}`);

  await realRequests(t, agg, agg.address, grpc.credentials.createInsecure(), ex, 1);
  t.ok(h.open >= 400, `the real requests were served while ${h.open} hostile connections were open`);

  t.ok(await h.allClosed(90_000), `every hostile connection closed by the server (${h.closed}/${h.opened})`);
  const fds = await fdsWhen(pid, (n) => n <= baseline + 10);
  t.ok(fds <= baseline + 10, `server file descriptors back near baseline: ${fds} (baseline ${baseline}, peak ${peak})`);
  await realRequests(t, agg, agg.address, grpc.credentials.createInsecure(), ex, 2);
  const text = await agg.metrics();
  t.ok(metricSum(text, 'plainsight_aggregator_connections_closed_total', { reason: 'handshake_timeout' }) >= 200, 'idle and slow connections: closed for handshake_timeout');
  t.ok(metricSum(text, 'plainsight_aggregator_connections_closed_total', { reason: 'request_timeout' }) >= 1, 'calls without a request: request_timeout');
  t.ok(metricSum(text, 'plainsight_aggregator_ingest_streams_closed_total', { reason: 'idle' }) >= 1, 'Report streams without a batch: closed as idle');
  t.equal(agg.proc.exitCode, null, 'the aggregator is still running');
});

t.test('aggregator, mTLS gRPC: idle, garbage and a ClientHello dribbled a byte at a time', { skip }, async (t) => {
  const dir = tempDir(t, 'ps-hostile-certs-');
  execFileSync('bash', [join(REPO_ROOT, 'scripts/dev-certs.sh'), dir], { stdio: 'ignore' });
  const f = (n: string): string => join(dir, n);
  const agg = await AggregatorProcess.start(t, [...LIMITS, '--tls-cert', f('aggregator.crt'), '--tls-key', f('aggregator.key'), '--tls-ca', f('ca.crt')]);
  const pid = agg.proc.pid!;
  const address = `localhost:${agg.grpcPort}`;
  const tls = { cert: f('agent.crt'), key: f('agent.key'), ca: f('ca.crt') };
  const creds = grpc.credentials.createSsl(readFileSync(tls.ca), readFileSync(tls.key), readFileSync(tls.cert));
  const ex = new Exporter({ address, node: 'hostile-tls', tls, backoff: { initialMs: 100, maxMs: 1000 } });
  t.teardown(() => ex.close(0));
  await realRequests(t, agg, address, creds, ex, 10);
  await sleep(6000);
  const baseline = fdCount(pid);

  const h = new Hostiles(t);
  const hello = await clientHello();
  t.ok(hello.length > 100 && hello[0] === 0x16, `a real ClientHello captured (${hello.length} bytes)`);
  await h.connect(150, agg.grpcPort); // idle TCP: TLS never starts
  await h.connect(150, agg.grpcPort, h.dribble(hello, 500)); // the ClientHello, a byte every 500 ms
  await h.connect(50, agg.grpcPort, (s) => s.write(randomBytes(300))); // not TLS
  await h.connect(50, agg.grpcPort, (s) => s.write(hello.subarray(0, hello.length >> 1))); // half a ClientHello
  const peak = await fdsWhen(pid, (n) => n >= baseline + 250);
  t.ok(peak >= baseline + 250, `hostile connections open at the server: ${peak} fds (baseline ${baseline})`);

  await realRequests(t, agg, address, creds, ex, 11);
  t.ok(h.open >= 250, `real mTLS requests served while ${h.open} hostile connections were open`);
  t.ok(await h.allClosed(60_000), `every hostile connection closed by the server (${h.closed}/${h.opened})`);
  const fds = await fdsWhen(pid, (n) => n <= baseline + 10);
  t.ok(fds <= baseline + 10, `server file descriptors back near baseline: ${fds} (baseline ${baseline}, peak ${peak})`);
  t.ok(metricSum(await agg.metrics(), 'plainsight_aggregator_connections_closed_total', { reason: 'handshake_timeout' }) >= 300, 'closed for handshake_timeout');
});

t.test("agent metrics port: slowloris and idle connections; /healthz and /metrics keep answering", async (t) => {
  const metrics = new AgentMetrics({ flowsTracked: () => 0, mapFillRatio: () => 0, attachments: () => ({ tcx: 0, clsact: 0, socket: 0 }), pods: () => 0 });
  t.teardown(() => metrics.close());
  const server = await MetricsServer.listen(metrics.registry, `${LOCAL}:0`, () => true, { headersTimeoutMs: 3000 });
  t.teardown(() => server.close());
  const port = server.address.port;
  const h = new Hostiles(t);
  await h.connect(150, port);
  await h.connect(100, port, (s) => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'));
  await h.connect(100, port, h.dribble(Buffer.from(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(60)}\r\n\r\n`), 500));
  for (const path of ['/healthz', '/metrics']) {
    const r = await within(10_000, path, async () => {
      const res = await fetch(`http://${LOCAL}:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
      await res.text();
      return res.status;
    });
    t.equal(r.value, 200, `${path} answered in ${r.ms} ms with ${h.open} hostile connections open`);
  }
  t.ok(h.open >= 300, `${h.open} hostile connections were open meanwhile`);
  t.ok(await h.allClosed(30_000), `every hostile connection closed by the server (${h.closed}/${h.opened})`);
});

t.test('aggregator gRPC connection cap: past --max-connections new ones are refused and counted; capacity comes back', { skip }, async (t) => {
  const agg = await AggregatorProcess.start(t, ['--max-connections', '50', '--handshake-timeout', '3s']);
  const h = new Hostiles(t);
  await h.connect(80, agg.grpcPort);
  const text = await (async () => {
    for (let i = 0; i < 40; i++) {
      const m = await agg.metrics();
      if (metricSum(m, 'plainsight_aggregator_connections_closed_total', { reason: 'connection_limit' }) >= 30) return m;
      await sleep(250);
    }
    return agg.metrics();
  })();
  const refused = metricSum(text, 'plainsight_aggregator_connections_closed_total', { reason: 'connection_limit' });
  t.ok(refused >= 30, `${refused} of 80 connections refused at the cap of 50`);
  t.ok(metricSum(text, 'plainsight_aggregator_open_connections', { listener: 'grpc' }) <= 50, 'never more than 50 open');
  t.ok(await h.allClosed(30_000), 'the rest closed by the handshake timeout');
  const flows = new proto.plainsight.v1.FlowService(agg.address, grpc.credentials.createInsecure());
  t.teardown(() => flows.close());
  const r = await within(10_000, 'ListFlows', () => unary<{ flows: unknown[] }>((cb) => flows.ListFlows({}, { deadline: Date.now() + 10_000 }, cb)));
  t.ok(Array.isArray(r.value.flows), `a real client is served again once they are gone (${r.ms} ms)`);
});
