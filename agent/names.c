// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "log.h"
#include "mapiter.h"
#include "names.h"

static int name_write(struct sm_names *n, uint32_t id, uint8_t subset, const char *name)
{
	struct sm_name_key key = {.svc = id, .subset = subset};
	struct sm_name_val val = {};

	if (n->map_fd < 0)
		return 0;
	if (!name[0])
		return bpf_map_delete_elem(n->map_fd, &key) && errno != ENOENT ? -errno : 0;
	snprintf(val.name, sizeof(val.name), "%s", name);
	if (bpf_map_update_elem(n->map_fd, &key, &val, BPF_ANY))
		return -errno;
	return 0;
}

static char *name_slot(struct sm_names *n, uint32_t id, uint8_t subset)
{
	return subset == SM_SUBSET_NONE ? n->e[id].name : n->e[id].subset[subset];
}

/* Give (id, subset) the name, remembering the one it had. Lock held. */
static int name_store(struct sm_names *n, uint32_t id, uint8_t subset, const char *name)
{
	struct sm_name_undo *u;
	int err;

	if (n->n_undo == n->cap_undo) {
		size_t cap = n->cap_undo ? 2 * n->cap_undo : 64;

		u = realloc(n->undo, cap * sizeof(*u));
		if (!u)
			return -ENOMEM;
		n->undo = u;
		n->cap_undo = cap;
	}
	err = name_write(n, id, subset, name);
	if (err)
		return err;
	u = &n->undo[n->n_undo++];
	u->id = id;
	u->subset = subset;
	memcpy(u->prev, name_slot(n, id, subset), SM_NAME_LEN);
	snprintf(name_slot(n, id, subset), SM_NAME_LEN, "%s", name);
	return 0;
}

void sm_names_commit(struct sm_names *n)
{
	pthread_mutex_lock(&n->lock);
	n->n_undo = 0;
	pthread_mutex_unlock(&n->lock);
}

int sm_names_rollback(struct sm_names *n)
{
	struct sm_name_undo *u;
	int err = 0, e;

	pthread_mutex_lock(&n->lock);
	/* Newest first: a slot given twice ends with its first name. */
	while (n->n_undo) {
		u = &n->undo[--n->n_undo];
		e = name_write(n, u->id, u->subset, u->prev);
		err = err ?: e;
		memcpy(name_slot(n, u->id, u->subset), u->prev, SM_NAME_LEN);
	}
	pthread_mutex_unlock(&n->lock);
	return err;
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
	free(n->undo);
	n->e = NULL;
	n->undo = NULL;
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
		err = name_store(n, id, (uint8_t)slot, names[i]);
		if (err)
			break;
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
