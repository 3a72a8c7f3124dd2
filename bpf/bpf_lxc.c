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
