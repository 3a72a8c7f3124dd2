/* SPDX-License-Identifier: Apache-2.0 */
/* Address translation: DNAT to a backend, reverse NAT of replies back to the frontend, and SNAT of
 * north-south flows to a node address when the backend is on another node (so its replies come
 * back through this node).
 *
 * The SNAT map holds two entries per flow, like Cilium's snat map:
 *   NAT_EGRESS   client:cport -> backend:bport     => leaves as node:natport
 *   NAT_INGRESS  backend:bport -> node:natport     => the reply goes back to client:cport
 * The NAT_INGRESS entry owns the port. It records when the flow was last seen and how far a TCP
 * connection got in closing, and a port whose flow is over (closed, reset, or idle) goes to the
 * next flow that needs one: the range is a few thousand ports, and connections to one backend can
 * come and go faster than that. */
#ifndef CILIA_NAT_H
#define CILIA_NAT_H

#include "common.h"
#include "csum.h"
#include "conntrack.h"
#include "devices.h"
#include "lb.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct4_key);
	__type(value, struct nat_entry);
	__uint(max_entries, SNAT_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_snat_v4 SEC(".maps");

/* Rewrites the destination to the backend. */
static __always_inline int lb4_dnat(struct __sk_buff *skb, struct pkt4 *p, const struct lb4_backend *be)
{
	if (rewrite_addr(skb, p, 0, be->address) < 0)
		return -1;
	if (rewrite_port(skb, p, 0, be->port) < 0)
		return -1;
	return 0;
}

/* If the packet is a reply of a service flow (backend -> client), rewrites its source back to the
 * frontend. Returns 1 if it did, 0 if the packet is not such a reply, -1 on error. */
static __always_inline int lb4_rev_nat(struct __sk_buff *skb, struct pkt4 *p)
{
	struct ct4_key k = ct4_key_of(p->daddr, p->saddr, p->dport, p->sport, p->proto, CT_EGRESS);
	struct ct_entry *e = ct_lookup(&k);
	if (!e)
		return 0;
	struct lb4_reverse_nat *rn = lb4_lookup_rev_nat(e->rev_nat_index);
	if (!rn)
		return 0;
	ct_touch(e, p, 1);
	if (rewrite_addr(skb, p, 1, rn->address) < 0)
		return -1;
	if (rewrite_port(skb, p, 1, rn->port) < 0)
		return -1;
	p->ev_flags |= EV_F_REV_NAT | EV_F_REPLY;
	p->svc_addr = rn->address;
	p->svc_port = rn->port;
	return 1;
}

/* The TCP close flags a packet adds to its flow's NAT state; fin says which direction it is. */
static __always_inline __u16 nat_close_flags(const struct pkt4 *p, __u16 fin)
{
	__u16 flags = 0;
	if (p->proto != IPPROTO_TCP)
		return 0;
	if (p->tcp_flags & TCP_FLAG_RST)
		flags |= NAT_F_RST;
	if (p->tcp_flags & TCP_FLAG_FIN)
		flags |= fin;
	return flags;
}

/* Whether the flow owning a NAT port is over, so that a new flow may take the port: a TCP
 * connection closed (FIN both ways, or RST) at least `grace` ago, anything else after being idle. */
static __always_inline int nat_port_reclaimable(const struct nat_entry *owner, __u8 proto, __u64 now, __u64 grace)
{
	__u64 idle = now > owner->last_seen_ns ? now - owner->last_seen_ns : 0;
	if (proto == IPPROTO_TCP) {
		int closed = (owner->flags & NAT_F_RST) ||
			     (owner->flags & (NAT_F_FIN_FWD | NAT_F_FIN_REV)) == (NAT_F_FIN_FWD | NAT_F_FIN_REV);
		if (closed && idle >= grace)
			return 1;
	}
	return idle > ((proto == IPPROTO_TCP && (owner->flags & NAT_F_SEEN_REPLY)) ? NAT_IDLE_TCP_NS : NAT_IDLE_NS);
}

/* Reverses SNAT on a reply arriving at node:natport. Returns 1 if it did, 0 if the packet is not
 * such a reply, -1 on error. */
static __always_inline int snat_rev(struct __sk_buff *skb, struct pkt4 *p)
{
	struct ct4_key k = ct4_key_of(p->saddr, p->daddr, p->sport, p->dport, p->proto, NAT_INGRESS);
	struct nat_entry *n = bpf_map_lookup_elem(&cilia_snat_v4, &k);
	if (!n)
		return 0;
	__u64 now = now_ns();
	__u16 flags = n->flags | NAT_F_SEEN_REPLY | nat_close_flags(p, NAT_F_FIN_REV);
	if (flags != n->flags)
		n->flags = flags;
	if (n->last_seen_ns != now)
		n->last_seen_ns = now;
	if (rewrite_addr(skb, p, 0, n->to_addr) < 0)
		return -1;
	if (rewrite_port(skb, p, 0, n->to_port) < 0)
		return -1;
	return 1;
}

/* The port an existing mapping gives this (post-DNAT) flow, or 0 when it must get a new one: no
 * mapping, another SNAT address, or a port that meanwhile went to another flow. The port owner's
 * state is checked and refreshed on a new SYN, a FIN or RST, and otherwise once per
 * NAT_REFRESH_NS, so established flows cost one lookup per packet. */
static __always_inline __be16 snat_existing_port(const struct pkt4 *p, struct nat_entry *n, __be32 snat_addr,
						 __u64 now)
{
	if (!n || n->to_addr != snat_addr)
		return 0;
	__u16 close = nat_close_flags(p, NAT_F_FIN_FWD);
	int new_syn = is_new_syn(p);
	if (!new_syn && !close && now < n->last_seen_ns + NAT_REFRESH_NS)
		return n->to_port;

	struct ct4_key ik = ct4_key_of(p->daddr, snat_addr, p->dport, n->to_port, p->proto, NAT_INGRESS);
	struct nat_entry *owner = bpf_map_lookup_elem(&cilia_snat_v4, &ik);
	if (!owner || owner->to_addr != p->saddr || owner->to_port != p->sport)
		return 0;
	/* the same tuple opening a new connection starts with a clean state */
	__u16 flags = new_syn ? close : owner->flags | close;
	if (flags != owner->flags)
		owner->flags = flags;
	owner->last_seen_ns = now;
	n->last_seen_ns = now;
	return n->to_port;
}

/* Source-NATs a (post-DNAT) flow to snat_addr, reusing the port of its existing mapping or
 * allocating one with a bounded number of random probes; a port whose flow is over is taken.
 * Returns 0, or the negated drop reason: DROP_NAT_NO_MAPPING (every probe found its port taken),
 * DROP_CT_CREATE_FAILED (the mapping could not be written), DROP_WRITE_ERROR. */
static __always_inline int snat_fwd(struct __sk_buff *skb, struct pkt4 *p, __be32 snat_addr)
{
	struct ct4_key ek = ct4_key_of(p->saddr, p->daddr, p->sport, p->dport, p->proto, NAT_EGRESS);
	struct nat_entry *n = bpf_map_lookup_elem(&cilia_snat_v4, &ek);
	__u64 now = now_ns();
	__be16 nat_port = snat_existing_port(p, n, snat_addr, now);

	if (!nat_port) {
		struct nat_entry rev = {
			.last_seen_ns = now,
			.to_addr = p->saddr,
			.to_port = p->sport,
			.flags = nat_close_flags(p, NAT_F_FIN_FWD),
		};
		/* keep the client's port when it is free, as masquerading does */
		__u16 port = bpf_ntohs(p->sport);
		if (port < NAT_PORT_MIN || port > NAT_PORT_MAX)
			port = NAT_PORT_MIN + bpf_get_prandom_u32() % (NAT_PORT_MAX - NAT_PORT_MIN + 1);
		for (int i = 0; i < NAT_PORT_RETRIES; i++) {
			struct ct4_key ik = ct4_key_of(p->daddr, snat_addr, p->dport, bpf_htons(port), p->proto,
						       NAT_INGRESS);
			/* Looked up before any update: a failed update of an LRU map still takes and
			 * returns a free element under the LRU's lock. The first probes only take
			 * ports closed NAT_CLOSED_GRACE_NS ago or more, so that the old connection's
			 * last packets are through; the rest take any closed port rather than fail
			 * the connection. */
			struct nat_entry *owner = bpf_map_lookup_elem(&cilia_snat_v4, &ik);
			__u64 grace = i < NAT_PORT_RETRIES / 2 ? NAT_CLOSED_GRACE_NS : 0;
			int taken;
			if (!owner)
				taken = bpf_map_update_elem(&cilia_snat_v4, &ik, &rev, BPF_NOEXIST) == 0;
			else
				taken = nat_port_reclaimable(owner, p->proto, now, grace) &&
					bpf_map_update_elem(&cilia_snat_v4, &ik, &rev, BPF_EXIST) == 0;
			if (taken) {
				nat_port = bpf_htons(port);
				break;
			}
			port = NAT_PORT_MIN + bpf_get_prandom_u32() % (NAT_PORT_MAX - NAT_PORT_MIN + 1);
		}
		if (!nat_port)
			return -DROP_NAT_NO_MAPPING;
		struct nat_entry fwd = { .last_seen_ns = now, .to_addr = snat_addr, .to_port = nat_port };
		if (bpf_map_update_elem(&cilia_snat_v4, &ek, &fwd, BPF_ANY) < 0)
			return -DROP_CT_CREATE_FAILED;
	}
	if (rewrite_addr(skb, p, 1, snat_addr) < 0)
		return -DROP_WRITE_ERROR;
	if (rewrite_port(skb, p, 1, nat_port) < 0)
		return -DROP_WRITE_ERROR;
	return 0;
}

#endif /* CILIA_NAT_H */
