/* SPDX-License-Identifier: Apache-2.0 */
/* Reverse NAT of ICMP errors about service flows.
 *
 * An ICMP error (destination unreachable, time exceeded) quotes the header of the packet that
 * caused it. For a service flow that packet was the client's after DNAT, client -> backend, and
 * the client's socket knows the frontend only: its kernel matches the error to no socket, so a UDP
 * client never hears "port unreachable" (it times out instead) and a TCP or UDP flow never learns a
 * smaller path MTU ("fragmentation needed"). Here the quoted destination goes back to the
 * frontend, as replies' sources do, and an error the backend sent itself comes from the frontend.
 * The quoted TCP/UDP checksum is left as it is: it covers a datagram the quote truncates, and
 * receivers do not check it. */
#ifndef CILIA_ICMP_ERROR_H
#define CILIA_ICMP_ERROR_H

#include <stddef.h>
#include "common.h"
#include "conntrack.h"
#include "csum.h"
#include "lb.h"

#define ICMP_TIME_EXCEEDED 11
#define ICMP_HDR_LEN 8
#define ICMP_CSUM_OFF(p) ((p)->l4_off + 2)

/* The checksum field value after words summing to `diff` (from bpf_csum_diff) replaced others
 * (RFC 1624: HC' = ~(~HC + ~m + m')). */
static __always_inline __u16 csum_after(__u16 check, __s64 diff)
{
	__u64 sum = (__u16)~check + (__u64)(__u32)diff;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Replaces `len` (2 or 4) bytes at off inside the ICMP message, keeping the ICMP checksum right. */
static __always_inline int icmp_rewrite(struct __sk_buff *skb, const struct pkt4 *p, __u32 off, __u32 old,
					__u32 new, __u32 len)
{
	if (bpf_l4_csum_replace(skb, ICMP_CSUM_OFF(p), old, new, len) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, len, 0);
}

/* If p is an ICMP error to a client about its packet of a service flow, rewrites the quoted
 * destination (address, header checksum, port) to the frontend, and the error's source too when
 * the backend sent it. Returns 1 if it did, 0 if p is no such error, -1 on error. */
static __always_inline int lb4_rev_nat_icmp_error(struct __sk_buff *skb, struct pkt4 *p)
{
	struct iphdr in;
	__be16 ports[2];

	if (p->proto != IPPROTO_ICMP || (p->icmp_type != ICMP_DEST_UNREACH && p->icmp_type != ICMP_TIME_EXCEEDED))
		return 0;
	__u32 in_off = p->l4_off + ICMP_HDR_LEN;
	if (bpf_skb_load_bytes(skb, in_off, &in, sizeof(in)) < 0 ||
	    bpf_skb_load_bytes(skb, in_off + sizeof(in), ports, sizeof(ports)) < 0)
		return 0;
	/* options would move the ports; the kernel sends none on these flows */
	if (in.version != 4 || in.ihl != 5 || in.saddr != p->daddr ||
	    (in.protocol != IPPROTO_TCP && in.protocol != IPPROTO_UDP))
		return 0;

	struct ct4_key k = ct4_key_of(in.saddr, in.daddr, ports[0], ports[1], in.protocol, CT_EGRESS);
	struct ct_entry *e = ct_lookup(&k);
	if (!e)
		return 0;
	struct lb4_reverse_nat *rn = lb4_lookup_rev_nat(e->rev_nat_index);
	if (!rn)
		return 0;

	__be32 backend = in.daddr;
	__u16 check = csum_after(in.check, bpf_csum_diff(&backend, 4, &rn->address, 4, 0));
	if (icmp_rewrite(skb, p, in_off + offsetof(struct iphdr, daddr), backend, rn->address, 4) < 0 ||
	    icmp_rewrite(skb, p, in_off + offsetof(struct iphdr, check), in.check, check, 2) < 0 ||
	    icmp_rewrite(skb, p, in_off + sizeof(in) + 2, ports[1], rn->port, 2) < 0)
		return -1;
	if (p->saddr == backend && rewrite_addr(skb, p, 1, rn->address) < 0)
		return -1;
	return 1;
}

#endif /* CILIA_ICMP_ERROR_H */
