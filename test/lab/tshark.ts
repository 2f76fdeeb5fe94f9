// tshark as an independent oracle for the lab's captures: per-conversation packet and
// payload byte counts, and JA4 computed from tshark's own ClientHello dissection (this
// tshark, 4.0, has no JA4 field of its own; see hasField()).

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

async function tshark(args: string[]): Promise<string> {
  const argv = args[0] === '-G' ? args : ['-n', ...args]; // -G must come first
  const { stdout } = await execFileP('tshark', argv, { timeout: 60_000, maxBuffer: 256 << 20 });
  return stdout;
}

const fieldCache = new Map<string, boolean>();

/** Whether this tshark knows a display field (e.g. tls.handshake.ja4). */
export async function hasField(field: string): Promise<boolean> {
  let known = fieldCache.get(field);
  if (known === undefined) {
    const list = await tshark(['-G', 'fields']);
    known = list.split('\n').some((l) => l.split('\t')[2] === field);
    fieldCache.set(field, known);
  }
  return known;
}

/** Rows of `-T fields` output for the given fields (multi-valued fields joined by ';'). */
export async function fields(file: string, filter: string, names: string[]): Promise<string[][]> {
  const out = await tshark(['-r', file, '-Y', filter, '-T', 'fields', '-E', 'separator=\t', '-E', 'aggregator=;', '-E', 'occurrence=a', ...names.flatMap((n) => ['-e', n])]);
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

export interface Conversation {
  transport: 'tcp' | 'udp';
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  /** All packets (TCP: including handshake and pure ACKs). */
  packets: { toServer: number; toClient: number };
  /** Packets with L4 payload. */
  payloadPackets: { toServer: number; toClient: number };
  /** L4 payload bytes. */
  bytes: { toServer: number; toClient: number };
}

/**
 * TCP and UDP conversations as tshark sees them. The client is the SYN sender (TCP) or
 * the sender of the first packet.
 */
export async function conversations(file: string): Promise<Conversation[]> {
  const rows = await fields(file, '(tcp or udp) and not icmp and not icmpv6', [
    'tcp.stream', 'udp.stream', 'ip.src', 'ipv6.src', 'ip.dst', 'ipv6.dst',
    'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport', 'tcp.len', 'udp.length', 'tcp.flags.syn', 'tcp.flags.ack',
  ]);
  const convs = new Map<string, Conversation & { a: string }>();
  for (const r of rows) {
    const [tcpStream, udpStream, ip4s, ip6s, ip4d, ip6d, tsp, tdp, usp, udp, tlen, ulen, syn, ack] = r;
    const isTcp = Boolean(tcpStream);
    const key = isTcp ? `t${tcpStream}` : `u${udpStream}`;
    const src = { ip: (ip6s || ip4s) ?? '', port: Number(isTcp ? tsp : usp) };
    const dst = { ip: (ip6d || ip4d) ?? '', port: Number(isTcp ? tdp : udp) };
    const len = isTcp ? Number(tlen || 0) : Math.max(0, Number(ulen || 8) - 8);
    const srcKey = `${src.ip}|${src.port}`;
    let c = convs.get(key);
    if (!c) {
      // A SYN-ACK first means we missed the SYN: the sender of the SYN-ACK is the server.
      const synAck = isTcp && isTrue(syn) && isTrue(ack);
      const [client, server] = synAck ? [dst, src] : [src, dst];
      c = {
        transport: isTcp ? 'tcp' : 'udp', client, server, a: `${client.ip}|${client.port}`,
        packets: { toServer: 0, toClient: 0 }, payloadPackets: { toServer: 0, toClient: 0 }, bytes: { toServer: 0, toClient: 0 },
      };
      convs.set(key, c);
    }
    const dir = srcKey === c.a ? 'toServer' : 'toClient';
    c.packets[dir]++;
    if (len > 0) {
      c.payloadPackets[dir]++;
      c.bytes[dir] += len;
    }
  }
  return [...convs.values()].map(({ a: _a, ...c }) => c);
}

function isTrue(v: string | undefined): boolean {
  return v === '1' || v === 'True' || v === 'true';
}

// ---------------------------------------------------------------------------------------
// JA4 (FoxIO, https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md), from
// tshark's fields rather than from raw bytes, so it shares no code with the classifier.

const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
const hex4 = (v: number): string => v.toString(16).padStart(4, '0');
const sha12 = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);
const num = (s: string): number => (s.startsWith('0x') ? parseInt(s, 16) : parseInt(s, 10));
const list = (s: string | undefined): number[] => (s ? s.split(';').filter(Boolean).map(num) : []);

const VERSION: Record<number, string> = { 0x0304: '13', 0x0303: '12', 0x0302: '11', 0x0301: '10', 0x0300: 's3', 0x0002: 's2' };

export interface ClientHelloJa4 {
  /** TCP source port of the ClientHello, to match a flow. */
  clientPort: number;
  ja4: string;
  /** The raw (unhashed) JA4_r parts, for messages. */
  raw: string;
}

/** JA4 of every TCP ClientHello in the file, computed from tshark's dissection. */
export async function ja4FromTshark(file: string): Promise<ClientHelloJa4[]> {
  const rows = await fields(file, 'tls.handshake.type == 1 && tcp', [
    'tcp.srcport', 'tls.handshake.version', 'tls.handshake.ciphersuite', 'tls.handshake.extension.type',
    'tls.handshake.extensions.supported_version', 'tls.handshake.extensions_alpn_str', 'tls.handshake.extensions_server_name',
    'tls.handshake.sig_hash_alg', 'tls.handshake.sig_hash_alg_len',
  ]);
  return rows.map((r) => {
    const [sport, legacy, ciphersS, extsS, svS, alpnS, sni, sigS, sigLenS] = r;
    const ciphers = list(ciphersS).filter((c) => !isGrease(c));
    const exts = list(extsS).filter((e) => !isGrease(e));
    const versions = list(svS).filter((v) => !isGrease(v));
    const v = versions.length ? Math.max(...versions) : num(legacy ?? '0');
    const alpn = alpnS ? alpnS.split(';')[0] ?? '' : '';
    // sig_hash_alg occurs in signature_algorithms (13) and signature_algorithms_cert (50),
    // in extension order; sig_hash_alg_len (bytes) says where one list ends.
    const allSigs = list(sigS);
    const sigLens = list(sigLenS).map((n) => n / 2);
    const sigExtOrder = exts.filter((e) => e === 13 || e === 50);
    let sigs: number[] = [];
    let at = 0;
    for (const [i, e] of sigExtOrder.entries()) {
      const n = sigLens[i] ?? 0;
      if (e === 13) sigs = allSigs.slice(at, at + n);
      at += n;
    }
    const a = `t${VERSION[v] ?? '00'}${sni ? 'd' : 'i'}${String(Math.min(ciphers.length, 99)).padStart(2, '0')}${String(Math.min(exts.length, 99)).padStart(2, '0')}${alpnChars(alpn)}`;
    const cStr = [...ciphers].sort((x, y) => x - y).map(hex4).join(',');
    const eSorted = exts.filter((e) => e !== 0x0000 && e !== 0x0010).sort((x, y) => x - y).map(hex4).join(',');
    const eStr = sigs.length ? `${eSorted}_${sigs.map(hex4).join(',')}` : eSorted;
    const b = ciphers.length ? sha12(cStr) : '000000000000';
    const c = exts.length ? sha12(eStr) : '000000000000';
    return { clientPort: Number(sport), ja4: `${a}_${b}_${c}`, raw: `${a}_${cStr}_${eStr}` };
  });
}

function alpnChars(alpn: string): string {
  if (!alpn) return '00';
  const first = alpn[0] ?? '';
  const last = alpn[alpn.length - 1] ?? '';
  const alnum = /^[A-Za-z0-9]$/;
  if (alnum.test(first) && alnum.test(last)) return `${first}${last}`;
  const bytes = Buffer.from(alpn, 'latin1');
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `${h(bytes[0] ?? 0)[0]}${h(bytes[bytes.length - 1] ?? 0)[1]}`;
}
