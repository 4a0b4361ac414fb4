/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * A policy turned into the entries of the datapath's policy maps: an image
 * of one slot. Keys are stored with their slot field zero; apply.c sets it.
 */
#ifndef SM_COMPILE_H
#define SM_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "names.h"
#include "policy.h"

enum sm_pmap {
	SM_PM_CGROUP = 0,
	SM_PM_DEST,
	SM_PM_SVC,
	SM_PM_BACKEND,
	SM_PM_RULE,
	SM_PM_QCFG,
	SM_PM_MAX,
};

/* Entries of one map, kept sorted by key once compiled. */
struct sm_kvs {
	size_t key_size;
	size_t val_size;
	size_t n;
	size_t cap;
	uint8_t *keys;
	uint8_t *vals;
};

struct sm_image {
	struct sm_kvs maps[SM_PM_MAX];
	struct sm_config config;
	/* Service cgroups that do not exist yet: compiled again later. */
	unsigned int missing_cgroups;
	char first_missing[256];
};

struct sm_compile_ctx {
	const char *cg_mount; /* cgroup2 mount point */
	const char *cg_root;  /* managed subtree, relative to the mount */
	struct sm_names *names;
};

/* Policy map names and sizes, by enum sm_pmap. */
const char *sm_pmap_name(enum sm_pmap m);
int sm_pmap_size_index(enum sm_pmap m); /* enum sm_map_size */

struct sm_image *sm_image_new(void);
void sm_image_free(struct sm_image *img);
int sm_kvs_add(struct sm_kvs *s, const void *key, const void *val);
/* Sort by key; of equal keys keep the first added. */
void sm_kvs_sort(struct sm_kvs *s);
/* The value of key in a sorted set, or NULL. */
const void *sm_kvs_find(const struct sm_kvs *s, const void *key);

/*
 * Compile. Errors (a cgroup outside the managed subtree, names that do not
 * fit) go to diags with their place in the file: -EINVAL. Missing cgroups
 * are not errors: the image counts them.
 */
int sm_compile(const struct sm_policy *p, const struct sm_compile_ctx *ctx, struct sm_image **out,
	       struct sm_diags *diags);

#endif /* SM_COMPILE_H */
