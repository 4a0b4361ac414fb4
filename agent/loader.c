// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "loader.h"
#include "log.h"
#include "mapiter.h"
#include "pins.h"
#include "sockmesh.skel.h"
#include "sockmesh/abi.h"

/* Which size option sets which map, and whether it holds two slots. */
static const struct {
	const char *map;
	enum sm_map_size size;
	int slotted;
} map_sizes[] = {
	{SM_STR(SM_MAP_CGROUP), SM_SIZE_CGROUP, 1},
	{SM_STR(SM_MAP_DEST), SM_SIZE_DEST, 1},
	{SM_STR(SM_MAP_SVC), SM_SIZE_SVC, 1},
	{SM_STR(SM_MAP_BACKEND), SM_SIZE_BACKEND, 1},
	{SM_STR(SM_MAP_RULE), SM_SIZE_RULE, 1},
	{SM_STR(SM_MAP_QCFG), SM_SIZE_QUOTA, 1},
	{SM_STR(SM_MAP_QSTATE), SM_SIZE_QUOTA, 0},
	{SM_STR(SM_MAP_PAIR), SM_SIZE_PAIR, 0},
	{SM_STR(SM_MAP_CANARY), SM_SIZE_CANARY, 0},
	{SM_STR(SM_MAP_TRACE), SM_SIZE_TRACE, 0},
	{SM_STR(SM_MAP_LOCAL), SM_SIZE_LOCAL, 0},
	{SM_STR(SM_MAP_NAMES), SM_SIZE_NAMES, 0},
	{SM_STR(SM_MAP_EVENTS), SM_SIZE_EVENTS, 0},
	/* Every endpoint of a policy may go at once. */
	{SM_STR(SM_MAP_DRAIN), SM_SIZE_BACKEND, 0},
};

static const struct {
	const char *name;
	uint32_t def;
} size_opts[SM_SIZE_MAX] = {
	[SM_SIZE_CGROUP] = {"cgroup", 4096}, [SM_SIZE_DEST] = {"dest", 16384},
	[SM_SIZE_SVC] = {"service", 4096},   [SM_SIZE_BACKEND] = {"backend", 32768},
	[SM_SIZE_RULE] = {"rule", 131072},   [SM_SIZE_QUOTA] = {"quota", 4096},
	[SM_SIZE_PAIR] = {"pair", 16384},    [SM_SIZE_CANARY] = {"canary", 4096},
	[SM_SIZE_TRACE] = {"trace", 65536},  [SM_SIZE_LOCAL] = {"local", 65536},
	[SM_SIZE_NAMES] = {"names", 8192},   [SM_SIZE_EVENTS] = {"events", 4 << 20},
};

/* Hook labels for metrics and logs, by program. */
static const struct {
	const char *prog;
	const char *label;
} hook_labels[] = {
	{"sm_sock_create", "sock_create"}, {"sm_sock_release", "sock_release"},
	{"sm_connect4", "connect4"},	   {"sm_connect6", "connect6"},
	{"sm_sendmsg4", "sendmsg4"},	   {"sm_sendmsg6", "sendmsg6"},
	{"sm_recvmsg4", "recvmsg4"},	   {"sm_recvmsg6", "recvmsg6"},
	{"sm_getpeer4", "getpeername4"},   {"sm_getpeer6", "getpeername6"},
	{"sm_sockops", "sockops"},	   {"sm_getsockopt", "getsockopt"},
	{"sm_ingress", "ingress"},
};

void sm_dp_default_sizes(uint32_t *sizes)
{
	int i;

	for (i = 0; i < SM_SIZE_MAX; i++)
		sizes[i] = size_opts[i].def;
}

const char *sm_dp_size_name(enum sm_map_size s)
{
	return s < SM_SIZE_MAX ? size_opts[s].name : "?";
}

uint32_t sm_dp_size_limit(const uint32_t *sizes, enum sm_map_size s)
{
	return sizes[s];
}

int sm_dp_parse_size(const char *arg, uint32_t *sizes)
{
	const char *eq = strchr(arg, '=');
	unsigned long long v;
	char *end;
	int i;

	if (!eq)
		return -EINVAL;
	errno = 0;
	v = strtoull(eq + 1, &end, 10);
	if (errno || *end || end == eq + 1 || !v || v > (1U << 30))
		return -ERANGE;
	for (i = 0; i < SM_SIZE_MAX; i++) {
		if (strlen(size_opts[i].name) != (size_t)(eq - arg) ||
		    strncmp(arg, size_opts[i].name, eq - arg))
			continue;
		/* A ring buffer is a power of two of pages. */
		if (i == SM_SIZE_EVENTS && ((v & (v - 1)) || v < 4096))
			return -ERANGE;
		sizes[i] = (uint32_t)v;
		return 0;
	}
	return -ENOENT;
}

static const char *hook_label(const char *prog)
{
	size_t i;

	for (i = 0; i < sizeof(hook_labels) / sizeof(hook_labels[0]); i++)
		if (!strcmp(hook_labels[i].prog, prog))
			return hook_labels[i].label;
	return prog;
}

static void set_sizes(struct bpf_object *obj, const uint32_t *sizes)
{
	struct bpf_map *map;
	size_t i;

	for (i = 0; i < sizeof(map_sizes) / sizeof(map_sizes[0]); i++) {
		map = bpf_object__find_map_by_name(obj, map_sizes[i].map);
		if (!map)
			continue;
		bpf_map__set_max_entries(map, sizes[map_sizes[i].size] *
						      (map_sizes[i].slotted ? SM_SLOTS : 1));
	}
}

/*
 * What happens to a pinned map that this agent cannot reuse as it is,
 * because --map-size or the object changed its size or layout. The
 * programs in force keep using the pinned maps until the link update
 * switches them to the new programs, so none of this stops enforcement.
 */
enum pin_fate {
	/* Live state nothing can rebuild: the agent refuses to start. */
	FATE_REFUSE = 0,
	/*
	 * The policy maps, rewritten from the policy on every start anyway.
	 * If one of them differs, the whole group is made anew, filled, and
	 * pinned over the old group once the new programs use it.
	 */
	FATE_POLICY,
	/* Counters and caches: a new, empty map of the new size. */
	FATE_FRESH,
	/* Small live state: its entries are copied into a map of the new size. */
	FATE_COPY,
};

static const struct {
	const char *map;
	enum pin_fate fate;
} map_fates[] = {
	{SM_STR(SM_MAP_ACTIVE), FATE_POLICY},
	{SM_STR(SM_MAP_CONFIG), FATE_POLICY},
	{SM_STR(SM_MAP_CGROUP), FATE_POLICY},
	{SM_STR(SM_MAP_DEST), FATE_POLICY},
	{SM_STR(SM_MAP_SVC), FATE_POLICY},
	{SM_STR(SM_MAP_BACKEND), FATE_POLICY},
	{SM_STR(SM_MAP_RULE), FATE_POLICY},
	{SM_STR(SM_MAP_QCFG), FATE_POLICY},
	/* Counters restart from zero; Prometheus reads that as a reset. */
	{SM_STR(SM_MAP_STATS), FATE_FRESH},
	{SM_STR(SM_MAP_PAIR), FATE_FRESH},
	{SM_STR(SM_MAP_CANARY), FATE_FRESH},
	/* Flow events not read yet are lost. */
	{SM_STR(SM_MAP_EVENTS), FATE_FRESH},
	/*
	 * Trace ids of handshakes in flight: those servers make their own
	 * id. Local clients of open connections: the server side's close
	 * record names the peer "world". Outlier state: ejected backends
	 * come back at once. Drain requests live only during a reload.
	 */
	{SM_STR(SM_MAP_TRACE), FATE_FRESH},
	{SM_STR(SM_MAP_LOCAL), FATE_FRESH},
	{SM_STR(SM_MAP_OUTLIER), FATE_FRESH},
	{SM_STR(SM_MAP_DRAIN), FATE_FRESH},
	{SM_STR(SM_MAP_DENYRATE), FATE_FRESH},
	/*
	 * Service ids are held by open sockets and by counters, and live
	 * quota counts by the connections that took them: copied.
	 */
	{SM_STR(SM_MAP_NAMES), FATE_COPY},
	{SM_STR(SM_MAP_QSTATE), FATE_COPY},
	/* The socket storage of every open socket (sm_sk) is refused. */
};

static enum pin_fate map_fate(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(map_fates) / sizeof(map_fates[0]); i++)
		if (!strcmp(map_fates[i].map, name))
			return map_fates[i].fate;
	return FATE_REFUSE;
}

/* A pinned map compared with what the object wants. */
struct pin_cmp {
	int pinned;	   /* a map is pinned at the path */
	int same_layout;   /* type, key, value and flags */
	int same_size;	   /* max_entries */
	__u32 old_entries; /* its max_entries */
};

static int pin_compare(struct bpf_map *map, const char *path, struct pin_cmp *c)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int fd, err = 0;

	memset(c, 0, sizeof(*c));
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		err = -errno;
		goto out;
	}
	c->pinned = 1;
	c->same_layout = info.type == bpf_map__type(map) &&
			 info.key_size == bpf_map__key_size(map) &&
			 info.value_size == bpf_map__value_size(map) &&
			 info.map_flags == bpf_map__map_flags(map);
	c->same_size = info.max_entries == bpf_map__max_entries(map);
	c->old_entries = info.max_entries;
out:
	close(fd);
	return err;
}

static void refuse_msg(const char *path, const struct pin_cmp *c, struct bpf_map *map)
{
	if (!c->same_layout)
		pr_warn("pinned map %s has another layout than this agent's "
			"(schema %d); run 'sockmesh uninstall' first\n",
			path, SM_SCHEMA_VERSION);
	else
		pr_warn("pinned map %s holds %u entries, this agent is set to "
			"%u: keep the earlier --map-size, or run 'sockmesh "
			"uninstall' first\n",
			path, c->old_entries, bpf_map__max_entries(map));
}

struct fit_ctx {
	__u32 max;
	__u32 n;
	int names;
	int over;
};

static int fit_one(const void *key, void *value, void *ctx)
{
	struct fit_ctx *f = ctx;

	(void)value;
	f->over = ++f->n > f->max || (f->names && ((const struct sm_name_key *)key)->svc >= f->max);
	return f->over ? SM_WALK_STOP : SM_WALK_NEXT;
}

/*
 * Can every entry of the pinned map at path go into map? Service ids
 * also index the agent's name table, which has the map's size.
 */
static int copy_fits(struct bpf_map *map, const char *path)
{
	struct fit_ctx f = {
		.max = bpf_map__max_entries(map),
		.names = !strcmp(bpf_map__name(map), SM_STR(SM_MAP_NAMES)),
	};
	int fd, err;

	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	err = sm_map_each(fd, fit_one, &f);
	close(fd);
	if (!err && f.over) {
		pr_warn("pinned map %s holds more than the %u entries (or "
			"service ids) this agent is set to: raise --map-size, "
			"or run 'sockmesh uninstall' first\n",
			path, f.max);
		err = -E2BIG;
	}
	return err;
}

/* Remember a map made anew, to fill and pin it later. */
static int renew_add(struct sm_dp *dp, struct bpf_map *map, bool resized, bool copy)
{
	struct sm_renew *r;

	if (dp->n_renew == SM_MAPS_MAX)
		return -E2BIG;
	r = &dp->renew[dp->n_renew++];
	r->name = bpf_map__name(map);
	r->resized = resized;
	r->copy = copy;
	return 0;
}

/* Reuse the pinned map at path, or pin a map that is new at load. */
static bool reusable(const struct pin_cmp *c, enum pin_fate fate, bool renew_policy)
{
	if (!c->pinned)
		return true;
	if (fate == FATE_POLICY && renew_policy)
		return false;
	return c->same_layout && c->same_size;
}

/*
 * Decide, map by map: reuse the pinned map (the usual restart), pin a map
 * the pinned state does not have yet, or make a map anew (enum pin_fate).
 * Maps made anew get no pin path: pin_renewed() pins them once attached.
 */
static int set_pins(struct sm_dp *dp)
{
	struct pin_cmp cmp[SM_MAPS_MAX], *c;
	bool renew_policy = false;
	char path[PATH_MAX];
	struct bpf_map *map;
	enum pin_fate fate;
	int i = 0, err;

	/* Step 1: compare; one policy map that differs renews the group. */
	bpf_object__for_each_map(map, dp->skel->obj)
	{
		if (bpf_map__is_internal(map))
			continue;
		if (i == SM_MAPS_MAX)
			return -E2BIG;
		err = sm_pin_map_path(dp->bpffs, bpf_map__name(map), path, sizeof(path));
		if (!err)
			err = pin_compare(map, path, &cmp[i]);
		if (err)
			return err;
		if (cmp[i].pinned && map_fate(bpf_map__name(map)) == FATE_POLICY &&
		    !(cmp[i].same_layout && cmp[i].same_size))
			renew_policy = true;
		i++;
	}

	/* Step 2: reuse, make anew, or refuse. */
	i = 0;
	bpf_object__for_each_map(map, dp->skel->obj)
	{
		if (bpf_map__is_internal(map))
			continue;
		c = &cmp[i++];
		fate = map_fate(bpf_map__name(map));
		sm_pin_map_path(dp->bpffs, bpf_map__name(map), path, sizeof(path));
		if (reusable(c, fate, renew_policy)) {
			err = bpf_map__set_pin_path(map, path);
			if (err)
				return err;
			continue;
		}
		if (fate == FATE_REFUSE || (fate == FATE_COPY && !c->same_layout)) {
			refuse_msg(path, c, map);
			return -EINVAL;
		}
		if (fate == FATE_COPY) {
			err = copy_fits(map, path);
			if (err)
				return err;
		}
		if (fate != FATE_POLICY)
			pr_info("pinned map %s: %u entries, now %u: %s\n", path, c->old_entries,
				bpf_map__max_entries(map),
				fate == FATE_COPY ? "its entries go to a new map"
						  : "a new, empty map replaces it");
		err = renew_add(dp, map, !(c->same_layout && c->same_size), fate == FATE_COPY);
		if (err)
			return err;
	}
	dp->renewed_policy = renew_policy;
	if (renew_policy)
		pr_info("policy maps under %s/maps have other sizes: new ones "
			"are filled; the programs in force keep the old ones "
			"until the new programs replace them\n",
			dp->bpffs);
	return 0;
}

struct copy_ctx {
	struct bpf_map *map;
	int err;
};

static int copy_one(const void *key, void *value, void *ctx)
{
	struct copy_ctx *c = ctx;

	if (!bpf_map_update_elem(bpf_map__fd(c->map), key, value, BPF_ANY))
		return SM_WALK_NEXT;
	c->err = -errno;
	pr_warn("map %s: copy from the pinned map: %s\n", bpf_map__name(c->map), strerror(-c->err));
	return SM_WALK_STOP;
}

/* Every entry of the pinned map into the new map made in its place. */
static int copy_pinned(struct sm_dp *dp, struct bpf_map *map)
{
	struct copy_ctx c = {.map = map};
	int old, err;

	old = sm_pin_map_open(dp->bpffs, bpf_map__name(map));
	if (old < 0)
		return old;
	err = sm_map_each(old, copy_one, &c);
	close(old);
	return err ?: c.err;
}

/*
 * New policy maps go on from the generation of the old ones, so that
 * sockmesh_policy_generation never goes down.
 */
static int carry_generation(struct sm_dp *dp)
{
	struct sm_active old = {}, a = {};
	__u32 key = 0;
	int fd, err = 0;

	fd = sm_pin_map_open(dp->bpffs, SM_STR(SM_MAP_ACTIVE));
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	if (bpf_map_lookup_elem(fd, &key, &old))
		err = -errno;
	close(fd);
	if (err)
		return err;
	a.schema = SM_SCHEMA_VERSION;
	a.generation = old.generation;
	fd = bpf_map__fd(dp->skel->maps.SM_MAP_ACTIVE);
	return bpf_map_update_elem(fd, &key, &a, BPF_ANY) ? -errno : 0;
}

/* Fill the maps made anew before any program of ours reads them. */
static int fill_renewed(struct sm_dp *dp)
{
	struct bpf_map *map;
	unsigned int i;
	int err = 0;

	if (dp->renewed_policy)
		err = carry_generation(dp);
	for (i = 0; i < dp->n_renew && !err; i++) {
		if (!dp->renew[i].copy)
			continue;
		map = bpf_object__find_map_by_name(dp->skel->obj, dp->renew[i].name);
		err = map ? copy_pinned(dp, map) : -ENOENT;
	}
	return err;
}

/*
 * The programs in force use the maps made anew now: pin each over the old
 * one with a rename, so a pin path always holds a whole map. Maps made
 * anew only because their group was go first and the ones of another
 * size last: a crash half-way leaves a pinned policy map of the other size
 * behind, and the next start makes the whole group anew again rather than
 * adopt a mix of two groups.
 */
static int pin_renewed(struct sm_dp *dp)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	struct bpf_map *map;
	unsigned int i, pass;
	int err = 0;

	for (pass = 0; pass < 2 && !err; pass++) {
		for (i = 0; i < dp->n_renew && !err; i++) {
			if (dp->renew[i].resized != (pass == 1))
				continue;
			map = bpf_object__find_map_by_name(dp->skel->obj, dp->renew[i].name);
			if (!map)
				return -ENOENT;
			err = sm_pin_map_path(dp->bpffs, dp->renew[i].name, path, sizeof(path));
			if (err)
				return err;
			/* bpffs names may not hold a dot. */
			snprintf(tmp, sizeof(tmp), "%s-new", path);
			unlink(tmp);
			if (bpf_obj_pin(bpf_map__fd(map), tmp) || rename(tmp, path)) {
				err = -errno;
				pr_warn("map %s: pin as %s: %s\n", dp->renew[i].name, path,
					strerror(-err));
			}
		}
	}
	if (!err && dp->n_renew)
		pr_info("%u maps made anew, pinned under %s/maps\n", dp->n_renew, dp->bpffs);
	return err;
}

/*
 * One agent per pin directory: a second one would rewrite the policy maps
 * and switch the links of the one running. The lock goes with the agent's
 * process, so an agent that was killed leaves nothing to clean up.
 */
static int lock_pins(struct sm_dp *dp, const char *bpffs)
{
	int err;

	dp->lock_fd = open(bpffs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dp->lock_fd < 0)
		return -errno;
	if (!flock(dp->lock_fd, LOCK_EX | LOCK_NB))
		return 0;
	err = errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (err == -EBUSY)
		pr_warn("another sockmesh-agent is running with --bpffs %s; "
			"stop it first, or give this one a --bpffs and "
			"--cgroup of its own\n",
			bpffs);
	else
		pr_warn("pin directory '%s': lock: %s\n", bpffs, strerror(-err));
	close(dp->lock_fd);
	dp->lock_fd = -1;
	return err;
}

/* Pinned state of another schema is refused before anything changes. */
static int check_schema(const char *bpffs)
{
	struct sm_active a = {};
	__u32 key = 0;
	int fd, err = 0;

	fd = sm_pin_map_open(bpffs, SM_STR(SM_MAP_ACTIVE));
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	if (bpf_map_lookup_elem(fd, &key, &a))
		err = -errno;
	else if (a.schema && a.schema != SM_SCHEMA_VERSION) {
		pr_warn("pinned state under %s has schema %u, this agent "
			"writes %u: run 'sockmesh uninstall --bpffs %s' and "
			"start again\n",
			bpffs, a.schema, SM_SCHEMA_VERSION, bpffs);
		err = -EPROTO;
	}
	close(fd);
	return err;
}

static int init_active(struct sm_dp *dp)
{
	int fd = bpf_map__fd(dp->skel->maps.SM_MAP_ACTIVE);
	struct sm_active a = {};
	__u32 key = 0;

	if (bpf_map_lookup_elem(fd, &key, &a))
		return -errno;
	if (a.schema == SM_SCHEMA_VERSION)
		return 0;
	a.schema = SM_SCHEMA_VERSION;
	return bpf_map_update_elem(fd, &key, &a, BPF_ANY) ? -errno : 0;
}

static int fill_hooks(struct sm_dp *dp)
{
	struct bpf_prog_info info;
	struct bpf_program *prog;
	__u32 len;

	bpf_object__for_each_program(prog, dp->skel->obj)
	{
		struct sm_hook *h = &dp->hooks[dp->n_hooks];

		/* The drain iterator is run by the agent, not attached. */
		if (bpf_program__type(prog) == BPF_PROG_TYPE_TRACING)
			continue;
		if (dp->n_hooks == SM_HOOKS_MAX)
			return -E2BIG;
		memset(&info, 0, sizeof(info));
		len = sizeof(info);
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			return -errno;
		h->prog = bpf_program__name(prog);
		h->label = hook_label(h->prog);
		h->attach_type = bpf_program__expected_attach_type(prog);
		h->prog_id = info.id;
		dp->n_hooks++;
	}
	return 0;
}

/*
 * The oldest kernel with everything the object uses; bpf_sock_destroy()
 * (drain: close) came last, in 6.5. Said when a load fails on an older one.
 */
#define SM_KERNEL_MIN_MAJOR 6
#define SM_KERNEL_MIN_MINOR 5

static void kernel_too_old(void)
{
	struct utsname u;
	unsigned int major, minor;

	if (uname(&u) || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return;
	if (major > SM_KERNEL_MIN_MAJOR ||
	    (major == SM_KERNEL_MIN_MAJOR && minor >= SM_KERNEL_MIN_MINOR))
		return;
	pr_warn("BPF object: sockmesh needs Linux %u.%u or later; this kernel is %s\n",
		SM_KERNEL_MIN_MAJOR, SM_KERNEL_MIN_MINOR, u.release);
}

int sm_dp_load(struct sm_dp *dp, const struct sm_dp_opts *o)
{
	int err;

	memset(dp, 0, sizeof(*dp));
	dp->cgroup_fd = -1;
	dp->lock_fd = -1;
	snprintf(dp->bpffs, sizeof(dp->bpffs), "%s", o->bpffs);
	snprintf(dp->cgroup, sizeof(dp->cgroup), "%s", o->cgroup);

	err = sm_pins_prepare(o->bpffs);
	if (!err)
		err = lock_pins(dp, o->bpffs);
	if (err)
		return err;
	err = check_schema(o->bpffs);
	if (err)
		return err;
	dp->adopted = sm_pins_exist(o->bpffs);

	dp->cgroup_fd = open(o->cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dp->cgroup_fd < 0) {
		err = -errno;
		pr_warn("cgroup '%s': open: %s\n", o->cgroup, strerror(-err));
		return err;
	}

	dp->skel = sockmesh__open();
	if (!dp->skel) {
		err = -errno;
		pr_warn("BPF object: open: %s\n", strerror(-err));
		goto err_close_cgroup;
	}
	dp->skel->rodata->g_root_level = o->root_level;
	dp->skel->rodata->g_deny_records_per_sec = o->deny_records;
	set_sizes(dp->skel->obj, o->sizes);
	err = set_pins(dp);
	if (err)
		goto err_destroy_skel;

	err = sockmesh__load(dp->skel);
	if (err) {
		pr_warn("BPF object: load: %s (run with -v for the verifier "
			"log; is the agent running as root?)\n",
			strerror(-err));
		kernel_too_old();
		goto err_destroy_skel;
	}
	err = fill_renewed(dp);
	if (!err)
		err = init_active(dp);
	if (!err)
		err = fill_hooks(dp);
	if (err)
		goto err_destroy_skel;
	pr_info("BPF object loaded; maps %s under %s/maps\n", dp->adopted ? "adopted" : "pinned",
		dp->bpffs);
	return 0;

err_destroy_skel:
	sockmesh__destroy(dp->skel);
	dp->skel = NULL;
err_close_cgroup:
	close(dp->cgroup_fd);
	dp->cgroup_fd = -1;
	return err;
}

/* The cgroup and attach type a pinned link is for. */
static int link_target(int fd, __u64 *cgid, __u32 *type)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	if (info.type != BPF_LINK_TYPE_CGROUP)
		return -EINVAL;
	*cgid = info.cgroup.cgroup_id;
	*type = info.cgroup.attach_type;
	return 0;
}

static int cgroup_fd_id(int fd, __u64 *id)
{
	struct {
		struct file_handle fh;
		__u64 cgid;
	} h = {.fh.handle_bytes = sizeof(__u64)};
	int mount_id;

	if (name_to_handle_at(fd, "", &h.fh, &mount_id, AT_EMPTY_PATH))
		return -errno;
	*id = h.cgid;
	return 0;
}

/*
 * Switch a pinned link to the new program in one step. Returns -ENOLINK
 * when the link is defunct (its cgroup is gone), so a new one is made.
 */
static int link_update(struct sm_dp *dp, struct sm_hook *h, struct bpf_program *prog,
		       const char *path)
{
	struct bpf_link *link;
	__u64 want = 0, have = 0;
	__u32 type = 0;
	int err;

	link = bpf_link__open(path);
	if (!link)
		return -errno;
	err = cgroup_fd_id(dp->cgroup_fd, &want);
	if (!err)
		err = link_target(bpf_link__fd(link), &have, &type);
	if (!err && !have)
		err = -ENOLINK;
	if (!err && (have != want || (int)type != h->attach_type)) {
		pr_warn("pinned link %s is attached elsewhere (cgroup id %llu, "
			"ours %llu); is another agent using --bpffs %s?\n",
			path, (unsigned long long)have, (unsigned long long)want, dp->bpffs);
		err = -EEXIST;
	}
	if (!err)
		err = bpf_link__update_program(link, prog);
	bpf_link__destroy(link);
	return err;
}

static int link_create(struct sm_dp *dp, struct bpf_program *prog, const char *path)
{
	struct bpf_link *link;
	int err;

	link = bpf_program__attach_cgroup(prog, dp->cgroup_fd);
	if (!link)
		return -errno;
	err = bpf_link__pin(link, path);
	bpf_link__destroy(link);
	return err;
}

/* The program behind the link pinned at path; 0 when there is none. */
static __u32 pinned_link_prog(const char *path)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);
	int fd;

	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		info.prog_id = 0;
	close(fd);
	return info.prog_id;
}

/* The name of program id (truncated as the kernel keeps it); "" if gone. */
static void prog_name(__u32 id, char *name, size_t len)
{
	struct bpf_prog_info info = {};
	__u32 ilen = sizeof(info);
	int fd;

	name[0] = '\0';
	fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return;
	if (!bpf_obj_get_info_by_fd(fd, &info, &ilen))
		snprintf(name, len, "%s", info.name);
	close(fd);
}

/*
 * Another agent's programs on our cgroup (same --cgroup, another --bpffs)
 * would decide every connection twice, by two policies. Refuse to join
 * them: a program named like one of ours, attached to the cgroup itself,
 * that is not behind one of our pinned links.
 */
static int foreign_check(struct sm_dp *dp)
{
	char path[PATH_MAX], name[BPF_OBJ_NAME_LEN];
	__u32 *ids, n, ours, i;
	unsigned int h;
	int err = 0;

	for (h = 0; h < dp->n_hooks && !err; h++) {
		err = sm_pin_link_path(dp->bpffs, dp->hooks[h].prog, path, sizeof(path));
		if (err)
			break;
		/* A hook that cannot be asked has nothing to say here. */
		if (sm_prog_ids(dp->cgroup_fd, dp->hooks[h].attach_type, 0, &ids, &n))
			continue;
		ours = pinned_link_prog(path);
		for (i = 0; i < n && !err; i++) {
			if (ids[i] == ours)
				continue;
			prog_name(ids[i], name, sizeof(name));
			if (strncmp(name, dp->hooks[h].prog, sizeof(name) - 1))
				continue;
			pr_warn("cgroup %s: program %s (id %u) of another sockmesh agent is "
				"attached already; stop that agent and remove its programs "
				"with 'sockmesh uninstall --bpffs DIR' (its pin directory), "
				"or give this agent another --cgroup\n",
				dp->cgroup, name, ids[i]);
			err = -EEXIST;
		}
		free(ids);
	}
	return err;
}

/*
 * However many there are: ask for the count, then for the ids, and again
 * if programs were attached in between.
 */
int sm_prog_ids(int cgroup_fd, int attach_type, __u32 flags, __u32 **ids, __u32 *n)
{
	LIBBPF_OPTS(bpf_prog_query_opts, q, .query_flags = flags);
	int tries, err = -ENOSPC;

	*ids = NULL;
	*n = 0;
	if (bpf_prog_query_opts(cgroup_fd, attach_type, &q))
		return -errno;
	for (tries = 0; tries < 3 && err == -ENOSPC; tries++) {
		__u32 cap = q.prog_cnt + 8;

		free(*ids);
		*ids = calloc(cap, sizeof(**ids));
		if (!*ids)
			return -ENOMEM;
		q.prog_ids = *ids;
		q.prog_cnt = cap;
		err = bpf_prog_query_opts(cgroup_fd, attach_type, &q) ? -errno : 0;
	}
	if (err) {
		free(*ids);
		*ids = NULL;
		return err;
	}
	*n = q.prog_cnt;
	return 0;
}

int sm_dp_attach(struct sm_dp *dp)
{
	char path[PATH_MAX];
	struct bpf_program *prog;
	unsigned int i;
	int err;

	err = foreign_check(dp);
	if (err)
		return err;

	for (i = 0; i < dp->n_hooks && !err; i++) {
		struct sm_hook *h = &dp->hooks[i];

		prog = bpf_object__find_program_by_name(dp->skel->obj, h->prog);
		err = sm_pin_link_path(dp->bpffs, h->prog, path, sizeof(path));
		if (err)
			break;
		if (access(path, F_OK) == 0) {
			err = link_update(dp, h, prog, path);
			if (err == -ENOLINK) {
				unlink(path);
				err = link_create(dp, prog, path);
			}
		} else {
			err = link_create(dp, prog, path);
		}
		if (err)
			pr_warn("prog '%s': attach (%s): %s\n", h->prog, h->label, strerror(-err));
	}
	if (!err)
		pr_info("%u programs attached; links pinned under %s/links\n", dp->n_hooks,
			dp->bpffs);
	if (!err)
		err = pin_renewed(dp);
	return err;
}

void sm_dp_close(struct sm_dp *dp)
{
	sockmesh__destroy(dp->skel);
	dp->skel = NULL;
	if (dp->cgroup_fd >= 0)
		close(dp->cgroup_fd);
	dp->cgroup_fd = -1;
	/* Closing the directory lets the next agent take the pins over. */
	if (dp->lock_fd >= 0)
		close(dp->lock_fd);
	dp->lock_fd = -1;
}

int sm_dp_map_fd(struct sm_dp *dp, const char *name)
{
	struct bpf_map *map;

	map = bpf_object__find_map_by_name(dp->skel->obj, name);
	return map ? bpf_map__fd(map) : -ENOENT;
}
