// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <linux/magic.h>

#include "log.h"
#include "pins.h"
#include "sockmesh/abi.h"

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

/* The deepest existing directory at or above path is on bpffs? */
static int on_bpffs(const char *path)
{
	char buf[PATH_MAX];
	struct statfs st;
	char *slash;

	snprintf(buf, sizeof(buf), "%s", path);
	while (statfs(buf, &st)) {
		slash = strrchr(buf, '/');
		if (!slash || slash == buf)
			return 0;
		*slash = '\0';
	}
	return st.f_type == BPF_FS_MAGIC;
}

int sm_pins_prepare(const char *dir)
{
	char sub[PATH_MAX];
	int err;

	if (!on_bpffs(dir)) {
		if (strncmp(dir, SM_BPFFS_MOUNT "/", strlen(SM_BPFFS_MOUNT) + 1)) {
			pr_warn("pin directory '%s' is not on a bpf file system; "
				"mount one there or use a path under %s\n",
				dir, SM_BPFFS_MOUNT);
			return -EINVAL;
		}
		if (mount("bpf", SM_BPFFS_MOUNT, "bpf", 0, "mode=0700")) {
			err = -errno;
			pr_warn("bpffs: mount on %s: %s\n", SM_BPFFS_MOUNT, strerror(-err));
			return err;
		}
		pr_info("bpffs: mounted on %s\n", SM_BPFFS_MOUNT);
	}

	err = mkdir_p(dir, 0700);
	if (!err) {
		snprintf(sub, sizeof(sub), "%s/maps", dir);
		err = mkdir_p(sub, 0700);
	}
	if (!err) {
		snprintf(sub, sizeof(sub), "%s/links", dir);
		err = mkdir_p(sub, 0700);
	}
	if (err)
		pr_warn("pin directory '%s': %s\n", dir, strerror(-err));
	return err;
}

int sm_pin_map_path(const char *dir, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/maps/%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int sm_pin_link_path(const char *dir, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/links/%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int sm_pin_map_open(const char *dir, const char *name)
{
	char path[PATH_MAX];
	int fd, err;

	err = sm_pin_map_path(dir, name, path, sizeof(path));
	if (err)
		return err;
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

int sm_pins_exist(const char *dir)
{
	char path[PATH_MAX];

	if (sm_pin_map_path(dir, SM_STR(SM_MAP_ACTIVE), path, sizeof(path)))
		return 0;
	return access(path, F_OK) == 0;
}

/* Apply fn to every entry of <bpffs>/<sub>, then remove the directory. */
static int clear_dir(const char *bpffs, const char *sub, int (*fn)(const char *path))
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct dirent *de;
	int err = 0, e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", bpffs, sub);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		e = fn(path);
		if (!e && unlink(path))
			e = -errno;
		if (e) {
			pr_warn("%s: %s\n", path, strerror(-e));
			err = err ?: e;
		}
	}
	closedir(d);
	if (rmdir(dir) && !err)
		err = -errno;
	return err;
}

/* Detach even though other holders (a running agent) keep it open. */
static int link_detach(const char *path)
{
	int fd = bpf_obj_get(path), err = 0;

	if (fd < 0)
		return -errno;
	if (bpf_link_detach(fd) && errno != ENOLINK)
		err = -errno;
	close(fd);
	return err;
}

static int map_unpin(const char *path)
{
	(void)path;
	return 0;
}

int sm_pins_uninstall(const char *bpffs)
{
	int err, e;

	err = clear_dir(bpffs, "links", link_detach);
	e = clear_dir(bpffs, "maps", map_unpin);
	err = err ?: e;
	if (rmdir(bpffs) && errno != ENOENT)
		err = err ?: -errno;
	return err;
}
