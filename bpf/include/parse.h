/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounds-checked L2-L4 parsers shared by every plainsight program (TC and socket filter).
 *
 * Every read goes through bpf_skb_load_bytes(), which fails instead of reading past the
 * packet, so a truncated or hostile header is a parse error, never an out-of-bounds read.
 * It is also the only packet access a socket filter has (no direct packet access there),
 * which is why TC uses it too: one parser, one behaviour in both attach modes.
 *
 * Offsets are relative to skb->data, which is the Ethernet header in both hooks (TC sees
 * the MAC header; AF_PACKET SOCK_RAW pushes it back before running the filter).
 */
#ifndef PLAINSIGHT_PARSE_H
#define PLAINSIGHT_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flow_abi.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* 802.1Q tags we step over: one (VLAN) or two (QinQ). */
#define PS_MAX_VLAN_TAGS 2
/* IPv6 extension headers walked before giving up (hop-by-hop, routing, fragment, dstopts…). */
#define PS_MAX_IPV6_EXT_HEADERS 8

#define PS_IPV4_FRAG_OFFSET_MASK 0x1fff
#define PS_IPV6_FRAG_OFFSET_MASK 0xfff8
#define PS_IPV4_MIN_IHL 5
#define PS_TCP_MIN_DOFF 5

/* IPv6 next-header values that are extension headers, not the transport. */
#define PS_IPV6_HOPOPTS 0
#define PS_IPV6_ROUTING 43
#define PS_IPV6_FRAGMENT 44
#define PS_IPV6_DSTOPTS 60
#define PS_IPV6_NONE 59

enum ps_parse_result {
	PS_PARSE_OK = 0,
	PS_PARSE_NOT_IP,      /* not IPv4/IPv6 */
	PS_PARSE_NOT_TRACKED, /* IP, but a transport we do not track */
	PS_PARSE_FRAGMENT,    /* non-first fragment: no transport header */
	PS_PARSE_ERROR,       /* truncated or malformed */
};

/* What the parsers learn about one packet. The key is not yet normalised. */
struct ps_pkt {
	struct ps_flow_key key; /* side a = source, side b = destination until normalised */
	__u32 payload_off;      /* offset of the L4 payload from skb->data */
	__u32 payload_len;      /* L4 payload bytes in this skb */
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u8 tcp_flags;
	__u8 src_is_a; /* after normalisation: the sender is key side a */
};

/* IPv6 extension header prefix: next header and length in 8-octet units (minus one). */
struct ps_ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ps_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

struct ps_vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

static __always_inline void ps_ipv4_mapped(__u8 *dst, __be32 addr)
{
	__u32 *w = (__u32 *)dst;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = addr;
}

/* Ethernet + up to two VLAN tags. On success *off is the L3 offset, *proto its ethertype. */
static __always_inline int ps_parse_eth(struct __sk_buff *skb, __u32 *off, __u16 *proto)
{
	struct ethhdr eth;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return PS_PARSE_ERROR;
	*off = sizeof(eth);
	*proto = bpf_ntohs(eth.h_proto);

#pragma unroll
	for (int i = 0; i < PS_MAX_VLAN_TAGS; i++) {
		struct ps_vlan_hdr vlan;

		if (*proto != ETH_P_8021Q && *proto != ETH_P_8021AD)
			break;
		if (bpf_skb_load_bytes(skb, *off, &vlan, sizeof(vlan)) < 0)
			return PS_PARSE_ERROR;
		*off += sizeof(vlan);
		*proto = bpf_ntohs(vlan.encapsulated_proto);
	}
	return PS_PARSE_OK;
}

/* IPv4: addresses, transport protocol, L4 offset and L4 length (header options via IHL). */
static __always_inline int ps_parse_ipv4(struct __sk_buff *skb, __u32 off, struct ps_pkt *pkt,
					 __u32 *l4_off, __u32 *l4_len)
{
	struct iphdr ip;
	__u32 hdr_len, tot_len;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return PS_PARSE_ERROR;
	if (ip.version != 4 || ip.ihl < PS_IPV4_MIN_IHL)
		return PS_PARSE_ERROR;
	if (bpf_ntohs(ip.frag_off) & PS_IPV4_FRAG_OFFSET_MASK)
		return PS_PARSE_FRAGMENT;

	hdr_len = ip.ihl * 4;
	tot_len = bpf_ntohs(ip.tot_len);
	*l4_off = off + hdr_len;
	if (tot_len == 0) /* BIG TCP / TSO super-packet: the skb says how long it is */
		*l4_len = skb->len > *l4_off ? skb->len - *l4_off : 0;
	else if (tot_len >= hdr_len)
		*l4_len = tot_len - hdr_len;
	else
		return PS_PARSE_ERROR;

	pkt->key.proto = ip.protocol;
	ps_ipv4_mapped(pkt->key.addr_a, ip.saddr);
	ps_ipv4_mapped(pkt->key.addr_b, ip.daddr);
	return PS_PARSE_OK;
}

/* IPv6 with a bounded walk over extension headers to the transport header. */
static __always_inline int ps_parse_ipv6(struct __sk_buff *skb, __u32 off, struct ps_pkt *pkt,
					 __u32 *l4_off, __u32 *l4_len)
{
	struct ipv6hdr ip6;
	__u32 len;
	__u8 next;

	if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
		return PS_PARSE_ERROR;
	if (ip6.version != 6)
		return PS_PARSE_ERROR;

	__builtin_memcpy(pkt->key.addr_a, &ip6.saddr, 16);
	__builtin_memcpy(pkt->key.addr_b, &ip6.daddr, 16);
	next = ip6.nexthdr;
	off += sizeof(ip6);
	len = bpf_ntohs(ip6.payload_len);
	if (len == 0) /* jumbogram / BIG TCP */
		len = skb->len > off ? skb->len - off : 0;

	for (int i = 0; i < PS_MAX_IPV6_EXT_HEADERS; i++) {
		__u32 ext_len;

		if (next == PS_IPV6_HOPOPTS || next == PS_IPV6_ROUTING || next == PS_IPV6_DSTOPTS) {
			struct ps_ipv6_opt_hdr opt;

			if (bpf_skb_load_bytes(skb, off, &opt, sizeof(opt)) < 0)
				return PS_PARSE_ERROR;
			ext_len = ((__u32)opt.hdrlen + 1) * 8;
			next = opt.nexthdr;
		} else if (next == PS_IPV6_FRAGMENT) {
			struct ps_ipv6_frag_hdr frag;

			if (bpf_skb_load_bytes(skb, off, &frag, sizeof(frag)) < 0)
				return PS_PARSE_ERROR;
			if (bpf_ntohs(frag.frag_off) & PS_IPV6_FRAG_OFFSET_MASK)
				return PS_PARSE_FRAGMENT;
			ext_len = sizeof(frag);
			next = frag.nexthdr;
		} else {
			break;
		}
		if (ext_len > len)
			return PS_PARSE_ERROR;
		off += ext_len;
		len -= ext_len;
	}

	pkt->key.proto = next;
	*l4_off = off;
	*l4_len = len;
	return PS_PARSE_OK;
}

/* TCP, UDP, ESP, AH: ports, TCP sequence/flags, payload offset and length. */
static __always_inline int ps_parse_l4(struct __sk_buff *skb, __u32 l4_off, __u32 l4_len,
				       struct ps_pkt *pkt)
{
	switch (pkt->key.proto) {
	case IPPROTO_TCP: {
		struct tcphdr tcp;
		__u32 hdr_len;

		if (bpf_skb_load_bytes(skb, l4_off, &tcp, sizeof(tcp)) < 0)
			return PS_PARSE_ERROR;
		hdr_len = tcp.doff * 4;
		if (tcp.doff < PS_TCP_MIN_DOFF || hdr_len > l4_len)
			return PS_PARSE_ERROR;
		pkt->key.port_a = bpf_ntohs(tcp.source);
		pkt->key.port_b = bpf_ntohs(tcp.dest);
		pkt->tcp_seq = bpf_ntohl(tcp.seq);
		pkt->tcp_ack = bpf_ntohl(tcp.ack_seq);
		/* The flags byte follows doff/reserved: 13 bytes into the header. */
		pkt->tcp_flags = ((__u8 *)&tcp)[13];
		pkt->payload_off = l4_off + hdr_len;
		pkt->payload_len = l4_len - hdr_len;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr udp;

		if (bpf_skb_load_bytes(skb, l4_off, &udp, sizeof(udp)) < 0)
			return PS_PARSE_ERROR;
		if (l4_len < sizeof(udp))
			return PS_PARSE_ERROR;
		pkt->key.port_a = bpf_ntohs(udp.source);
		pkt->key.port_b = bpf_ntohs(udp.dest);
		pkt->payload_off = l4_off + sizeof(udp);
		pkt->payload_len = l4_len - sizeof(udp);
		break;
	}
	case IPPROTO_ESP:
	case IPPROTO_AH:
		/* No ports: one flow per address pair; the payload starts with the SPI. */
		pkt->payload_off = l4_off;
		pkt->payload_len = l4_len;
		break;
	default:
		return PS_PARSE_NOT_TRACKED;
	}

	/* Never trust a length field past the bytes the skb really holds (e.g. Ethernet padding
	 * is in skb->len, but a lying IP length must not make us claim more). */
	if (pkt->payload_off >= skb->len)
		pkt->payload_len = 0;
	else if (pkt->payload_len > skb->len - pkt->payload_off)
		pkt->payload_len = skb->len - pkt->payload_off;
	return PS_PARSE_OK;
}

/* Ethernet → IP → transport. The key comes out with side a = sender. */
static __always_inline int ps_parse_packet(struct __sk_buff *skb, struct ps_pkt *pkt)
{
	__u32 off, l4_off = 0, l4_len = 0;
	__u16 proto;
	int ret;

	ret = ps_parse_eth(skb, &off, &proto);
	if (ret != PS_PARSE_OK)
		return ret;
	if (proto == ETH_P_IP)
		ret = ps_parse_ipv4(skb, off, pkt, &l4_off, &l4_len);
	else if (proto == ETH_P_IPV6)
		ret = ps_parse_ipv6(skb, off, pkt, &l4_off, &l4_len);
	else
		return PS_PARSE_NOT_IP;
	if (ret != PS_PARSE_OK)
		return ret;
	return ps_parse_l4(skb, l4_off, l4_len, pkt);
}

/* 1 if (addr_a, port_a) sorts after (addr_b, port_b): the sides must then be swapped.
 * Word-wise (the addresses are only 4-byte aligned in the key; stack access must be aligned). */
static __always_inline int ps_key_sides_reversed(const struct ps_flow_key *k)
{
	const __u32 *a = (const __u32 *)k->addr_a;
	const __u32 *b = (const __u32 *)k->addr_b;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 wa = bpf_ntohl(a[i]), wb = bpf_ntohl(b[i]);

		if (wa != wb)
			return wa > wb;
	}
	return k->port_a > k->port_b;
}

/* Normalise the key so both directions of a flow produce the same one. */
static __always_inline void ps_normalise_key(struct ps_pkt *pkt)
{
	struct ps_flow_key *k = &pkt->key;

	pkt->src_is_a = 1;
	if (!ps_key_sides_reversed(k))
		return;
	pkt->src_is_a = 0;

	__u8 tmp[16];
	__u16 port = k->port_a;

	__builtin_memcpy(tmp, k->addr_a, 16);
	__builtin_memcpy(k->addr_a, k->addr_b, 16);
	__builtin_memcpy(k->addr_b, tmp, 16);
	k->port_a = k->port_b;
	k->port_b = port;
}

#endif /* PLAINSIGHT_PARSE_H */
