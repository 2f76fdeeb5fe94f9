// The offline report: per-flow verdicts in the INTERFACE.md `classify --json` shape,
// a summary, and the human table. The agent's jsonl output reuses toFlowJson().

import type { Classification, Transport, Verdict } from '../classify/types.js';
import type { Directional, Endpoint } from './flows.js';


/** One flow as users and scripts see it (INTERFACE.md). */
export interface FlowJson extends Classification {
  transport: Transport;
  client: Endpoint;
  server: Endpoint;
  packets: Directional;
  bytes: Directional;
  firstSeen?: string;
  lastSeen?: string;
  file?: string;
}

export interface Summary {
  flows: number;
  byVerdict: Partial<Record<Verdict, number>>;
  packets: number;
  bytes: number;
}

export interface FlowMeta {
  transport: Transport;
  client: Endpoint;
  server: Endpoint;
  packets: Directional;
  bytes: Directional;
  firstSeenMs?: number;
  lastSeenMs?: number;
}

/** Field order follows INTERFACE.md so a human reading raw JSON finds things where documented. */
export function toFlowJson(meta: FlowMeta, c: Classification, file?: string): FlowJson {
  const out: FlowJson = {
    transport: meta.transport,
    client: meta.client,
    server: meta.server,
    verdict: c.verdict,
    protocol: c.protocol,
    mesh: c.mesh,
    packets: meta.packets,
    bytes: meta.bytes,
    evidence: c.evidence,
  } as FlowJson;
  if (c.upgradedFrom !== undefined) out.upgradedFrom = c.upgradedFrom;
  if (c.tls !== undefined) out.tls = orderKeys(c.tls, TLS_ORDER);
  if (meta.firstSeenMs !== undefined) out.firstSeen = new Date(meta.firstSeenMs).toISOString();
  if (meta.lastSeenMs !== undefined) out.lastSeen = new Date(meta.lastSeenMs).toISOString();
  if (file !== undefined) out.file = file;
  return reorder(out);
}

const ORDER = [
  'file', 'transport', 'client', 'server', 'verdict', 'protocol', 'upgradedFrom', 'tls', 'mesh',
  'packets', 'bytes', 'firstSeen', 'lastSeen', 'evidence',
] as const;

const TLS_ORDER = ['version', 'sni', 'alpn', 'alpnSelected', 'cipher', 'ja4', 'clientCertificate', 'resumed', 'helloRetryRequest'] as const;

function reorder(f: FlowJson): FlowJson {
  return orderKeys(f, ORDER);
}

/** Known keys first in the documented order, then any others. */
function orderKeys<T extends object>(obj: T, order: readonly string[]): T {
  const src = obj as Record<string, unknown>;
  const o: Record<string, unknown> = {};
  for (const k of order) if (src[k] !== undefined) o[k] = src[k];
  for (const k of Object.keys(src)) if (!(k in o) && src[k] !== undefined) o[k] = src[k];
  return o as T;
}

export function summarize(flows: readonly FlowJson[]): Summary {
  const s: Summary = { flows: flows.length, byVerdict: {}, packets: 0, bytes: 0 };
  for (const f of flows) {
    s.byVerdict[f.verdict] = (s.byVerdict[f.verdict] ?? 0) + 1;
    s.packets += f.packets.toServer + f.packets.toClient;
    s.bytes += f.bytes.toServer + f.bytes.toClient;
  }
  return s;
}

export function endpointText(e: Endpoint): string {
  return e.ip.includes(':') ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
}
