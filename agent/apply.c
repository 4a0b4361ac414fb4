// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <linux/membarrier.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "apply.h"
#include "log.h"
#include "mapiter.h"

/* Where each policy map's key keeps its slot. */
static void key_set_slot(enum sm_pmap m, void *key, uint32_t slot)
{
	switch (m) {
	case SM_PM_CGROUP: ((struct sm_cgroup_key *)key)->slot = slot; break;
	case SM_PM_DEST: ((struct sm_dest_key *)key)->slot = (uint8_t)slot; break;
	case SM_PM_SVC: ((struct sm_svc_key *)key)->slot = slot; break;
	case SM_PM_BACKEND: {
		/* The backend key's slot byte also carries the list. */
		struct sm_backend_key *k = key;

		k->slot = (uint8_t)((k->slot & ~1U) | slot);
		break;
	}
	case SM_PM_RULE: ((struct sm_rule_key *)key)->slot = (uint8_t)slot; break;
	case SM_PM_QCFG: ((struct sm_quota_cfg_key *)key)->slot = slot; break;
	default: break;
	}
}

static uint32_t key_slot(enum sm_pmap m, const void *key)
{
	switch (m) {
	case SM_PM_CGROUP: return ((const struct sm_cgroup_key *)key)->slot;
	case SM_PM_DEST: return ((const struct sm_dest_key *)key)->slot;
	case SM_PM_SVC: return ((const struct sm_svc_key *)key)->slot;
	case SM_PM_BACKEND: return ((const struct sm_backend_key *)key)->slot & 1;
	case SM_PM_RULE: return ((const struct sm_rule_key *)key)->slot;
	case SM_PM_QCFG: return ((const struct sm_quota_cfg_key *)key)->slot;
	default: return 0;
	}
}

struct read_ctx {
	struct sm_image **img;
	enum sm_pmap m;
	size_t key_size;
	int err;
};

static int read_one(const void *key, void *value, void *ctx)
{
	struct read_ctx *r = ctx;
	uint8_t k[64];
	uint32_t slot;

	/* Images keep keys with slot 0, whatever slot they hold them for. */
	memcpy(k, key, r->key_size);
	slot = key_slot(r->m, k) & 1;
	key_set_slot(r->m, k, 0);
	r->err = sm_kvs_add(&r->img[slot]->maps[r->m], k, value);
	return r->err ? SM_WALK_STOP : SM_WALK_NEXT;
}

/* Read a map back into two slot images. */
static int read_map(struct sm_applier *a, struct sm_image **img, enum sm_pmap m)
{
	struct read_ctx r = {img, m, img[0]->maps[m].key_size, 0};
	int err;

	if (r.key_size > 64)
		return -EINVAL;
	err = sm_map_each(a->fds[m], read_one, &r);
	if (err || r.err)
		return err ?: r.err;
	sm_kvs_sort(&img[0]->maps[m]);
	sm_kvs_sort(&img[1]->maps[m]);
	return 0;
}

void sm_applier_free(struct sm_applier *a)
{
	sm_image_free(a->slot[0]);
	sm_image_free(a->slot[1]);
	a->slot[0] = a->slot[1] = NULL;
}

/* What other threads may read: the policy in force and its generation. */
static void publish(struct sm_applier *a)
{
	int m;

	for (m = 0; m < SM_PM_MAX; m++)
		__atomic_store_n(&a->entries[m], (uint32_t)a->slot[a->active]->maps[m].n,
				 __ATOMIC_RELAXED);
	__atomic_store_n(&a->generation_seen, a->generation, __ATOMIC_RELAXED);
}

/*
 * Forget what the slots were thought to hold and read the maps again.
 * Until that succeeds the applier is stale, and the next apply tries
 * again before it computes any change.
 */
static int reread(struct sm_applier *a)
{
	struct sm_image *img[SM_SLOTS] = {sm_image_new(), sm_image_new()};
	__u32 slot;
	int m, err = 0;

	a->stale = true;
	if (!img[0] || !img[1])
		err = -ENOMEM;
	for (m = 0; m < SM_PM_MAX && !err; m++)
		err = read_map(a, img, m);
	for (slot = 0; slot < SM_SLOTS && !err; slot++)
		if (bpf_map_lookup_elem(a->config_fd, &slot, &img[slot]->config))
			err = -errno;
	if (err) {
		sm_image_free(img[0]);
		sm_image_free(img[1]);
		return err;
	}
	sm_applier_free(a);
	a->slot[0] = img[0];
	a->slot[1] = img[1];
	a->stale = false;
	publish(a);
	return 0;
}

int sm_applier_init(struct sm_applier *a, struct sm_dp *dp, const uint32_t *sizes)
{
	struct sm_active act = {};
	__u32 zero = 0;
	int m;

	memset(a, 0, sizeof(*a));
	a->active_fd = sm_dp_map_fd(dp, SM_STR(SM_MAP_ACTIVE));
	a->config_fd = sm_dp_map_fd(dp, SM_STR(SM_MAP_CONFIG));
	a->qstate_fd = sm_dp_map_fd(dp, SM_STR(SM_MAP_QSTATE));
	if (bpf_map_lookup_elem(a->active_fd, &zero, &act))
		return -errno;
	a->active = act.slot & 1;
	a->generation = act.generation;

	for (m = 0; m < SM_PM_MAX; m++) {
		a->fds[m] = sm_dp_map_fd(dp, sm_pmap_name(m));
		a->limits[m] = sm_dp_size_limit(sizes, sm_pmap_size_index(m));
	}
	return reread(a);
}

uint32_t sm_applier_entries(const struct sm_applier *a, enum sm_pmap m)
{
	return __atomic_load_n(&a->entries[m], __ATOMIC_RELAXED);
}

uint64_t sm_applier_generation(const struct sm_applier *a)
{
	return __atomic_load_n(&a->generation_seen, __ATOMIC_RELAXED);
}

/* The changes that turn set `old` into set `new`, keys given a slot. */
struct delta {
	size_t n_del, n_upd;
	uint8_t *del_keys, *upd_keys, *upd_vals;
};

static int delta_build(enum sm_pmap m, const struct sm_kvs *old, const struct sm_kvs *new,
		       uint32_t slot, struct delta *d)
{
	size_t ks = old->key_size, vs = old->val_size, i = 0, j = 0;
	int c;

	memset(d, 0, sizeof(*d));
	d->del_keys = malloc((old->n + 1) * ks);
	d->upd_keys = malloc((new->n + 1) * ks);
	d->upd_vals = malloc((new->n + 1) * vs);
	if (!d->del_keys || !d->upd_keys || !d->upd_vals)
		return -ENOMEM;

	/* Both sets are sorted: one merge pass. */
	while (i < old->n || j < new->n) {
		const uint8_t *ok = old->keys + i * ks, *nk = new->keys + j *ks;

		c = i == old->n ? 1 : j == new->n ? -1 : memcmp(ok, nk, ks);
		if (c < 0) {
			memcpy(d->del_keys + d->n_del * ks, ok, ks);
			key_set_slot(m, d->del_keys + d->n_del++ * ks, slot);
			i++;
			continue;
		}
		if (c > 0 || memcmp(old->vals + i * vs, new->vals + j *vs, vs)) {
			memcpy(d->upd_keys + d->n_upd * ks, nk, ks);
			memcpy(d->upd_vals + d->n_upd * vs, new->vals + j *vs, vs);
			key_set_slot(m, d->upd_keys + d->n_upd++ * ks, slot);
		}
		if (c == 0)
			i++;
		j++;
	}
	return 0;
}

static void delta_free(struct delta *d)
{
	free(d->del_keys);
	free(d->upd_keys);
	free(d->upd_vals);
}

/*
 * A batch delete stops at the first key that is not there and says how
 * many went before it. Such a key is already gone: go on after it.
 */
static int delete_keys(int fd, const uint8_t *keys, size_t n, size_t ks)
{
	__u32 count;

	while (n) {
		count = (__u32)n;
		if (!bpf_map_delete_batch(fd, keys, &count, NULL))
			return 0;
		if (errno != ENOENT)
			return -errno;
		count = count < n ? count + 1 : (__u32)n;
		keys += count * ks;
		n -= count;
	}
	return 0;
}

static int delta_write(int fd, const struct delta *d, size_t ks)
{
	__u32 count;
	int err;

	err = delete_keys(fd, d->del_keys, d->n_del, ks);
	if (err)
		return err;
	if (d->n_upd) {
		count = (__u32)d->n_upd;
		if (bpf_map_update_batch(fd, d->upd_keys, d->upd_vals, &count, NULL))
			return -errno;
	}
	return 0;
}

/* Refuse a policy that does not fit before touching anything. */
static int check_fit(const struct sm_applier *a, const struct sm_image *img, struct sm_diags *diags)
{
	int m, err = 0;

	for (m = 0; m < SM_PM_MAX; m++) {
		if (img->maps[m].n <= a->limits[m])
			continue;
		sm_diags_add(diags, (struct sm_loc){0, 0},
			     "policy needs %zu entries in map %s, which holds "
			     "%u per policy (raise --map-size %s=N)",
			     img->maps[m].n, sm_pmap_name(m), a->limits[m],
			     sm_dp_size_name(sm_pmap_size_index(m)));
		err = -E2BIG;
	}
	return err;
}

static int image_equal(const struct sm_image *x, const struct sm_image *y)
{
	int m;

	if (x->config.egress != y->config.egress)
		return 0;
	for (m = 0; m < SM_PM_MAX; m++) {
		const struct sm_kvs *p = &x->maps[m], *q = &y->maps[m];

		if (p->n != q->n || memcmp(p->keys, q->keys, p->n * p->key_size) ||
		    memcmp(p->vals, q->vals, p->n * p->val_size))
			return 0;
	}
	return 1;
}

/*
 * Wait until no program can still be running with the old slot: programs
 * run inside RCU read-side sections, and MEMBARRIER_CMD_GLOBAL returns
 * after a grace period. Kernels with nohz_full refuse it; a pause far
 * longer than any program run stands in.
 */
static void wait_readers(void)
{
	struct timespec ts = {.tv_nsec = 50 * 1000 * 1000};

	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0))
		nanosleep(&ts, NULL);
}

static int write_slot(struct sm_applier *a, const struct sm_image *img, uint32_t slot,
		      struct sm_diags *diags)
{
	struct delta d;
	int m, err = 0;

	for (m = 0; m < SM_PM_MAX && !err; m++) {
		err = delta_build(m, &a->slot[slot]->maps[m], &img->maps[m], slot, &d);
		if (!err)
			err = delta_write(a->fds[m], &d, img->maps[m].key_size);
		if (err)
			sm_diags_add(diags, (struct sm_loc){0, 0}, "map %s: update: %s",
				     sm_pmap_name(m), strerror(-err));
		delta_free(&d);
	}
	return err;
}

/*
 * Forget the buckets and counts of quotas the policy no longer has, once
 * no connection holds a unit of them: the map is finite, and a pair that
 * finds it full is not limited. Runs after the flip and the grace period,
 * so no program takes a unit of a removed quota any more; a unit given
 * back to a forgotten pair finds nothing and is dropped.
 */
static int quota_gc_one(const void *key, void *value, void *ctx)
{
	const struct sm_quota_state *st = value;
	struct sm_quota_cfg_key ck = {.pair = *(const struct sm_quota_key *)key};

	if (sm_kvs_find(ctx, &ck) || st->active > 0)
		return SM_WALK_NEXT;
	return SM_WALK_DELETE;
}

static void quota_gc(struct sm_applier *a)
{
	sm_map_each(a->qstate_fd, quota_gc_one, &a->slot[a->active]->maps[SM_PM_QCFG]);
}

int sm_apply(struct sm_applier *a, struct sm_image *img, struct sm_diags *diags)
{
	struct sm_active act = {};
	uint32_t next;
	__u32 zero = 0;
	int err;

	err = check_fit(a, img, diags);
	if (err)
		return err;
	/* An earlier failure left the maps unknown: learn them first. */
	if (a->stale) {
		err = reread(a);
		if (err) {
			sm_diags_add(diags, (struct sm_loc){0, 0},
				     "policy maps: cannot read back: %s", strerror(-err));
			return err;
		}
	}
	if (image_equal(img, a->slot[a->active])) {
		sm_image_free(img);
		return 0;
	}

	/* Step 1: the slot nobody reads becomes the new policy. */
	next = a->active ^ 1;
	err = write_slot(a, img, next, diags);
	if (!err) {
		img->config.generation = a->generation + 1;
		if (bpf_map_update_elem(a->config_fd, &next, &img->config, BPF_ANY))
			err = -errno;
	}

	/* Step 2: one update switches every program to it. */
	if (!err) {
		act.slot = next;
		act.schema = SM_SCHEMA_VERSION;
		act.generation = a->generation + 1;
		if (bpf_map_update_elem(a->active_fd, &zero, &act, BPF_ANY)) {
			err = -errno;
			sm_diags_add(diags, (struct sm_loc){0, 0}, "map %s: update: %s",
				     SM_STR(SM_MAP_ACTIVE), strerror(-err));
		}
	}
	if (err) {
		/* The unread slot holds a mix now: learn what it holds. */
		int rerr = reread(a);

		if (rerr)
			pr_warn("policy maps: cannot read back: %s; trying again at the "
				"next reload\n",
				strerror(-rerr));
		return err;
	}

	/* Step 3: no reader of the old slot is left once this returns. */
	wait_readers();
	sm_image_free(a->slot[next]);
	a->slot[next] = img;
	a->active = next;
	a->generation++;
	publish(a);
	quota_gc(a);
	return 0;
}
