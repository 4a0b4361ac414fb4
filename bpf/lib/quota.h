/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Access quotas per (from, to) pair: a token bucket for new connections and
 * a count of live ones. The state lives outside the policy slots, so a
 * reload that keeps a quota keeps its bucket and its count.
 */
#ifndef SM_BPF_QUOTA_H
#define SM_BPF_QUOTA_H

#include "common.h"

static __always_inline struct sm_quota_state *quota_state(const struct sm_quota_key *pair,
							  const struct sm_quota_cfg *cfg)
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

/*
 * Both limits, decided under the pair's lock. The count only grows here,
 * and only while it is below max_concurrent, so new connections never
 * take it past the limit, not even for a moment: sockmesh_quota_active
 * never shows more than were let in. Units are given back without the
 * lock (quota_release); a close that races with the check is simply seen
 * a moment later. A connection refused for max_concurrent spends no token.
 */
static __always_inline int
quota_take_locked(struct sm_quota_state *q, const struct sm_quota_cfg *cfg, __u64 now, __u8 *reason)
{
	/* Refill the bucket for the time since the last connection. */
	if (cfg->rate) {
		if (now > q->last_ns) {
			q->tokens_ns += now - q->last_ns;
			if (q->tokens_ns > cfg->bucket_ns)
				q->tokens_ns = cfg->bucket_ns;
		}
		q->last_ns = now;
	}

	if (cfg->max_concurrent && q->active >= (__s64)cfg->max_concurrent) {
		*reason = SM_WHY_QUOTA_CONCURRENT;
		return -SM_ERRNO_QUOTA;
	}
	if (cfg->rate) {
		if (q->tokens_ns < cfg->token_ns) {
			*reason = SM_WHY_QUOTA_RATE;
			return -SM_ERRNO_QUOTA;
		}
		q->tokens_ns -= cfg->token_ns;
	}
	if (cfg->max_concurrent)
		__sync_fetch_and_add(&q->active, 1);
	return 0;
}

/*
 * Take what a new connection of the pair needs. On success *held says
 * whether it holds a max_concurrent unit that its close must give back.
 */
static __always_inline int quota_take(__u32 slot, __u32 src, __u32 dst, __u8 *reason, __u8 *held)
{
	struct sm_quota_cfg_key ckey = {
		.pair = {.src = src, .dst = dst},
		.slot = slot,
	};
	struct sm_quota_state *q;
	struct sm_quota_cfg *cfg;
	__u64 now;
	int err;

	*held = 0;
	cfg = bpf_map_lookup_elem(&SM_MAP_QCFG, &ckey);
	if (!cfg)
		return 0;
	q = quota_state(&ckey.pair, cfg);
	if (!q)
		return 0;

	now = bpf_ktime_get_ns();
	bpf_spin_lock(&q->lock);
	err = quota_take_locked(q, cfg, now, reason);
	bpf_spin_unlock(&q->lock);
	if (!err && cfg->max_concurrent)
		*held = 1;
	return err;
}

/* Give back a max_concurrent unit. */
static __always_inline void quota_release(__u32 src, __u32 dst)
{
	struct sm_quota_key pair = {.src = src, .dst = dst};
	struct sm_quota_state *q;

	q = bpf_map_lookup_elem(&SM_MAP_QSTATE, &pair);
	if (q)
		__sync_fetch_and_add(&q->active, -1);
}

#endif /* SM_BPF_QUOTA_H */
