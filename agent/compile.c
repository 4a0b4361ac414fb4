// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup.h"
#include "compile.h"
#include "loader.h"
#include "log.h"

static const struct {
	const char *name;
	int size;
	size_t key_size;
	size_t val_size;
} pmaps[SM_PM_MAX] = {
	[SM_PM_CGROUP] = {SM_STR(SM_MAP_CGROUP), SM_SIZE_CGROUP, sizeof(struct sm_cgroup_key),
			  sizeof(struct sm_cgroup_val)},
	[SM_PM_DEST] = {SM_STR(SM_MAP_DEST), SM_SIZE_DEST, sizeof(struct sm_dest_key),
			sizeof(struct sm_dest_val)},
	[SM_PM_SVC] = {SM_STR(SM_MAP_SVC), SM_SIZE_SVC, sizeof(struct sm_svc_key),
		       sizeof(struct sm_svc_val)},
	[SM_PM_BACKEND] = {SM_STR(SM_MAP_BACKEND), SM_SIZE_BACKEND, sizeof(struct sm_backend_key),
			   sizeof(struct sm_backend_val)},
	[SM_PM_RULE] = {SM_STR(SM_MAP_RULE), SM_SIZE_RULE, sizeof(struct sm_rule_key),
			sizeof(struct sm_rule_val)},
	[SM_PM_QCFG] = {SM_STR(SM_MAP_QCFG), SM_SIZE_QUOTA, sizeof(struct sm_quota_cfg_key),
			sizeof(struct sm_quota_cfg)},
};

const char *sm_pmap_name(enum sm_pmap m)
{
	return pmaps[m].name;
}

int sm_pmap_size_index(enum sm_pmap m)
{
	return pmaps[m].size;
}

struct sm_image *sm_image_new(void)
{
	struct sm_image *img = calloc(1, sizeof(*img));
	int m;

	if (!img)
		return NULL;
	for (m = 0; m < SM_PM_MAX; m++) {
		img->maps[m].key_size = pmaps[m].key_size;
		img->maps[m].val_size = pmaps[m].val_size;
	}
	return img;
}

void sm_image_free(struct sm_image *img)
{
	int m;

	if (!img)
		return;
	for (m = 0; m < SM_PM_MAX; m++) {
		free(img->maps[m].keys);
		free(img->maps[m].vals);
	}
	free(img);
}

int sm_kvs_add(struct sm_kvs *s, const void *key, const void *val)
{
	uint8_t *k, *v;
	size_t cap;

	if (s->n == s->cap) {
		cap = s->cap ? 2 * s->cap : 64;
		k = realloc(s->keys, cap * s->key_size);
		if (!k)
			return -ENOMEM;
		s->keys = k;
		v = realloc(s->vals, cap * s->val_size);
		if (!v)
			return -ENOMEM;
		s->vals = v;
		s->cap = cap;
	}
	memcpy(s->keys + s->n * s->key_size, key, s->key_size);
	memcpy(s->vals + s->n * s->val_size, val, s->val_size);
	s->n++;
	return 0;
}

/* qsort has no context argument; sorting happens on one thread. */
static const struct sm_kvs *g_sort_set;

static int cmp_index(const void *a, const void *b)
{
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	const struct sm_kvs *s = g_sort_set;
	int c;

	c = memcmp(s->keys + ia * s->key_size, s->keys + ib * s->key_size, s->key_size);
	if (c)
		return c;
	return ia < ib ? -1 : ia > ib;
}

static int kvs_sort(struct sm_kvs *s, int dedupe)
{
	uint8_t *keys, *vals;
	size_t *idx, i, n = 0;

	if (s->n < 2)
		return 0;
	idx = malloc(s->n * sizeof(*idx));
	keys = malloc(s->n * s->key_size);
	vals = malloc(s->n * s->val_size);
	if (!idx || !keys || !vals) {
		free(idx);
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (i = 0; i < s->n; i++)
		idx[i] = i;
	g_sort_set = s;
	qsort(idx, s->n, sizeof(*idx), cmp_index);

	for (i = 0; i < s->n; i++) {
		const uint8_t *k = s->keys + idx[i] * s->key_size;

		if (dedupe && n && !memcmp(keys + (n - 1) * s->key_size, k, s->key_size))
			continue;
		memcpy(keys + n * s->key_size, k, s->key_size);
		memcpy(vals + n * s->val_size, s->vals + idx[i] * s->val_size, s->val_size);
		n++;
	}
	free(idx);
	free(s->keys);
	free(s->vals);
	s->keys = keys;
	s->vals = vals;
	s->n = n;
	s->cap = n;
	return 0;
}

void sm_kvs_sort(struct sm_kvs *s)
{
	if (kvs_sort(s, 1))
		pr_warn("out of memory sorting map entries\n");
}

const void *sm_kvs_find(const struct sm_kvs *s, const void *key)
{
	size_t lo = 0, hi = s->n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = memcmp(s->keys + mid * s->key_size, key, s->key_size);
		if (!c)
			return s->vals + mid * s->val_size;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* What compiling one policy needs to carry around. */
struct cc {
	const struct sm_policy *p;
	const struct sm_compile_ctx *ctx;
	struct sm_image *img;
	struct sm_diags *diags;
	uint32_t *ids; /* service id, by policy index */
	uint8_t (*subset_idx)[SM_MAX_SUBSETS];
	struct sm_kvs hosts; /* address -> service, conflicts dropped */
	int err;
};

static void cc_oom(struct cc *c, int err)
{
	if (err && !c->err)
		c->err = err;
}

static uint32_t svc_id(const struct cc *c, const char *name)
{
	const struct sm_service *s;

	if (!strcmp(name, SM_WORLD_NAME))
		return SM_SVC_WORLD;
	s = sm_policy_service(c->p, name);
	return s ? c->ids[s - c->p->services] : SM_SVC_WORLD;
}

static void add_cgroup(struct cc *c, const struct sm_cgroup_ref *ref, uint32_t id, uint8_t subset)
{
	struct sm_cgroup_key key = {};
	struct sm_cgroup_val val = {.svc = id, .subset = subset};
	char abs[PATH_MAX];
	uint64_t cgid = 0;
	int err;

	if (!sm_cgroup_under(c->ctx->cg_mount, c->ctx->cg_root, ref->path)) {
		sm_diags_add(c->diags, ref->loc,
			     "cgroup '%s' is outside the managed cgroup '%s' "
			     "(--cgroup)",
			     ref->path, c->ctx->cg_root);
		return;
	}
	err = sm_cgroup_abs(c->ctx->cg_mount, ref->path, abs, sizeof(abs));
	if (!err)
		err = sm_cgroup_id(abs, &cgid);
	key.cgid = cgid;
	if (err == -ENOENT || err == -ENOTDIR) {
		if (!c->img->missing_cgroups++)
			snprintf(c->img->first_missing, sizeof(c->img->first_missing), "%s",
				 ref->path);
		return;
	}
	if (err) {
		sm_diags_add(c->diags, ref->loc, "cgroup '%s': %s", ref->path, strerror(-err));
		return;
	}
	cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_CGROUP], &key, &val));
}

static void add_proto_dests(struct cc *c, const struct sm_endpoint *ep, unsigned int protocols,
			    const struct sm_dest_val *val)
{
	struct sm_dest_key key = {.addr = ep->sa.addr, .port = ep->sa.port};

	if (protocols & SM_PROTO_TCP) {
		key.proto = IPPROTO_TCP;
		cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_DEST], &key, val));
	}
	if (protocols & SM_PROTO_UDP) {
		key.proto = IPPROTO_UDP;
		cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_DEST], &key, val));
	}
}

/* An endpoint: reachable by address and port, and its host names a peer. */
static void add_endpoint(struct cc *c, const struct sm_service *s, uint32_t id,
			 const struct sm_endpoint *ep, uint8_t subset)
{
	struct sm_dest_val val = {
		.svc = id,
		.kind = SM_DEST_ENDPOINT,
		.mode = s->mode,
		.subset = subset,
	};
	struct sm_dest_key host = {.addr = ep->sa.addr};
	struct sm_dest_val hval = {
		.svc = id, .kind = SM_DEST_HOST, .mode = s->mode, .subset = subset};

	add_proto_dests(c, ep, s->protocols, &val);
	cc_oom(c, sm_kvs_add(&c->hosts, &host, &hval));
}

/*
 * Every service's mode, and for a service with a VIP its endpoint lists
 * and cumulative weights.
 */
static void add_service(struct cc *c, const struct sm_service *s, uint32_t id, const uint8_t *sidx)
{
	struct sm_svc_key skey = {.svc = id};
	struct sm_svc_val sv = {
		.mode = s->mode,
		.affinity = s->affinity,
		.drain = s->drain,
		.n_subsets = (uint8_t)s->n_subsets,
		/* The parser keeps both within 16 bits. */
		.outlier_failures = (uint16_t)s->outlier.failures,
		.outlier_eject_s = (uint16_t)s->outlier.eject_seconds,
	};
	uint32_t weight[SM_MAX_SUBSETS] = {};
	size_t i, e;
	int list, k;

	for (i = 0; s->n_vips && i < s->n_subsets; i++) {
		const struct sm_subset *sub = &s->subsets[i];

		weight[sidx[i]] = sub->weight;
		for (e = 0; e < sub->n_endpoints; e++) {
			const struct sm_endpoint *ep = &sub->endpoints[e];

			for (list = 0; list < SM_LISTS; list++) {
				struct sm_backend_key bk = {
					.svc = id,
					.subset = sidx[i],
					.slot = (uint8_t)(list << 1),
				};
				struct sm_backend_val bv = {.sa = ep->sa, .v4 = ep->v4};

				if ((list == SM_LIST_V4 && !ep->v4) ||
				    (list == SM_LIST_V6 && ep->v4))
					continue;
				bk.idx = sv.n_endpoints[list][sidx[i]]++;
				cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_BACKEND], &bk, &bv));
			}
		}
	}

	/* A subset with no endpoint in a list weighs nothing there. */
	for (list = 0; list < SM_LISTS; list++) {
		uint32_t cum = 0;

		for (k = 0; k < SM_MAX_SUBSETS; k++) {
			if (sv.n_endpoints[list][k])
				cum += weight[k];
			sv.cum_weight[list][k] = cum;
		}
		sv.total_weight[list] = cum;
	}
	cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_SVC], &skey, &sv));
}

static void compile_service(struct cc *c, size_t si)
{
	const struct sm_service *s = &c->p->services[si];
	struct sm_dest_val vip = {.kind = SM_DEST_VIP, .mode = s->mode, .subset = SM_SUBSET_NONE};
	uint32_t id = c->ids[si];
	size_t i, j;

	vip.svc = id;
	for (i = 0; i < s->n_cgroups; i++)
		add_cgroup(c, &s->cgroups[i], id, SM_SUBSET_NONE);
	for (i = 0; i < s->n_endpoints; i++)
		add_endpoint(c, s, id, &s->endpoints[i], SM_SUBSET_NONE);
	for (i = 0; i < s->n_subsets; i++) {
		const struct sm_subset *sub = &s->subsets[i];

		for (j = 0; j < sub->n_cgroups; j++)
			add_cgroup(c, &sub->cgroups[j], id, c->subset_idx[si][i]);
		for (j = 0; j < sub->n_endpoints; j++)
			add_endpoint(c, s, id, &sub->endpoints[j], c->subset_idx[si][i]);
	}
	for (i = 0; i < s->n_vips; i++)
		add_proto_dests(c, &s->vips[i], s->protocols, &vip);
	add_service(c, s, id, c->subset_idx[si]);
}

/*
 * Host entries let an accepted connection name its peer by address. An
 * address shared by endpoints of two services names neither.
 */
static void compile_hosts(struct cc *c)
{
	struct sm_kvs *h = &c->hosts;
	size_t i = 0, j;

	if (kvs_sort(h, 0)) {
		cc_oom(c, -ENOMEM);
		return;
	}
	while (i < h->n) {
		const struct sm_dest_val *v = (const void *)(h->vals + i * h->val_size);
		int clash = 0;

		for (j = i + 1; j < h->n && !memcmp(h->keys + j * h->key_size,
						    h->keys + i * h->key_size, h->key_size);
		     j++) {
			const struct sm_dest_val *w = (const void *)(h->vals + j * h->val_size);

			clash |= w->svc != v->svc;
		}
		if (!clash)
			cc_oom(c,
			       sm_kvs_add(&c->img->maps[SM_PM_DEST], h->keys + i * h->key_size, v));
		i = j;
	}
}

static void add_rule_key(struct cc *c, struct sm_rule_key *key, unsigned int protocols,
			 uint32_t index)
{
	struct sm_rule_val val = {.index = index};

	if (protocols & SM_PROTO_TCP) {
		key->proto = IPPROTO_TCP;
		cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_RULE], key, &val));
	}
	if (protocols & SM_PROTO_UDP) {
		key->proto = IPPROTO_UDP;
		cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_RULE], key, &val));
	}
}

/*
 * Way-in entries (SM_RULE_PROTO_IN): a node that receives a connection sees
 * the endpoint's port, while a rule names the port dialled. Where a rule
 * names the port of a VIP of dst whose endpoints listen on other ports,
 * those ports are allowed on the way in too. The rule's own entry covers
 * the common case of equal ports.
 */
static void add_rule_in(struct cc *c, const struct sm_rule_key *key, const struct sm_service *dst,
			uint32_t index)
{
	struct sm_rule_val val = {.index = index};
	struct sm_rule_key in = *key;
	size_t v, i, e;

	in.proto = SM_RULE_PROTO_IN;
	for (v = 0; key->port && v < dst->n_vips; v++) {
		if (dst->vips[v].sa.port != key->port)
			continue;
		for (i = 0; i < dst->n_subsets; i++) {
			for (e = 0; e < dst->subsets[i].n_endpoints; e++) {
				in.port = dst->subsets[i].endpoints[e].sa.port;
				if (in.port == key->port)
					continue;
				cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_RULE], &in, &val));
			}
		}
		break;
	}
}

/* One entry per (from, to, port, protocol); the first rule wins. */
static void compile_rule(struct cc *c, size_t ri)
{
	const struct sm_rule *r = &c->p->rules[ri];
	struct sm_rule_key key = {};
	const struct sm_service *dst;
	unsigned int protos;
	size_t f, t, k;

	for (t = 0; t < r->n_to; t++) {
		dst = sm_policy_service(c->p, r->to[t]);
		if (!dst)
			continue;
		/* Only protocols the destination speaks. */
		protos = r->protocols & dst->protocols;
		key.dst = svc_id(c, r->to[t]);
		for (f = 0; f < r->n_from; f++) {
			key.src = svc_id(c, r->from[f]);
			if (!r->n_ports) {
				key.port = 0;
				add_rule_key(c, &key, protos, (uint32_t)ri);
				if (protos & SM_PROTO_TCP)
					add_rule_in(c, &key, dst, (uint32_t)ri);
			}
			for (k = 0; k < r->n_ports; k++) {
				key.port = htons(r->ports[k]);
				add_rule_key(c, &key, protos, (uint32_t)ri);
				if (protos & SM_PROTO_TCP)
					add_rule_in(c, &key, dst, (uint32_t)ri);
			}
		}
	}
}

static void compile_quota(struct cc *c, const struct sm_quota *q)
{
	struct sm_quota_cfg_key key = {};
	struct sm_quota_cfg val = {
		.rate = q->rate,
		.burst = q->burst,
		.max_concurrent = q->max_concurrent,
	};

	key.pair.src = svc_id(c, q->from);
	key.pair.dst = svc_id(c, q->to);
	if (q->rate) {
		val.token_ns = 1000000000ULL / q->rate;
		val.bucket_ns = val.token_ns * (q->burst ? q->burst : q->rate);
	}
	cc_oom(c, sm_kvs_add(&c->img->maps[SM_PM_QCFG], &key, &val));
}

/*
 * No room for a name: every service and subset name ever applied keeps
 * its entry in sm_names, so that ids stay stable.
 */
static void names_full(struct cc *c, const struct sm_service *s, int err)
{
	if (err == -E2BIG || err == -ENOSPC)
		sm_diags_add(c->diags, s->loc,
			     "service '%s': no room for its name: map %s holds "
			     "%u names, every service and subset name applied "
			     "since the agent was installed; raise --map-size names",
			     s->name, SM_STR(SM_MAP_NAMES), c->ctx->names->cap);
	else
		sm_diags_add(c->diags, s->loc, "service '%s': map %s: %s", s->name,
			     SM_STR(SM_MAP_NAMES), strerror(-err));
}

/* Ids for every service and its subsets, kept from earlier policies. */
static int assign_ids(struct cc *c)
{
	char(*names)[SM_NAME_LEN];
	size_t i, j;
	int err = 0;

	for (i = 0; i < c->p->n_services && !err; i++) {
		const struct sm_service *s = &c->p->services[i];

		err = sm_names_service(c->ctx->names, s->name, &c->ids[i]);
		if (err) {
			names_full(c, s, err);
			break;
		}
		if (!s->n_subsets)
			continue;
		names = calloc(s->n_subsets, SM_NAME_LEN);
		if (!names)
			return -ENOMEM;
		for (j = 0; j < s->n_subsets; j++)
			memcpy(names[j], s->subsets[j].name, SM_NAME_LEN);
		err = sm_names_subsets(c->ctx->names, c->ids[i], (const char(*)[SM_NAME_LEN])names,
				       (unsigned int)s->n_subsets, c->subset_idx[i]);
		free(names);
		if (err)
			names_full(c, s, err);
	}
	return err ? -EINVAL : 0;
}

int sm_compile(const struct sm_policy *p, const struct sm_compile_ctx *ctx, struct sm_image **out,
	       struct sm_diags *diags)
{
	struct cc c = {.p = p, .ctx = ctx, .diags = diags};
	size_t i, ndiag = diags->n;
	int m, err;

	c.img = sm_image_new();
	c.ids = calloc(p->n_services + 1, sizeof(*c.ids));
	c.subset_idx = calloc(p->n_services + 1, sizeof(*c.subset_idx));
	c.hosts.key_size = sizeof(struct sm_dest_key);
	c.hosts.val_size = sizeof(struct sm_dest_val);
	if (!c.img || !c.ids || !c.subset_idx) {
		err = -ENOMEM;
		goto out;
	}
	err = assign_ids(&c);
	if (err)
		goto out;

	for (i = 0; i < p->n_services; i++)
		compile_service(&c, i);
	compile_hosts(&c);
	for (i = 0; i < p->n_rules; i++)
		compile_rule(&c, i);
	for (i = 0; i < p->n_quotas; i++)
		compile_quota(&c, &p->quotas[i]);
	c.img->config.egress = p->egress;

	for (m = 0; m < SM_PM_MAX && !c.err; m++)
		c.err = kvs_sort(&c.img->maps[m], 1);
	err = c.err;
	if (!err && diags->n > ndiag)
		err = -EINVAL;
out:
	free(c.hosts.keys);
	free(c.hosts.vals);
	free(c.ids);
	free(c.subset_idx);
	if (err) {
		sm_image_free(c.img);
		return err;
	}
	*out = c.img;
	return 0;
}
