/* SPDX-License-Identifier: Apache-2.0 */
/* Shared includes, verdicts and the parsed view of an IPv4 packet used by every hook. */
#ifndef CILIA_COMMON_H
#define CILIA_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../include/abi.h"

/* <linux/icmp.h> drags in libc's socket headers, which do not build for the BPF target. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 gateway;
	} un;
};
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_HOST_UNREACH 1
#define ICMP_PORT_UNREACH 3

#ifndef LIBBPF_PIN_BY_NAME
#define LIBBPF_PIN_BY_NAME 1
#endif

/* tcx verdicts: TCX_NEXT lets the next program of the chain (or the stack) decide. */
#define CTX_ACT_OK TC_ACT_OK
#define CTX_ACT_DROP TC_ACT_SHOT

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define __always_inline inline __attribute__((always_inline))

/* A parsed IPv4 packet. Offsets are from the start of the frame. */
struct pkt4 {
	__u32 l3_off;
	__u32 l4_off;
	__be32 saddr;
	__be32 daddr;
	__be16 sport; /* ICMP: echo id */
	__be16 dport; /* ICMP: 0 */
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 ttl;
	__u16 tot_len;
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_IPV4,  /* not for us: pass untouched */
	PARSE_FRAGMENT,  /* IPv4 fragment: no L4 header to translate; pass untouched */
	PARSE_OTHER_L4,  /* IPv4 with a protocol the LB does not handle */
	PARSE_MALFORMED, /* truncated or inconsistent headers: never rewritten */
};

/* Headers the datapath reads directly: Ethernet, the longest IPv4 header, a TCP header without
 * options (ICMP and UDP headers are shorter). */
#define PULL_LEN (sizeof(struct ethhdr) + 60 + sizeof(struct tcphdr))

/* Parses Ethernet, IPv4 and the TCP/UDP/ICMP header. Never trusts a length field without checking
 * it against the real length of the packet, so truncated and malformed packets fail here and are
 * never rewritten.
 *
 * Packets from veths often carry their payload in page fragments, with only part of the headers
 * in the linear area that direct access sees; the headers are pulled in first, and lengths are
 * checked against skb->len, not against the linear area. */
static __always_inline enum parse_result parse_pkt4(struct __sk_buff *skb, struct pkt4 *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + PULL_LEN > data_end && skb->len > data_end - data) {
		__u32 want = skb->len < PULL_LEN ? skb->len : PULL_LEN;
		if (bpf_skb_pull_data(skb, want) < 0)
			return PARSE_MALFORMED;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_IPV4;

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	__u32 ihl = ip->ihl * 4;
	__u16 tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < ihl || sizeof(*eth) + tot_len > skb->len)
		return PARSE_MALFORMED;

	p->l3_off = sizeof(*eth);
	p->l4_off = sizeof(*eth) + ihl;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	p->tot_len = tot_len;
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;

	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return PARSE_FRAGMENT;

	void *l4 = (void *)ip + ihl;
	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end || ihl + sizeof(*th) > tot_len)
			return PARSE_MALFORMED;
		if (th->doff < 5)
			return PARSE_MALFORMED;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return PARSE_OK;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end || ihl + sizeof(*uh) > tot_len)
			return PARSE_MALFORMED;
		p->sport = uh->source;
		p->dport = uh->dest;
		return PARSE_OK;
	}
	case IPPROTO_ICMP: {
		struct icmphdr *ih = l4;
		if ((void *)(ih + 1) > data_end || ihl + sizeof(*ih) > tot_len)
			return PARSE_MALFORMED;
		p->icmp_type = ih->type;
		if (ih->type == ICMP_ECHO || ih->type == ICMP_ECHOREPLY)
			p->sport = ih->un.echo.id;
		return PARSE_OK;
	}
	default:
		return PARSE_OTHER_L4;
	}
}

/* CLOCK_MONOTONIC at tick resolution: lifetimes and timeouts are seconds long, and reading the
 * coarse clock costs no clock-source read (a TSC read, or worse, on a VM) per packet. Userspace
 * compares with CLOCK_MONOTONIC, which is never behind it. */
static __always_inline __u64 now_ns(void)
{
	return bpf_ktime_get_coarse_ns();
}

#endif /* CILIA_COMMON_H */
