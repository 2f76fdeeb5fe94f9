// Hand-made TLS bytes for edge cases the real stacks will not produce (SSLv2 hellos,
// SSL 3.0, odd record splits). Real handshakes come from tls-lab.ts.

export function u16(v: number): number[] {
  return [(v >> 8) & 0xff, v & 0xff];
}

export function u24(v: number): number[] {
  return [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
}

export function bytes(...parts: (number[] | Uint8Array)[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) out.push(...p);
  return Uint8Array.from(out);
}

export function vec8(b: number[] | Uint8Array): number[] {
  return [b.length, ...b];
}

export function vec16(b: number[] | Uint8Array): number[] {
  return [...u16(b.length), ...b];
}

export function record(type: number, payload: number[] | Uint8Array, version = 0x0303): Uint8Array {
  return bytes([type, ...u16(version)], u16(payload.length), payload);
}

export function handshake(type: number, body: number[] | Uint8Array): Uint8Array {
  return bytes([type], u24(body.length), body);
}

export function ext(type: number, data: number[] | Uint8Array): number[] {
  return [...u16(type), ...vec16(data)];
}

export function sniExt(name: string): number[] {
  const host = [...Buffer.from(name)];
  return ext(0x0000, vec16([0, ...vec16(host)]));
}

export function alpnExt(protos: (string | number[])[]): number[] {
  const list: number[] = [];
  for (const p of protos) list.push(...vec8(typeof p === 'string' ? [...Buffer.from(p)] : p));
  return ext(0x0010, vec16(list));
}

export function supportedVersionsExt(versions: number[]): number[] {
  return ext(0x002b, vec8(versions.flatMap(u16)));
}

export function sigAlgsExt(algs: number[]): number[] {
  return ext(0x000d, vec16(algs.flatMap(u16)));
}

export interface HelloSpec {
  version?: number;
  sessionId?: number[];
  ciphers?: number[];
  extensions?: number[][];
  /** Omit the extensions block entirely (SSL 3.0 style). */
  noExtensions?: boolean;
}

export function clientHelloBody(s: HelloSpec = {}): Uint8Array {
  const exts = (s.extensions ?? []).flat();
  return bytes(
    u16(s.version ?? 0x0303),
    new Array(32).fill(7),
    vec8(s.sessionId ?? []),
    vec16((s.ciphers ?? [0x1301]).flatMap(u16)),
    vec8([0]),
    s.noExtensions ? [] : vec16(exts),
  );
}

export function serverHelloBody(s: { version?: number; random?: number[]; sessionId?: number[]; cipher?: number; extensions?: number[][] } = {}): Uint8Array {
  const exts = (s.extensions ?? []).flat();
  return bytes(
    u16(s.version ?? 0x0303),
    s.random ?? new Array(32).fill(9),
    vec8(s.sessionId ?? []),
    u16(s.cipher ?? 0x1301),
    [0],
    s.extensions === undefined ? [] : vec16(exts),
  );
}

/** Re-frames a stream of handshake bytes into records of at most `size` payload bytes. */
export function reframe(handshakeBytes: Uint8Array, size: number, type = 22, version = 0x0301): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let o = 0; o < handshakeBytes.length; o += size) parts.push(record(type, handshakeBytes.subarray(o, o + size), version));
  return concat(...parts);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
