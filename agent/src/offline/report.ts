// The offline report: per-flow verdicts in the INTERFACE.md `classify --json` shape,
// a summary, and the human table. The agent's jsonl output reuses toFlowJson().

import type { Classification, TlsDetails, Transport, Verdict } from '../classify/types.js';
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

/**
 * Field order follows INTERFACE.md so a human reading raw JSON finds things where documented.
 * The object is built in that order directly (this runs once per flow on the output path).
 */
export function toFlowJson(meta: FlowMeta, c: Classification, file?: string): FlowJson {
  const out = {} as FlowJson;
  if (file !== undefined) out.file = file;
  if (meta.transport !== undefined) out.transport = meta.transport;
  if (meta.client !== undefined) out.client = meta.client;
  if (meta.server !== undefined) out.server = meta.server;
  if (c.verdict !== undefined) out.verdict = c.verdict;
  if (c.protocol !== undefined) out.protocol = c.protocol;
  if (c.upgradedFrom !== undefined) out.upgradedFrom = c.upgradedFrom;
  if (c.tls !== undefined) out.tls = orderTls(c.tls);
  if (c.mesh !== undefined) out.mesh = c.mesh;
  if (meta.packets !== undefined) out.packets = meta.packets;
  if (meta.bytes !== undefined) out.bytes = meta.bytes;
  // A damaged pcapng (if_tsresol, if_tsoffset) can give times no Date holds: leave those out, don't fail the report.
  if (meta.firstSeenMs !== undefined && isDateMs(meta.firstSeenMs)) out.firstSeen = isoTime(meta.firstSeenMs);
  if (meta.lastSeenMs !== undefined && isDateMs(meta.lastSeenMs)) out.lastSeen = isoTime(meta.lastSeenMs);
  if (c.evidence !== undefined) out.evidence = c.evidence;
  return out;
}

/** TLS details in the documented order: version, sni, alpn, alpnSelected, cipher, ja4, clientCertificate, resumed, helloRetryRequest; then any others. */
function orderTls(t: TlsDetails): TlsDetails {
  const o = {} as TlsDetails;
  if (t.version !== undefined) o.version = t.version;
  if (t.sni !== undefined) o.sni = t.sni;
  if (t.alpn !== undefined) o.alpn = t.alpn;
  if (t.alpnSelected !== undefined) o.alpnSelected = t.alpnSelected;
  if (t.cipher !== undefined) o.cipher = t.cipher;
  if (t.ja4 !== undefined) o.ja4 = t.ja4;
  if (t.clientCertificate !== undefined) o.clientCertificate = t.clientCertificate;
  if (t.resumed !== undefined) o.resumed = t.resumed;
  if (t.helloRetryRequest !== undefined) o.helloRetryRequest = t.helloRetryRequest;
  const src = t as unknown as Record<string, unknown>;
  const dst = o as unknown as Record<string, unknown>;
  for (const k of Object.keys(src)) if (!(k in dst) && src[k] !== undefined) dst[k] = src[k];
  return o;
}

/** ECMAScript's time value range (±10^8 days): isoTime() throws outside it. */
const DATE_MAX_MS = 8.64e15;

function isDateMs(ms: number): boolean {
  return Math.abs(ms) <= DATE_MAX_MS;
}

/** Largest time value (ms) the fast path formats: 10000-01-01T00:00:00Z, where ISO years stop being 4 digits. */
const ISO_FAST_MAX_MS = 253402300800000;
let isoSecond = -1;
let isoPrefix = '';

/**
 * `new Date(ms).toISOString()`, without a Date per call: flows are emitted in time order,
 * so the "YYYY-MM-DDTHH:MM:SS." part is usually the previous call's. Values outside
 * 1970-9999 (or not finite) go through Date, with its behaviour.
 */
export function isoTime(ms: number): string {
  if (!(ms >= 0 && ms < ISO_FAST_MAX_MS)) return new Date(ms).toISOString();
  const whole = Math.floor(ms);
  const sec = Math.floor(whole / 1000);
  if (sec !== isoSecond) {
    isoSecond = sec;
    isoPrefix = new Date(sec * 1000).toISOString().slice(0, 20);
  }
  const milli = whole - sec * 1000;
  return isoPrefix + (milli < 10 ? '00' : milli < 100 ? '0' : '') + milli + 'Z';
}

export function summarize(flows: readonly FlowJson[]): Summary {
  const s = emptySummary();
  for (const f of flows) addToSummary(s, f);
  return s;
}

export function emptySummary(): Summary {
  return { flows: 0, byVerdict: {}, packets: 0, bytes: 0 };
}

/** summarize() one flow at a time, for callers that do not keep the flows. */
export function addToSummary(s: Summary, f: FlowJson): void {
  s.flows++;
  s.byVerdict[f.verdict] = (s.byVerdict[f.verdict] ?? 0) + 1;
  s.packets += f.packets.toServer + f.packets.toClient;
  s.bytes += f.bytes.toServer + f.bytes.toClient;
}

export function endpointText(e: Endpoint): string {
  return e.ip.includes(':') ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
}
