/* SPDX-License-Identifier: Apache-2.0 */
/* Reverse NAT of ICMP errors about service flows.
 *
 * An ICMP error (destination unreachable, time exceeded) quotes the header of the packet that
 * caused it. For a service flow that packet was the client's after DNAT, client -> backend, and
 * the client's socket knows the frontend only: its kernel matches the error to no socket, so a UDP
 * client never hears "port unreachable" (it times out instead) and a TCP or UDP flow never learns a
 * smaller path MTU ("fragmentation needed"). Here the quoted destination goes back to the
 * frontend, as replies' sources do, and an error the backend sent itself comes from the frontend.
 * An error about a north-south packet SNATed to a remote backend comes to the node, and is turned
 * into the one the client would get from the frontend.
 * The quoted TCP/UDP checksum is left as it is: it covers a datagram the quote truncates, and
 * receivers do not check it. */
#ifndef CILIA_ICMP_ERROR_H
#define CILIA_ICMP_ERROR_H

#include <stddef.h>
#include "common.h"
#include "conntrack.h"
#include "csum.h"
#include "lb.h"
#include "nat.h"

#define ICMP_TIME_EXCEEDED 11
#define ICMP_HDR_LEN 8
#define ICMP_CSUM_OFF(p) ((p)->l4_off + 2)

/* Replaces `len` (2 or 4) bytes at off inside the ICMP message, keeping the ICMP checksum right. */
static __always_inline int icmp_rewrite(struct __sk_buff *skb, const struct pkt4 *p, __u32 off, __u32 old,
					__u32 new, __u32 len)
{
	if (bpf_l4_csum_replace(skb, ICMP_CSUM_OFF(p), old, new, len) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, len, 0);
}

/* Loads the header an ICMP error quotes: the IPv4 header (at *in_off) and the TCP/UDP ports.
 * Returns 1 when p is an error (destination unreachable, time exceeded) quoting a TCP or UDP
 * packet whole enough to name its flow, 0 otherwise. */
static __always_inline int icmp_quote(struct __sk_buff *skb, const struct pkt4 *p, struct iphdr *in, __be16 ports[2],
				      __u32 *in_off)
{
	if (p->proto != IPPROTO_ICMP || (p->icmp_type != ICMP_DEST_UNREACH && p->icmp_type != ICMP_TIME_EXCEEDED))
		return 0;
	*in_off = p->l4_off + ICMP_HDR_LEN;
	if (bpf_skb_load_bytes(skb, *in_off, in, sizeof(*in)) < 0 ||
	    bpf_skb_load_bytes(skb, *in_off + sizeof(*in), ports, 2 * sizeof(__be16)) < 0)
		return 0;
	/* options would move the ports; the kernel sends none on these flows */
	return in->version == 4 && in->ihl == 5 && (in->protocol == IPPROTO_TCP || in->protocol == IPPROTO_UDP);
}

/* Rewrites the quoted addresses and ports to the given ones, keeping the quoted header's checksum
 * and the ICMP checksum right. */
static __always_inline int icmp_quote_rewrite(struct __sk_buff *skb, const struct pkt4 *p, __u32 in_off,
					      const struct iphdr *in, const __be16 ports[2], __be32 saddr,
					      __be32 daddr, __be16 sport, __be16 dport)
{
	__be32 old_addrs[2] = { in->saddr, in->daddr };
	__be32 new_addrs[2] = { saddr, daddr };
	__u16 check = csum_after(in->check, bpf_csum_diff(old_addrs, sizeof(old_addrs), new_addrs, sizeof(new_addrs), 0));
	__u32 ports_off = in_off + sizeof(*in);

	if ((saddr != in->saddr &&
	     icmp_rewrite(skb, p, in_off + offsetof(struct iphdr, saddr), in->saddr, saddr, 4) < 0) ||
	    (daddr != in->daddr &&
	     icmp_rewrite(skb, p, in_off + offsetof(struct iphdr, daddr), in->daddr, daddr, 4) < 0) ||
	    (check != in->check &&
	     icmp_rewrite(skb, p, in_off + offsetof(struct iphdr, check), in->check, check, 2) < 0) ||
	    (sport != ports[0] && icmp_rewrite(skb, p, ports_off, ports[0], sport, 2) < 0) ||
	    (dport != ports[1] && icmp_rewrite(skb, p, ports_off + 2, ports[1], dport, 2) < 0))
		return -1;
	return 0;
}

/* The frontend of the service flow client:cport -> backend:bport, from its reply entry, or 0. */
static __always_inline struct lb4_reverse_nat *flow_frontend(__be32 client, __be32 backend, __be16 cport,
							     __be16 bport, __u8 proto)
{
	struct ct4_key k = ct4_key_of(client, backend, cport, bport, proto, CT_EGRESS);
	struct ct_entry *e = ct_lookup(&k);
	return e ? lb4_lookup_rev_nat(e->rev_nat_index) : 0;
}

/* Which ICMP errors a hook translates (lb4_rev_nat_icmp_error's `which`). */
#define ICMP_ERR_FLOWS 0x1 /* to a client, about its packet of a service flow: quoted client -> backend */
#define ICMP_ERR_SNAT 0x2  /* to this node, about a north-south packet it SNATed: quoted node:natport -> backend */

/* If p is an ICMP error of a kind in `which`, turns it into the error the client would get from
 * the frontend itself: quoting client:cport -> frontend, addressed to the client, and from the
 * frontend when the backend sent it. Returns 1 if it did, 0 if p is no such error, -1 on error. */
static __always_inline int lb4_rev_nat_icmp_error(struct __sk_buff *skb, struct pkt4 *p, int which)
{
	struct iphdr in;
	__be16 ports[2];
	__u32 in_off;

	if (!icmp_quote(skb, p, &in, ports, &in_off) || in.saddr != p->daddr)
		return 0;
	__be32 client = in.saddr, backend = in.daddr;
	__be16 cport = ports[0];
	struct lb4_reverse_nat *frontend = 0;
	if (which & ICMP_ERR_FLOWS)
		frontend = flow_frontend(client, backend, cport, ports[1], in.protocol);
	if (!frontend && (which & ICMP_ERR_SNAT)) {
		/* the port's owner entry names the client the node stood in for */
		struct ct4_key nk = ct4_key_of(backend, in.saddr, ports[1], ports[0], in.protocol, NAT_INGRESS);
		struct nat_entry *n = bpf_map_lookup_elem(&cilia_snat_v4, &nk);
		if (!n)
			return 0;
		client = n->to_addr;
		cport = n->to_port;
		frontend = flow_frontend(client, backend, cport, ports[1], in.protocol);
	}
	if (!frontend)
		return 0;

	if (icmp_quote_rewrite(skb, p, in_off, &in, ports, client, frontend->address, cport, frontend->port) < 0)
		return -1;
	if (p->saddr == backend && rewrite_addr(skb, p, 1, frontend->address) < 0)
		return -1;
	if (rewrite_addr(skb, p, 0, client) < 0)
		return -1;
	return 1;
}

#endif /* CILIA_ICMP_ERROR_H */
