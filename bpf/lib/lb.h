/* SPDX-License-Identifier: Apache-2.0 */
/* Service load balancing: frontend lookup, backend selection (random, Maglev, session affinity)
 * and the maps userspace programs services into.
 *
 * Userspace writes a service in an order that keeps every lookup consistent: backends first,
 * then slot rows 1..count, the Maglev table and the reverse-NAT row, and the frontend row
 * (slot 0, which carries count) last. Shrinking goes the other way round. */
#ifndef CILIA_LB_H
#define CILIA_LB_H

#include "common.h"
#include "maglev.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, LB_SERVICES_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_lb4_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, LB_BACKENDS_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_lb4_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, LB_REVNAT_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_lb4_reverse_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(max_entries, LB_AFFINITY_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_lb4_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_affinity_match);
	__type(value, __u8);
	__uint(max_entries, LB_BACKENDS_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_lb_affinity_match SEC(".maps");

/* Looks up the frontend row for (address, port, proto) in a scope. key is left holding the
 * frontend key (slot 0) for the slot lookups that follow. */
static __always_inline struct lb4_service *lb4_lookup_service(struct lb4_key *key, __be32 addr, __be16 port,
							       __u8 proto, __u8 scope)
{
	key->address = addr;
	key->dport = port;
	key->backend_slot = 0;
	key->proto = proto;
	key->scope = scope;
	key->pad[0] = 0;
	key->pad[1] = 0;
	return bpf_map_lookup_elem(&cilia_lb4_services, key);
}

/* Finds the frontend and, for eTP/iTP=Local, switches to its node-local rows. north_south says
 * which policy applies. */
static __always_inline struct lb4_service *lb4_lookup_frontend(struct lb4_key *key, __be32 addr, __be16 port,
								__u8 proto, int north_south)
{
	struct lb4_service *svc = lb4_lookup_service(key, addr, port, proto, LB_SCOPE_ALL);
	if (!svc)
		return 0;
	__u8 local_flag = north_south ? SVC_F_ETP_LOCAL : SVC_F_ITP_LOCAL;
	if (svc->flags & local_flag) {
		struct lb4_service *local = lb4_lookup_service(key, addr, port, proto, LB_SCOPE_LOCAL);
		/* the local rows always exist when the flag is set; treat a missing one as no backend */
		return local;
	}
	return svc;
}

static __always_inline struct lb4_backend *lb4_lookup_backend(__u32 backend_id)
{
	if (!backend_id)
		return 0;
	return bpf_map_lookup_elem(&cilia_lb4_backends, &backend_id);
}

/* The backend in slot `pick % count`. Per-packet load balancing picks by the flow's hash, so one
 * flow always lands on the same backend while the backend set stays: a flow whose conntrack entry
 * was evicted (LRU pressure) goes on where it was instead of being reset by another backend.
 * Across flows the hash spreads as evenly as a random pick. */
static __always_inline __u32 lb4_select_slot(struct lb4_key *key, const struct lb4_service *svc, __u32 pick)
{
	struct lb4_service *slot;
	__u32 backend_id = 0;

	if (!svc->count)
		return 0;
	key->backend_slot = (pick % svc->count) + 1;
	slot = bpf_map_lookup_elem(&cilia_lb4_services, key);
	if (slot)
		backend_id = slot->backend_id;
	key->backend_slot = 0;
	return backend_id;
}

/* Who the client is for session affinity: its address for per-packet LB, its netns cookie for
 * socket-LB (no source address exists yet at connect time). */
struct lb_client {
	__u64 id;
	__u8 is_netns_cookie;
};

static __always_inline struct lb4_affinity_key affinity_key(const struct lb_client *client, __u16 rev_nat_index)
{
	struct lb4_affinity_key k = {};
	k.client_id = client->id;
	k.rev_nat_index = rev_nat_index;
	k.netns_cookie = client->is_netns_cookie;
	return k;
}

/* The backend remembered for this client, if still valid: within the timeout, still a member of
 * the frontend, and active. */
static __always_inline __u32 lb4_affinity_backend(const struct lb4_service *svc, const struct lb_client *client)
{
	struct lb4_affinity_key k = affinity_key(client, svc->rev_nat_index);
	struct lb_affinity_val *val = bpf_map_lookup_elem(&cilia_lb4_affinity, &k);

	if (!val)
		return 0;
	/* frontend rows keep the timeout in backend_id (a union in spirit) */
	__u64 timeout_ns = (__u64)svc->backend_id * 1000000000ULL;
	__u64 now = now_ns();
	/* last_used_ns may be a little ahead of the coarse clock when userspace wrote it */
	if (now > val->last_used_ns && now - val->last_used_ns > timeout_ns) {
		bpf_map_delete_elem(&cilia_lb4_affinity, &k);
		return 0;
	}
	struct lb_affinity_match m = { .backend_id = val->backend_id, .rev_nat_index = svc->rev_nat_index };
	if (!bpf_map_lookup_elem(&cilia_lb_affinity_match, &m))
		return 0;
	struct lb4_backend *be = lb4_lookup_backend(val->backend_id);
	if (!be || (be->flags & BE_STATE_MASK) != BE_STATE_ACTIVE)
		return 0;
	return val->backend_id;
}

static __always_inline void lb4_affinity_update(const struct lb4_service *svc, const struct lb_client *client,
						__u32 backend_id)
{
	struct lb4_affinity_key k = affinity_key(client, svc->rev_nat_index);
	struct lb_affinity_val val = { .last_used_ns = now_ns(), .backend_id = backend_id };
	bpf_map_update_elem(&cilia_lb4_affinity, &k, &val, BPF_ANY);
}

/* Picks a backend for a new flow. With a flow (has_flow: per-packet LB), flow_hash chooses: the
 * Maglev table when the frontend asks for Maglev and the caller allows it (north-south only, as
 * in Cilium), else a slot by hash. Without one (socket-LB at connect time, before a source port
 * exists) a random slot. Returns 0 when the service has no usable backend. */
static __always_inline __u32 lb4_select_backend(struct lb4_key *key, const struct lb4_service *svc,
						const struct lb_client *client, int allow_maglev, int has_flow,
						__u32 flow_hash)
{
	__u32 backend_id = 0;

	if (!svc->count)
		return 0;
	if (svc->flags & SVC_F_AFFINITY) {
		backend_id = lb4_affinity_backend(svc, client);
		if (backend_id) {
			lb4_affinity_update(svc, client, backend_id);
			return backend_id;
		}
	}
	if (has_flow && allow_maglev && svc->algorithm == LB_ALG_MAGLEV)
		backend_id = maglev_select(svc->rev_nat_index, key->scope, flow_hash);
	if (!backend_id)
		backend_id = lb4_select_slot(key, svc, has_flow ? flow_hash : bpf_get_prandom_u32());
	if (backend_id && (svc->flags & SVC_F_AFFINITY))
		lb4_affinity_update(svc, client, backend_id);
	return backend_id;
}

static __always_inline struct lb4_reverse_nat *lb4_lookup_rev_nat(__u16 rev_nat_index)
{
	return bpf_map_lookup_elem(&cilia_lb4_reverse_nat, &rev_nat_index);
}

#endif /* CILIA_LB_H */
