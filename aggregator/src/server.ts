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
import { Wal } from './ingest/wal.js';
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
  const metrics = new AggregatorMetrics(
    {
      activeGroups: () => store.active.values(),
      agentsConnected: () => ingest.connectedAgents,
      storedFlows: () => store.size,
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
      try {
        const wal = Wal.open(dir, (rec) => {
          ingest.apply(decodeReport(rec) as ReportRequest__Output, true);
          replayed++;
        });
        ingest.wal = wal;
        closers.push(() => wal.close());
      } catch (cause) {
        throw new PlainsightError('PLAINSIGHT_ERR_AGG_DATA_DIR', `cannot open the ingest log in ${dir}: ${(cause as Error).message}`, { cause });
      }
      if (replayed > 0) log.info({ batches: replayed, flows: store.size, dataDir: dir }, 'replayed ingest log');
    }

    ingest.flushPending(Infinity);
    const sweep = setInterval(() => {
      const now = Date.now();
      store.sweep(now);
      ingest.expireInventories(now);
    }, SWEEP_INTERVAL_MS);
    sweep.unref();
    const flush = setInterval(() => ingest.flushPending(), 500);
    flush.unref();
    closers.push(() => {
      clearInterval(sweep);
      clearInterval(flush);
    });

    const server = new grpc.Server({
      'grpc.max_receive_message_length': config.maxMessageBytes,
      'grpc.max_send_message_length': 64 << 20,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_connection_idle_ms': 10 * 60_000,
    });
    // IngestService as generated, but Report's requests decoded by the ingest decoder
    // (same descriptor and wire format, without proto-loader's object conversion).
    const ingestService = proto.plainsight.v1.IngestService.service;
    server.addService({ ...ingestService, Report: { ...ingestService.Report, requestDeserialize: decodeReport } } as grpc.ServiceDefinition, ingestHandlers(ingest, log));
    server.addService(proto.plainsight.v1.FlowService.service, flowHandlers(store, token));
    const health = new HealthImplementation({ '': 'SERVING', [INGEST_SERVICE]: 'SERVING', [FLOW_SERVICE]: 'SERVING' });
    health.addToServer(server);
    new ReflectionService(packageDefinition).addToServer(server);

    const grpcAddr = parseHostPort(config.grpcAddr);
    if (!grpcAddr) throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `--grpc-addr wants HOST:PORT or :PORT, not "${config.grpcAddr}"`);
    const bind = (host: string): Promise<number> =>
      new Promise<number>((resolve, reject) => {
        server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${grpcAddr.port}`, credentials, (err, port) => (err ? reject(err) : resolve(port)));
      });
    let grpcPort: number;
    try {
      // ":PORT": every address, IPv6 and IPv4 (dual stack); IPv4 only where IPv6 is off.
      grpcPort = await (grpcAddr.host ? bind(grpcAddr.host) : bind('::').catch(() => bind('0.0.0.0')));
    } catch (e) {
      throw new PlainsightError('PLAINSIGHT_ERR_AGG_LISTEN', `cannot listen for gRPC on ${config.grpcAddr}: ${(e as Error).message}`, { cause: e });
    }
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of [INGEST_SERVICE, FLOW_SERVICE, '']) health.setStatus(s, 'NOT_SERVING');
          const force = setTimeout(() => server.forceShutdown(), 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        }),
    );

    let metricsPort = 0;
    if (config.metricsAddr) {
      const addr = parseHostPort(config.metricsAddr);
      if (!addr) throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `--metrics-addr wants HOST:PORT or :PORT, not "${config.metricsAddr}"`);
      const http = httpServer(metrics, () => true, () => ingest.flushPending());
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
      { grpcPort, metricsPort, tls: config.tls ? 'mtls' : 'off', token: token ? 'required' : 'off', retentionMs: config.retentionMs, maxFlows: config.maxFlows, dataDir: config.dataDir ?? null },
      'aggregator listening',
    );
    return { grpcPort, metricsPort, store, ingest, metrics, close };
  } catch (e) {
    await close();
    throw e;
  }
}

function ingestHandlers(ingest: Ingest, log: Logger): IngestServiceHandlers {
  return {
    Report(call) {
      let agentId: string | undefined;
      const done = (): void => {
        if (agentId !== undefined) ingest.streamClosed(agentId);
        agentId = undefined;
      };
      call.on('data', (req: ReportRequest__Output) => {
        try {
          if (agentId === undefined && req.agentId) {
            agentId = req.agentId;
            ingest.streamOpened(agentId, req.nodeName);
          }
          const r = ingest.apply(req);
          call.write({ sequence: num(req.sequence), duplicate: r.duplicate });
        } catch (e) {
          if (!(e instanceof InvalidBatch)) log.error({ err: e, agent: req.agentId }, 'ingest failed');
          else ingest.countInvalid();
          call.emit('error', { code: e instanceof InvalidBatch ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL, details: (e as Error).message });
          done();
        }
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

function httpServer(metrics: AggregatorMetrics, ready: () => boolean, beforeScrape: () => void): HttpServer {
  return createHttpServer((req, res) => {
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
