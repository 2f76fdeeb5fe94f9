// The gRPC port's defences against clients that connect and never behave: slowloris
// (a TLS ClientHello or an HTTP/2 preface dribbled a byte at a time), bytes that are not
// HTTP/2, idle sockets, and calls whose request never arrives.
//
// grpc-js accepts connections itself and offers no handshake deadline or connection cap,
// so we own the listening socket (node:net, maxConnections) and hand each accepted
// connection to grpc-js (Server.createConnectionInjector). A connection must start its
// first call within handshakeTimeoutMs, whatever it spends that time on (TCP idle, TLS,
// HTTP/2 settings); after that grpc-js's keepalive and max_connection_idle_ms look after
// it. A unary or server-streaming call must deliver its request within the same time.

import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { constants, type ServerHttp2Stream } from 'node:http2';
import * as grpc from '@grpc/grpc-js';

export interface GuardOptions {
  handshakeTimeoutMs: number;
  maxConnections: number;
  /** A connection closed or refused by the guard (metrics). */
  onClosed?: (reason: 'handshake_timeout' | 'request_timeout' | 'connection_limit') => void;
}

/** Time for the trailers to leave before a half-open stream is reset. */
const RESET_AFTER_STATUS_MS = 1000;

/**
 * The call's HTTP/2 stream. grpc-js hands the first interceptor its base call, which keeps
 * the stream as `stream` (not part of its typed API: without it, no reset; nothing else breaks).
 */
function http2Stream(call: grpc.ServerInterceptingCallInterface): ServerHttp2Stream | undefined {
  const s = (call as { stream?: Partial<ServerHttp2Stream> }).stream;
  return s && typeof s.close === 'function' && 'rstCode' in s ? (s as ServerHttp2Stream) : undefined;
}

const key = (address: string | undefined, port: number | undefined): string => `${address ?? ''}|${port ?? 0}`;

export class GrpcConnectionGuard {
  /** Accepted connections that have not started a call yet, by peer address. */
  private readonly unproven = new Map<string, { socket: Socket; timer: NodeJS.Timeout }>();
  private readonly listeners: NetServer[] = [];
  private readonly open = new Set<Socket>();

  constructor(private readonly opts: GuardOptions) {}

  get connections(): number {
    return this.open.size;
  }

  /** For `new grpc.Server({ interceptors: [guard.interceptor] })`. */
  readonly interceptor: grpc.ServerInterceptor = (method, call) => {
    const peer = call.getConnectionInfo();
    const k = key(peer.remoteAddress, peer.remotePort);
    const u = this.unproven.get(k);
    if (u) {
      clearTimeout(u.timer);
      this.unproven.delete(k);
    }
    const stream = http2Stream(call);
    // A status ends our side only; a client that never ends its own keeps the stream (and
    // its connection, then never idle) forever. RST_STREAM(NO_ERROR) once the trailers are
    // out tells it to stop sending (RFC 9113 §8.1).
    const resetLater = (): void => {
      if (stream) setTimeout(() => !stream.closed && !stream.destroyed && stream.close(constants.NGHTTP2_NO_ERROR), RESET_AFTER_STATUS_MS).unref();
    };
    // Unary and server streaming: the one request message, then half-close, must arrive in time.
    let timer: NodeJS.Timeout | undefined;
    if (!method.requestStream) {
      timer = setTimeout(() => {
        timer = undefined;
        this.opts.onClosed?.('request_timeout');
        call.sendStatus({ code: grpc.status.DEADLINE_EXCEEDED, details: `the request did not arrive within ${this.opts.handshakeTimeoutMs} ms`, metadata: new grpc.Metadata() });
        resetLater();
      }, this.opts.handshakeTimeoutMs);
      timer.unref();
    }
    const stop = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveHalfClose: (n) => {
            stop();
            n();
          },
          onCancel: stop,
        }),
      sendStatus: (status, next) => {
        stop();
        next(status);
        resetLater();
      },
    });
  };

  /** Listens on host:port (host '': every address, dual stack) and injects connections into `server`. */
  async listen(server: grpc.Server, credentials: grpc.ServerCredentials, host: string, port: number): Promise<number> {
    const injector = server.createConnectionInjector(credentials);
    const net = createServer((socket) => this.accept(socket, injector));
    net.maxConnections = this.opts.maxConnections;
    net.on('drop', () => this.opts.onClosed?.('connection_limit'));
    this.listeners.push(net);
    await new Promise<void>((resolve, reject) => {
      net.once('error', reject);
      net.listen(port, host || undefined, () => {
        net.off('error', reject);
        resolve();
      });
    });
    const a = net.address();
    return typeof a === 'object' && a ? a.port : port;
  }

  /** Stops accepting and drops connections that never started a call; grpc-js closes the rest. */
  close(): void {
    for (const { socket, timer } of this.unproven.values()) {
      clearTimeout(timer);
      socket.destroy();
    }
    this.unproven.clear();
    // Stops listening at once; its callback would wait for every connection, which grpc-js closes.
    for (const l of this.listeners.splice(0)) l.close();
  }

  /** Every connection still open (after grpc-js shut down: what it left behind). */
  destroyAll(): void {
    for (const s of this.open) s.destroy();
  }

  private accept(socket: Socket, injector: grpc.ConnectionInjector): void {
    const k = key(socket.remoteAddress, socket.remotePort);
    this.open.add(socket);
    const timer = setTimeout(() => {
      if (this.unproven.get(k)?.socket !== socket) return;
      this.unproven.delete(k);
      this.opts.onClosed?.('handshake_timeout');
      socket.destroy();
    }, this.opts.handshakeTimeoutMs);
    timer.unref();
    this.unproven.set(k, { socket, timer });
    socket.once('close', () => {
      this.open.delete(socket);
      clearTimeout(timer);
      if (this.unproven.get(k)?.socket === socket) this.unproven.delete(k);
    });
    // grpc-js (TLS or HTTP/2) reports errors on its own wrappers; a reset raw socket must not throw.
    socket.on('error', () => undefined);
    injector.injectConnection(socket);
  }
}
