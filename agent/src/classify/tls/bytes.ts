// Bounds-checked reads over a Uint8Array. The TLS parsers read untrusted bytes from the
// wire: a read past the end never throws, it clears `ok` and returns 0, so a parser can
// read a whole structure and check `ok` once.

export class Cursor {
  pos: number;
  readonly end: number;
  ok = true;

  constructor(
    readonly buf: Uint8Array,
    pos = 0,
    end = buf.length,
  ) {
    this.pos = pos;
    this.end = Math.min(end, buf.length);
  }

  remaining(): number {
    return this.end - this.pos;
  }

  private short(): number {
    this.ok = false;
    this.pos = this.end;
    return 0;
  }

  u8(): number {
    if (this.pos + 1 > this.end) return this.short();
    return this.buf[this.pos++];
  }

  u16(): number {
    if (this.pos + 2 > this.end) return this.short();
    const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
    this.pos += 2;
    return v;
  }

  u24(): number {
    if (this.pos + 3 > this.end) return this.short();
    const v = (this.buf[this.pos] << 16) | (this.buf[this.pos + 1] << 8) | this.buf[this.pos + 2];
    this.pos += 3;
    return v;
  }

  /** Advances n bytes; on a short buffer stops at the end and clears ok. */
  skip(n: number): void {
    if (this.pos + n > this.end) this.short();
    else this.pos += n;
  }

  /** A view of the next n bytes (no copy); on a short buffer, what is left, and ok cleared. */
  bytes(n: number): Uint8Array {
    const start = this.pos;
    this.skip(n);
    return this.buf.subarray(start, this.pos);
  }

  /**
   * A cursor over the next n bytes (a length-prefixed vector body), advancing past them.
   * On a short buffer the sub-cursor covers what is left and both cursors lose ok.
   */
  sub(n: number): Cursor {
    const start = this.pos;
    this.skip(n);
    const c = new Cursor(this.buf, start, this.pos);
    if (!this.ok) c.ok = false;
    return c;
  }
}

const HEX = '0123456789abcdef';
/** "00".."ff": two table lookups per 16-bit value instead of four. */
const HEX_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => HEX[i >> 4] + HEX[i & 15]);

/** 4 lowercase hex digits, as JA4 and the "0xC02F" fallback names use. */
export function hex4(v: number): string {
  return HEX_BYTE[(v >> 8) & 0xff] + HEX_BYTE[v & 0xff];
}

export function hex2(v: number): string {
  return HEX_BYTE[v & 0xff];
}

const PRINTABLE_MIN = 0x20;
const PRINTABLE_MAX = 0x7e;

/**
 * Wire bytes that should be text (SNI, ALPN) as a string. Printable ASCII is kept; any
 * other byte becomes \xHH, so a hostile peer cannot inject control characters into
 * reports and the result stays bounded (at most 4 chars per byte, at most maxBytes read).
 */
export function wireText(b: Uint8Array, maxBytes = 255): string {
  const n = Math.min(b.length, maxBytes);
  // Usual case, all printable: one string from the bytes instead of one concatenation per byte.
  let plain = true;
  for (let i = 0; i < n; i++) {
    const c = b[i];
    if (c < PRINTABLE_MIN || c > PRINTABLE_MAX || c === 0x5c) {
      plain = false;
      break;
    }
  }
  if (plain) return String.fromCharCode.apply(null, b.subarray(0, n) as unknown as number[]);
  let s = '';
  for (let i = 0; i < n; i++) {
    const c = b[i];
    s += c >= PRINTABLE_MIN && c <= PRINTABLE_MAX && c !== 0x5c ? String.fromCharCode(c) : '\\x' + hex2(c);
  }
  return s;
}

/** RFC 8701 GREASE values: 0x0A0A, 0x1A1A, ... 0xFAFA. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);
}
