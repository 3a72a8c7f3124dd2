/* SPDX-License-Identifier: Apache-2.0 */
/* Programs on the host side of pod veths (tcx), like Cilium's bpf_lxc.
 *
 * from_container (ingress of lxc*, i.e. packets the pod sends):
 *   - IPv4 packets whose source is not the pod's address: dropped (DROP_INVALID_SIP);
 *   - replies of service flows whose backend is this pod: source back to the frontend;
 *   - pod -> service frontend: pick a backend, conntrack, DNAT; no backend: reject; a pod that
 *     is its own backend (hairpin) is also SNATed to LB_HAIRPIN_ADDR;
 *   - ping to a VIP: answered here;
 *   - in tunnel mode, packets to a pod behind the overlay (also after DNAT to a remote backend)
 *     are encapsulated here, when they fit the tunnel MTU, and sent out of the underlay device
 *     (or through the VXLAN device without a FIB answer; lib/encap.h); larger ones go through
 *     the stack and the host device's to_overlay.
 * to_container (egress of lxc*, packets to the pod): reverse NAT of replies that reached the
 * node through a device without from_netdev (the remote-backend case of pod -> ClusterIP).
 * Both also translate ICMP errors about service flows back to the frontend (lib/icmp_error.h). */
#include "lib/common.h"
#include "lib/encap.h"
#include "lib/events.h"
#include "lib/fib.h"
#include "lib/icmp_error.h"
#include "lib/nat.h"
#include "lib/service.h"

char _license[] SEC("license") = "GPL";

/* Each program's work takes the parsed packet by pointer and leaves in it what the flow event and
 * the counters need (lib/events.h); the SEC() entry points account the verdict with ev_finish. */
static __always_inline int handle_from_container(struct __sk_buff *skb, struct pkt4 *p)
{
	struct lb4_backend be;

	switch (parse_pkt4(skb, p)) {
	case PARSE_OK:
		break;
	case PARSE_MALFORMED:
		return drop_for(p, DROP_INVALID);
	default:
		return TC_ACT_OK;
	}
	trace_entry(skb, p, OBS_FROM_ENDPOINT);
	/* A pod sends from its own address only: one that spoofs another pod, a node or a Service
	 * address is dropped here, before any translation or conntrack entry (Cilium's
	 * DROP_INVALID_SIP). */
	if (!netdev_pod_source_ok(skb->ifindex, p->saddr))
		return drop_for(p, DROP_INVALID_SIP);

	if (p->proto == IPPROTO_ICMP) {
		int rc = lb4_icmp_echo(skb, p, 0);
		if (rc >= 0)
			return rc;
		/* this pod, a backend, answering a client's packet with an error */
		int rev = lb4_rev_nat_icmp_error(skb, p, ICMP_ERR_FLOWS);
		if (rev < 0)
			return drop_for(p, DROP_WRITE_ERROR);
		rc = encap_from_pod(skb, p);
		if (rc >= 0)
			return rc;
		return rev > 0 ? fib_redirect_translated(skb, p) : TC_ACT_OK;
	}

	/* The frontend lookup (a small, hot map) comes first: a packet to a frontend is never a reply,
	 * so it skips the reverse-NAT lookup in the conntrack map. */
	struct lb4_key key;
	struct lb4_service *svc = lb4_frontend_of(&key, p, 0);
	int rc;
	if (svc) {
		switch (lb4_xlate(skb, p, 0, &key, svc, &be)) {
		case SVC_XLATED:
			if (p->saddr == p->daddr) {
				int snat = snat_fwd(skb, p, LB_HAIRPIN_ADDR_BE);
				if (snat < 0)
					return drop_for(p, -snat);
				return fib_redirect_translated(skb, p);
			}
			rc = encap_from_pod(skb, p);
			return rc < 0 ? fib_redirect_translated(skb, p) : rc;
		case SVC_REJECT:
			p->drop_reason = DROP_NO_SERVICE;
			return lb4_reject(skb, p);
		default:
			return drop_for(p, DROP_WRITE_ERROR);
		}
	}

	ct_forget_closed_flow_on_direct_syn(p);
	/* A reply of a service flow whose backend is this pod; a hairpin reply undoes its SNAT first. */
	if (p->daddr == LB_HAIRPIN_ADDR_BE && snat_rev(skb, p) < 0)
		return drop_for(p, DROP_WRITE_ERROR);
	int rev = lb4_rev_nat(skb, p);
	if (rev < 0)
		return drop_for(p, DROP_WRITE_ERROR);
	rc = encap_from_pod(skb, p);
	if (rc >= 0)
		return rc;
	return rev > 0 ? fib_redirect_translated(skb, p) : TC_ACT_OK;
}

SEC("classifier")
int from_container(struct __sk_buff *skb)
{
	struct pkt4 p = {};
	int rc = handle_from_container(skb, &p);
	return ev_finish(skb, &p, rc, OBS_TO_STACK, OBS_TO_ENDPOINT);
}

static __always_inline int handle_to_container(struct __sk_buff *skb, struct pkt4 *p)
{
	if (parse_pkt4(skb, p) != PARSE_OK)
		return TC_ACT_OK;
	/* errors the node's stack (or a remote backend's, through it) sends about this pod's packets,
	 * such as "fragmentation needed" for a service flow over the tunnel route */
	int rev = p->proto == IPPROTO_ICMP ? lb4_rev_nat_icmp_error(skb, p, ICMP_ERR_FLOWS) : lb4_rev_nat(skb, p);
	return rev < 0 ? drop_for(p, DROP_WRITE_ERROR) : TC_ACT_OK;
}

SEC("classifier")
int to_container(struct __sk_buff *skb)
{
	struct pkt4 p = {};
	int rc = handle_to_container(skb, &p);
	return ev_finish(skb, &p, rc, OBS_TO_ENDPOINT, OBS_TO_ENDPOINT);
}

static __always_inline int handle_overlay_deliver(struct __sk_buff *skb, struct pkt4 *p)
{
	int verdict;
	if (!overlay_ingress_accept(skb, p, &verdict))
		return verdict;
	/* an ICMP error about a pod's service flow, or about a north-south packet this node SNATed */
	int rev = p->proto == IPPROTO_ICMP ? lb4_rev_nat_icmp_error(skb, p, ICMP_ERR_FLOWS | ICMP_ERR_SNAT)
					   : lb4_rev_nat(skb, p);
	if (rev < 0)
		return drop_for(p, DROP_WRITE_ERROR);
	return fib_redirect_translated(skb, p);
}

/* Delivery of decapsulated packets, attached instead of bpf_overlay's from_overlay (tcx ingress
 * of cilium_vxlan) when the node runs the service datapath, whose maps it needs. It lives with the
 * pod programs because it does their work: the reply of a remote backend to a pod -> ClusterIP
 * flow gets to_container's reverse NAT here, so that a packet for a pod of this node can be handed
 * to the pod's eth0 directly (bpf_redirect_peer), skipping the host-side veth's transmit and the
 * backlog queue behind it (Cilium's BPF host routing). Anything else gets from_overlay's FIB
 * forwarding, and what the FIB does not forward (the node's own addresses, fragments) continues
 * into the stack. */
SEC("classifier")
int overlay_deliver(struct __sk_buff *skb)
{
	struct pkt4 p = {};
	int rc = handle_overlay_deliver(skb, &p);
	return ev_finish(skb, &p, rc, OBS_TO_STACK, OBS_TO_NETWORK);
}
