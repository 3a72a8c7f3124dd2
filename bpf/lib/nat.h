/* SPDX-License-Identifier: Apache-2.0 */
/* Address translation: DNAT to a backend, reverse NAT of replies back to the frontend, and SNAT of
 * north-south flows to a node address when the backend is on another node (so its replies come
 * back through this node).
 *
 * The SNAT map holds two entries per flow, like Cilium's snat map:
 *   NAT_EGRESS   client:cport -> backend:bport     => leaves as node:natport
 *   NAT_INGRESS  backend:bport -> node:natport     => the reply goes back to client:cport */
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
	return 1;
}

/* Reverses SNAT on a reply arriving at node:natport. Returns 1 if it did, 0 if the packet is not
 * such a reply, -1 on error. */
static __always_inline int snat_rev(struct __sk_buff *skb, struct pkt4 *p)
{
	struct ct4_key k = ct4_key_of(p->saddr, p->daddr, p->sport, p->dport, p->proto, NAT_INGRESS);
	struct nat_entry *n = bpf_map_lookup_elem(&cilia_snat_v4, &k);
	if (!n)
		return 0;
	if (rewrite_addr(skb, p, 0, n->to_addr) < 0)
		return -1;
	if (rewrite_port(skb, p, 0, n->to_port) < 0)
		return -1;
	return 1;
}

/* Source-NATs a (post-DNAT) flow to snat_addr, reusing the port of an existing mapping or
 * allocating a free one with a bounded number of random probes. */
static __always_inline int snat_fwd(struct __sk_buff *skb, struct pkt4 *p, __be32 snat_addr)
{
	struct ct4_key ek = ct4_key_of(p->saddr, p->daddr, p->sport, p->dport, p->proto, NAT_EGRESS);
	struct nat_entry *n = bpf_map_lookup_elem(&cilia_snat_v4, &ek);
	__be16 nat_port = 0;

	if (n && n->to_addr == snat_addr) {
		nat_port = n->to_port;
	} else {
		struct nat_entry rev = { .created_ns = now_ns(), .to_addr = p->saddr, .to_port = p->sport };
		/* keep the client's port when it is free, as masquerading does */
		__u16 port = bpf_ntohs(p->sport);
		if (port < NAT_PORT_MIN || port > NAT_PORT_MAX)
			port = NAT_PORT_MIN + bpf_get_prandom_u32() % (NAT_PORT_MAX - NAT_PORT_MIN + 1);
		for (int i = 0; i < NAT_PORT_RETRIES; i++) {
			struct ct4_key ik = ct4_key_of(p->daddr, snat_addr, p->dport, bpf_htons(port), p->proto,
						       NAT_INGRESS);
			if (bpf_map_update_elem(&cilia_snat_v4, &ik, &rev, BPF_NOEXIST) == 0) {
				nat_port = bpf_htons(port);
				break;
			}
			port = NAT_PORT_MIN + bpf_get_prandom_u32() % (NAT_PORT_MAX - NAT_PORT_MIN + 1);
		}
		if (!nat_port)
			return -1;
		struct nat_entry fwd = { .created_ns = now_ns(), .to_addr = snat_addr, .to_port = nat_port };
		if (bpf_map_update_elem(&cilia_snat_v4, &ek, &fwd, BPF_ANY) < 0)
			return -1;
	}
	if (rewrite_addr(skb, p, 1, snat_addr) < 0)
		return -1;
	if (rewrite_port(skb, p, 1, nat_port) < 0)
		return -1;
	return 0;
}

#endif /* CILIA_NAT_H */
