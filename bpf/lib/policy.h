/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The decision for one connect() or sendmsg(): which service is dialled,
 * whether a rule allows it, which backend a VIP turns into, and whether a
 * quota holds it back. Workers here return 0 or a negative errno; only the
 * hook entry turns that into a verdict.
 */
#ifndef SM_BPF_POLICY_H
#define SM_BPF_POLICY_H

#include "common.h"
#include "stats.h"
#include "outlier.h"
#include "quota.h"

/* Who asks for a decision (the address dialled is passed on its own). */
struct sm_query {
	__u64 caller; /* affinity key: service, or cgroup id */
	__u32 slot;
	__u32 src;  /* the calling socket's service */
	__u32 list; /* enum sm_list to pick backends from */
	/*
	 * The service of a TCP listener on this host that takes dst although
	 * the policy does not list dst (sock.h local_owner); WORLD: none.
	 */
	__u32 local_svc;
	__u8 local_subset;
	__u8 proto;
	__u8 pad[2];
};

struct sm_decision {
	struct sm_sockaddr backend; /* VIPs: where the connection goes */
	__u32 dst_svc;
	__u32 rule;
	__u8 verdict;
	__u8 reason;
	__u8 subset;
	__u8 kind; /* enum sm_dest_kind, 0: not in the mesh */
	__u8 quota_held;
	__u8 pad[3];
};

static __always_inline struct sm_dest_val *dest_lookup(__u32 slot, const struct sm_sockaddr *dst,
						       __u8 proto)
{
	struct sm_dest_key key = {
		.addr = dst->addr,
		.port = dst->port,
		.proto = proto,
		.slot = slot,
	};

	return bpf_map_lookup_elem(&SM_MAP_DEST, &key);
}

/* The service whose endpoint host an address is, or world. */
static __always_inline __u32 peer_svc(__u32 slot, const struct sm_addr *addr)
{
	struct sm_dest_key key = {.addr = *addr, .slot = slot};
	struct sm_dest_val *v;

	v = bpf_map_lookup_elem(&SM_MAP_DEST, &key);
	return v ? v->svc : SM_SVC_WORLD;
}

/* A rule for exactly this port, else one for any port. */
static __always_inline int rule_find(__u32 slot, __u32 src, __u32 dst, __be16 port, __u8 proto,
				     __u32 *index)
{
	struct sm_rule_key key = {
		.src = src,
		.dst = dst,
		.port = port,
		.proto = proto,
		.slot = slot,
	};
	struct sm_rule_val *v;

	v = bpf_map_lookup_elem(&SM_MAP_RULE, &key);
	if (!v) {
		key.port = 0;
		v = bpf_map_lookup_elem(&SM_MAP_RULE, &key);
	}
	if (!v)
		return 0;
	*index = v->index;
	return 1;
}

/*
 * A rule for a TCP connection arriving at an endpoint of svc on port: a
 * rule on that port, or, when a client elsewhere dialled a VIP whose port
 * differs from its endpoints', the way-in entry the agent made for it.
 */
static __always_inline int rule_find_in(__u32 slot, __u32 src, __u32 dst, __be16 port, __u32 *index)
{
	return rule_find(slot, src, dst, port, IPPROTO_TCP, index) ||
	       rule_find(slot, src, dst, port, SM_RULE_PROTO_IN, index);
}

/* FNV-1a over the caller's identity and the service: affinity's choice. */
static __always_inline __u32 affinity_hash(__u64 caller, __u32 svc)
{
	__u32 h = 2166136261U;
	__u64 x = caller ^ ((__u64)svc << 32);
	int i;

	for (i = 0; i < 8; i++) {
		h ^= (__u8)(x >> (8 * i));
		h *= 16777619U;
	}
	return h;
}

/*
 * An endpoint of one subset, at random. Ejected outliers are left out:
 * when the first pick is out, one of those still in selection among the
 * SM_OUTLIER_PROBES endpoints from there is drawn evenly, so that no
 * endpoint takes over the share of an ejected neighbour (exactly even for
 * subsets of up to SM_OUTLIER_PROBES endpoints). When every one looked at
 * is out, the first pick stands.
 */
static __always_inline struct sm_backend_val *endpoint_pick(struct sm_backend_key *key, __u32 n,
							    int *all_out)
{
	struct sm_backend_val *be, *first = NULL;
	__u16 in[SM_OUTLIER_PROBES] = {};
	__u64 now = bpf_ktime_get_ns();
	__u32 i, start, n_in = 0;

	*all_out = 0;
	start = bpf_get_prandom_u32() % n;
	for (i = 0; i < SM_OUTLIER_PROBES && i < n; i++) {
		key->idx = (start + i) % n;
		be = bpf_map_lookup_elem(&SM_MAP_BACKEND, key);
		if (!be)
			break;
		if (!outlier_ejected(&be->sa, now)) {
			/* The common case: the first pick is in selection. */
			if (!i)
				return be;
			in[n_in++ & (SM_OUTLIER_PROBES - 1)] = key->idx;
		} else if (!i) {
			first = be;
		}
	}
	if (!n_in) {
		*all_out = first != NULL;
		return first;
	}

	key->idx = in[(bpf_get_prandom_u32() % n_in) & (SM_OUTLIER_PROBES - 1)];
	be = bpf_map_lookup_elem(&SM_MAP_BACKEND, key);
	return be ? be : first;
}

/* The weight of one subset in a list. */
static __always_inline __u32 subset_weight(const struct sm_svc_val *sv, __u32 list, __u32 subset)
{
	__u32 below = subset ? sv->cum_weight[list][(subset - 1) & (SM_MAX_SUBSETS - 1)] : 0;

	return sv->cum_weight[list][subset & (SM_MAX_SUBSETS - 1)] - below;
}

/*
 * Another subset than `out`, by the weights of the others; SM_SUBSET_NONE
 * when no other has weight.
 */
static __always_inline __u32 subset_other(const struct sm_svc_val *sv, __u32 list, __u32 out)
{
	__u32 rest, r, i, w, acc = 0;

	rest = sv->total_weight[list] - subset_weight(sv, list, out);
	if (!rest)
		return SM_SUBSET_NONE;
	r = bpf_get_prandom_u32() % rest;
	for (i = 0; i < SM_MAX_SUBSETS; i++) {
		if (i == out)
			continue;
		w = subset_weight(sv, list, i);
		acc += w;
		if (w && r < acc)
			return i;
	}
	return SM_SUBSET_NONE;
}

/*
 * Choose a subset by weight, then one of its endpoints evenly. `pick` is
 * random, or the affinity hash so one caller keeps one subset. A subset
 * whose every endpoint is ejected hands its share to the others (one more
 * draw); when they are all out too, the first pick stands.
 */
static __always_inline int backend_pick(__u32 slot, __u32 svc, const struct sm_svc_val *sv,
					__u32 list, __u32 pick, struct sm_decision *d)
{
	struct sm_backend_key key = {.svc = svc};
	struct sm_backend_val *chosen = NULL, *be;
	__u32 total, r, n, i, subset = 0, chosen_subset = 0;
	int all_out;

	if (list >= SM_LISTS)
		return -SM_ERRNO_NO_BACKEND;
	total = sv->total_weight[list];
	if (!total)
		return -SM_ERRNO_NO_BACKEND;

	/* Step 1: the subset whose cumulative weight first exceeds r. */
	r = pick % total;
	for (i = 0; i < SM_MAX_SUBSETS; i++) {
		if (r < sv->cum_weight[list][i]) {
			subset = i;
			break;
		}
	}

	/*
	 * Step 2: an endpoint of that subset, always at random. When the
	 * whole subset is out, a second attempt draws among the others.
	 */
	key.slot = slot | (list << 1);
	for (i = 0; i < 2; i++) {
		n = sv->n_endpoints[list][subset & (SM_MAX_SUBSETS - 1)];
		if (!n)
			break;
		key.subset = subset;
		be = endpoint_pick(&key, n, &all_out);
		if (!be)
			break;
		if (!chosen) {
			chosen = be;
			chosen_subset = subset;
		}
		if (!all_out) {
			chosen = be;
			chosen_subset = subset;
			break;
		}
		subset = subset_other(sv, list, subset);
		if (subset >= SM_MAX_SUBSETS)
			break;
	}
	if (!chosen)
		return -SM_ERRNO_NO_BACKEND;
	subset = chosen_subset;

	d->backend = chosen->sa;
	d->subset = subset;
	return 0;
}

#ifndef EINVAL
#define EINVAL 22
#endif

/*
 * Decide a connection from service `src` to `dst` over `proto`. It is a
 * global function: the verifier checks it once, on its own, instead of
 * once per hook and path that calls it (four hooks call it). On
 * success d->kind says whether dst was a VIP (d->backend is then the
 * address to use). Returns 0 to let it proceed, or the negative errno the
 * application gets; d->verdict and d->reason say why in both cases.
 */
__noinline int __sock_decide(const struct sm_query *q, const struct sm_sockaddr *dst,
			     struct sm_decision *d)
{
	struct sm_svc_key skey = {};
	struct sm_dest_val *dv, local;
	struct sm_svc_val *sv;
	struct sm_config *cfg;
	__u32 pick, slot, src;
	__u8 proto;
	int err;

	/* A global function's pointers may be NULL, says the verifier. */
	if (!q || !dst || !d)
		return -EINVAL;
	slot = q->slot;
	src = q->src;
	proto = q->proto;
	skey.slot = slot;
	d->verdict = SM_V_ALLOWED;
	d->rule = SM_RULE_NONE;
	d->subset = SM_SUBSET_NONE;

	/* Step 1: what is being dialled. Not in the mesh: defaults.egress. */
	dv = dest_lookup(slot, dst, proto);
	if (!dv && q->local_svc != SM_SVC_WORLD) {
		/* A service's listener on this host takes it: its endpoint. */
		skey.svc = q->local_svc;
		sv = bpf_map_lookup_elem(&SM_MAP_SVC, &skey);
		local.svc = q->local_svc;
		local.kind = SM_DEST_ENDPOINT;
		local.mode = sv ? sv->mode : SM_MODE_ENFORCE;
		local.subset = q->local_subset;
		local.pad = 0;
		dv = &local;
	}
	if (!dv) {
		d->dst_svc = SM_SVC_WORLD;
		d->reason = SM_WHY_EGRESS_ALLOW;
		if (src == SM_SVC_WORLD)
			return 0;
		cfg = bpf_map_lookup_elem(&SM_MAP_CONFIG, &slot);
		if (cfg && cfg->egress == SM_EGRESS_DENY) {
			d->verdict = SM_V_DENIED;
			d->reason = SM_WHY_EGRESS;
			return -SM_ERRNO_DENIED;
		}
		return 0;
	}
	d->kind = dv->kind;
	d->dst_svc = dv->svc;
	if (dv->kind == SM_DEST_ENDPOINT)
		d->subset = dv->subset;

	/* Step 2: a rule, else audit mode lets it pass and records it. */
	if (rule_find(slot, src, dv->svc, dst->port, proto, &d->rule)) {
		d->reason = SM_WHY_RULE;
	} else if (dv->mode == SM_MODE_AUDIT) {
		d->verdict = SM_V_AUDIT;
		d->reason = SM_WHY_NO_RULE;
	} else {
		d->verdict = SM_V_DENIED;
		d->reason = SM_WHY_NO_RULE;
		return -SM_ERRNO_DENIED;
	}

	/* Step 3: a VIP becomes one backend of a subset chosen by weight. */
	if (dv->kind == SM_DEST_VIP) {
		skey.svc = dv->svc;
		sv = bpf_map_lookup_elem(&SM_MAP_SVC, &skey);
		if (!sv) {
			err = -SM_ERRNO_NO_BACKEND;
		} else {
			pick = sv->affinity == SM_AFFINITY_SOURCE
				       ? affinity_hash(q->caller, dv->svc)
				       : bpf_get_prandom_u32();
			err = backend_pick(slot, dv->svc, sv, q->list, pick, d);
		}
		if (err) {
			d->verdict = SM_V_NO_BACKEND;
			d->reason = SM_WHY_NO_ENDPOINTS;
			return err;
		}
	}

	/* Step 4: quotas hold TCP connections of this pair back. */
	if (proto == IPPROTO_TCP) {
		err = quota_take(slot, src, dv->svc, &d->reason, &d->quota_held);
		if (err) {
			d->verdict = SM_V_QUOTA;
			return err;
		}
	}
	return 0;
}

#endif /* SM_BPF_POLICY_H */
