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
	/* for flow events and drop counters (lib/events.h), written on the way through */
	__be32 svc_addr;   /* the frontend, once the LB translated (EV_F_DNAT / EV_F_REV_NAT) */
	__be16 svc_port;
	__u8 ev_flags;     /* EV_F_* */
	__u8 drop_reason;  /* DROP_*: why the packet is dropped (or answered instead of forwarded) */
	__u32 out_ifindex; /* the device a redirect sends it to */
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* skb->pkt_type of a frame for this host, and of one for another host's MAC (linux/if_packet.h,
 * not included by the BPF headers). */
#ifndef PACKET_HOST
#define PACKET_HOST 0
#endif
#ifndef PACKET_OTHERHOST
#define PACKET_OTHERHOST 3
#endif

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_IPV4,  /* not for us: pass untouched */
	PARSE_FRAGMENT,  /* IPv4 fragment: no L4 header to translate; pass untouched */
	PARSE_OTHER_L4,  /* IPv4 with a protocol the LB does not handle */
	PARSE_MALFORMED, /* truncated or inconsistent headers: never rewritten */
};

/* Makes the first len bytes of the frame readable by direct access. Headers are usually in the
 * linear area already; packets from veths may carry part of them in page fragments. Pulling more
 * than needed is not free: a TCP packet is a clone (its socket keeps the original for
 * retransmission), so pulling into it copies its head. Fails when the frame is shorter. */
static __always_inline int linear_upto(struct __sk_buff *skb, __u32 len)
{
	if ((void *)(long)skb->data + len <= (void *)(long)skb->data_end)
		return 0;
	if (skb->len < len)
		return -1;
	return bpf_skb_pull_data(skb, len) < 0 ? -1 : 0;
}

/* The fixed part of the L4 headers the datapath reads (TCP without options). */
static __always_inline __u32 l4_header_len(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return sizeof(struct tcphdr);
	case IPPROTO_UDP:
		return sizeof(struct udphdr);
	case IPPROTO_ICMP:
		return sizeof(struct icmphdr);
	default:
		return 0;
	}
}

/* Parses Ethernet, IPv4 and the TCP/UDP/ICMP header. Never trusts a length field without checking
 * it against the real length of the packet, so truncated and malformed packets fail here and are
 * never rewritten. Lengths are checked against skb->len, not against the linear area, and only
 * the headers read are pulled into the linear area. */
static __always_inline enum parse_result parse_pkt4(struct __sk_buff *skb, struct pkt4 *p)
{
	if (linear_upto(skb, sizeof(struct ethhdr)) < 0)
		return PARSE_MALFORMED;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_IPV4;

	if (linear_upto(skb, sizeof(struct ethhdr) + sizeof(struct iphdr)) < 0)
		return PARSE_MALFORMED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	__u32 ihl = ip->ihl * 4;
	__u16 tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < ihl || sizeof(struct ethhdr) + tot_len > skb->len)
		return PARSE_MALFORMED;

	p->l3_off = sizeof(struct ethhdr);
	p->l4_off = sizeof(struct ethhdr) + ihl;
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
	__u32 l4_len = l4_header_len(p->proto);
	if (!l4_len)
		return PARSE_OTHER_L4;
	if (ihl + l4_len > tot_len)
		return PARSE_MALFORMED;
	if (linear_upto(skb, sizeof(struct ethhdr) + ihl + l4_len) < 0)
		return PARSE_MALFORMED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	void *l4 = data + sizeof(struct ethhdr) + ihl;

	switch (p->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
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
		if ((void *)(uh + 1) > data_end)
			return PARSE_MALFORMED;
		p->sport = uh->source;
		p->dport = uh->dest;
		return PARSE_OK;
	}
	default: {
		struct icmphdr *ih = l4;
		if ((void *)(ih + 1) > data_end)
			return PARSE_MALFORMED;
		p->icmp_type = ih->type;
		if (ih->type == ICMP_ECHO || ih->type == ICMP_ECHOREPLY)
			p->sport = ih->un.echo.id;
		return PARSE_OK;
	}
	}
}

/* The first segment of a TCP connection (SYN without ACK): a new connection, even when it reuses
 * the tuple of one that is closing. */
static __always_inline int is_new_syn(const struct pkt4 *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* CLOCK_MONOTONIC at tick resolution: lifetimes and timeouts are seconds long, and reading the
 * coarse clock costs no clock-source read (a TSC read, or worse, on a VM) per packet. Userspace
 * compares with CLOCK_MONOTONIC, which is never behind it. */
static __always_inline __u64 now_ns(void)
{
	return bpf_ktime_get_coarse_ns();
}

#endif /* CILIA_COMMON_H */
