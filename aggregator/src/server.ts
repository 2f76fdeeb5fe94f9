// The aggregator process: gRPC (IngestService, FlowService, grpc.health.v1, reflection)
// and HTTP (/metrics, /healthz, /readyz). Opened in that order, closed in reverse.

import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import type { Logger } from 'pino';
import { packageDefinition, proto } from '../../proto/gen/index.js';
import type { FlowServiceHandlers } from '../../proto/gen/types/plainsight/v1/FlowService.js';
import type { IngestServiceHandlers } from '../../proto/gen/types/plainsight/v1/IngestService.js';
import type { ReportRequest__Output } from '../../proto/gen/types/plainsight/v1/ReportRequest.js';
import type { WatchFlowsResponse } from '../../proto/gen/types/plainsight/v1/WatchFlowsResponse.js';
import { PlainsightError } from '../../agent/src/errors.js';
import { parseHostPort, type AggregatorConfig } from './config.js';
import { IdentityResolver } from './identity/index.js';
import { Ingest, InvalidBatch } from './ingest/index.js';
import { Wal, WalWriteError } from './ingest/wal.js';
import { AgentRateLimiter } from './ingest/rate-limit.js';
import { GrpcConnectionGuard } from './guard.js';
import { decodeReport, encodeReport } from './ingest/decode.js';
import { AggregatorMetrics } from './metrics/index.js';
import { nsToMs, num } from './model.js';
import { BadPageToken, coverage, coverageRowToProto, filterFromProto, flowToProto, listFlows, matches, type Grouping } from './query/index.js';
import { FlowStore, type StoredFlow } from './store/index.js';

const INGEST_SERVICE = 'plainsight.v1.IngestService';
const FLOW_SERVICE = 'plainsight.v1.FlowService';
const SWEEP_INTERVAL_MS = 5_000;
/** A WatchFlows reader with this much unsent data loses updates (reported in-band). */
const WATCH_BUFFER_BYTES = 4 << 20;

export interface RunningAggregator {
  readonly grpcPort: number;
  readonly metricsPort: number;
  readonly store: FlowStore;
  readonly ingest: Ingest;
  readonly metrics: AggregatorMetrics;
  close(): Promise<void>;
}

export async function startAggregator(config: AggregatorConfig, log: Logger): Promise<RunningAggregator> {
  const identity = new IdentityResolver();
  const store = new FlowStore({ retentionMs: config.retentionMs, maxFlows: config.maxFlows }, identity);
  let ingest!: Ingest;
  let guard: GrpcConnectionGuard | undefined;
  let httpConnections = 0;
  const metrics = new AggregatorMetrics(
    {
      activeGroups: () => store.active.values(),
      agentsConnected: () => ingest.connectedAgents,
      storedFlows: () => store.size,
      openConnections: () => ({ grpc: guard?.connections ?? 0, http: httpConnections }),
      walBytes: () => ingest.wal?.bytes ?? 0,
    },
    config.maxSeries,
  );
  store.onEvict = (reason, n) => metrics.evictions.inc({ reason }, n);
  ingest = new Ingest(store, identity, metrics, log.child({ component: 'ingest' }));

  const token = config.tokenFile ? readToken(config.tokenFile) : undefined;
  const credentials = config.tls ? serverCredentials(config.tls) : grpc.ServerCredentials.createInsecure();

  const closers: (() => Promise<void> | void)[] = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ err }, 'error while closing');
      }
    }
  };

  try {
    ingest.encode = encodeReport;
    if (config.dataDir) {
      const dir = config.dataDir;
      let replayed = 0;
      const walLog = log.child({ component: 'wal' });
      let wal: Wal;
      try {
        wal = Wal.open(
          dir,
          {
            maxBytes: config.walMaxBytes,
            retentionMs: config.retentionMs,
            onDelete: (reason, segments, bytes) => {
              metrics.walSegmentsDeleted.inc({ reason }, segments);
              // Size: acknowledged history no longer replayed (retention: the store had forgotten it).
              walLog[reason === 'size' ? 'warn' : 'info']({ reason, segments, bytes, walMaxBytes: config.walMaxBytes }, 'ingest log segments deleted');
            },
          },
          (rec) => {
            ingest.apply(decodeReport(rec) as ReportRequest__Output, true);
            replayed++;
          },
        );
        ingest.wal = wal;
        closers.push(() => wal.close());
      } catch (cause) {
        throw new PlainsightError('PLAINSIGHT_ERR_AGG_DATA_DIR', `cannot open the ingest log in ${dir}: ${(cause as Error).message}`, { cause });
      }
      const r = wal.replayStats;
      if (r.tornBytes > 0) walLog.warn({ tornBytes: r.tornBytes }, 'ingest log: a torn last record cut off (a write interrupted by a crash; never acknowledged)');
      if (replayed > 0) log.info({ batches: replayed, flows: store.size, dataDir: dir, segments: r.segments, bytes: r.bytes, ms: Math.round(r.ms) }, 'replayed ingest log');
    }

    ingest.flushPending(Infinity);
    const limiter = new AgentRateLimiter(config.agentRateLimit, config.agentRateBurst ?? config.agentRateLimit * 2);
    const sweep = setInterval(() => {
      const now = Date.now();
      store.sweep(now);
      ingest.expireInventories(now);
      try {
        ingest.wal?.prune();
      } catch (err) {
        log.warn({ err }, 'cannot delete an old ingest log segment');
      }
      limiter.sweep(now);
    }, SWEEP_INTERVAL_MS);
    sweep.unref();
    const flush = setInterval(() => ingest.flushPending(), 500);
    flush.unref();
    closers.push(() => {
      clearInterval(sweep);
      clearInterval(flush);
    });

    const g = (guard = new GrpcConnectionGuard({
      handshakeTimeoutMs: config.handshakeTimeoutMs,
      maxConnections: config.maxConnections,
      onClosed: (reason) => metrics.connectionsClosed.inc({ reason }),
    }));
    const server = new grpc.Server({
      'grpc.max_receive_message_length': config.maxMessageBytes,
      'grpc.max_send_message_length': 64 << 20,
      'grpc.keepalive_time_ms': config.keepaliveMs,
      'grpc.keepalive_timeout_ms': Math.min(10_000, Math.ceil(config.keepaliveMs / 3)),
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_connection_idle_ms': config.connectionIdleTimeoutMs,
      'grpc.max_concurrent_streams': config.maxStreamsPerConnection,
      interceptors: [g.interceptor],
    });
    // IngestService as generated, but Report's requests decoded by the ingest decoder
    // (same descriptor and wire format, without proto-loader's object conversion).
    const ingestService = proto.plainsight.v1.IngestService.service;
    server.addService({ ...ingestService, Report: { ...ingestService.Report, requestDeserialize: decodeReport } } as grpc.ServiceDefinition, ingestHandlers(ingest, limiter, metrics, config.ingestIdleTimeoutMs, log));
    server.addService(proto.plainsight.v1.FlowService.service, flowHandlers(store, token));
    const health = new HealthImplementation({ '': 'SERVING', [INGEST_SERVICE]: 'SERVING', [FLOW_SERVICE]: 'SERVING' });
    health.addToServer(server);
    new ReflectionService(packageDefinition).addToServer(server);

    const grpcAddr = parseHostPort(config.grpcAddr);
    if (!grpcAddr) throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `--grpc-addr wants HOST:PORT or :PORT, not "${config.grpcAddr}"`);
    let grpcPort: number;
    // Registered before listening: a failed listen still releases the guard's sockets.
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of [INGEST_SERVICE, FLOW_SERVICE, '']) health.setStatus(s, 'NOT_SERVING');
          const force = setTimeout(() => server.forceShutdown(), 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            g.destroyAll();
            resolve();
          });
        }),
      () => g.close(),
    );
    try {
      // ":PORT": every address, IPv6 and IPv4 (dual stack; Node falls back to IPv4 itself).
      grpcPort = await g.listen(server, credentials, grpcAddr.host, grpcAddr.port);
    } catch (e) {
      throw new PlainsightError('PLAINSIGHT_ERR_AGG_LISTEN', `cannot listen for gRPC on ${config.grpcAddr}: ${(e as Error).message}`, { cause: e });
    }

    let metricsPort = 0;
    if (config.metricsAddr) {
      const addr = parseHostPort(config.metricsAddr);
      if (!addr) throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `--metrics-addr wants HOST:PORT or :PORT, not "${config.metricsAddr}"`);
      const http = httpServer(metrics, () => true, () => ingest.flushPending(), config);
      http.on('connection', (socket: import('node:net').Socket) => {
        httpConnections++;
        socket.once('close', () => httpConnections--);
      });
      metricsPort = await new Promise<number>((resolve, reject) => {
        http.once('error', (err) => reject(new PlainsightError('PLAINSIGHT_ERR_AGG_LISTEN', `cannot listen for /metrics on ${config.metricsAddr}: ${err.message}`, { cause: err })));
        // ":PORT": Node listens on :: and falls back to 0.0.0.0 itself.
        http.listen(addr.port, addr.host || undefined, () => {
          const a = http.address();
          resolve(typeof a === 'object' && a ? a.port : addr.port);
        });
      });
      closers.push(() => new Promise<void>((resolve) => http.close(() => resolve())));
      closers.push(() => http.closeAllConnections());
    }
    log.info(
      {
        grpcPort,
        metricsPort,
        tls: config.tls ? 'mtls' : 'off',
        token: token ? 'required' : 'off',
        retentionMs: config.retentionMs,
        maxFlows: config.maxFlows,
        dataDir: config.dataDir ?? null,
        walMaxBytes: config.dataDir ? config.walMaxBytes : null,
        agentRateLimit: config.agentRateLimit || 'off',
        maxConnections: config.maxConnections,
        handshakeTimeoutMs: config.handshakeTimeoutMs,
      },
      'aggregator listening',
    );
    return { grpcPort, metricsPort, store, ingest, metrics, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Report: one stream per agent. A newer stream from the same agent_id replaces the older
 * one (the agent only opens one after giving up on the previous, which may be a dead
 * connection the server has not noticed yet; refusing the new one would lock the agent
 * out until then). A stream with no batch for `idleMs` is closed. The rate limit holds a
 * batch (stream paused, ack not sent) until the agent's bucket has room.
 */
function ingestHandlers(ingest: Ingest, limiter: AgentRateLimiter, metrics: AggregatorMetrics, idleMs: number, log: Logger): IngestServiceHandlers {
  /** agent_id → its newest stream, and how to close that one when a newer comes. */
  const newest = new Map<string, { call: object; replace: () => void }>();
  return {
    Report(call) {
      let agentId: string | undefined;
      let node = '';
      let closed = false;
      let held: NodeJS.Timeout | undefined;
      const done = (): void => {
        closed = true;
        clearTimeout(idle);
        if (held) clearTimeout(held);
        held = undefined;
        if (agentId !== undefined) {
          if (newest.get(agentId)?.call === call) newest.delete(agentId);
          ingest.streamClosed(agentId);
        }
        agentId = undefined;
      };
      const fail = (code: grpc.status, details: string): void => {
        if (closed) return;
        done();
        call.emit('error', { code, details });
      };
      const idle = setTimeout(function expire() {
        if (closed) return;
        if (held) {
          idle.refresh();
          return;
        }
        metrics.streamsClosed.inc({ reason: 'idle' });
        fail(grpc.status.DEADLINE_EXCEEDED, `no batch for ${idleMs / 1000} s; the stream is closed, reconnect to go on`);
      }, idleMs);
      idle.unref();
      const replaced = (): void => {
        metrics.streamsClosed.inc({ reason: 'replaced' });
        fail(grpc.status.ABORTED, 'replaced by a newer stream from the same agent');
      };
      const handle = (req: ReportRequest__Output): void => {
        try {
          const r = ingest.apply(req);
          call.write({ sequence: num(req.sequence), duplicate: r.duplicate });
        } catch (e) {
          // A WAL write error is logged by ingest (once per outage); UNAVAILABLE: the agent retries.
          if (e instanceof WalWriteError) return fail(grpc.status.UNAVAILABLE, e.message);
          if (!(e instanceof InvalidBatch)) log.error({ err: e, agent: req.agentId }, 'ingest failed');
          else ingest.countInvalid();
          fail(e instanceof InvalidBatch ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL, (e as Error).message);
        }
      };
      call.on('data', (req: ReportRequest__Output) => {
        if (closed) return;
        idle.refresh();
        if (agentId === undefined && req.agentId) {
          agentId = req.agentId;
          node = req.nodeName;
          const old = newest.get(agentId);
          newest.set(agentId, { call, replace: replaced });
          ingest.streamOpened(agentId, req.nodeName);
          if (old) {
            log.warn({ agent: agentId, node }, 'a newer stream from the same agent replaces its open one');
            old.replace();
          }
        }
        const waitMs = req.agentId ? limiter.reserve(req.agentId, Math.max(1, req.flows.length)) : 0;
        if (waitMs <= 0) {
          handle(req);
          return;
        }
        // Backpressure, not refusal: no more reads (HTTP/2 flow control fills up) and no ack
        // (the agent's in-flight limit stops its writes) until the bucket has room.
        metrics.rateLimitedBatches.inc({ node: node || req.nodeName });
        metrics.throttledSeconds.inc({ node: node || req.nodeName }, waitMs / 1000);
        call.pause();
        held = setTimeout(() => {
          held = undefined;
          if (closed) return;
          handle(req);
          idle.refresh();
          call.resume();
        }, waitMs);
      });
      call.on('end', () => {
        done();
        call.end();
      });
      call.on('cancelled', done);
      call.on('error', done);
      call.on('close', done);
    },
  };
}

function flowHandlers(store: FlowStore, token: Buffer | undefined): FlowServiceHandlers {
  const denied = (md: grpc.Metadata): grpc.ServiceError | null => {
    if (!token) return null;
    const got = md.get('authorization')[0];
    const text = typeof got === 'string' ? got : '';
    const presented = Buffer.from(text.startsWith('Bearer ') ? text.slice(7) : '');
    if (presented.length === token.length && timingSafeEqual(presented, token)) return null;
    return status(grpc.status.UNAUTHENTICATED, 'a valid bearer token is required (metadata "authorization: Bearer …")');
  };
  return {
    ListFlows(call, cb) {
      const err = denied(call.metadata);
      if (err) return cb(err);
      const r = call.request;
      try {
        const page = listFlows(store, filterFromProto(r.filter, nsToMs(r.sinceUnixNs), nsToMs(r.untilUnixNs)), r.pageSize, r.pageToken);
        cb(null, { flows: page.flows.map(flowToProto), nextPageToken: page.next });
      } catch (e) {
        if (e instanceof BadPageToken) cb(status(grpc.status.INVALID_ARGUMENT, e.message));
        else cb(status(grpc.status.INTERNAL, (e as Error).message));
      }
    },
    WatchFlows(call) {
      const err = denied(call.metadata);
      if (err) {
        call.emit('error', err);
        return;
      }
      const r = call.request;
      const q = filterFromProto(r.filter, nsToMs(r.sinceUnixNs));
      for (const f of store.iterate()) if (matches(f, q)) call.write({ flow: flowToProto(f) } satisfies WatchFlowsResponse);
      if (!r.follow) {
        call.end();
        return;
      }
      let lost = 0;
      const onFlow = (f: StoredFlow): void => {
        if (!matches(f, q)) return;
        if (call.writableLength > WATCH_BUFFER_BYTES) {
          lost++;
          return;
        }
        if (lost > 0) {
          call.write({ lostEvents: lost } satisfies WatchFlowsResponse);
          lost = 0;
        }
        call.write({ flow: flowToProto(f) } satisfies WatchFlowsResponse);
      };
      const unsubscribe = store.subscribe(onFlow);
      call.on('cancelled', unsubscribe);
      call.on('close', unsubscribe);
      call.on('error', unsubscribe);
    },
    GetCoverage(call, cb) {
      const err = denied(call.metadata);
      if (err) return cb(err);
      const r = call.request;
      const by: Grouping = r.by === 'COVERAGE_GROUPING_WORKLOAD' ? 'workload' : r.by === 'COVERAGE_GROUPING_EDGE' ? 'edge' : 'namespace';
      const c = coverage(store, filterFromProto(r.filter, nsToMs(r.sinceUnixNs)), by);
      cb(null, { rows: c.rows.map(coverageRowToProto), total: coverageRowToProto(c.total) });
    },
  };
}

function status(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/**
 * Slowloris: request headers must arrive within handshakeTimeoutMs (checked at least every
 * second), an idle keep-alive connection closes after 5 s, and at most maxConnections are open.
 */
function httpServer(metrics: AggregatorMetrics, ready: () => boolean, beforeScrape: () => void, limits: Pick<AggregatorConfig, 'handshakeTimeoutMs' | 'maxConnections'>): HttpServer {
  const t = limits.handshakeTimeoutMs;
  const server = createHttpServer({ headersTimeout: t, requestTimeout: 2 * t, keepAliveTimeout: 5000, connectionsCheckingInterval: Math.min(1000, t) }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      beforeScrape();
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz\n');
    }
  });
  server.maxConnections = limits.maxConnections;
  // A connection that never sends a byte has no request for headersTimeout to time.
  server.setTimeout(2 * t, (socket) => socket.destroy());
  return server;
}

function readToken(path: string): Buffer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new PlainsightError('PLAINSIGHT_ERR_AGG_TOKEN', `cannot read the token file ${path}: ${(cause as Error).message}`, { cause });
  }
  const t = text.split('\n')[0]!.trim();
  if (!t) throw new PlainsightError('PLAINSIGHT_ERR_AGG_TOKEN', `the token file ${path} is empty`);
  return Buffer.from(t);
}

function serverCredentials(tls: { cert: string; key: string; ca: string }): grpc.ServerCredentials {
  const read = (what: string, p: string): Buffer => {
    try {
      return readFileSync(p);
    } catch (cause) {
      throw new PlainsightError('PLAINSIGHT_ERR_AGG_TLS', `cannot read the ${what} ${p}: ${(cause as Error).message}`, { cause });
    }
  };
  const ca = read('CA certificate (--tls-ca)', tls.ca);
  const cert = read('certificate (--tls-cert)', tls.cert);
  const key = read('private key (--tls-key)', tls.key);
  try {
    return grpc.ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], true);
  } catch (cause) {
    throw new PlainsightError('PLAINSIGHT_ERR_AGG_TLS', `the TLS files are not usable: ${(cause as Error).message}`, { cause });
  }
}
