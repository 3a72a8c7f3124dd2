/* SPDX-License-Identifier: Apache-2.0 */
/* Forwarding of translated packets straight to their egress device. After NAT on an ingress hook a
 * packet may carry one of the node's own addresses as source (a NodePort reply, an SNATed flow),
 * which the stack would drop as a martian; a FIB lookup plus redirect sends it on directly, the
 * way Cilium's host routing does. */
#ifndef CILIA_FIB_H
#define CILIA_FIB_H

#include <stddef.h>
#include "common.h"
#include "csum.h"
#include "devices.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* The FIB's answer for a packet from saddr to daddr arriving on the skb's device. The L4 fields
 * only choose among multipath routes: 0 where they are not known. */
static __always_inline int fib_lookup_flow(struct __sk_buff *skb, __be32 saddr, __be32 daddr, __u8 proto,
					   __be16 sport, __be16 dport, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = proto;
	fib->sport = sport;
	fib->dport = dport;
	/* tot_len 0: the helper checks the skb itself against the egress MTU, which, unlike a
	 * length, accounts for GSO/GRO packets that are resegmented on the way out */
	fib->tot_len = 0;
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
	fib->ifindex = skb->ifindex;
	return bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
}

static __always_inline int fib_lookup4(struct __sk_buff *skb, const struct pkt4 *p, struct bpf_fib_lookup *fib)
{
	return fib_lookup_flow(skb, p->saddr, p->daddr, p->proto, p->sport, p->dport, fib);
}

static __always_inline int fib_ok(int rc)
{
	return rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH;
}

/* Sends the packet out of the device the FIB chose, decrementing the TTL as a router does. Falls
 * back to the stack (which also handles TTL expiry and local delivery) when the FIB has no
 * forwarding answer.
 *
 * With to_pod_peer (callers on tc ingress whose packet is fully translated), a packet for a local
 * pod is handed to the pod's eth0 directly (bpf_redirect_peer): no veth transmit, no second pass
 * through the node's receive backlog, and no to_container on the way, which is why the packet
 * must need no reverse NAT any more. */
static __always_inline int fib_forward(struct __sk_buff *skb, struct pkt4 *p, struct bpf_fib_lookup *fib, int rc,
				       int to_pod_peer)
{
	if (!fib_ok(rc) || p->ttl <= 1)
		return TC_ACT_OK;

	if (ttl_decrement(skb, p) < 0)
		return TC_ACT_SHOT;

	/* where it goes, for the flow event and the forward counters (lib/events.h) */
	p->out_ifindex = fib->ifindex;
	int to_pod = netdev_is_pod(fib->ifindex);
	if (to_pod)
		p->ev_flags |= EV_F_TO_POD;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib->dmac, ETH_ALEN, 0) < 0 ||
		    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib->smac, ETH_ALEN, 0) < 0)
			return TC_ACT_SHOT;
		if (to_pod_peer && to_pod)
			return bpf_redirect_peer(fib->ifindex, 0);
		return bpf_redirect(fib->ifindex, 0);
	}
	/* no neighbour entry yet: let the kernel resolve it and queue the packet meanwhile */
	return bpf_redirect_neigh(fib->ifindex, 0, 0, 0);
}

static __always_inline int fib_redirect(struct __sk_buff *skb, struct pkt4 *p)
{
	struct bpf_fib_lookup fib;
	int rc = fib_lookup4(skb, p, &fib);
	return fib_forward(skb, p, &fib, rc, 0);
}

/* fib_redirect for a packet the service datapath has finished with (DNATed, or reverse-NATed back
 * to its frontend), on tc ingress: local pods get it through their veth peer. */
static __always_inline int fib_redirect_translated(struct __sk_buff *skb, struct pkt4 *p)
{
	struct bpf_fib_lookup fib;
	int rc = fib_lookup4(skb, p, &fib);
	return fib_forward(skb, p, &fib, rc, 1);
}

#endif /* CILIA_FIB_H */
