/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Outlier ejection: a backend whose connects keep failing (refused, or
 * given up on by the client before the handshake finished) sits out of
 * selection for a while. Failures are counted per backend address in a
 * row; an established connection resets the count.
 */
#ifndef SM_BPF_OUTLIER_H
#define SM_BPF_OUTLIER_H

#include "common.h"
#include "stats.h"

/* Endpoints looked at when the first pick is ejected. */
#define SM_OUTLIER_PROBES 8

static __always_inline int outlier_ejected(const struct sm_sockaddr *be, __u64 now)
{
	struct sm_outlier_val *o = bpf_map_lookup_elem(&SM_MAP_OUTLIER, be);

	return o && o->ejected_until_ns > now;
}

/* A connect to this backend worked: it is healthy again. */
static __always_inline void outlier_ok(const struct sm_sockaddr *be)
{
	struct sm_outlier_val *o = bpf_map_lookup_elem(&SM_MAP_OUTLIER, be);

	if (o && o->failures)
		o->failures = 0;
}

/*
 * A connect to this backend failed. Returns 1 when this failure ejected
 * it (the caller records that), 0 otherwise.
 */
static __always_inline int outlier_fail(const struct sm_sockaddr *be, __u32 svc,
					const struct sm_svc_val *cfg)
{
	struct sm_outlier_val init = {.svc = svc}, *o;
	__u64 now = bpf_ktime_get_ns();

	if (!cfg->outlier_failures)
		return 0;
	o = bpf_map_lookup_elem(&SM_MAP_OUTLIER, be);
	if (!o) {
		bpf_map_update_elem(&SM_MAP_OUTLIER, be, &init, BPF_NOEXIST);
		o = bpf_map_lookup_elem(&SM_MAP_OUTLIER, be);
		if (!o)
			return 0;
	}
	o->svc = svc;
	/* Failures of connects begun before the ejection do not extend it. */
	if (o->ejected_until_ns > now)
		return 0;
	if (__sync_fetch_and_add(&o->failures, 1) + 1 < cfg->outlier_failures)
		return 0;
	o->failures = 0;
	o->ejected_until_ns = now + (__u64)cfg->outlier_eject_s * 1000000000ULL;
	__sync_fetch_and_add(&o->ejections, 1);
	stat_inc(SM_S_EJECTIONS);
	return 1;
}

#endif /* SM_BPF_OUTLIER_H */
