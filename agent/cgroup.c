// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"

int sm_cgroup_mount(char *buf, size_t len)
{
	char line[4096], mnt[PATH_MAX], fstype[64];
	int err = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	/* "36 35 0:30 / /sys/fs/cgroup/unified rw,... - cgroup2 cgroup2 rw" */
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(sep + 3, "%63s", fstype) != 1 || strcmp(fstype, "cgroup2"))
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		if (strlen(mnt) >= len) {
			err = -ENAMETOOLONG;
			break;
		}
		strcpy(buf, mnt);
		err = 0;
		break;
	}
	fclose(f);
	return err;
}

/* "/a/b" without "..", ".", "//" or a trailing slash; "/" itself is fine. */
static int path_clean(const char *p)
{
	const char *c;

	if (p[0] != '/')
		return 0;
	if (!strcmp(p, "/"))
		return 1;
	if (p[strlen(p) - 1] == '/' || strstr(p, "//"))
		return 0;
	for (c = p; (c = strchr(c, '/')); c++) {
		if (!strncmp(c, "/../", 4) || !strcmp(c, "/..") || !strncmp(c, "/./", 3) ||
		    !strcmp(c, "/."))
			return 0;
	}
	return 1;
}

int sm_cgroup_abs(const char *mount, const char *path, char *abs, size_t len)
{
	size_t ml = strlen(mount);
	int n;

	if (!path_clean(path))
		return -EINVAL;
	/* Already under the mount point: take it as it is. */
	if (!strncmp(path, mount, ml) && (path[ml] == '/' || !path[ml]))
		n = snprintf(abs, len, "%s", path);
	else if (!strcmp(path, "/"))
		n = snprintf(abs, len, "%s", mount);
	else
		n = snprintf(abs, len, "%s%s", mount, path);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int sm_cgroup_id(const char *abs, uint64_t *id)
{
	struct {
		struct file_handle fh;
		uint64_t cgid;
	} h = {.fh.handle_bytes = sizeof(uint64_t)};
	int mount_id;

	/* On cgroup2 the file handle of a directory is the cgroup id. */
	if (name_to_handle_at(AT_FDCWD, abs, &h.fh, &mount_id, 0))
		return -errno;
	if (h.fh.handle_bytes != sizeof(uint64_t))
		return -EINVAL;
	*id = h.cgid;
	return 0;
}

unsigned int sm_cgroup_level(const char *mount, const char *abs)
{
	const char *p = abs + strlen(mount);
	unsigned int level = 0;

	for (; *p; p++)
		level += *p == '/';
	return level;
}

int sm_cgroup_within(const char *outer, const char *inner)
{
	size_t n = strlen(outer);

	if (!strcmp(outer, "/"))
		return inner[0] == '/';
	return !strncmp(outer, inner, n) && (inner[n] == '/' || !inner[n]);
}

int sm_cgroup_root(const char *mount, const char *arg, char *root, size_t len)
{
	char clean[PATH_MAX], abs[PATH_MAX];
	size_t n, ml = strlen(mount);
	int err;

	if (snprintf(clean, sizeof(clean), "%s", arg) >= (int)sizeof(clean))
		return -ENAMETOOLONG;
	for (n = strlen(clean); n > 1 && clean[n - 1] == '/'; n--)
		clean[n - 1] = '\0';
	err = sm_cgroup_abs(mount, clean, abs, sizeof(abs));
	if (err)
		return err;
	n = (size_t)snprintf(root, len, "%s", abs[ml] ? abs + ml : "/");
	return n >= len ? -ENAMETOOLONG : 0;
}

int sm_cgroup_under(const char *mount, const char *root, const char *path)
{
	char rel[PATH_MAX];

	return !sm_cgroup_root(mount, path, rel, sizeof(rel)) && sm_cgroup_within(root, rel);
}

int sm_cgroup_path_of(const char *mount, uint64_t id, char *buf, size_t len)
{
	struct {
		struct file_handle fh;
		uint64_t cgid;
	} h = {.fh.handle_bytes = sizeof(uint64_t), .fh.handle_type = 1};
	char link[64], target[PATH_MAX];
	int mfd, fd, err = 0;
	ssize_t n;

	buf[0] = '\0';
	h.cgid = id;
	mfd = open(mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0)
		return -errno;
	fd = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		goto out_close_mount;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		err = -errno;
		goto out_close;
	}
	target[n] = '\0';
	/* The link shows the path from the mount's root. */
	if (!strncmp(target, mount, strlen(mount)))
		snprintf(buf, len, "%s", target[strlen(mount)] ? target + strlen(mount) : "/");
	else
		snprintf(buf, len, "%s", target);
out_close:
	close(fd);
out_close_mount:
	close(mfd);
	return err;
}
