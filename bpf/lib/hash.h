/* SPDX-License-Identifier: Apache-2.0 */
/* The flow hash that picks a Maglev slot. crates/datapath/src/maglev.rs implements the same
 * function (flow_hash) so userspace can predict which backend a flow lands on. */
#ifndef CILIA_HASH_H
#define CILIA_HASH_H

#include "common.h"

#define CILIA_HASH_SEED 0x63696c69 /* "cili" */

static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

/* Bob Jenkins' final mix, as in the kernel's jhash_3words. */
static __always_inline __u32 jhash_final(__u32 a, __u32 b, __u32 c)
{
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	const __u32 golden = 0xdeadbeef + (3 << 2);
	a += initval + golden;
	b += initval + golden;
	c += initval + golden;
	return jhash_final(a, b, c);
}

/* Hash of a flow's 5-tuple, addresses and ports taken as their in-packet (network order) bytes
 * read as host-order integers. Session affinity leaves the source port out so that every
 * connection of one client lands on the same backend. */
static __always_inline __u32 flow_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto)
{
	__u32 ports = ((__u32)sport << 16) | (__u32)dport;
	return jhash_3words(saddr, daddr, ports ^ proto, CILIA_HASH_SEED);
}

#endif /* CILIA_HASH_H */
