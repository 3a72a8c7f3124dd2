/* SPDX-License-Identifier: Apache-2.0 */
/* The per-packet service path shared by the pod hook (east-west) and the device hook
 * (north-south): frontend lookup, conntrack, backend selection, DNAT. */
#ifndef CILIA_SERVICE_H
#define CILIA_SERVICE_H

#include "common.h"
#include "conntrack.h"
#include "hash.h"
#include "lb.h"
#include "nat.h"
#include "reject.h"

enum svc_verdict {
	SVC_NONE = 0, /* not a service frontend (for this hook): pass on */
	SVC_XLATED,   /* DNATed to the backend in *be */
	SVC_REJECT,   /* frontend without backends: answer with a reject */
	SVC_DROP,     /* translation failed halfway: the packet must not leave */
};

/* The frontend a packet is addressed to, if this hook serves it: north-south hooks only serve
 * routable frontends (NodePort, LoadBalancer, external IPs), not ClusterIPs. key is left holding
 * the frontend key for lb4_xlate. */
static __always_inline struct lb4_service *lb4_frontend_of(struct lb4_key *key, const struct pkt4 *p,
							   int north_south)
{
	struct lb4_service *svc = lb4_lookup_frontend(key, p->daddr, p->dport, p->proto, north_south);
	if (svc && north_south && !(svc->flags & SVC_F_ROUTABLE))
		return 0;
	return svc;
}

/* Conntrack, backend selection and DNAT of a packet to frontend svc (found by lb4_frontend_of). */
static __always_inline enum svc_verdict lb4_xlate(struct __sk_buff *skb, struct pkt4 *p, int north_south,
						  struct lb4_key *key, const struct lb4_service *svc,
						  struct lb4_backend *be_out)
{
	__u8 ct_flags = north_south ? CT_F_NODEPORT : 0;
	struct ct4_key sk = ct4_key_of(p->saddr, p->daddr, p->sport, p->dport, p->proto, CT_SERVICE);
	struct ct_entry *ce = ct_lookup_any(&sk);
	struct lb4_backend *be = 0;
	__u32 backend_id = 0;

	/* An existing flow keeps its backend, even a terminating one, for as long as the backend
	 * exists; only a deleted backend makes it choose again. */
	int sync_reply_entry = 1;
	if (ct_live(ce) && !(is_new_syn(p) && (ce->flags & CT_F_CLOSING)) && ce->rev_nat_index == svc->rev_nat_index) {
		be = lb4_lookup_backend(ce->backend_id);
		if (be) {
			backend_id = ce->backend_id;
			__u64 was = ce->expires_ns;
			ct_touch(ce, p, 0);
			sync_reply_entry = ct_reply_sync_due(p, ce, was);
		}
	}
	int new_flow = !backend_id;
	if (new_flow) {
		if (!svc->count)
			return SVC_REJECT;
		struct lb_client client = { .id = p->saddr, .is_netns_cookie = 0 };
		__be16 hash_sport = (svc->flags & SVC_F_AFFINITY) ? 0 : p->sport;
		__u32 hash = flow_hash(p->saddr, p->daddr, hash_sport, p->dport, p->proto);
		backend_id = lb4_select_backend(key, svc, &client, north_south, 1, hash);
		be = lb4_lookup_backend(backend_id);
		if (!be)
			return SVC_REJECT;
		ct_create(&sk, ce, p, backend_id, svc->rev_nat_index, ct_flags);
	}

	/* The reply entry: a new flow's starts over, whatever an earlier flow on the tuple left (a
	 * tuple without a service entry rarely has one, so it is inserted without looking, which
	 * also replaces one); an established flow's is kept alive by its replies and refreshed from
	 * here only now and then (ct_reply_sync_due), which saves a conntrack lookup on nearly every
	 * forward packet. */
	if (sync_reply_entry) {
		struct ct4_key ek = ct4_key_of(p->saddr, be->address, p->sport, be->port, p->proto, CT_EGRESS);
		struct ct_entry *ee = ce ? ct_lookup_any(&ek) : 0;
		if (!new_flow && ct_live(ee) && ee->rev_nat_index == svc->rev_nat_index)
			ct_touch(ee, p, 0);
		else
			ct_create(&ek, ee, p, backend_id, svc->rev_nat_index, ct_flags);
	}

	*be_out = *be;
	p->svc_addr = p->daddr;
	p->svc_port = p->dport;
	p->ev_flags |= EV_F_DNAT | EV_F_NOT_REPLY;
	if (lb4_dnat(skb, p, be) < 0)
		return SVC_DROP;
	return SVC_XLATED;
}

static __always_inline enum svc_verdict lb4_service_xlate(struct __sk_buff *skb, struct pkt4 *p, int north_south,
							  struct lb4_backend *be_out)
{
	struct lb4_key key;
	struct lb4_service *svc = lb4_frontend_of(&key, p, north_south);
	if (!svc)
		return SVC_NONE;
	return lb4_xlate(skb, p, north_south, &key, svc, be_out);
}

/* The reject matching the protocol. */
static __always_inline int lb4_reject(struct __sk_buff *skb, const struct pkt4 *p)
{
	if (p->proto == IPPROTO_TCP)
		return reject_tcp(skb);
	return reject_icmp_unreach(skb, ICMP_PORT_UNREACH);
}

/* Ping to a service VIP: answered while the VIP has a backend, host unreachable otherwise.
 * Returns -1 when the address is no VIP (for this hook). */
static __always_inline int lb4_icmp_echo(struct __sk_buff *skb, struct pkt4 *p, int north_south)
{
	struct lb4_key key;
	if (p->icmp_type != ICMP_ECHO)
		return -1;
	struct lb4_service *svc = lb4_lookup_service(&key, p->daddr, 0, IPPROTO_ICMP, LB_SCOPE_ALL);
	if (!svc || !(svc->flags & SVC_F_ICMP_ECHO))
		return -1;
	if (north_south && !(svc->flags & SVC_F_ROUTABLE))
		return -1;
	if (!svc->count) {
		p->drop_reason = DROP_NO_SERVICE;
		return reject_icmp_unreach(skb, ICMP_HOST_UNREACH);
	}
	return icmp_echo_reply(skb, p);
}

#endif /* CILIA_SERVICE_H */
