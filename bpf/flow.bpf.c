// SPDX-License-Identifier: Apache-2.0
/*
 * plainsight flow observer: per-flow counters in a bounded LRU map, and the first payload
 * packets of each direction (the handshake) copied to a ring buffer for the classifier.
 * Bulk traffic is only counted here; it never leaves the kernel.
 *
 * Attach points (same parsing, same maps, same sample records):
 *   ps_tc_ingress / ps_tc_egress  TCX (or clsact) on a pod's host-side veth, root netns
 *   ps_socket                     socket filter on an AF_PACKET socket inside a netns
 *                                 (e.g. a pod's loopback, which has no host peer)
 *
 * The programs only observe: TC returns TC_ACT_UNSPEC (TCX_NEXT: the next program or the
 * stack decides), the socket filter returns 0, which only means "copy nothing to this
 * socket" — samples travel through the ring buffer in both modes, with their flow key
 * and generation, so the agent has a single sample path.
 */
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "flow_abi.h"
#include "parse.h"

#define PS_EEXIST 17
/* The loopback device has this ifindex in every network namespace. */
#define PS_LOOPBACK_IFINDEX 1
/* Socket filter verdict: bytes of the packet to queue on the socket. */
#define PS_SOCKET_COPY_NONE 0

#define PS_TCP_FIN 0x01
#define PS_TCP_SYN 0x02
#define PS_TCP_ACK 0x10

_Static_assert((PS_SAMPLE_MAX_PAYLOAD & (PS_SAMPLE_MAX_PAYLOAD - 1)) == 0,
	       "ps_copy_len masks with PS_SAMPLE_MAX_PAYLOAD - 1");
_Static_assert(sizeof(struct ps_sample_hdr) % 8 == 0, "payload must start 8-byte aligned");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PS_DEFAULT_MAX_FLOWS); /* loader: bpf_map__set_max_entries */
	__type(key, struct ps_flow_key);
	__type(value, struct ps_flow_value);
} ps_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PS_DEFAULT_RINGBUF_BYTES); /* loader: bpf_map__set_max_entries */
} ps_samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_stats);
} ps_stats SEC(".maps");

/* Per-CPU scratch for one sample: filled, then copied to the ring with only the bytes
 * captured (bpf_ringbuf_reserve needs a constant size; a fixed PS_SAMPLE_MAX_PAYLOAD
 * reservation per sample would cost ring space for bytes never copied). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_sample);
} ps_scratch SEC(".maps");

/* Its own section so the loader can set it as a whole (bpf_map__set_initial_value). */
const volatile struct ps_flow_config ps_cfg SEC(".rodata.cfg") = {
	.abi_version = PS_ABI_VERSION,
	.samples_per_dir = PS_DEFAULT_SAMPLES_PER_DIR,
	.sample_bytes = PS_SAMPLE_MAX_PAYLOAD,
	.socket_tag = PS_IFINDEX_SOCKET_TAG,
};

static __always_inline struct ps_stats *ps_stats_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ps_stats, &zero);
}

/* Per-CPU counters: no atomics needed. */
#define PS_COUNT(st, field)                                                                        \
	do {                                                                                       \
		if (st)                                                                            \
			(st)->field++;                                                             \
	} while (0)

/* Wire packets in this skb: a GSO super-packet stands for gso_segs of them (pitfall 9). */
static __always_inline __u32 ps_wire_packets(struct __sk_buff *skb, __u32 payload_len)
{
	__u32 segs = skb->gso_segs;
	__u32 size = skb->gso_size;

	if (segs > 1)
		return segs;
	if (size && payload_len > size)
		return (payload_len + size - 1) / size;
	return 1;
}

/*
 * A copy length the verifier can prove is in [1, PS_SAMPLE_MAX_PAYLOAD] whatever clang
 * did with the comparisons that produced it (pitfall 7): hide the value behind an empty
 * asm, then mask. Callers pass 1..PS_SAMPLE_MAX_PAYLOAD, which this leaves unchanged.
 */
static __always_inline __u32 ps_copy_len(__u32 want)
{
	asm volatile("" : "+r"(want));
	return ((want - 1) & (PS_SAMPLE_MAX_PAYLOAD - 1)) + 1;
}

/* A SYN that restarts nothing: the same client's SYN again before anything else happened. */
static __always_inline int ps_is_syn_retransmit(const struct ps_flow_value *v, __u8 side)
{
	return v->client_side == side && v->dir[PS_DIR_TO_CLIENT].packets == 0 &&
	       v->dir[PS_DIR_TO_SERVER].bytes == 0;
}

/*
 * Port reuse: a SYN (no ACK) on an existing key is a new connection (pitfall 8). Reset in
 * place: a packet of the old connection racing on another CPU may land in the new one,
 * which at worst adds one stray packet to it.
 */
static __always_inline void ps_flow_restart(struct ps_flow_value *v, __u8 client_side, __u64 now)
{
	__builtin_memset(v->dir, 0, sizeof(v->dir));
	v->first_seen_ns = now;
	v->last_seen_ns = now;
	v->generation++;
	v->client_side = client_side;
	v->flags = PS_FLOW_F_SYN_SEEN;
}

/* The flow's entry, created if needed; NULL if the map refused it (counted). */
static __always_inline struct ps_flow_value *ps_flow_get(const struct ps_pkt *pkt, __u64 now,
							 struct ps_stats *st)
{
	__u8 side = pkt->src_is_a ? PS_SIDE_A : PS_SIDE_B;
	__u8 other = pkt->src_is_a ? PS_SIDE_B : PS_SIDE_A;
	int tcp = pkt->key.proto == IPPROTO_TCP;
	__u8 syn_ack = pkt->tcp_flags & (PS_TCP_SYN | PS_TCP_ACK);
	int syn = tcp && syn_ack == PS_TCP_SYN;
	int synack = tcp && syn_ack == (PS_TCP_SYN | PS_TCP_ACK);
	struct ps_flow_value *v;
	int err;

	v = bpf_map_lookup_elem(&ps_flows, &pkt->key);
	if (v) {
		if (syn && !ps_is_syn_retransmit(v, side)) {
			ps_flow_restart(v, side, now);
			PS_COUNT(st, flows_restarted);
		}
		return v;
	}

	struct ps_flow_value init = {
		.first_seen_ns = now,
		.last_seen_ns = now,
		/* The SYN's sender is the client; a SYN-ACK's receiver is; else the first sender. */
		.client_side = synack ? other : side,
		.flags = (syn || synack) ? PS_FLOW_F_SYN_SEEN : (tcp ? PS_FLOW_F_MIDSTREAM : 0),
	};

	err = bpf_map_update_elem(&ps_flows, &pkt->key, &init, BPF_NOEXIST);
	if (err == 0) {
		PS_COUNT(st, flows_created);
		if (init.flags & PS_FLOW_F_MIDSTREAM)
			PS_COUNT(st, flows_midstream);
	} else if (err != -PS_EEXIST) { /* -EEXIST: another CPU created it first */
		PS_COUNT(st, map_insert_fail);
		return NULL;
	}
	v = bpf_map_lookup_elem(&ps_flows, &pkt->key);
	if (!v) /* evicted between insert and lookup: the map is far too small */
		PS_COUNT(st, map_insert_fail);
	return v;
}

static __always_inline void ps_emit_sample(struct __sk_buff *skb, const struct ps_pkt *pkt,
					   const struct ps_flow_value *v, __u8 dir, __u8 hook,
					   __u32 index, __u64 now, struct ps_stats *st)
{
	struct ps_sample *s;
	__u32 zero = 0;
	__u32 want, n, size;

	s = bpf_map_lookup_elem(&ps_scratch, &zero);
	if (!s) /* cannot happen (array of one); counted as lost rather than silent */
		goto lost;
	s->hdr.key = pkt->key;
	s->hdr.generation = v->generation;
	s->hdr.flow_start_ns = v->first_seen_ns;
	s->hdr.timestamp_ns = now;
	s->hdr.tcp_seq = pkt->tcp_seq;
	s->hdr.tcp_ack = pkt->tcp_ack;
	s->hdr.payload_len = pkt->payload_len;
	s->hdr.direction = dir;
	s->hdr.tcp_flags = pkt->tcp_flags;
	s->hdr.hook = hook;
	s->hdr.index = index;
	__builtin_memset(s->hdr._pad, 0, sizeof(s->hdr._pad));

	want = pkt->payload_len < ps_cfg.sample_bytes ? pkt->payload_len : ps_cfg.sample_bytes;
	n = ps_copy_len(want);
	if (bpf_skb_load_bytes(skb, pkt->payload_off, s->payload, n) < 0) {
		n = 0;
		PS_COUNT(st, sample_copy_fail);
	}
	s->hdr.captured_len = n;
	/* Header + what was copied, in [sizeof(hdr), sizeof(*s)] for the verifier. */
	size = sizeof(s->hdr) + n;
	asm volatile("" : "+r"(size));
	if (size > sizeof(*s))
		size = sizeof(*s);
	/* No wakeup: the agent drains the ring on a timer, nobody sleeps on it. */
	if (bpf_ringbuf_output(&ps_samples, s, size, BPF_RB_NO_WAKEUP) < 0)
		goto lost;
	PS_COUNT(st, samples_sent);
	return;
lost:
	PS_COUNT(st, samples_lost);
}

static __always_inline void ps_observe(struct __sk_buff *skb, __u8 hook, __u32 ifindex)
{
	struct ps_stats *st = ps_stats_get();
	struct ps_pkt pkt = {};
	struct ps_flow_value *v;
	struct ps_flow_dir *d;
	__u64 now;
	__u32 index;
	__u8 dir;

	PS_COUNT(st, packets);
	switch (ps_parse_packet(skb, &pkt)) {
	case PS_PARSE_OK:
		break;
	case PS_PARSE_NOT_IP:
		PS_COUNT(st, not_ip);
		return;
	case PS_PARSE_NOT_TRACKED:
		PS_COUNT(st, not_tracked);
		return;
	case PS_PARSE_FRAGMENT:
		PS_COUNT(st, fragments);
		return;
	default:
		PS_COUNT(st, parse_errors);
		return;
	}

	pkt.key.ifindex = ifindex;
	ps_normalise_key(&pkt);
	now = bpf_ktime_get_ns();
	v = ps_flow_get(&pkt, now, st);
	if (!v)
		return;

	dir = (pkt.src_is_a ? PS_SIDE_A : PS_SIDE_B) == v->client_side ? PS_DIR_TO_SERVER
									: PS_DIR_TO_CLIENT;
	d = &v->dir[dir];
	__sync_fetch_and_add(&d->packets, ps_wire_packets(skb, pkt.payload_len));
	__sync_fetch_and_add(&d->bytes, pkt.payload_len);
	if (pkt.tcp_flags)
		__sync_fetch_and_or(&d->tcp_flags, pkt.tcp_flags);
	v->last_seen_ns = now;

	/* Only the first payload packets of each direction leave the kernel. */
	if (pkt.payload_len == 0 || d->samples >= ps_cfg.samples_per_dir)
		return;
	index = __sync_fetch_and_add(&d->samples, 1);
	if (index >= ps_cfg.samples_per_dir)
		return;
	ps_emit_sample(skb, &pkt, v, dir, hook, index, now, st);
}

SEC("tc")
int ps_tc_ingress(struct __sk_buff *skb)
{
	ps_observe(skb, PS_HOOK_TC_INGRESS, skb->ifindex);
	return TC_ACT_UNSPEC; /* = TCX_NEXT: observe only */
}

SEC("tc")
int ps_tc_egress(struct __sk_buff *skb)
{
	ps_observe(skb, PS_HOOK_TC_EGRESS, skb->ifindex);
	return TC_ACT_UNSPEC;
}

SEC("socket")
int ps_socket(struct __sk_buff *skb)
{
	__u32 outgoing = skb->pkt_type == PACKET_OUTGOING;

	/* On a loopback every packet passes AF_PACKET twice, sent then received: count it once. */
	if (outgoing && skb->ifindex == PS_LOOPBACK_IFINDEX) {
		struct ps_stats *st = ps_stats_get();

		PS_COUNT(st, loopback_outgoing);
		return PS_SOCKET_COPY_NONE;
	}
	ps_observe(skb, outgoing ? PS_HOOK_SOCKET_OUT : PS_HOOK_SOCKET_IN, ps_cfg.socket_tag);
	return PS_SOCKET_COPY_NONE;
}

char LICENSE[] SEC("license") = "Apache-2.0";
