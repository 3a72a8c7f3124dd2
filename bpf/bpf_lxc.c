/* SPDX-License-Identifier: Apache-2.0 */
/* Programs on the host side of pod veths (tcx), like Cilium's bpf_lxc.
 *
 * from_container (ingress of lxc*, i.e. packets the pod sends):
 *   - replies of service flows whose backend is this pod: source back to the frontend;
 *   - pod -> service frontend: pick a backend, conntrack, DNAT; no backend: reject; a pod that
 *     is its own backend (hairpin) is also SNATed to LB_HAIRPIN_ADDR;
 *   - ping to a VIP: answered here;
 *   - in tunnel mode, packets to a pod behind the overlay (also after DNAT to a remote backend)
 *     are encapsulated here and redirected to the VXLAN device, when they fit the tunnel MTU
 *     (lib/encap.h); larger ones go through the stack and the host device's to_overlay.
 * to_container (egress of lxc*, packets to the pod): reverse NAT of replies that reached the
 * node through a device without from_netdev (the remote-backend case of pod -> ClusterIP). */
#include "lib/common.h"
#include "lib/encap.h"
#include "lib/fib.h"
#include "lib/nat.h"
#include "lib/service.h"

char _license[] SEC("license") = "GPL";

SEC("classifier")
int from_container(struct __sk_buff *skb)
{
	struct pkt4 p;
	struct lb4_backend be;

	switch (parse_pkt4(skb, &p)) {
	case PARSE_OK:
		break;
	case PARSE_MALFORMED:
		return TC_ACT_SHOT;
	default:
		return TC_ACT_OK;
	}

	if (p.proto == IPPROTO_ICMP) {
		int rc = lb4_icmp_echo(skb, &p, 0);
		if (rc >= 0)
			return rc;
		rc = encap_from_pod(skb, &p);
		return rc < 0 ? TC_ACT_OK : rc;
	}

	/* a hairpin reply: undo the SNAT first, then the DNAT below */
	if (p.daddr == LB_HAIRPIN_ADDR_BE && snat_rev(skb, &p) < 0)
		return TC_ACT_SHOT;
	int rev = lb4_rev_nat(skb, &p);
	if (rev < 0)
		return TC_ACT_SHOT;
	int rc;
	if (rev > 0) {
		rc = encap_from_pod(skb, &p);
		return rc < 0 ? fib_redirect(skb, &p) : rc;
	}

	switch (lb4_service_xlate(skb, &p, 0, &be)) {
	case SVC_XLATED:
		if (p.saddr == p.daddr) {
			if (snat_fwd(skb, &p, LB_HAIRPIN_ADDR_BE) < 0)
				return TC_ACT_SHOT;
			return fib_redirect(skb, &p);
		}
		rc = encap_from_pod(skb, &p);
		return rc < 0 ? fib_redirect(skb, &p) : rc;
	case SVC_REJECT:
		return lb4_reject(skb, &p);
	case SVC_DROP:
		return TC_ACT_SHOT;
	default:
		rc = encap_from_pod(skb, &p);
		return rc < 0 ? TC_ACT_OK : rc;
	}
}

SEC("classifier")
int to_container(struct __sk_buff *skb)
{
	struct pkt4 p;

	if (parse_pkt4(skb, &p) != PARSE_OK || p.proto == IPPROTO_ICMP)
		return TC_ACT_OK;
	if (lb4_rev_nat(skb, &p) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

#ifndef PACKET_HOST
#define PACKET_HOST 0
#endif

/* Delivery of decapsulated packets straight into a local pod, attached instead of bpf_overlay's
 * from_overlay (tcx ingress of cilium_vxlan) when the node runs the service datapath, whose maps
 * it needs. It lives with the pod programs because it does their work: a packet for a pod of this
 * node gets to_container's reverse NAT (the reply of a remote backend to a pod -> ClusterIP flow),
 * its TTL decremented, the MACs of the FIB answer (the pod's eth0 as destination) and
 * bpf_redirect_peer into the pod's namespace, which skips the host-side veth's transmit and the
 * backlog queue behind it (Cilium's BPF host routing). Anything else gets from_overlay's FIB
 * forwarding, and what the FIB does not forward (the node's own addresses, fragments) continues
 * into the stack. */
SEC("classifier")
int overlay_deliver(struct __sk_buff *skb)
{
	struct pkt4 p;
	struct bpf_fib_lookup fib;

	/* the decapsulated frame's destination MAC belongs to the sender's side */
	bpf_skb_change_type(skb, PACKET_HOST);
	if (parse_pkt4(skb, &p) != PARSE_OK)
		return TC_ACT_OK;
	struct tunnel_info *dst = tunnel_lookup(p.daddr);
	if (!dst || !(dst->flags & TUNNEL_F_LOCAL) || dst->identity < OVERLAY_POD_IDENTITY_BASE || p.ttl <= 1)
		return fib_redirect(skb, &p);
	/* a pod of this node: its /32 route names its veth, the neighbour entry its eth0's MAC */
	if (fib_lookup4(skb, &p, &fib) != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_redirect(skb, &p);

	if (p.proto != IPPROTO_ICMP && lb4_rev_nat(skb, &p) < 0)
		return TC_ACT_SHOT;

	__u32 ttl_off = p.l3_off + offsetof(struct iphdr, ttl);
	__be16 old_word, new_word;
	__u8 new_ttl = p.ttl - 1;
	if (bpf_skb_load_bytes(skb, ttl_off, &old_word, sizeof(old_word)) < 0)
		return TC_ACT_SHOT;
	new_word = old_word;
	((__u8 *)&new_word)[0] = new_ttl;
	if (bpf_l3_csum_replace(skb, p.l3_off + offsetof(struct iphdr, check), old_word, new_word, 2) < 0 ||
	    bpf_skb_store_bytes(skb, ttl_off, &new_ttl, 1, 0) < 0 ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), fib.dmac, ETH_ALEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), fib.smac, ETH_ALEN, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(fib.ifindex, 0);
}
