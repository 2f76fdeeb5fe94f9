/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ABI between bpf/flow.bpf.c and the agent: every struct the kernel writes and the
 * agent reads (flow map keys and values, ring buffer samples, statistics, configuration).
 *
 * Keep aligned with agent/src/bpf/flow-abi.ts: test/integration/bpf-abi.test.ts compiles
 * this header with the host compiler and compares every size, offset and constant with
 * the TypeScript side. All fields are naturally aligned with explicit padding, so the
 * layout is the same for -target bpf and x86_64/arm64 hosts. Multi-byte fields are in
 * host byte order except addresses, which stay in network order.
 */
#ifndef PLAINSIGHT_FLOW_ABI_H
#define PLAINSIGHT_FLOW_ABI_H

#include <linux/types.h>

/* Bumped on any layout change; the loader refuses an object built for another version. */
#define PS_ABI_VERSION 1

/* Defaults the loader may override before load (map sizes, rodata). */
#define PS_DEFAULT_MAX_FLOWS 65536
#define PS_DEFAULT_RINGBUF_BYTES (8 * 1024 * 1024)
/* Six payload packets per direction: a ClientHello split over a few segments, and the
 * TLS 1.3 client second flight the classifier uses to infer client certificates. */
#define PS_DEFAULT_SAMPLES_PER_DIR 6
/* Payload bytes a sample can carry. A record is only as long as what was copied (header +
 * captured_len, see ps_emit_sample), so this bounds the per-CPU scratch copy, not the ring
 * use. 4096 holds a big ClientHello (long ALPN lists, padding, post-quantum key shares)
 * and a whole TLS 1.2 server flight up to ServerHelloDone in one GSO skb. */
#define PS_SAMPLE_MAX_PAYLOAD 4096

/* Which key side sent the SYN (or, without one, the first packet): the client. */
#define PS_SIDE_A 0
#define PS_SIDE_B 1

/* Direction of a packet within its flow (index of ps_flow_value.dir). */
#define PS_DIR_TO_SERVER 0
#define PS_DIR_TO_CLIENT 1

/* Where a sample was taken. */
#define PS_HOOK_TC_INGRESS 0 /* host-side veth ingress: sent by the pod */
#define PS_HOOK_TC_EGRESS 1  /* host-side veth egress: delivered to the pod */
#define PS_HOOK_SOCKET_IN 2  /* AF_PACKET socket filter, received packet */
#define PS_HOOK_SOCKET_OUT 3 /* AF_PACKET socket filter, transmitted packet */

/* ps_flow_value.flags */
#define PS_FLOW_F_SYN_SEEN 0x1  /* client/server decided from a SYN */
#define PS_FLOW_F_MIDSTREAM 0x2 /* TCP flow first seen without a SYN (older than the hook, or evicted) */

/* Socket-filter attachments tag their flows with this bit set in key.ifindex (the low
 * bits are the attachment id the loader chose), because interface indexes inside pod
 * namespaces repeat (every loopback is ifindex 1). */
#define PS_IFINDEX_SOCKET_TAG 0x80000000u

/*
 * Flow key: the 5-tuple normalised so both directions map to one entry (side "a" is the
 * lower address/port pair), IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d) so one key type
 * serves both families. ESP/AH have no ports (0). Padding must be zero.
 */
struct ps_flow_key {
	__u32 ifindex; /* host ifindex (TC) or PS_IFINDEX_SOCKET_TAG | id (socket filter) */
	__u8 proto;    /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ESP, IPPROTO_AH */
	__u8 _pad[3];
	__u16 port_a; /* host order */
	__u16 port_b;
	__u8 addr_a[16]; /* network order */
	__u8 addr_b[16];
};

/* Counters of one direction of a flow. */
struct ps_flow_dir {
	__u64 packets;   /* wire packets: a GSO skb counts gso_segs */
	__u64 bytes;     /* L4 payload bytes (ESP/AH: the whole IP payload) */
	__u32 tcp_flags; /* OR of every TCP flags byte seen (u32: BPF atomics are 32/64-bit) */
	__u32 samples;   /* sample slots claimed; may pass the configured count by a few on races */
};

struct ps_flow_value {
	__u64 first_seen_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC); also the flow's start id */
	__u64 last_seen_ns;
	struct ps_flow_dir dir[2]; /* [PS_DIR_TO_SERVER], [PS_DIR_TO_CLIENT] */
	__u32 generation;          /* bumped when a SYN restarts the key (port reuse) */
	__u8 client_side;          /* PS_SIDE_A or PS_SIDE_B */
	__u8 flags;                /* PS_FLOW_F_* */
	__u8 _pad[2];
};

/* Ring buffer record: this header, then captured_len payload bytes; the record is
 * sizeof(header) + captured_len rounded up to 8 (the tail past captured_len is garbage). */
struct ps_sample_hdr {
	struct ps_flow_key key;
	__u32 generation;
	__u64 flow_start_ns; /* ps_flow_value.first_seen_ns: joins samples with the flow */
	__u64 timestamp_ns;
	__u32 tcp_seq; /* host order; 0 for non-TCP */
	__u32 tcp_ack;
	__u32 payload_len;  /* L4 payload bytes of this skb (a GSO skb can exceed 64 KiB) */
	__u16 captured_len; /* bytes that follow, <= PS_SAMPLE_MAX_PAYLOAD */
	__u8 direction;     /* PS_DIR_* */
	__u8 tcp_flags;
	__u8 hook;  /* PS_HOOK_* */
	__u8 index; /* 0-based sample number within this direction of the flow */
	__u8 _pad[6];
};

struct ps_sample {
	struct ps_sample_hdr hdr;
	__u8 payload[PS_SAMPLE_MAX_PAYLOAD];
};

/* Per-CPU statistics (one entry of a per-CPU array; the agent sums the CPUs). Nothing
 * the program skips or loses goes uncounted. */
struct ps_stats {
	__u64 packets;           /* program runs */
	__u64 not_ip;            /* not IPv4/IPv6 (ARP, LLDP, …) */
	__u64 not_tracked;       /* IP but not TCP/UDP/ESP/AH (ICMP, …) */
	__u64 fragments;         /* non-first IP fragments (no L4 header to attribute) */
	__u64 parse_errors;      /* truncated or malformed headers */
	__u64 flows_created;     /* new map entries */
	__u64 flows_restarted;   /* SYN on an existing key: counters reset, generation bumped */
	__u64 flows_midstream;   /* TCP entries created without a SYN: older than the hook, or evicted */
	__u64 map_insert_fail;   /* flow could not be inserted: packet not counted */
	__u64 samples_sent;      /* records submitted to the ring buffer */
	__u64 samples_lost;      /* ring buffer full: a sample slot was claimed but not sent */
	__u64 sample_copy_fail;  /* payload could not be copied (sent with captured_len 0) */
	__u64 loopback_outgoing; /* socket filter on lo: transmit copies skipped (each packet is also received) */
};

/* Read-only configuration, set by the loader before load (section .rodata.cfg holds
 * only this, so its map's initial value is exactly this struct). */
struct ps_flow_config {
	__u32 abi_version;     /* PS_ABI_VERSION the object was built with; the loader checks it */
	__u32 samples_per_dir; /* payload packets per direction sent to the ring buffer */
	__u32 sample_bytes;    /* payload bytes copied per sample, 1..PS_SAMPLE_MAX_PAYLOAD */
	__u32 socket_tag;      /* key.ifindex for socket-filter programs (PS_IFINDEX_SOCKET_TAG | id) */
};

#endif /* PLAINSIGHT_FLOW_ABI_H */
