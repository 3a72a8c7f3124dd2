/* SPDX-License-Identifier: Apache-2.0 */
/* Program on the node's network devices (tcx ingress), like Cilium's bpf_host from-netdev: the
 * north-south path for NodePort, LoadBalancer and external IPs.
 *
 *   client -> routable frontend: backend selection (random or Maglev), DNAT, and SNAT to the
 *   egress device's node address when the backend runs on another node;
 *   reply to an SNATed flow (backend -> node:natport): undo SNAT, then reverse NAT to the frontend;
 *   reply of a flow through this node (backend -> client): reverse NAT;
 *   ICMP error about an SNATed packet: turned into the client's error about its own packet;
 *   tunnel mode: VXLAN to this node for a local pod: outer headers stripped, handed to the pod;
 *   ARP request / IPv6 neighbour solicitation for an address this node announces (L2
 *   announcements): answered from the device's MAC (lib/l2_responder.h);
 *   everything else goes to the stack untouched. Translated packets leave by FIB lookup and
 *   redirect, to a local pod through its veth peer. */
#include "lib/common.h"
#include "lib/encap.h"
#include "lib/events.h"
#include "lib/fib.h"
#include "lib/icmp_error.h"
#include "lib/l2_responder.h"
#include "lib/nat.h"
#include "lib/service.h"

char _license[] SEC("license") = "GPL";

/* Replies to SNATed flows come back to a port of the SNAT range; nothing else needs the lookup. */
static __always_inline int is_snat_port(__be16 port)
{
	__u16 p = bpf_ntohs(port);
	return p >= NAT_PORT_MIN && p <= NAT_PORT_MAX;
}

/* Tunnel traffic for a local pod, decapsulated here and handed to the pod's eth0 (with the reverse
 * NAT overlay_deliver would apply). -1 for anything else, which goes on unchanged: the rest of the
 * tunnel traffic to the VXLAN driver, other UDP on the port (a service's) to the service path.
 * p is left holding the inner packet once it was stripped. */
static __always_inline int overlay_to_pod(struct __sk_buff *skb, struct pkt4 *p)
{
	struct bpf_fib_lookup fib;
	if (vxlan_decap_for_pod(skb, p, &fib) < 0)
		return -1;
	__builtin_memset(p, 0, sizeof(*p));
	if (parse_pkt4(skb, p) != PARSE_OK)
		return drop_for(p, DROP_INVALID);
	trace_entry(skb, p, OBS_FROM_OVERLAY);
	if ((p->proto == IPPROTO_ICMP ? lb4_rev_nat_icmp_error(skb, p, ICMP_ERR_FLOWS) : lb4_rev_nat(skb, p)) < 0)
		return drop_for(p, DROP_WRITE_ERROR);
	return fib_forward(skb, p, &fib, BPF_FIB_LKUP_RET_SUCCESS, 1);
}

static __always_inline int handle_from_netdev(struct __sk_buff *skb, struct pkt4 *p)
{
	struct lb4_key key;
	struct lb4_backend be;

	/* ARP and NDP for announced addresses. IPv4 pays one compare of skb->protocol (no packet
	 * read); everything the responder does not answer goes on exactly as before. */
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		int rc = l2_respond(skb);
		if (rc >= 0)
			return rc;
	}

	/* A frame for another host's MAC reaches this device only by flooding (a switch or bridge
	 * that lost the owner's port, an aged-out table). The stack drops it; translating it would
	 * answer for a node that may still be alive, and a client would get two SYN-ACKs. */
	if (skb->pkt_type == PACKET_OTHERHOST)
		return TC_ACT_OK;

	switch (parse_pkt4(skb, p)) {
	case PARSE_OK:
		break;
	case PARSE_MALFORMED:
		/* not ours to judge on a node device: the stack drops what is really broken */
		return TC_ACT_OK;
	default:
		return TC_ACT_OK;
	}

	if (p->proto == IPPROTO_UDP && p->dport == bpf_htons(VXLAN_PORT)) {
		int rc = overlay_to_pod(skb, p);
		if (rc >= 0)
			return rc;
	}
	trace_entry(skb, p, OBS_FROM_NETWORK);

	if (p->proto == IPPROTO_ICMP) {
		int rc = lb4_icmp_echo(skb, p, 1);
		if (rc >= 0)
			return rc;
		/* a remote backend's (or a router's) error about a packet this node SNATed */
		rc = lb4_rev_nat_icmp_error(skb, p, ICMP_ERR_SNAT);
		if (rc < 0)
			return drop_for(p, DROP_WRITE_ERROR);
		return rc > 0 ? fib_redirect_translated(skb, p) : TC_ACT_OK;
	}

	/* The frontend lookup (a small, hot map) comes first: a packet to a frontend is never a reply,
	 * so it skips the two conntrack lookups replies need, which miss the cache on a busy node. */
	struct lb4_service *svc = lb4_frontend_of(&key, p, 1);
	if (!svc) {
		ct_forget_closed_flow_on_direct_syn(p);
		int snat = is_snat_port(p->dport) ? snat_rev(skb, p) : 0;
		if (snat < 0)
			return drop_for(p, DROP_WRITE_ERROR);
		int rev = lb4_rev_nat(skb, p);
		if (rev < 0)
			return drop_for(p, DROP_WRITE_ERROR);
		if (snat > 0 || rev > 0)
			return fib_redirect_translated(skb, p);
		return TC_ACT_OK;
	}

	switch (lb4_xlate(skb, p, 1, &key, svc, &be)) {
	case SVC_XLATED:
		break;
	case SVC_REJECT:
		p->drop_reason = DROP_NO_SERVICE;
		return lb4_reject(skb, p);
	case SVC_DROP:
		return drop_for(p, DROP_WRITE_ERROR);
	default:
		return TC_ACT_OK;
	}

	struct bpf_fib_lookup fib;
	int rc = fib_lookup4(skb, p, &fib);
	if (!(be.flags & BE_F_NODE_LOCAL)) {
		__be32 snat_addr = fib_ok(rc) ? netdev_snat_addr(fib.ifindex) : 0;
		if (!snat_addr)
			snat_addr = netdev_snat_addr(skb->ifindex);
		if (snat_addr) {
			int snat = snat_fwd(skb, p, snat_addr);
			if (snat < 0)
				return drop_for(p, -snat);
		}
	}
	return fib_forward(skb, p, &fib, rc, 1);
}

/* Traffic of the node itself that the datapath leaves alone (TC_ACT_OK) is not traced: it is no
 * flow of the cluster's, and a node device carries a lot of it. */
SEC("classifier")
int from_netdev(struct __sk_buff *skb)
{
	struct pkt4 p = {};
	int rc = handle_from_netdev(skb, &p);
	return ev_finish(skb, &p, rc, OBS_NONE, OBS_TO_NETWORK);
}
