/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Counters and flow events. The datapath never prints; it counts. */
#ifndef SM_BPF_STATS_H
#define SM_BPF_STATS_H

#include "common.h"

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&SM_MAP_STATS, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static const struct sm_pair_val sm_zero_pair;

/* The counters of a service pair, made on first use. */
static __always_inline struct sm_pair_val *pair_get(__u32 src, __u32 dst)
{
	struct sm_pair_key key = {.src = src, .dst = dst};
	struct sm_pair_val *v;

	v = bpf_map_lookup_elem(&SM_MAP_PAIR, &key);
	if (v)
		return v;

	/*
	 * The value of a new per-CPU entry is zero on every CPU; a
	 * concurrent first use on another CPU makes this update fail with
	 * EEXIST, and the lookup below finds its entry. The zero value lives
	 * in .rodata: on the stack it would take 192 of the 512 bytes.
	 */
	if (bpf_map_update_elem(&SM_MAP_PAIR, &key, &sm_zero_pair, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&SM_MAP_PAIR, &key)) {
		stat_inc(SM_S_PAIR_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&SM_MAP_PAIR, &key);
}

static __always_inline void pair_count(__u32 src, __u32 dst, __u8 verdict)
{
	struct sm_pair_val *v = pair_get(src, dst);

	if (v && verdict < SM_V_MAX)
		__sync_fetch_and_add(&v->conns[verdict], 1);
}

static __always_inline void canary_count(__u32 svc, __u8 subset)
{
	struct sm_canary_key key = {.svc = svc, .subset = subset};
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&SM_MAP_CANARY, &key);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	if (bpf_map_update_elem(&SM_MAP_CANARY, &key, &one, BPF_NOEXIST)) {
		v = bpf_map_lookup_elem(&SM_MAP_CANARY, &key);
		if (v)
			__sync_fetch_and_add(v, 1);
	}
}

/* Histogram bucket of a connection duration; bounds in abi.h. */
static __always_inline __u32 dur_bucket(__u64 ns)
{
	static const __u64 bounds_ms[SM_DUR_BUCKETS - 1] = SM_DUR_BOUNDS_MS;
	__u32 i;

	for (i = 0; i < SM_DUR_BUCKETS - 1; i++) {
		/* A duration equal to a bound belongs to that bucket (le). */
		if (ns <= bounds_ms[i] * 1000000)
			return i;
	}
	return SM_DUR_BUCKETS - 1;
}

/* A zeroed event from the ring buffer, or NULL (counted as lost). */
static __always_inline struct sm_event *event_new(__u8 type)
{
	struct sm_event *e;

	e = bpf_ringbuf_reserve(&SM_MAP_EVENTS, sizeof(*e), 0);
	if (!e) {
		stat_inc(SM_S_EVENTS_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->rule = SM_RULE_NONE;
	e->subset = SM_SUBSET_NONE;
	e->src_subset = SM_SUBSET_NONE;
	return e;
}

/*
 * Hand an event to the agent. Waking the agent for every event costs more
 * than the rest of the connection's BPF work (on a VM the wakeup is an
 * interrupt that traps), so it is woken only once a batch has built up;
 * the agent also reads the ring on a short timer, so no event waits long.
 */
#define SM_RB_WAKEUP_BYTES (64 * 1024)

static __always_inline void event_submit(struct sm_event *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&SM_MAP_EVENTS, BPF_RB_AVAIL_DATA) >= SM_RB_WAKEUP_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/* Deny records written per pair, verdict and second; 0: every one. */
const volatile __u32 g_deny_records_per_sec = 100;

/*
 * May a deny record of this pair and verdict be written now? The counters
 * count every deny whatever this says; past g_deny_records_per_sec in a
 * second the records are folded: the next one written says how many
 * (*folded). Windows are kept per CPU-racy fields: a record or two over
 * the limit in a second is possible, never a lost count.
 */
static __always_inline int deny_record_ok(__u32 src, __u32 dst, __u8 verdict, __u32 *folded)
{
	struct sm_deny_key key = {.src = src, .dst = dst, .verdict = verdict};
	struct sm_deny_val init = {}, *v;
	__u64 now = bpf_ktime_get_ns();

	*folded = 0;
	if (!g_deny_records_per_sec)
		return 1;
	v = bpf_map_lookup_elem(&SM_MAP_DENYRATE, &key);
	if (!v) {
		init.window_ns = now;
		bpf_map_update_elem(&SM_MAP_DENYRATE, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&SM_MAP_DENYRATE, &key);
		if (!v)
			return 1;
	}
	if (now - v->window_ns >= 1000000000ULL) {
		v->window_ns = now;
		v->written = 0;
	}
	if (v->written >= g_deny_records_per_sec) {
		__sync_fetch_and_add(&v->folded, 1);
		stat_inc(SM_S_DENIES_FOLDED);
		return 0;
	}
	v->written++;
	*folded = __sync_lock_test_and_set(&v->folded, 0);
	return 1;
}

/* Fill an event with what the socket's state says about its connection. */
static __always_inline void event_from_sk(struct sm_event *e, const struct sm_sk *s)
{
	__builtin_memcpy(e->trace_id, s->trace_id, SM_TRACE_ID_LEN);
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	e->cgid = s->cgid;
	e->pid = s->pid;
	e->proto = s->proto;
	e->verdict = s->verdict;
	e->reason = s->reason;
	e->rule = s->rule;
	e->src_svc = s->svc;
	e->src_subset = s->subset;
	e->dst_svc = s->dst_svc;
	e->subset = s->dst_subset;
	e->orig = s->orig;
	e->dst = s->dst;
}

#endif /* SM_BPF_STATS_H */
