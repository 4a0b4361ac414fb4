/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Access quotas per (from, to) pair: a token bucket for new connections and
 * a count of live ones. The state lives outside the policy slots, so a
 * reload that keeps a quota keeps its bucket and its count.
 */
#ifndef SM_BPF_QUOTA_H
#define SM_BPF_QUOTA_H

#include "common.h"

static __always_inline struct sm_quota_state *
quota_state(const struct sm_quota_key *pair, const struct sm_quota_cfg *cfg)
{
	struct sm_quota_state *q;

	q = bpf_map_lookup_elem(&SM_MAP_QSTATE, pair);
	if (q)
		return q;

	/* A new pair starts with a full bucket. */
	{
		struct sm_quota_state init = {
			.tokens_ns = cfg->bucket_ns,
			.last_ns = bpf_ktime_get_ns(),
		};

		bpf_map_update_elem(&SM_MAP_QSTATE, pair, &init, BPF_NOEXIST);
	}
	return bpf_map_lookup_elem(&SM_MAP_QSTATE, pair);
}

/* One token from the bucket, refilled for the time since the last take. */
static __always_inline int quota_rate_take(struct sm_quota_state *q,
					   const struct sm_quota_cfg *cfg)
{
	__u64 now = bpf_ktime_get_ns();
	int ok = 0;

	bpf_spin_lock(&q->lock);
	if (now > q->last_ns) {
		q->tokens_ns += now - q->last_ns;
		if (q->tokens_ns > cfg->bucket_ns)
			q->tokens_ns = cfg->bucket_ns;
	}
	q->last_ns = now;
	if (q->tokens_ns >= cfg->token_ns) {
		q->tokens_ns -= cfg->token_ns;
		ok = 1;
	}
	bpf_spin_unlock(&q->lock);
	return ok;
}

/*
 * Take what a new connection of the pair needs. On success *held says
 * whether it holds a max_concurrent unit that its close must give back.
 */
static __always_inline int quota_take(__u32 slot, __u32 src, __u32 dst,
				      __u8 *reason, __u8 *held)
{
	struct sm_quota_cfg_key ckey = {
		.pair = { .src = src, .dst = dst },
		.slot = slot,
	};
	struct sm_quota_state *q;
	struct sm_quota_cfg *cfg;
	__s64 old;

	*held = 0;
	cfg = bpf_map_lookup_elem(&SM_MAP_QCFG, &ckey);
	if (!cfg)
		return 0;
	q = quota_state(&ckey.pair, cfg);
	if (!q)
		return 0;

	/*
	 * Count first, then check: two racing connects may both see the
	 * limit and both back off, but never both pass it.
	 */
	if (cfg->max_concurrent) {
		old = __sync_fetch_and_add(&q->active, 1);
		if (old >= cfg->max_concurrent) {
			__sync_fetch_and_add(&q->active, -1);
			*reason = SM_WHY_QUOTA_CONCURRENT;
			return -SM_ERRNO_QUOTA;
		}
		*held = 1;
	}

	if (cfg->rate && !quota_rate_take(q, cfg)) {
		if (*held)
			__sync_fetch_and_add(&q->active, -1);
		*held = 0;
		*reason = SM_WHY_QUOTA_RATE;
		return -SM_ERRNO_QUOTA;
	}
	return 0;
}

/* Give back a max_concurrent unit. */
static __always_inline void quota_release(__u32 src, __u32 dst)
{
	struct sm_quota_key pair = { .src = src, .dst = dst };
	struct sm_quota_state *q;

	q = bpf_map_lookup_elem(&SM_MAP_QSTATE, &pair);
	if (q)
		__sync_fetch_and_add(&q->active, -1);
}

#endif /* SM_BPF_QUOTA_H */
