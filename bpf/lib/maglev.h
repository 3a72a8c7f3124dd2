/* SPDX-License-Identifier: Apache-2.0 */
/* Maglev backend selection: userspace computes one lookup table of LB_MAGLEV_LUT_SIZE backend ids
 * per (frontend, scope) and replaces it whole with one map update, so a lookup sees either the old
 * or the new table, never a mix. */
#ifndef CILIA_MAGLEV_H
#define CILIA_MAGLEV_H

#include "common.h"
#include "hash.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_maglev_table);
	__uint(max_entries, LB_MAGLEV_MAP_SIZE);
	/* tables are large: allocate on update instead of preallocating max_entries of them */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_lb4_maglev SEC(".maps");

static __always_inline __u32 maglev_key(__u16 rev_nat_index, __u8 scope)
{
	return (__u32)rev_nat_index | ((__u32)scope << 16);
}

/* Returns the backend id for a flow hash, or 0 when the frontend has no table. */
static __always_inline __u32 maglev_select(__u16 rev_nat_index, __u8 scope, __u32 hash)
{
	__u32 key = maglev_key(rev_nat_index, scope);
	struct lb_maglev_table *table = bpf_map_lookup_elem(&cilia_lb4_maglev, &key);
	__u32 idx = hash % LB_MAGLEV_LUT_SIZE;

	/* the compiler knows idx < M and would drop the check the verifier needs */
	barrier_var(idx);
	if (!table || idx >= LB_MAGLEV_LUT_SIZE)
		return 0;
	return table->backend_ids[idx];
}

#endif /* CILIA_MAGLEV_H */
