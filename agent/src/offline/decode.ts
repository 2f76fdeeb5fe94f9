// Link layer → IP → L4 for one captured packet, without allocating: the caller owns one
// DecodedPacket and hands it to decodePacket() for every packet; the decoder overwrites
// its fields and returns a status. Every read is bounds-checked against the captured
// length, so malformed packets come back as DECODE_MALFORMED and never throw.
//
// Lengths: `payloadLength` is what the IP (and, for UDP, the UDP) headers say the L4
// payload is — right even when the capture was cut by a snaplen. `payloadCaptured` is how
// much of it is actually in the buffer at `payloadOffset`.

/** Link types this decoder reads (LINKTYPE_* values as written in pcap/pcapng files). */
export const LINKTYPE_NULL = 0;
export const LINKTYPE_ETHERNET = 1;
/** DLT_RAW as some platforms write it instead of LINKTYPE_RAW. */
export const LINKTYPE_RAW_12 = 12;
export const LINKTYPE_RAW_14 = 14;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LOOP = 108;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

const SUPPORTED_LINKTYPES: Record<number, string> = {
  [LINKTYPE_NULL]: 'NULL (BSD loopback)',
  [LINKTYPE_ETHERNET]: 'ETHERNET',
  [LINKTYPE_RAW_12]: 'RAW',
  [LINKTYPE_RAW_14]: 'RAW',
  [LINKTYPE_RAW]: 'RAW',
  [LINKTYPE_LOOP]: 'LOOP (OpenBSD loopback)',
  [LINKTYPE_LINUX_SLL]: 'LINUX_SLL',
  [LINKTYPE_IPV4]: 'IPV4',
  [LINKTYPE_IPV6]: 'IPV6',
  [LINKTYPE_LINUX_SLL2]: 'LINUX_SLL2',
};

/** Names of common link types we do not read, so an error can say what the file holds. */
const OTHER_LINKTYPES: Record<number, string> = {
  3: 'AX25',
  6: 'IEEE802_5 (token ring)',
  8: 'SLIP',
  9: 'PPP',
  10: 'FDDI',
  50: 'PPP_HDLC',
  51: 'PPP_ETHER',
  104: 'C_HDLC',
  105: 'IEEE802_11 (Wi-Fi)',
  107: 'FRELAY',
  119: 'PRISM_HEADER (Wi-Fi)',
  127: 'IEEE802_11_RADIOTAP (Wi-Fi)',
  147: 'USER0',
  187: 'BLUETOOTH_HCI_H4',
  189: 'USB_LINUX',
  192: 'PPI',
  195: 'IEEE802_15_4',
  201: 'BLUETOOTH_HCI_H4_WITH_PHDR',
  215: 'IEEE802_15_4_NONASK_PHY',
  220: 'USB_LINUX_MMAPPED',
  239: 'NFLOG',
  249: 'USBPCAP',
  252: 'WIRESHARK_UPPER_PDU',
  253: 'NETLINK',
  254: 'BLUETOOTH_LINUX_MONITOR',
};

export function isSupportedLinkType(linkType: number): boolean {
  return SUPPORTED_LINKTYPES[linkType] !== undefined;
}

/** "ETHERNET", "LINUX_SLL2", …; undefined when the number is not one we know. */
export function linkTypeName(linkType: number): string | undefined {
  return SUPPORTED_LINKTYPES[linkType] ?? OTHER_LINKTYPES[linkType];
}

/** Decode outcome. Only DECODE_OK fills the L3/L4 fields. */
export const DECODE_OK = 0;
/** A well-formed frame that is not IP (ARP, LLDP, STP, …). */
export const DECODE_NOT_IP = 1;
/** An IP fragment other than the first: nothing to attribute without reassembly. */
export const DECODE_FRAGMENT = 2;
/** Too short or inconsistent lengths at some layer. */
export const DECODE_MALFORMED = 3;
export type DecodeStatus = typeof DECODE_OK | typeof DECODE_NOT_IP | typeof DECODE_FRAGMENT | typeof DECODE_MALFORMED;

/** L4 kinds as small integers on the hot path; see TRANSPORT_NAMES for the strings. */
export const L4_OTHER = 0;
export const L4_TCP = 1;
export const L4_UDP = 2;
export const L4_ESP = 3;
export const L4_AH = 4;
export type L4Kind = typeof L4_OTHER | typeof L4_TCP | typeof L4_UDP | typeof L4_ESP | typeof L4_AH;
export const TRANSPORT_NAMES = ['other', 'tcp', 'udp', 'esp', 'ah'] as const;

/** TCP flag bits as in the header's low byte. */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
const ETHERTYPE_QINQ_OLD = 0x9100;
const ETHER_HEADER_LEN = 14;
const VLAN_TAG_LEN = 4;
/** 802.1Q + 802.1ad + two more: deeper stacks are not seen in practice. */
const MAX_VLAN_TAGS = 4;
const SLL_HEADER_LEN = 16;
const SLL_PROTOCOL_OFFSET = 14;
const SLL2_HEADER_LEN = 20;
const LOOPBACK_HEADER_LEN = 4;
const AF_INET = 2;
/** AF_INET6 differs per BSD: NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30. */
const AF_INET6_BSD = 24;
const AF_INET6_FREEBSD = 28;
const AF_INET6_DARWIN = 30;

const IPV4_MIN_HEADER_LEN = 20;
const IPV6_HEADER_LEN = 40;
const IPV4_MF = 0x2000;
const IPV4_OFFSET_MASK = 0x1fff;

const IPPROTO_HOPOPTS = 0;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ROUTING = 43;
const IPPROTO_FRAGMENT = 44;
const IPPROTO_ESP = 50;
const IPPROTO_AH = 51;
const IPPROTO_DSTOPTS = 60;
/** Hop-by-hop, routing, fragment, destination options (twice) and a little slack. */
const MAX_IPV6_EXT_HEADERS = 8;
const IPV6_FRAGMENT_HEADER_LEN = 8;
const IPV6_FRAG_OFFSET_MASK = 0xfff8;
const IPV6_FRAG_MORE = 0x0001;

const TCP_MIN_HEADER_LEN = 20;
const UDP_HEADER_LEN = 8;

/**
 * One decoded packet. Reused for every packet: copy out what you keep.
 * Addresses are 32-bit words in network order as unsigned numbers; IPv4 uses src0/dst0
 * and leaves the other words 0.
 */
export class DecodedPacket {
  ipVersion = 0;
  src0 = 0;
  src1 = 0;
  src2 = 0;
  src3 = 0;
  dst0 = 0;
  dst1 = 0;
  dst2 = 0;
  dst3 = 0;
  /** The L4 protocol number after IPv6 extension headers (6, 17, 50, 51, 1, 58, …). */
  ipProtocol = 0;
  l4: L4Kind = L4_OTHER;
  srcPort = 0;
  dstPort = 0;
  tcpFlags = 0;
  tcpSeq = 0;
  tcpAck = 0;
  /** First IP fragment (more fragments follow): the L4 header is here, the rest is not. */
  firstFragment = false;
  payloadOffset = 0;
  payloadCaptured = 0;
  payloadLength = 0;
}

function u16(b: Uint8Array, i: number): number {
  return (b[i] << 8) | b[i + 1];
}

function u32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}

/**
 * Decode the packet at buf[off, off+capLen). `origLen` is the length on the wire (used only
 * when the IP header says 0, as for TSO/BIG TCP captures). Fills `out` and returns the status.
 */
export function decodePacket(
  buf: Uint8Array,
  off: number,
  capLen: number,
  origLen: number,
  linkType: number,
  out: DecodedPacket,
): DecodeStatus {
  const end = off + capLen;
  let p = off;
  let etherType: number;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      if (capLen < ETHER_HEADER_LEN) return DECODE_MALFORMED;
      etherType = u16(buf, p + 12);
      p += ETHER_HEADER_LEN;
      break;
    case LINKTYPE_LINUX_SLL:
      if (capLen < SLL_HEADER_LEN) return DECODE_MALFORMED;
      etherType = u16(buf, p + SLL_PROTOCOL_OFFSET);
      p += SLL_HEADER_LEN;
      break;
    case LINKTYPE_LINUX_SLL2:
      if (capLen < SLL2_HEADER_LEN) return DECODE_MALFORMED;
      etherType = u16(buf, p);
      p += SLL2_HEADER_LEN;
      break;
    case LINKTYPE_RAW:
    case LINKTYPE_RAW_12:
    case LINKTYPE_RAW_14:
      return decodeIpByVersion(buf, p, end, origLen, out);
    case LINKTYPE_IPV4:
      return decodeIpv4(buf, p, end, origLen, out);
    case LINKTYPE_IPV6:
      return decodeIpv6(buf, p, end, origLen, out);
    case LINKTYPE_NULL:
    case LINKTYPE_LOOP: {
      if (capLen < LOOPBACK_HEADER_LEN) return DECODE_MALFORMED;
      // NULL is in the writer's byte order, which the file does not reliably tell; AF
      // values are small, so whichever end holds the non-zero byte is the value.
      const af = linkType === LINKTYPE_LOOP || buf[p] === 0 ? u32(buf, p) : buf[p] | (buf[p + 1] << 8);
      p += LOOPBACK_HEADER_LEN;
      if (af === AF_INET) return decodeIpv4(buf, p, end, origLen - LOOPBACK_HEADER_LEN, out);
      if (af === AF_INET6_BSD || af === AF_INET6_FREEBSD || af === AF_INET6_DARWIN) {
        return decodeIpv6(buf, p, end, origLen - LOOPBACK_HEADER_LEN, out);
      }
      return DECODE_NOT_IP;
    }
    default:
      return DECODE_NOT_IP;
  }
  // Ethernet-style ethertype, possibly behind VLAN tags.
  for (let tags = 0; etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ || etherType === ETHERTYPE_QINQ_OLD; tags++) {
    if (tags === MAX_VLAN_TAGS || end - p < VLAN_TAG_LEN) return DECODE_MALFORMED;
    etherType = u16(buf, p + 2);
    p += VLAN_TAG_LEN;
  }
  const wireLen = origLen - (p - off);
  if (etherType === ETHERTYPE_IPV4) return decodeIpv4(buf, p, end, wireLen, out);
  if (etherType === ETHERTYPE_IPV6) return decodeIpv6(buf, p, end, wireLen, out);
  return DECODE_NOT_IP;
}

function decodeIpByVersion(buf: Uint8Array, p: number, end: number, wireLen: number, out: DecodedPacket): DecodeStatus {
  if (p >= end) return DECODE_MALFORMED;
  const version = buf[p] >> 4;
  if (version === 4) return decodeIpv4(buf, p, end, wireLen, out);
  if (version === 6) return decodeIpv6(buf, p, end, wireLen, out);
  return DECODE_MALFORMED;
}

function decodeIpv4(buf: Uint8Array, p: number, end: number, wireLen: number, out: DecodedPacket): DecodeStatus {
  if (end - p < IPV4_MIN_HEADER_LEN) return DECODE_MALFORMED;
  const vihl = buf[p];
  if (vihl >> 4 !== 4) return DECODE_MALFORMED;
  const headerLen = (vihl & 0x0f) << 2;
  if (headerLen < IPV4_MIN_HEADER_LEN || end - p < headerLen) return DECODE_MALFORMED;
  let totalLen = u16(buf, p + 2);
  // 0 is what Linux shows for TSO/BIG TCP super-packets: the wire length is then the truth.
  if (totalLen === 0) totalLen = Math.min(wireLen, end - p);
  // Longer than what was on the wire (when the wire length is believable): a bad length.
  if (totalLen < headerLen || (totalLen > wireLen && wireLen >= end - p)) return DECODE_MALFORMED;
  const frag = u16(buf, p + 6);
  if ((frag & IPV4_OFFSET_MASK) !== 0) return DECODE_FRAGMENT;
  out.ipVersion = 4;
  out.src0 = u32(buf, p + 12);
  out.dst0 = u32(buf, p + 16);
  out.src1 = out.src2 = out.src3 = 0;
  out.dst1 = out.dst2 = out.dst3 = 0;
  out.firstFragment = (frag & IPV4_MF) !== 0;
  const l4 = p + headerLen;
  return decodeL4(buf, buf[p + 9], l4, Math.min(end, p + totalLen), totalLen - headerLen, out);
}

function decodeIpv6(buf: Uint8Array, p: number, end: number, wireLen: number, out: DecodedPacket): DecodeStatus {
  if (end - p < IPV6_HEADER_LEN) return DECODE_MALFORMED;
  if (buf[p] >> 4 !== 6) return DECODE_MALFORMED;
  let payloadLen = u16(buf, p + 4);
  // 0: a jumbogram or a BIG TCP super-packet; take the length on the wire.
  if (payloadLen === 0) payloadLen = Math.max(0, Math.min(wireLen, end - p) - IPV6_HEADER_LEN);
  else if (payloadLen + IPV6_HEADER_LEN > wireLen && wireLen >= end - p) return DECODE_MALFORMED;
  let next = buf[p + 6];
  out.ipVersion = 6;
  out.src0 = u32(buf, p + 8);
  out.src1 = u32(buf, p + 12);
  out.src2 = u32(buf, p + 16);
  out.src3 = u32(buf, p + 20);
  out.dst0 = u32(buf, p + 24);
  out.dst1 = u32(buf, p + 28);
  out.dst2 = u32(buf, p + 32);
  out.dst3 = u32(buf, p + 36);
  out.firstFragment = false;
  let q = p + IPV6_HEADER_LEN;
  const ipEnd = q + payloadLen;
  const capEnd = Math.min(end, ipEnd);
  for (let i = 0; ; i++) {
    if (next === IPPROTO_HOPOPTS || next === IPPROTO_ROUTING || next === IPPROTO_DSTOPTS) {
      if (i === MAX_IPV6_EXT_HEADERS || capEnd - q < 8) return DECODE_MALFORMED;
      const len = (buf[q + 1] + 1) << 3;
      next = buf[q];
      q += len;
      if (q > capEnd) return DECODE_MALFORMED;
    } else if (next === IPPROTO_FRAGMENT) {
      if (i === MAX_IPV6_EXT_HEADERS || capEnd - q < IPV6_FRAGMENT_HEADER_LEN) return DECODE_MALFORMED;
      const offFlags = u16(buf, q + 2);
      if ((offFlags & IPV6_FRAG_OFFSET_MASK) !== 0) return DECODE_FRAGMENT;
      if ((offFlags & IPV6_FRAG_MORE) !== 0) out.firstFragment = true;
      next = buf[q];
      q += IPV6_FRAGMENT_HEADER_LEN;
    } else {
      break;
    }
  }
  return decodeL4(buf, next, q, capEnd, ipEnd - q, out);
}

/** `l4Len` is the L4 length per the IP header; `capEnd` bounds what may be read. */
function decodeL4(buf: Uint8Array, proto: number, p: number, capEnd: number, l4Len: number, out: DecodedPacket): DecodeStatus {
  out.ipProtocol = proto;
  out.tcpFlags = 0;
  out.tcpSeq = 0;
  out.tcpAck = 0;
  out.srcPort = 0;
  out.dstPort = 0;
  if (proto === IPPROTO_TCP) {
    if (capEnd - p < TCP_MIN_HEADER_LEN) return DECODE_MALFORMED;
    const headerLen = (buf[p + 12] >> 4) << 2;
    if (headerLen < TCP_MIN_HEADER_LEN || headerLen > l4Len) return DECODE_MALFORMED;
    out.l4 = L4_TCP;
    out.srcPort = u16(buf, p);
    out.dstPort = u16(buf, p + 2);
    out.tcpSeq = u32(buf, p + 4);
    out.tcpAck = u32(buf, p + 8);
    out.tcpFlags = buf[p + 13];
    return setPayload(p + headerLen, capEnd, l4Len - headerLen, out);
  }
  if (proto === IPPROTO_UDP) {
    if (capEnd - p < UDP_HEADER_LEN) return DECODE_MALFORMED;
    const udpLen = u16(buf, p + 4);
    out.l4 = L4_UDP;
    out.srcPort = u16(buf, p);
    out.dstPort = u16(buf, p + 2);
    let payloadLen: number;
    if (out.firstFragment) {
      // The datagram continues in fragments we skip; count all of it, read what is here.
      if (udpLen < UDP_HEADER_LEN) return DECODE_MALFORMED;
      payloadLen = udpLen - UDP_HEADER_LEN;
    } else if (udpLen === 0 && l4Len > 0xffff) {
      payloadLen = l4Len - UDP_HEADER_LEN; // IPv6 jumbogram (RFC 2675)
    } else {
      if (udpLen < UDP_HEADER_LEN || udpLen > l4Len) return DECODE_MALFORMED;
      payloadLen = udpLen - UDP_HEADER_LEN;
    }
    const pl = p + UDP_HEADER_LEN;
    out.payloadOffset = pl;
    out.payloadLength = payloadLen;
    out.payloadCaptured = Math.max(0, Math.min(capEnd - pl, payloadLen));
    return DECODE_OK;
  }
  out.l4 = proto === IPPROTO_ESP ? L4_ESP : proto === IPPROTO_AH ? L4_AH : L4_OTHER;
  return setPayload(p, capEnd, l4Len, out);
}

function setPayload(p: number, capEnd: number, len: number, out: DecodedPacket): DecodeStatus {
  if (len < 0) return DECODE_MALFORMED;
  out.payloadOffset = p;
  out.payloadLength = len;
  out.payloadCaptured = Math.max(0, Math.min(capEnd - p, len));
  return DECODE_OK;
}
