/* SPDX-License-Identifier: Apache-2.0 */
/* Datapath-wide settings written by userspace at load time. */
#ifndef CILIA_CONFIG_H
#define CILIA_CONFIG_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct dp_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilia_config SEC(".maps");

static __always_inline struct dp_config *dp_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&cilia_config, &zero);
}

#endif /* CILIA_CONFIG_H */
