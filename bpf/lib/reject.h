/* SPDX-License-Identifier: Apache-2.0 */
/* Answers the datapath gives by itself, sent back out of the device the packet came in on:
 *   - TCP RST for a connection to a service without backends (the client fails at once with
 *     "connection refused" instead of retrying SYNs until it times out);
 *   - ICMP port unreachable for UDP to such a service (ECONNREFUSED on a connected socket);
 *   - ICMP echo reply for a ping to a service VIP, and host unreachable when it has no backends.
 * Each rewrites the packet in place. Packets with IP options get no answer (dropped instead).
 *
 * Only through helpers (bpf_skb_load_bytes/store_bytes), never by direct packet access: a program
 * that writes packet data directly gets a prologue from the kernel that makes every packet it
 * sees writable, copying the head of each cloned one (every TCP segment a local socket sends),
 * while helpers copy only the packets they change. */
#ifndef CILIA_REJECT_H
#define CILIA_REJECT_H

#include <stddef.h>
#include "common.h"
#include "csum.h"

#define REJECT_TTL 64

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

static __always_inline __u32 pseudo_sum(__be32 saddr, __be32 daddr, __u8 proto, __u16 len)
{
	return (saddr >> 16) + (saddr & 0xffff) + (daddr >> 16) + (daddr & 0xffff) + bpf_htons(proto) +
	       bpf_htons(len);
}

static __always_inline void fill_ipv4(struct iphdr *ip, __be32 saddr, __be32 daddr, __u8 proto, __u16 tot_len)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot_len);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = REJECT_TTL;
	ip->protocol = proto;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = ipv4_csum(ip);
}

/* Turns a TCP segment into the RST answering it (RFC 9293 3.10.7.1) and sends it back. */
static __always_inline int reject_tcp(struct __sk_buff *skb)
{
	const __u32 len = sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr);
	struct ethhdr eth;
	struct iphdr ip;
	struct tcphdr th;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
	    bpf_skb_load_bytes(skb, sizeof(eth), &ip, sizeof(ip)) < 0 || ip.ihl != 5 ||
	    bpf_skb_load_bytes(skb, sizeof(eth) + sizeof(ip), &th, sizeof(th)) < 0)
		return TC_ACT_SHOT;
	__u8 flags = ((__u8 *)&th)[13];
	if (flags & TCP_FLAG_RST)
		return TC_ACT_SHOT;
	__be32 saddr = ip.saddr, daddr = ip.daddr;
	__be16 sport = th.source, dport = th.dest;
	__u32 seq = bpf_ntohl(th.seq);
	__be32 ack_seq = th.ack_seq;
	__u32 payload = bpf_ntohs(ip.tot_len) - sizeof(ip) - th.doff * 4;

	swap_macs(&eth);
	__builtin_memset(&ip, 0, sizeof(ip));
	fill_ipv4(&ip, daddr, saddr, IPPROTO_TCP, sizeof(ip) + sizeof(th));
	__builtin_memset(&th, 0, sizeof(th));
	th.source = dport;
	th.dest = sport;
	th.doff = 5;
	if (flags & TCP_FLAG_ACK) {
		th.seq = ack_seq;
		((__u8 *)&th)[13] = TCP_FLAG_RST;
	} else {
		__u32 consumed = payload + !!(flags & TCP_FLAG_SYN) + !!(flags & TCP_FLAG_FIN);
		th.ack_seq = bpf_htonl(seq + consumed);
		((__u8 *)&th)[13] = TCP_FLAG_RST | TCP_FLAG_ACK;
	}
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&th, sizeof(th), pseudo_sum(daddr, saddr, IPPROTO_TCP, sizeof(th)));
	if (sum < 0)
		return TC_ACT_SHOT;
	th.check = csum_fold((__u32)sum);

	if (bpf_skb_change_tail(skb, len, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, sizeof(eth), &ip, sizeof(ip), 0) < 0 ||
	    bpf_skb_store_bytes(skb, sizeof(eth) + sizeof(ip), &th, sizeof(th), 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

#define ICMP_QUOTE_LEN (sizeof(struct iphdr) + 8)

/* Turns an IPv4 packet into the ICMP destination-unreachable error quoting it (header + 8 bytes,
 * RFC 792), sent from the address the packet was for. */
static __always_inline int reject_icmp_unreach(struct __sk_buff *skb, __u8 code)
{
	const __u32 len = sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct icmphdr) + ICMP_QUOTE_LEN;
	struct {
		struct icmphdr icmp;
		__u8 quote[ICMP_QUOTE_LEN];
	} msg = {};
	struct ethhdr eth;
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
	    bpf_skb_load_bytes(skb, sizeof(eth), msg.quote, sizeof(msg.quote)) < 0)
		return TC_ACT_SHOT;
	struct iphdr *orig = (struct iphdr *)msg.quote;
	if (orig->ihl != 5)
		return TC_ACT_SHOT;
	/* the quoted header reports the length the packet had */
	msg.icmp.type = ICMP_DEST_UNREACH;
	msg.icmp.code = code;
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&msg, sizeof(msg), 0);
	if (sum < 0)
		return TC_ACT_SHOT;
	msg.icmp.checksum = csum_fold((__u32)sum);

	__builtin_memset(&ip, 0, sizeof(ip));
	fill_ipv4(&ip, orig->daddr, orig->saddr, IPPROTO_ICMP, sizeof(ip) + sizeof(msg));
	swap_macs(&eth);

	if (bpf_skb_change_tail(skb, len, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, sizeof(eth), &ip, sizeof(ip), 0) < 0 ||
	    bpf_skb_store_bytes(skb, sizeof(eth) + sizeof(ip), &msg, sizeof(msg), 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* Turns an ICMP echo request into its reply, from the address it was sent to. */
static __always_inline int icmp_echo_reply(struct __sk_buff *skb, const struct pkt4 *p)
{
	struct ethhdr eth;
	__be32 addrs[2];
	__u32 addrs_off = p->l3_off + offsetof(struct iphdr, saddr);
	__u32 ttl_off = p->l3_off + offsetof(struct iphdr, ttl);
	__be16 old_word, new_word;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
	    bpf_skb_load_bytes(skb, addrs_off, addrs, sizeof(addrs)) < 0 ||
	    bpf_skb_load_bytes(skb, ttl_off, &old_word, sizeof(old_word)) < 0)
		return TC_ACT_SHOT;
	swap_macs(&eth);
	/* swapping the addresses leaves the IP checksum unchanged; the TTL does not */
	__be32 swapped[2] = { addrs[1], addrs[0] };
	__u8 ttl = REJECT_TTL;
	new_word = old_word;
	((__u8 *)&new_word)[0] = ttl;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, addrs_off, swapped, sizeof(swapped), 0) < 0 ||
	    bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), old_word, new_word, 2) < 0 ||
	    bpf_skb_store_bytes(skb, ttl_off, &ttl, 1, 0) < 0)
		return TC_ACT_SHOT;

	__u32 type_off = p->l4_off + offsetof(struct icmphdr, type);
	__be16 old_tc = bpf_htons(ICMP_ECHO << 8);
	__be16 new_tc = bpf_htons(ICMP_ECHOREPLY << 8);
	__u8 reply = ICMP_ECHOREPLY;
	if (bpf_skb_store_bytes(skb, type_off, &reply, 1, 0) < 0)
		return TC_ACT_SHOT;
	/* the type byte is the high byte of the first 16-bit word (code 0 keeps the low one) */
	if (bpf_l4_csum_replace(skb, p->l4_off + offsetof(struct icmphdr, checksum), old_tc, new_tc, 2) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

#endif /* CILIA_REJECT_H */
