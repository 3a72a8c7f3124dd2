/* SPDX-License-Identifier: Apache-2.0 */
/* Programs of tunnel mode, like Cilium's bpf_overlay (decapsulated side) and the encapsulation of
 * its from-host path.
 *
 * to_overlay (tcx egress of cilium_host): the node routes other nodes' pod CIDRs through cilium_host
 *   with `mtu 1450` (pods' and the node's own traffic alike); a destination with a tunnel endpoint
 *   gets its tunnel key (outer destination, VNI = source identity) and goes to cilium_vxlan.
 *   Everything else (the local pod CIDR, ARP) continues unchanged.
 * from_overlay (tcx ingress of cilium_vxlan): packets the VXLAN driver decapsulated, dropped
 *   unless their outer source is another node's address (cilia_tunnel_peers). The inner
 *   destination MAC is not this node's (the sender cannot know it), so the packet is marked for
 *   this host and forwarded straight to the pod's veth by FIB lookup and redirect (TTL
 *   decremented); what the FIB does not forward (the node's own addresses) goes to the stack. */
#include "lib/common.h"
#include "lib/encap.h"
#include "lib/events.h"
#include "lib/fib.h"

char _license[] SEC("license") = "GPL";

static __always_inline int handle_to_overlay(struct __sk_buff *skb, struct pkt4 *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + sizeof(struct ethhdr) + sizeof(struct iphdr) > data_end) {
		if (skb->len < sizeof(struct ethhdr) + sizeof(struct iphdr))
			return TC_ACT_OK;
		if (bpf_skb_pull_data(skb, sizeof(struct ethhdr) + sizeof(struct iphdr)) < 0)
			return TC_ACT_OK;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return TC_ACT_OK;

	int rc = encap_and_redirect(skb, ip->saddr, ip->daddr);
	if (rc < 0)
		return TC_ACT_OK;
	/* The flow's tuple, for the event and the counters: parsed only for the packets that go
	 * through the overlay here (which are the minority: pods' packets are encapsulated on their
	 * veth). The tunnel key is set already; parsing does not change the packet's headers. */
	p->ev_flags |= EV_F_ENCAP;
	if (parse_pkt4(skb, p) == PARSE_MALFORMED)
		p->l3_off = 0;
	return rc;
}

/* Packets that do not go through the overlay continue unchanged and are not traced here. */
SEC("classifier")
int to_overlay(struct __sk_buff *skb)
{
	struct pkt4 p = {};
	int rc = handle_to_overlay(skb, &p);
	return ev_finish(skb, &p, rc, OBS_NONE, OBS_TO_OVERLAY);
}

static __always_inline int handle_from_overlay(struct __sk_buff *skb, struct pkt4 *p)
{
	int verdict;
	if (!overlay_ingress_accept(skb, p, &verdict))
		return verdict;
	return fib_redirect(skb, p);
}

SEC("classifier")
int from_overlay(struct __sk_buff *skb)
{
	struct pkt4 p = {};
	int rc = handle_from_overlay(skb, &p);
	return ev_finish(skb, &p, rc, OBS_TO_STACK, OBS_TO_NETWORK);
}
