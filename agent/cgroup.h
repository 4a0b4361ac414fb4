/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The cgroup2 hierarchy: where it is mounted, paths, ids and levels. */
#ifndef SM_CGROUP_H
#define SM_CGROUP_H

#include <stddef.h>
#include <stdint.h>

/*
 * The cgroup2 mount point, read from /proc/self/mountinfo (it is not
 * always /sys/fs/cgroup: hybrid systems mount it at .../unified).
 * 0, or -ENOENT when no cgroup2 file system is mounted.
 */
int sm_cgroup_mount(char *buf, size_t len);

/*
 * A cgroup path as the policy and --cgroup write it, relative to the
 * mount ("/", "/demo/frontend"); an absolute path under the mount is
 * accepted too. Writes the file system path into abs.
 * 0, or -EINVAL when the path is malformed or leaves the mount.
 */
int sm_cgroup_abs(const char *mount, const char *path, char *abs, size_t len);

/* The cgroup id of a cgroup directory. 0 or -errno (-ENOENT: missing). */
int sm_cgroup_id(const char *abs, uint64_t *id);

/* Level in the hierarchy: the mount root is 0, "/a" 1, "/a/b" 2. */
unsigned int sm_cgroup_level(const char *mount, const char *abs);

/* Does cgroup path `inner` lie in the subtree `outer` (both relative)? */
int sm_cgroup_within(const char *outer, const char *inner);

/*
 * --cgroup as the agent and the CLI both keep it: relative to the mount
 * ("/" for the mount itself), from a relative path or an absolute one
 * under the mount; trailing slashes are dropped ("/demo/" is "/demo").
 * 0, or -EINVAL / -ENAMETOOLONG like sm_cgroup_abs.
 */
int sm_cgroup_root(const char *mount, const char *arg, char *root, size_t len);

/*
 * Does the policy's cgroup `path` (relative, or absolute under the
 * mount) lie in the subtree `root` (as sm_cgroup_root gives it)?
 */
int sm_cgroup_under(const char *mount, const char *root, const char *path);

/* The path (relative to the mount) of a cgroup id, "" when unknown. */
int sm_cgroup_path_of(const char *mount, uint64_t id, char *buf, size_t len);

#endif /* SM_CGROUP_H */
