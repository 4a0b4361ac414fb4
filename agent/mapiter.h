/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Walking a BPF map from user space, for the agent and the CLI. */
#ifndef SM_MAPITER_H
#define SM_MAPITER_H

#include <stddef.h>

/* What a walk's callback returns. */
enum sm_map_walk {
	SM_WALK_NEXT = 0, /* go on */
	SM_WALK_DELETE,	  /* delete this entry, then go on */
	SM_WALK_STOP,	  /* stop the walk */
};

/*
 * Call fn for every entry of the map: its key and its value (for a
 * per-CPU map, every possible CPU's value one after another, each rounded
 * up to 8 bytes). An entry deleted by someone else during the walk is
 * skipped. 0, or -errno when the map cannot be read at all.
 */
int sm_map_each(int fd, int (*fn)(const void *key, void *value, void *ctx), void *ctx);

/* Entries in the map. */
long sm_map_count(int fd);

#endif /* SM_MAPITER_H */
