// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "log.h"
#include "mapiter.h"
#include "names.h"

static int name_store(struct sm_names *n, uint32_t id, uint8_t subset, const char *name)
{
	struct sm_name_key key = {.svc = id, .subset = subset};
	struct sm_name_val val = {};

	if (n->map_fd < 0)
		return 0;
	snprintf(val.name, sizeof(val.name), "%s", name);
	if (bpf_map_update_elem(n->map_fd, &key, &val, BPF_ANY))
		return -errno;
	return 0;
}

static int name_load(const void *key, void *value, void *ctx)
{
	const struct sm_name_key *k = key;
	struct sm_name_val *v = value;
	struct sm_names *n = ctx;

	if (k->svc >= n->cap)
		return SM_WALK_NEXT;
	v->name[SM_NAME_LEN - 1] = '\0';
	if (k->subset == SM_SUBSET_NONE)
		strcpy(n->e[k->svc].name, v->name);
	else if (k->subset < SM_MAX_SUBSETS)
		strcpy(n->e[k->svc].subset[k->subset], v->name);
	return SM_WALK_NEXT;
}

int sm_names_init(struct sm_names *n, int map_fd, uint32_t cap)
{
	memset(n, 0, sizeof(*n));
	pthread_mutex_init(&n->lock, NULL);
	n->map_fd = map_fd;
	n->cap = cap;
	n->e = calloc(cap, sizeof(*n->e));
	if (!n->e)
		return -ENOMEM;
	return map_fd < 0 ? 0 : sm_map_each(map_fd, name_load, n);
}

void sm_names_free(struct sm_names *n)
{
	free(n->e);
	n->e = NULL;
	pthread_mutex_destroy(&n->lock);
}

int sm_names_service(struct sm_names *n, const char *name, uint32_t *id)
{
	uint32_t i, free_id = 0;
	int err = 0;

	pthread_mutex_lock(&n->lock);
	for (i = 1; i < n->cap; i++) {
		if (!strcmp(n->e[i].name, name)) {
			*id = i;
			goto out;
		}
		if (!free_id && !n->e[i].name[0])
			free_id = i;
	}
	if (!free_id) {
		err = -ENOSPC;
		goto out;
	}
	err = name_store(n, free_id, SM_SUBSET_NONE, name);
	if (err)
		goto out;
	snprintf(n->e[free_id].name, SM_NAME_LEN, "%s", name);
	*id = free_id;
out:
	pthread_mutex_unlock(&n->lock);
	return err;
}

static int listed(const char (*names)[SM_NAME_LEN], unsigned int count, const char *name)
{
	unsigned int i;

	for (i = 0; i < count; i++)
		if (!strcmp(names[i], name))
			return 1;
	return 0;
}

/* The index for one new subset name; -ENOSPC if all are in use. */
static int subset_slot(struct sm_name_entry *e, const char (*names)[SM_NAME_LEN],
		       unsigned int count, const uint8_t *taken)
{
	int i;

	for (i = 0; i < SM_MAX_SUBSETS; i++)
		if (!taken[i] && !e->subset[i][0])
			return i;
	for (i = 0; i < SM_MAX_SUBSETS; i++)
		if (!taken[i] && !listed(names, count, e->subset[i]))
			return i;
	return -ENOSPC;
}

int sm_names_subsets(struct sm_names *n, uint32_t id, const char (*names)[SM_NAME_LEN],
		     unsigned int count, uint8_t *idx)
{
	uint8_t taken[SM_MAX_SUBSETS] = {};
	struct sm_name_entry *e;
	unsigned int i, j;
	int err = 0, slot;

	if (id >= n->cap || count > SM_MAX_SUBSETS)
		return -EINVAL;
	pthread_mutex_lock(&n->lock);
	e = &n->e[id];

	/* Names seen before keep their index. */
	for (i = 0; i < count; i++) {
		idx[i] = SM_SUBSET_NONE;
		for (j = 0; j < SM_MAX_SUBSETS; j++) {
			if (!strcmp(e->subset[j], names[i])) {
				idx[i] = j;
				taken[j] = 1;
				break;
			}
		}
	}
	for (i = 0; i < count && !err; i++) {
		if (idx[i] != SM_SUBSET_NONE)
			continue;
		slot = subset_slot(e, names, count, taken);
		if (slot < 0) {
			err = slot;
			break;
		}
		err = name_store(n, id, slot, names[i]);
		if (err)
			break;
		snprintf(e->subset[slot], SM_NAME_LEN, "%s", names[i]);
		idx[i] = slot;
		taken[slot] = 1;
	}
	pthread_mutex_unlock(&n->lock);
	return err;
}

void sm_names_get(struct sm_names *n, uint32_t id, char *buf, size_t len)
{
	if (id == SM_SVC_WORLD) {
		snprintf(buf, len, "world");
		return;
	}
	pthread_mutex_lock(&n->lock);
	if (id < n->cap && n->e[id].name[0])
		snprintf(buf, len, "%s", n->e[id].name);
	else
		snprintf(buf, len, "service-%u", id);
	pthread_mutex_unlock(&n->lock);
}

void sm_names_get_subset(struct sm_names *n, uint32_t id, uint8_t idx, char *buf, size_t len)
{
	buf[0] = '\0';
	if (idx >= SM_MAX_SUBSETS)
		return;
	pthread_mutex_lock(&n->lock);
	if (id < n->cap)
		snprintf(buf, len, "%s", n->e[id].subset[idx]);
	pthread_mutex_unlock(&n->lock);
}
