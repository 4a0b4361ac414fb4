// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * /metrics: the datapath's per-CPU counters summed, named by service, plus
 * the agent's own state. Labels carry service names, never addresses.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "compile.h"
#include "jsonout.h"
#include "mapiter.h"
#include "prom.h"

struct fams {
	struct sm_prom_family *conns, *canary, *dur, *bytes, *retrans, *quota;
};

static int ncpus(void)
{
	static int n;

	if (!n)
		n = libbpf_num_possible_cpus();
	return n;
}

/* A per-CPU counter's total. */
static __u64 sum_percpu(const __u64 *vals)
{
	__u64 sum = 0;
	int c;

	for (c = 0; c < ncpus(); c++)
		sum += vals[c];
	return sum;
}

/*
 * Per-CPU values are summed field by field in their own type: summing them
 * as an array of uint64_t (another type than __u64 on 64-bit) breaks strict
 * aliasing, and gcc then reads the struct's fields stale.
 */
static void pair_add(struct sm_pair_val *sum, const struct sm_pair_val *v)
{
	int i;

	for (i = 0; i < SM_V_MAX; i++)
		sum->conns[i] += v->conns[i];
	for (i = 0; i < SM_DUR_BUCKETS; i++)
		sum->duration_bucket[i] += v->duration_bucket[i];
	sum->bytes_sent += v->bytes_sent;
	sum->bytes_received += v->bytes_received;
	sum->retransmits += v->retransmits;
	sum->closed += v->closed;
	sum->duration_sum_ns += v->duration_sum_ns;
}

static void pair_samples(struct sm_agent *a, const struct fams *f, const struct sm_pair_key *k,
			 const struct sm_pair_val *v)
{
	static const uint64_t bounds_ms[SM_DUR_BUCKETS - 1] = SM_DUR_BOUNDS_MS;
	double bounds[SM_DUR_BUCKETS - 1];
	uint64_t cum[SM_DUR_BUCKETS - 1], run = 0;
	char src[SM_NAME_LEN], dst[SM_NAME_LEN];
	struct sm_prom_hist h = {.bounds = bounds, .counts = cum, .n = SM_DUR_BUCKETS - 1};
	int i;

	sm_names_get(&a->names, k->src, src, sizeof(src));
	sm_names_get(&a->names, k->dst, dst, sizeof(dst));
	for (i = 0; i < SM_V_MAX; i++)
		sm_prom_u64(
			f->conns,
			SM_PROM_LABELS({"src", src}, {"dst", dst}, {"verdict", sm_verdict_name(i)}),
			v->conns[i]);
	if (!v->closed)
		return;
	for (i = 0; i < SM_DUR_BUCKETS - 1; i++) {
		bounds[i] = bounds_ms[i] / 1000.0;
		run += v->duration_bucket[i];
		cum[i] = run;
	}
	h.count = run + v->duration_bucket[SM_DUR_BUCKETS - 1];
	h.sum = v->duration_sum_ns / 1e9;
	sm_prom_histogram(f->dur, SM_PROM_LABELS({"src", src}, {"dst", dst}), &h);
	sm_prom_u64(f->bytes, SM_PROM_LABELS({"src", src}, {"dst", dst}, {"direction", "sent"}),
		    v->bytes_sent);
	sm_prom_u64(f->bytes, SM_PROM_LABELS({"src", src}, {"dst", dst}, {"direction", "received"}),
		    v->bytes_received);
	sm_prom_u64(f->retrans, SM_PROM_LABELS({"src", src}, {"dst", dst}), v->retransmits);
}

/* What a map walk of /metrics needs at hand. */
struct walk {
	struct sm_agent *a;
	const struct fams *f;
};

static int pair_one(const void *key, void *value, void *ctx)
{
	const struct sm_pair_val *vals = value;
	struct walk *w = ctx;
	struct sm_pair_val sum = vals[0];
	int c;

	for (c = 1; c < ncpus(); c++)
		pair_add(&sum, &vals[c]);
	pair_samples(w->a, w->f, key, &sum);
	return SM_WALK_NEXT;
}

static int canary_one(const void *key, void *value, void *ctx)
{
	const struct sm_canary_key *k = key;
	char svc[SM_NAME_LEN], sub[SM_NAME_LEN];
	struct walk *w = ctx;

	sm_names_get(&w->a->names, k->svc, svc, sizeof(svc));
	sm_names_get_subset(&w->a->names, k->svc, (uint8_t)k->subset, sub, sizeof(sub));
	sm_prom_u64(w->f->canary, SM_PROM_LABELS({"service", svc}, {"subset", sub}),
		    sum_percpu(value));
	return SM_WALK_NEXT;
}

static int quota_one(const void *key, void *value, void *ctx)
{
	const struct sm_quota_state *st = value;
	const struct sm_quota_key *k = key;
	char src[SM_NAME_LEN], dst[SM_NAME_LEN];
	struct walk *w = ctx;

	sm_names_get(&w->a->names, k->src, src, sizeof(src));
	sm_names_get(&w->a->names, k->dst, dst, sizeof(dst));
	sm_prom_u64(w->f->quota, SM_PROM_LABELS({"src", src}, {"dst", dst}),
		    st->active > 0 ? (uint64_t)st->active : 0);
	return SM_WALK_NEXT;
}

/* Per service pair counters, canary counters and quota counts. */
static void walks(struct sm_agent *a, const struct fams *f)
{
	struct walk w = {a, f};

	sm_map_each(sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_PAIR)), pair_one, &w);
	sm_map_each(sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_CANARY)), canary_one, &w);
	sm_map_each(sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_QSTATE)), quota_one, &w);
}

static void global_stats(struct sm_agent *a, struct sm_prom *w)
{
	int fd = sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_STATS));
	struct sm_prom_family *trace, *f;
	__u64 st[SM_S_MAX] = {}, *vals;
	__u32 i;

	vals = calloc(ncpus(), sizeof(__u64));
	for (i = 0; vals && i < SM_S_MAX; i++)
		if (!bpf_map_lookup_elem(fd, &i, vals))
			st[i] = sum_percpu(vals);
	free(vals);

	trace = sm_prom_family(w, "sockmesh_trace_options_total", SM_PROM_COUNTER,
			       "TCP trace id options by result: written by clients, "
			       "received by servers, no room on the SYN, missing "
			       "from the peer");
	sm_prom_u64(trace, SM_PROM_LABELS({"result", "written"}), st[SM_S_TRACE_WRITTEN]);
	sm_prom_u64(trace, SM_PROM_LABELS({"result", "received"}), st[SM_S_TRACE_RECEIVED]);
	sm_prom_u64(trace, SM_PROM_LABELS({"result", "no_space"}), st[SM_S_TRACE_NO_SPACE]);
	sm_prom_u64(trace, SM_PROM_LABELS({"result", "missing"}), st[SM_S_TRACE_MISSING]);
	f = sm_prom_family(w, "sockmesh_events_lost_total", SM_PROM_COUNTER,
			   "Flow events dropped because the ring buffer was full");
	sm_prom_u64(f, NULL, 0, st[SM_S_EVENTS_LOST]);
	f = sm_prom_family(w, "sockmesh_untracked_sockets_total", SM_PROM_COUNTER,
			   "Sockets made before the agent first started, seen "
			   "when they connect");
	sm_prom_u64(f, NULL, 0, st[SM_S_UNTRACKED]);
	f = sm_prom_family(w, "sockmesh_socket_storage_failures_total", SM_PROM_COUNTER,
			   "Sockets the datapath could not keep state for");
	sm_prom_u64(f, NULL, 0, st[SM_S_NO_STORAGE]);
	f = sm_prom_family(w, "sockmesh_pair_stats_full_total", SM_PROM_COUNTER,
			   "Counter updates lost because sm_pair_stats was full");
	sm_prom_u64(f, NULL, 0, st[SM_S_PAIR_FULL]);
	f = sm_prom_family(w, "sockmesh_deny_records_folded_total", SM_PROM_COUNTER,
			   "Denies not written to the flow log (past 100 records "
			   "a second per pair and verdict); still counted in "
			   "sockmesh_connections_total");
	sm_prom_u64(f, NULL, 0, st[SM_S_DENIES_FOLDED]);
	f = sm_prom_family(w, "sockmesh_drained_connections_total", SM_PROM_COUNTER,
			   "Connections closed because a reload removed their "
			   "endpoint (drain: close)");
	sm_prom_u64(f, NULL, 0, st[SM_S_DRAINED]);
}

/* Ejections per service, and backends out of selection right now. */
struct outlier_walk {
	struct {
		__u64 ejections;
		__u64 out;
	} * per;
	uint32_t cap;
	__u64 now;
};

static int outlier_one(const void *key, void *value, void *ctx)
{
	const struct sm_outlier_val *v = value;
	struct outlier_walk *o = ctx;

	(void)key;
	if (v->svc < o->cap) {
		o->per[v->svc].ejections += v->ejections;
		o->per[v->svc].out += v->ejected_until_ns > o->now;
	}
	return SM_WALK_NEXT;
}

static void outliers(struct sm_agent *a, struct sm_prom *w)
{
	struct outlier_walk o = {.cap = a->names.cap};
	struct sm_prom_family *total, *out;
	char name[SM_NAME_LEN];
	struct timespec ts;
	uint32_t i;

	o.per = calloc(o.cap, sizeof(*o.per));
	if (!o.per)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	o.now = (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	sm_map_each(sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_OUTLIER)), outlier_one, &o);
	total = sm_prom_family(w, "sockmesh_outlier_ejections_total", SM_PROM_COUNTER,
			       "Backends taken out of selection after failed "
			       "connects, by service");
	out = sm_prom_family(w, "sockmesh_outlier_ejected", SM_PROM_GAUGE,
			     "Backends out of selection now, by service");
	for (i = 1; i < o.cap; i++) {
		if (!o.per[i].ejections)
			continue;
		sm_names_get(&a->names, i, name, sizeof(name));
		sm_prom_u64(total, SM_PROM_LABELS({"service", name}), o.per[i].ejections);
		sm_prom_u64(out, SM_PROM_LABELS({"service", name}), o.per[i].out);
	}
	free(o.per);
}

static void map_fill(struct sm_agent *a, struct sm_prom *w)
{
	static const char *const state_maps[] = {
		SM_STR(SM_MAP_QSTATE),
		SM_STR(SM_MAP_PAIR),
		SM_STR(SM_MAP_CANARY),
		SM_STR(SM_MAP_NAMES),
	};
	struct sm_prom_family *ent, *cap;
	struct bpf_map_info info;
	__u32 len;
	size_t i;
	int m, fd;

	ent = sm_prom_family(w, "sockmesh_map_entries", SM_PROM_GAUGE,
			     "Entries in use; policy maps count the policy in force");
	cap = sm_prom_family(w, "sockmesh_map_capacity", SM_PROM_GAUGE,
			     "Entries a map can hold; policy maps per policy");
	for (m = 0; m < SM_PM_MAX; m++) {
		sm_prom_u64(ent, SM_PROM_LABELS({"map", sm_pmap_name(m)}),
			    sm_applier_entries(&a->applier, m));
		sm_prom_u64(cap, SM_PROM_LABELS({"map", sm_pmap_name(m)}), a->applier.limits[m]);
	}
	for (i = 0; i < sizeof(state_maps) / sizeof(state_maps[0]); i++) {
		fd = sm_dp_map_fd(&a->dp, state_maps[i]);
		memset(&info, 0, sizeof(info));
		len = sizeof(info);
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
			continue;
		sm_prom_u64(ent, SM_PROM_LABELS({"map", state_maps[i]}), sm_map_count(fd));
		sm_prom_u64(cap, SM_PROM_LABELS({"map", state_maps[i]}), info.max_entries);
	}
}

static void agent_state(struct sm_agent *a, struct sm_prom *w)
{
	struct sm_prom_family *f;
	unsigned int i;

	pthread_mutex_lock(&a->lock);
	f = sm_prom_family(w, "sockmesh_policy_generation", SM_PROM_GAUGE,
			   "Generation of the policy in force; +1 per applied change");
	sm_prom_u64(f, NULL, 0, sm_applier_generation(&a->applier));
	f = sm_prom_family(w, "sockmesh_policy_reloads_total", SM_PROM_COUNTER,
			   "Policy reloads by result");
	sm_prom_u64(f, SM_PROM_LABELS({"result", "success"}), a->reloads_ok);
	sm_prom_u64(f, SM_PROM_LABELS({"result", "unchanged"}), a->reloads_unchanged);
	sm_prom_u64(f, SM_PROM_LABELS({"result", "error"}), a->reloads_error);
	f = sm_prom_family(w, "sockmesh_policy_missing_cgroups", SM_PROM_GAUGE,
			   "Service cgroups named by the policy that do not exist");
	sm_prom_u64(f, NULL, 0, a->missing_cgroups);
	f = sm_prom_family(w, "sockmesh_hook_attached", SM_PROM_GAUGE,
			   "1 when the agent's program for the hook is in force on "
			   "the managed cgroup");
	for (i = 0; i < a->dp.n_hooks; i++)
		sm_prom_u64(f, SM_PROM_LABELS({"hook", a->dp.hooks[i].label}), a->hook_ok[i]);
	pthread_mutex_unlock(&a->lock);

	f = sm_prom_family(w, "sockmesh_flow_records_total", SM_PROM_COUNTER,
			   "Flow records read from the datapath");
	sm_prom_u64(f, NULL, 0, sm_events_handled(a->events));
	f = sm_prom_family(w, "sockmesh_flow_log_write_errors_total", SM_PROM_COUNTER,
			   "Flow records the flow log file could not take");
	sm_prom_u64(f, NULL, 0, sm_events_write_errors(a->events));
}

int sm_metrics_render(struct sm_agent *a, char **text, size_t *len)
{
	struct sm_prom *w = sm_prom_new();
	struct fams f;
	int err;

	if (!w)
		return -ENOMEM;
	f.conns = sm_prom_family(w, "sockmesh_connections_total", SM_PROM_COUNTER,
				 "Connections decided on this node, by source and "
				 "destination service and verdict");
	f.canary = sm_prom_family(w, "sockmesh_canary_connections_total", SM_PROM_COUNTER,
				  "Connections to a VIP by the subset chosen");
	f.dur = sm_prom_family(w, "sockmesh_connection_duration_seconds", SM_PROM_HISTOGRAM,
			       "Lifetime of closed TCP connections");
	f.bytes = sm_prom_family(w, "sockmesh_bytes_total", SM_PROM_COUNTER,
				 "Bytes of closed TCP connections; sent: from src "
				 "to dst, received: from dst to src");
	f.retrans = sm_prom_family(w, "sockmesh_tcp_retransmits_total", SM_PROM_COUNTER,
				   "Retransmitted segments of closed TCP connections");
	f.quota = sm_prom_family(w, "sockmesh_quota_active", SM_PROM_GAUGE,
				 "Live connections held against max_concurrent");
	walks(a, &f);
	global_stats(a, w);
	outliers(a, w);
	map_fill(a, w);
	agent_state(a, w);
	err = sm_prom_text(w, text, len);
	sm_prom_free(w);
	return err;
}
