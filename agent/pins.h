/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Where a node's pinned state lives: <bpffs>/maps/<map> and
 * <bpffs>/links/<program>. The agent writes it; the CLI reads it, so it
 * works while the agent is down.
 */
#ifndef SM_PINS_H
#define SM_PINS_H

#include <stddef.h>

#define SM_DEFAULT_BPFFS "/sys/fs/bpf/sockmesh"
#define SM_BPFFS_MOUNT	 "/sys/fs/bpf"

/*
 * Make sure dir lies on a bpf file system: when it does not and dir is
 * under /sys/fs/bpf, mount bpffs there. Creates dir, maps/ and links/.
 */
int sm_pins_prepare(const char *dir);

/* "<dir>/maps/<name>" and "<dir>/links/<name>". */
int sm_pin_map_path(const char *dir, const char *name, char *buf, size_t len);
int sm_pin_link_path(const char *dir, const char *name, char *buf, size_t len);

/* A pinned map's fd, or -errno (-ENOENT: nothing pinned there). */
int sm_pin_map_open(const char *dir, const char *name);

/* Is there a node's state under dir at all? */
int sm_pins_exist(const char *dir);

/*
 * Remove a node's pinned state: detach every pinned link (even while an
 * agent still holds it), unpin every map, remove the directories.
 * 0, or the first -errno (it goes on with the rest).
 */
int sm_pins_uninstall(const char *dir);

#endif /* SM_PINS_H */
