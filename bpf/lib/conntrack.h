/* SPDX-License-Identifier: Apache-2.0 */
/* Connection tracking for service flows. Two entries per flow:
 *   CT_SERVICE  client -> VIP:port      (pre-DNAT)  which backend the flow was given;
 *   CT_EGRESS   client -> backend:port  (post-DNAT) which frontend to restore on replies.
 * Replies are matched by swapping their tuple into the CT_EGRESS key. Entries expire by time
 * (checked on lookup) and the map is an LRU, so it never fills up. */
#ifndef CILIA_CONNTRACK_H
#define CILIA_CONNTRACK_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct4_key);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_ct4_global SEC(".maps");

static __always_inline struct ct4_key ct4_key_of(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto,
						__u8 dir)
{
	struct ct4_key k = {};
	k.saddr = saddr;
	k.daddr = daddr;
	k.sport = sport;
	k.dport = dport;
	k.proto = proto;
	k.dir = dir;
	return k;
}

static __always_inline __u64 ct_lifetime(__u8 proto, __u8 flags, __u8 tcp_flags_seen)
{
	if (proto != IPPROTO_TCP)
		return CT_LIFETIME_NONTCP_NS;
	if (flags & CT_F_CLOSING)
		return CT_LIFETIME_CLOSE_NS;
	/* established once the other side answered, or (for the service entry, which only sees the
	 * client's side) once the client acknowledged something */
	if (!(flags & CT_F_SEEN_REPLY) && !(tcp_flags_seen & TCP_FLAG_ACK))
		return CT_LIFETIME_SYN_NS;
	return CT_LIFETIME_TCP_NS;
}

static __always_inline int ct_live(const struct ct_entry *e)
{
	return e && e->expires_ns >= now_ns();
}

/* Returns the live entry for key, or 0 if there is none or it expired. */
static __always_inline struct ct_entry *ct_lookup(const struct ct4_key *key)
{
	struct ct_entry *e = bpf_map_lookup_elem(&cilia_ct4_global, key);
	return ct_live(e) ? e : 0;
}

/* Accounts one packet on an entry and extends its lifetime. A TCP FIN or RST shortens it, so a
 * closed flow's tuple can be reused soon for a new connection and a new backend choice. */
static __always_inline void ct_touch(struct ct_entry *e, const struct pkt4 *p, int is_reply)
{
	__u8 flags = e->flags;

	if (is_reply)
		flags |= CT_F_SEEN_REPLY;
	if (p->proto == IPPROTO_TCP) {
		e->tcp_flags |= p->tcp_flags;
		if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			flags |= CT_F_CLOSING;
	}
	if (flags != e->flags)
		e->flags = flags;
	e->expires_ns = now_ns() + ct_lifetime(p->proto, flags, e->tcp_flags);
	/* statistics only: a plain add (a flow's packets are mostly handled on one CPU at a time),
	 * where a locked one would cost more than the rest of the update */
	e->packets += 1;
	e->bytes += p->tot_len;
}

/* The entry for key whatever its state (expired, closing), or 0: for a new flow on a tuple an
 * earlier flow used, which then starts over in that entry. */
static __always_inline struct ct_entry *ct_lookup_any(const struct ct4_key *key)
{
	return bpf_map_lookup_elem(&cilia_ct4_global, key);
}

/* Whether a forward packet of an established flow, which just moved its service entry (e) on from
 * expiry `was`, should also refresh the flow's reply entry. Replies keep the reply entry alive;
 * the forward side refreshes it on packets that open or close the flow, after an idle second or
 * more (or when the lifetime grew), and every CT_REPLY_SYNC_PACKETS packets, so a flow whose
 * replies stop (one-way UDP) keeps it, and one that lost it (evicted) gets it back soon. */
static __always_inline int ct_reply_sync_due(const struct pkt4 *p, const struct ct_entry *e, __u64 was)
{
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)))
		return 1;
	return e->expires_ns > was + CT_REPLY_SYNC_NS || (e->packets % CT_REPLY_SYNC_PACKETS) == 0;
}

/* Starts a flow's entry: in place over an earlier flow's entry on the same tuple when there is one
 * (old, from ct_lookup_any), else inserted. A client that opens many connections cycles through its
 * ports within seconds, so most new flows find one, and rewriting it costs no allocation from and
 * return to the LRU map's free lists. Nothing else uses an old flow's entry once its tuple starts a
 * new flow. */
static __always_inline int ct_create(const struct ct4_key *key, struct ct_entry *old, const struct pkt4 *p,
				     __u32 backend_id, __u16 rev_nat_index, __u8 flags)
{
	struct ct_entry e = {};
	e.backend_id = backend_id;
	e.rev_nat_index = rev_nat_index;
	e.flags = flags;
	e.tcp_flags = p->tcp_flags;
	e.packets = 1;
	e.bytes = p->tot_len;
	e.expires_ns = now_ns() + ct_lifetime(p->proto, flags, p->tcp_flags);
	if (old) {
		*old = e;
		return 0;
	}
	return bpf_map_update_elem(&cilia_ct4_global, key, &e, BPF_ANY);
}

/* A SYN that is no service flow's (sent to the address itself) on the tuple a closed service flow
 * was translated to: that flow's reply entry would turn the new connection's replies into the
 * frontend's, for as long as the entry lasts. A client may dial a backend directly from a port it
 * just used for the service (its kernel picks ports per destination), so the leftover goes. A live
 * flow keeps its entry: two connections on one tuple clash at the backend whatever is done here. */
static __always_inline void ct_forget_closed_flow_on_direct_syn(const struct pkt4 *p)
{
	if (!is_new_syn(p))
		return;
	struct ct4_key k = ct4_key_of(p->saddr, p->daddr, p->sport, p->dport, p->proto, CT_EGRESS);
	struct ct_entry *e = ct_lookup_any(&k);
	if (e && (!ct_live(e) || (e->flags & CT_F_CLOSING)))
		bpf_map_delete_elem(&cilia_ct4_global, &k);
}

#endif /* CILIA_CONNTRACK_H */
