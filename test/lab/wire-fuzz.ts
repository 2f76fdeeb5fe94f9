// Inputs for the detectors' property tests: a seeded PRNG (so a measured rate can be
// reproduced), random flows, and real-looking plaintext starts to mutate.
// (test/lab/ is excluded from the tap run: this file holds helpers, not tests.)

/** xorshift128+: fast, seedable, good enough to stand in for ciphertext in these tests. */
export class Prng {
  private s0: bigint;
  private s1: bigint;
  constructor(seed: number) {
    this.s0 = BigInt(seed >>> 0) | 0x9e3779b97f4a7c15n;
    this.s1 = BigInt((seed * 2654435761) >>> 0) ^ 0xbf58476d1ce4e5b9n;
    for (let i = 0; i < 16; i++) this.next32();
  }
  next32(): number {
    let x = this.s0;
    const y = this.s1;
    this.s0 = y;
    x ^= (x << 23n) & 0xffffffffffffffffn;
    this.s1 = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number((this.s1 + y) & 0xffffffffn);
  }
  int(n: number): number {
    return this.next32() % n;
  }
  fill(b: Uint8Array): Uint8Array {
    for (let i = 0; i < b.length; i += 4) {
      const v = this.next32();
      b[i] = v & 0xff;
      if (i + 1 < b.length) b[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < b.length) b[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < b.length) b[i + 3] = v >>> 24;
    }
    return b;
  }
  bytes(n: number): Uint8Array {
    return this.fill(new Uint8Array(n));
  }
}

/** Ports the encrypted detectors care about, mixed with random ones. */
export const INTERESTING_PORTS = [22, 53, 123, 443, 500, 1194, 4500, 5432, 3306, 51820, 25, 110, 143, 21, 6379];

const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

/** Plaintext starts of many protocols (client side), for mutation. */
export const PLAINTEXT_STARTS: Uint8Array[] = [
  enc('GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n'),
  enc('POST /api/v1/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"a":"hello"}'),
  enc('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64\x00\x04\x40\x00\x00\x00\x00\x02\x00\x00\x00\x00'),
  enc('*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n'),
  enc('\x00\x00\x00\x08\x04\xd2\x16\x2f'),
  enc('\x00\x00\x00\x29\x00\x03\x00\x00user\x00alice\x00database\x00db\x00application_name\x00psql\x00\x00'),
  enc('EHLO client.example.com\r\nMAIL FROM:<a@b>\r\n'),
  enc('a001 CAPABILITY\r\na002 LOGIN alice secret\r\n'),
  enc('\x00\x00\x00\x23\x00\x12\x00\x03\x00\x00\x00\x01\x00\x07rdkafka\x00\x12apache-kafka-java\x063.7.0\x00'),
  enc('\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03cli'),
  enc('AMQP\x00\x00\x09\x01'),
  enc('\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00'),
  enc('get somekey\r\n'),
  enc('\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01'),
  enc('220 mx.example.com ESMTP Postfix\r\n250-mx\r\n250 STARTTLS\r\n'),
  enc('{"jsonrpc":"2.0","method":"ping","id":1}\n'),
  enc('<?xml version="1.0"?><stream:stream to="example.com" xmlns="jabber:client">'),
];

/** Flip, overwrite, insert, delete or truncate a few bytes. */
export function mutate(r: Prng, src: Uint8Array): Uint8Array {
  let b = Uint8Array.from(src);
  const n = 1 + r.int(4);
  for (let k = 0; k < n; k++) {
    const op = r.int(5);
    const at = b.length ? r.int(b.length) : 0;
    if (op === 0 && b.length) b[at] ^= 1 << r.int(8);
    else if (op === 1 && b.length) b[at] = r.int(256);
    else if (op === 2) {
      const ins = r.bytes(1 + r.int(8));
      const nb = new Uint8Array(b.length + ins.length);
      nb.set(b.subarray(0, at));
      nb.set(ins, at);
      nb.set(b.subarray(at), at + ins.length);
      b = nb;
    } else if (op === 3 && b.length) b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1)]);
    else b = b.subarray(0, at);
  }
  return b;
}
