// The query client `plainsight flows` and `plainsight coverage` share: address, optional
// bearer token and mTLS files, deadlines, and gRPC failures turned into one-line errors.

import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { proto } from '../proto/gen/index.js';
import type { FlowServiceClient } from '../proto/gen/types/plainsight/v1/FlowService.js';
import { PlainsightError, type ErrorCode } from '../agent/src/errors.js';

export const CLIENT_OPTIONS = {
  aggregator: { type: 'string' },
  'token-file': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
} as const;

export const CLIENT_HELP = `  --aggregator HOST:PORT  the aggregator's gRPC address (default $PLAINSIGHT_AGGREGATOR or localhost:50051)
  --token-file FILE       bearer token for the query API (default $PLAINSIGHT_TOKEN)
  --tls-cert/--tls-key/--tls-ca FILE   client certificate, key and CA when the aggregator uses mTLS
`;

/** Unary calls fail after this long. */
export const DEADLINE_MS = 15_000;

/**
 * `flows --follow` has no deadline (it watches until Ctrl-C): keepalive pings notice an
 * aggregator that stopped answering (hung, or its node gone) and the watch fails with
 * PLAINSIGHT_ERR_GRPC_UNAVAILABLE instead of waiting forever.
 */
const CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000, 'grpc.keepalive_permit_without_calls': 1 };

export interface ClientValues {
  aggregator?: string;
  'token-file'?: string;
  'tls-cert'?: string;
  'tls-key'?: string;
  'tls-ca'?: string;
}

export interface QueryClient {
  client: FlowServiceClient;
  metadata: grpc.Metadata;
  address: string;
  close(): void;
}

export function queryClient(v: ClientValues, command: string): QueryClient {
  const address = v.aggregator ?? process.env.PLAINSIGHT_AGGREGATOR ?? 'localhost:50051';
  const metadata = new grpc.Metadata();
  let token = process.env.PLAINSIGHT_TOKEN;
  if (v['token-file']) {
    try {
      token = readFileSync(v['token-file'], 'utf8').split('\n')[0]!.trim();
    } catch (cause) {
      throw new PlainsightError('PLAINSIGHT_ERR_AGG_TOKEN', `${command}: cannot read the token file ${v['token-file']}: ${(cause as Error).message}`, { cause });
    }
  }
  if (token) metadata.set('authorization', `Bearer ${token}`);
  const tlsGiven = [v['tls-cert'], v['tls-key'], v['tls-ca']].filter(Boolean).length;
  let creds = grpc.credentials.createInsecure();
  if (tlsGiven > 0) {
    if (tlsGiven < 3) throw new PlainsightError('PLAINSIGHT_ERR_USAGE', `${command}: --tls-cert, --tls-key and --tls-ca go together`);
    const read = (p: string): Buffer => {
      try {
        return readFileSync(p);
      } catch (cause) {
        throw new PlainsightError('PLAINSIGHT_ERR_AGG_TLS', `${command}: cannot read ${p}: ${(cause as Error).message}`, { cause });
      }
    };
    creds = grpc.credentials.createSsl(read(v['tls-ca']!), read(v['tls-key']!), read(v['tls-cert']!));
  }
  const client = new proto.plainsight.v1.FlowService(address, creds, CHANNEL_OPTIONS);
  return { client, metadata, address, close: () => client.close() };
}

export function deadline(ms = DEADLINE_MS): grpc.CallOptions {
  return { deadline: new Date(Date.now() + ms) };
}

/** A failed call as the one line the CLI prints. */
export function callError(e: unknown, address: string, command: string): PlainsightError {
  const err = e as Partial<grpc.ServiceError>;
  const detail = err.details || err.message || String(e);
  const code: ErrorCode =
    err.code === grpc.status.UNAVAILABLE
      ? 'PLAINSIGHT_ERR_GRPC_UNAVAILABLE'
      : err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED
        ? 'PLAINSIGHT_ERR_GRPC_UNAUTHENTICATED'
        : err.code === grpc.status.DEADLINE_EXCEEDED
          ? 'PLAINSIGHT_ERR_GRPC_DEADLINE'
          : 'PLAINSIGHT_ERR_GRPC_FAILED';
  return new PlainsightError(code, `${command}: the aggregator at ${address} failed the request: ${detail}`, { cause: e });
}

/** uint64 values arrive as strings. */
export const n = (v: string | number | undefined | null): number => (v === undefined || v === null || v === '' ? 0 : Number(v));
