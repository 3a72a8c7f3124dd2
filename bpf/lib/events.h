/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events and packet counters: what the datapath did to a packet, for `cilia observe` and the
 * metrics.
 *
 * Every tc program ends through ev_finish with its verdict:
 *   - a drop (TC_ACT_SHOT, or a packet answered instead of forwarded, such as the RST for a
 *     service without backends) always adds to cilia_drop_counts[reason]; every other verdict adds
 *     to cilia_fwd_counts[observation point]. One per-CPU array slot each: no lock, no atomic;
 *   - an event goes to the cilia_events ring buffer only when the level in cilia_events_cfg asks
 *     for it (the agent's flow buffer sets it):
 *       EVENTS_OFF     nothing;
 *       EVENTS_MEDIUM  Cilium's monitor-aggregation "medium" without its conntrack: every drop,
 *                      and a trace at the point the packet leaves by (to-endpoint, to-stack,
 *                      to-overlay, to-network) for TCP packets that open or close a connection
 *                      (SYN, FIN, RST) and for every non-TCP packet;
 *       EVENTS_ALL     every drop, a trace at every exit and one at every entry (from-endpoint,
 *                      from-overlay, from-network).
 *   An established TCP stream therefore costs, with events at MEDIUM, one array lookup and two
 *   compares per packet more than with them off; only a connection's first and last packets
 *   pay for a ring buffer write (a fill query, a 48-byte copy, a commit; the reader is not
 *   woken per event, see ring_write).
 *   An event the ring buffer has no room for adds to cilia_events_stats[EVENTS_STAT_LOST] (per
 *   CPU), which the reader reports: no loss is silent. Written events add to
 *   [EVENTS_STAT_WRITTEN], so a benchmark can tell the rate the reader keeps up with.
 *
 * The packet's state comes from struct pkt4: the tuple as it leaves (after translation), the
 * frontend the LB translated from or to (svc_addr), where a redirect sends it (out_ifindex), and
 * the drop reason the path set before giving up. */
#ifndef CILIA_EVENTS_H
#define CILIA_EVENTS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct events_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_events_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EVENTS_STATS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_events_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pkt_count);
	__uint(max_entries, DROP_REASONS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_drop_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pkt_count);
	__uint(max_entries, OBS_POINTS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_fwd_counts SEC(".maps");

static __always_inline __u32 events_level(void)
{
	__u32 zero = 0;
	struct events_config *cfg = bpf_map_lookup_elem(&cilia_events_cfg, &zero);
	return cfg ? cfg->level : EVENTS_OFF;
}

static __always_inline void count_packet(void *map, __u32 index, __u32 len)
{
	struct pkt_count *c = bpf_map_lookup_elem(map, &index);
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

/* Sets the reason a packet is dropped for, and returns the drop verdict. */
static __always_inline int drop_for(struct pkt4 *p, __u8 reason)
{
	p->drop_reason = reason;
	return TC_ACT_SHOT;
}

/* Where a forwarded packet goes, from the program's verdict: ok_point for TC_ACT_OK; for a
 * redirect, to-overlay when encapsulated, to-endpoint for a pod's veth (or back to the pod it came
 * from), to-network for any other device. */
static __always_inline __u8 exit_point(struct __sk_buff *skb, const struct pkt4 *p, int rc, __u8 ok_point,
				       __u8 back_point)
{
	if (rc != TC_ACT_REDIRECT)
		return ok_point;
	if (p->ev_flags & EV_F_ENCAP)
		return OBS_TO_OVERLAY;
	if (p->ev_flags & EV_F_TO_POD)
		return OBS_TO_ENDPOINT;
	if (!p->out_ifindex || p->out_ifindex == skb->ifindex)
		return back_point;
	return OBS_TO_NETWORK;
}

/* Writes an event to the ring buffer and counts it, as written or as lost (no room). The reader
 * is not woken per event, which at tens of thousands of events a second would cost a context
 * switch each: it drains the buffer every EVENTS_POLL_MS on its own, and is woken once
 * EVENTS_WAKEUP_BYTES wait, well before the buffer is full. */
static __always_inline void ring_write(struct flow_event *ev)
{
	__u64 wakeup = bpf_ringbuf_query(&cilia_events, BPF_RB_AVAIL_DATA) >= EVENTS_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
												   : BPF_RB_NO_WAKEUP;
	__u32 stat =
		bpf_ringbuf_output(&cilia_events, ev, sizeof(*ev), wakeup) < 0 ? EVENTS_STAT_LOST : EVENTS_STAT_WRITTEN;
	__u64 *n = bpf_map_lookup_elem(&cilia_events_stats, &stat);
	if (n)
		*n += 1;
}

/* Writes one event about a packet. */
static __always_inline void emit_event(struct __sk_buff *skb, const struct pkt4 *p, __u8 type, __u8 obs_point,
				       __u8 reason)
{
	struct flow_event ev = {};
	ev.ts_ns = bpf_ktime_get_ns();
	ev.type = type;
	ev.obs_point = obs_point;
	ev.drop_reason = reason;
	ev.flags = p->ev_flags;
	ev.ifindex = skb->ifindex;
	ev.pkt_len = skb->len;
	ev.saddr = p->saddr;
	ev.daddr = p->daddr;
	ev.sport = p->sport;
	ev.dport = p->dport;
	ev.proto = p->proto;
	ev.tcp_flags = p->tcp_flags;
	ev.icmp_type = p->icmp_type;
	ev.svc_addr = p->svc_addr;
	ev.svc_port = p->svc_port;
	ev.out_ifindex = p->out_ifindex;
	if (!p->l3_off)
		ev.flags |= EV_F_TRUNCATED;
	if (p->proto == IPPROTO_TCP && !(ev.flags & (EV_F_REPLY | EV_F_NOT_REPLY)) && (p->tcp_flags & TCP_FLAG_SYN))
		ev.flags |= (p->tcp_flags & TCP_FLAG_ACK) ? EV_F_REPLY : EV_F_NOT_REPLY;
	if (p->proto == IPPROTO_ICMP && p->l4_off) {
		__u8 code;
		if (bpf_skb_load_bytes(skb, p->l4_off + 1, &code, 1) == 0)
			ev.icmp_code = code;
		if (p->icmp_type == ICMP_ECHO)
			ev.flags |= EV_F_NOT_REPLY;
		else if (p->icmp_type == ICMP_ECHOREPLY)
			ev.flags |= EV_F_REPLY;
	}
	ring_write(&ev);
}

/* A connect() or sendmsg() socket-LB refuses (a Service without backends): counted and reported
 * as the drop of the packet it stands for. The socket may have no source address yet (0), and
 * there is no device and no length. */
static __always_inline void sock_drop(__be32 daddr, __be16 dport, __u8 proto, __u8 reason)
{
	count_packet(&cilia_drop_counts, reason, 0);
	if (events_level() == EVENTS_OFF)
		return;
	struct flow_event ev = {};
	ev.ts_ns = bpf_ktime_get_ns();
	ev.type = EVENT_DROP;
	ev.drop_reason = reason;
	ev.flags = EV_F_NOT_REPLY;
	ev.daddr = daddr;
	ev.dport = dport;
	ev.proto = proto;
	ring_write(&ev);
}

/* Whether MEDIUM traces this packet: TCP segments that open or close, every non-TCP packet. */
static __always_inline int medium_traces(const struct pkt4 *p)
{
	if (p->proto != IPPROTO_TCP)
		return 1;
	return (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)) != 0;
}

/* The trace of a packet entering a program (EVENTS_ALL only), once parsed. */
static __always_inline void trace_entry(struct __sk_buff *skb, const struct pkt4 *p, __u8 obs_point)
{
	if (events_level() >= EVENTS_ALL)
		emit_event(skb, p, EVENT_TRACE, obs_point, 0);
}

/* Accounts the verdict rc of a program and emits its event; returns rc. ok_point: the exit point
 * of TC_ACT_OK (OBS_NONE: not traced, e.g. a node device's traffic the datapath leaves alone),
 * back_point: that of a packet redirected back out of the device it came in on. Packets that were
 * never parsed as IPv4 (ARP, IPv6) are counted as drops but never traced. */
static __always_inline int ev_finish(struct __sk_buff *skb, struct pkt4 *p, int rc, __u8 ok_point, __u8 back_point)
{
	if (rc == TC_ACT_SHOT || p->drop_reason) {
		__u8 reason = p->drop_reason ? p->drop_reason : DROP_WRITE_ERROR;
		count_packet(&cilia_drop_counts, reason, skb->len);
		if (events_level() != EVENTS_OFF)
			emit_event(skb, p, EVENT_DROP, 0, reason);
		return rc;
	}
	if (!p->l3_off)
		return rc;
	__u8 point = exit_point(skb, p, rc, ok_point, back_point);
	if (point == OBS_NONE)
		return rc;
	count_packet(&cilia_fwd_counts, point & (OBS_POINTS_MAX - 1), skb->len);
	__u32 level = events_level();
	if (level >= EVENTS_ALL || (level == EVENTS_MEDIUM && medium_traces(p)))
		emit_event(skb, p, EVENT_TRACE, point, 0);
	return rc;
}

#endif /* CILIA_EVENTS_H */
