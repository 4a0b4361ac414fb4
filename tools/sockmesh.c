// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sockmesh: inspect and operate a node. It reads the pinned maps directly,
 * so it works while the agent is down. `sockmesh help` lists the verbs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <json-c/json.h>
#include <linux/magic.h>

#include "cgroup.h"
#include "jsonout.h"
#include "log.h"
#include "mapiter.h"
#include "names.h"
#include "pins.h"
#include "policy.h"
#include "sockmesh/abi.h"
#include "sockmesh/sockmesh.h"

#define DEFAULT_FLOW_LOG "/var/log/sockmesh/flows.jsonl"

/* Options may come before or after the command. */
static struct {
	const char *bpffs;
	const char *cgroup;
	const char *flow_log;
	bool json;
	/* flows */
	const char *trace;
	const char *service;
	const char *verdict;
	bool follow;
} g = {.bpffs = SM_DEFAULT_BPFFS, .cgroup = "/", .flow_log = DEFAULT_FLOW_LOG};

/* bpftool's habit: "Error: ..." on stderr, or an error object in JSON. */
__attribute__((format(printf, 1, 2))) static void p_err(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (g.json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "error", json_object_new_string(msg));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		fprintf(stderr, "Error: %s\n", msg);
	}
}

/* Something the user should know that is no error: stderr in both modes. */
__attribute__((format(printf, 1, 2))) static void p_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("Warning: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* A pinned map, with advice when the node has no state. */
static int open_map(const char *name)
{
	int fd = sm_pin_map_open(g.bpffs, name);

	if (fd == -ENOENT)
		p_err("no sockmesh state under %s (is the agent installed? "
		      "see --bpffs)",
		      g.bpffs);
	else if (fd < 0)
		p_err("map %s under %s: %s", name, g.bpffs, strerror(-fd));
	return fd;
}

static int read_active(struct sm_active *act)
{
	__u32 zero = 0;
	int fd, err = 0;

	fd = open_map(SM_STR(SM_MAP_ACTIVE));
	if (fd < 0)
		return fd;
	if (bpf_map_lookup_elem(fd, &zero, act)) {
		err = -errno;
		p_err("map %s: %s", SM_STR(SM_MAP_ACTIVE), strerror(-err));
	}
	close(fd);
	return err;
}

static int load_names(struct sm_names *n)
{
	int fd = open_map(SM_STR(SM_MAP_NAMES)), err;
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (fd < 0)
		return fd;
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		close(fd);
		return -errno;
	}
	err = sm_names_init(n, fd, info.max_entries);
	/* Read-only from here: forget the fd so nothing is written. */
	close(fd);
	n->map_fd = -1;
	return err;
}

/* ---- check ---- */

struct check_root {
	char mount[PATH_MAX]; /* "" without a cgroup2 mount: paths as written */
	char root[PATH_MAX];
};

static void check_within(struct sm_diags *d, const struct check_root *r,
			 const struct sm_cgroup_ref *cg, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!sm_cgroup_under(r->mount, r->root, cg[i].path))
			sm_diags_add(d, cg[i].loc,
				     "cgroup '%s' is outside the "
				     "managed cgroup '%s' (--cgroup)",
				     cg[i].path, r->root);
}

static int do_check(int argc, char **argv)
{
	struct sm_policy *p = NULL;
	struct check_root r = {};
	struct sm_diags d;
	size_t i, j;
	int err;

	if (argc != 1) {
		p_err("usage: sockmesh check FILE");
		return -EINVAL;
	}
	/* The same reading of --cgroup as the agent's. */
	if (sm_cgroup_mount(r.mount, sizeof(r.mount)))
		r.mount[0] = '\0';
	if (sm_cgroup_root(r.mount, g.cgroup, r.root, sizeof(r.root))) {
		p_err("--cgroup '%s': not a clean cgroup path", g.cgroup);
		return -EINVAL;
	}
	sm_diags_init(&d, argv[0]);
	err = sm_policy_load(argv[0], &p, &d);
	/* Service cgroups must lie inside the managed cgroup. */
	for (i = 0; !err && i < p->n_services; i++) {
		const struct sm_service *s = &p->services[i];

		check_within(&d, &r, s->cgroups, s->n_cgroups);
		for (j = 0; j < s->n_subsets; j++)
			check_within(&d, &r, s->subsets[j].cgroups, s->subsets[j].n_cgroups);
	}
	if (!err && d.n)
		err = -EINVAL;

	if (g.json) {
		struct json_object *o = json_object_new_object();
		struct json_object *errs = json_object_new_array();

		for (i = 0; i < d.n; i++)
			json_object_array_add(errs, sm_json_diag(&d, &d.items[i]));
		json_object_object_add(o, "file", json_object_new_string(argv[0]));
		json_object_object_add(o, "ok", json_object_new_boolean(!err));
		json_object_object_add(o, "errors", errs);
		if (!err) {
			json_object_object_add(o, "services", json_object_new_int64(p->n_services));
			json_object_object_add(o, "rules", json_object_new_int64(p->n_rules));
			json_object_object_add(o, "quotas", json_object_new_int64(p->n_quotas));
		}
		print_json(o);
		json_object_put(o);
	} else if (err) {
		sm_diags_print(&d, stderr);
		if (!d.n)
			p_err("%s: %s", argv[0], strerror(-err));
	} else {
		printf("%s: ok (services: %zu, rules: %zu, quotas: %zu)\n", argv[0], p->n_services,
		       p->n_rules, p->n_quotas);
	}
	sm_policy_free(p);
	sm_diags_free(&d);
	return err;
}

/* ---- policy map keys: which slot an entry belongs to ---- */

static int dest_in_slot(const void *key, uint32_t slot)
{
	return ((const struct sm_dest_key *)key)->slot == slot;
}

static int cgroup_in_slot(const void *key, uint32_t slot)
{
	return ((const struct sm_cgroup_key *)key)->slot == slot;
}

static int rule_in_slot(const void *key, uint32_t slot)
{
	return ((const struct sm_rule_key *)key)->slot == slot;
}

static int svc_in_slot(const void *key, uint32_t slot)
{
	return ((const struct sm_svc_key *)key)->slot == slot;
}

/* The backend key's slot byte also carries the list (abi.h). */
static int backend_in_slot(const void *key, uint32_t slot)
{
	return (((const struct sm_backend_key *)key)->slot & 1U) == slot;
}

static int qcfg_in_slot(const void *key, uint32_t slot)
{
	return ((const struct sm_quota_cfg_key *)key)->slot == slot;
}

/* ---- status ---- */

struct slot_count {
	int (*in_slot)(const void *key, uint32_t slot);
	uint32_t slot;
	long n;
};

static int slot_count_one(const void *key, void *value, void *ctx)
{
	struct slot_count *c = ctx;

	(void)value;
	if (c->in_slot(key, c->slot))
		c->n++;
	return SM_WALK_NEXT;
}

/*
 * Entries and capacity of a pinned map, counted the way the agent's
 * sockmesh_map_entries and sockmesh_map_capacity count them: for a policy
 * map (in_slot set) the entries of the slot in force and what one policy
 * may use, half of max_entries; for the others every entry.
 * -errno when the map cannot be read.
 */
static int map_fill(const char *name, int (*in_slot)(const void *key, uint32_t slot), uint32_t slot,
		    long *n, uint32_t *max)
{
	struct slot_count c = {in_slot, slot, 0};
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int fd, err = 0;

	fd = sm_pin_map_open(g.bpffs, name);
	if (fd < 0)
		return fd;
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		err = -errno;
	*max = in_slot ? info.max_entries / SM_SLOTS : info.max_entries;
	if (!err && in_slot)
		err = sm_map_each(fd, slot_count_one, &c);
	*n = in_slot ? c.n : sm_map_count(fd);
	close(fd);
	return err ?: (*n < 0 ? (int)*n : 0);
}

static const struct {
	const char *name;
	int (*in_slot)(const void *key, uint32_t slot); /* policy maps */
} status_maps[] = {
	{SM_STR(SM_MAP_CGROUP), cgroup_in_slot}, {SM_STR(SM_MAP_DEST), dest_in_slot},
	{SM_STR(SM_MAP_SVC), svc_in_slot},	 {SM_STR(SM_MAP_BACKEND), backend_in_slot},
	{SM_STR(SM_MAP_RULE), rule_in_slot},	 {SM_STR(SM_MAP_QCFG), qcfg_in_slot},
	{SM_STR(SM_MAP_QSTATE), NULL},		 {SM_STR(SM_MAP_PAIR), NULL},
	{SM_STR(SM_MAP_CANARY), NULL},		 {SM_STR(SM_MAP_NAMES), NULL},
};

static int read_stats(uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus(), fd, c;
	uint64_t *vals;
	__u32 i;

	fd = sm_pin_map_open(g.bpffs, SM_STR(SM_MAP_STATS));
	if (fd < 0)
		return fd;
	vals = calloc(ncpu, sizeof(*vals));
	for (i = 0; vals && i < SM_S_MAX; i++) {
		out[i] = 0;
		if (bpf_map_lookup_elem(fd, &i, vals))
			continue;
		for (c = 0; c < ncpu; c++)
			out[i] += vals[c];
	}
	free(vals);
	close(fd);
	return 0;
}

/* Pinned links and whether each still has a cgroup. */
static struct json_object *links_json(int *attached, int *total)
{
	struct json_object *arr = json_object_new_array();
	static const char *const progs[] = {
		"sm_sock_create", "sm_sock_release", "sm_connect4", "sm_connect6", "sm_sendmsg4",
		"sm_sendmsg6",	  "sm_recvmsg4",     "sm_recvmsg6", "sm_getpeer4", "sm_getpeer6",
		"sm_sockops",	  "sm_getsockopt",   "sm_ingress",
	};
	char path[PATH_MAX];
	size_t i;

	*attached = *total = 0;
	for (i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		struct bpf_link_info info = {};
		__u32 len = sizeof(info);
		struct json_object *o;
		int fd;

		sm_pin_link_path(g.bpffs, progs[i], path, sizeof(path));
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		(*total)++;
		o = json_object_new_object();
		json_object_object_add(o, "program", json_object_new_string(progs[i]));
		if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
			json_object_object_add(o, "prog_id", json_object_new_int64(info.prog_id));
			json_object_object_add(o, "cgroup_id",
					       json_object_new_int64(info.cgroup.cgroup_id));
			if (info.cgroup.cgroup_id)
				(*attached)++;
		}
		json_object_array_add(arr, o);
		close(fd);
	}
	return arr;
}

/* One sm_canary entry, summed over CPUs. */
struct canary_row {
	struct sm_canary_key key;
	__u64 n;
};

static int canary_cmp(const void *a, const void *b)
{
	const struct canary_row *x = a, *y = b;

	if (x->key.svc != y->key.svc)
		return x->key.svc < y->key.svc ? -1 : 1;
	if (x->key.subset != y->key.subset)
		return x->key.subset < y->key.subset ? -1 : 1;
	return 0;
}

struct canary_ctx {
	struct canary_row *rows;
	size_t n;
	size_t cap;
};

/* Per-CPU values are __u64 on every CPU, as the datapath wrote them. */
static int canary_row(const void *key, void *value, void *ctx)
{
	int ncpu = libbpf_num_possible_cpus(), c;
	struct canary_ctx *cc = ctx;
	const __u64 *vals = value;
	struct canary_row *grown;

	if (cc->n == cc->cap) {
		cc->cap = cc->cap ? 2 * cc->cap : 16;
		grown = realloc(cc->rows, cc->cap * sizeof(*cc->rows));
		if (!grown)
			return SM_WALK_STOP;
		cc->rows = grown;
	}
	cc->rows[cc->n].key = *(const struct sm_canary_key *)key;
	cc->rows[cc->n].n = 0;
	for (c = 0; c < ncpu; c++)
		cc->rows[cc->n].n += vals[c];
	cc->n++;
	return SM_WALK_NEXT;
}

/* Every sm_canary entry, sorted by service id and subset index. */
static size_t canary_rows(struct canary_row **out)
{
	struct canary_ctx cc = {};
	int fd;

	*out = NULL;
	fd = sm_pin_map_open(g.bpffs, SM_STR(SM_MAP_CANARY));
	if (fd < 0)
		return 0;
	sm_map_each(fd, canary_row, &cc);
	close(fd);
	qsort(cc.rows, cc.n, sizeof(*cc.rows), canary_cmp);
	*out = cc.rows;
	return cc.n;
}

/* { "connections": n, "share": n / total } */
static struct json_object *canary_subset(__u64 n, __u64 total)
{
	struct json_object *s = json_object_new_object();
	double share = total ? (double)n / total : 0;

	json_object_object_add(s, "connections", json_object_new_int64((int64_t)n));
	json_object_object_add(s, "share", json_object_new_double(share));
	return s;
}

/*
 * The observed canary split: per service, each subset's connections
 * through the VIP since the agent last started, and its share.
 * { "reviews": { "connections": 100,
 *                "subsets": { "v1": { "connections": 90, "share": 0.9 } } } }
 */
static struct json_object *canary_json(void)
{
	struct json_object *o = json_object_new_object(), *svc, *subs;
	char name[SM_NAME_LEN], sub[SM_NAME_LEN];
	struct canary_row *rows, *r;
	struct sm_names names;
	size_t n, i, j;
	__u64 total;

	n = canary_rows(&rows);
	if (!n)
		return o;
	/* Without the names map, ids stand in for names. */
	if (load_names(&names) && sm_names_init(&names, -1, 1)) {
		free(rows);
		return o;
	}
	for (i = 0; i < n; i = j) {
		total = 0;
		for (j = i; j < n && rows[j].key.svc == rows[i].key.svc; j++)
			total += rows[j].n;
		sm_names_get(&names, rows[i].key.svc, name, sizeof(name));
		svc = json_object_new_object();
		subs = json_object_new_object();
		json_object_object_add(svc, "connections", json_object_new_int64((int64_t)total));
		json_object_object_add(svc, "subsets", subs);
		json_object_object_add(o, name, svc);
		for (j = i; j < n && rows[j].key.svc == rows[i].key.svc; j++) {
			r = &rows[j];
			sm_names_get_subset(&names, r->key.svc, (uint8_t)r->key.subset, sub,
					    sizeof(sub));
			if (!sub[0])
				snprintf(sub, sizeof(sub), "subset-%u", r->key.subset);
			json_object_object_add(subs, sub, canary_subset(r->n, total));
		}
	}
	sm_names_free(&names);
	free(rows);
	return o;
}

static int64_t json_int(struct json_object *o, const char *field)
{
	return json_object_get_int64(json_object_object_get(o, field));
}

static void canary_print(struct json_object *canary)
{
	struct json_object_iter si, ui;
	double share;

	if (!json_object_object_length(canary))
		return;
	printf("  canary split (connections through each VIP):\n");
	json_object_object_foreachC(canary, si)
	{
		printf("    %s: %" PRId64 "\n", si.key, json_int(si.val, "connections"));
		json_object_object_foreachC(json_object_object_get(si.val, "subsets"), ui)
		{
			share = json_object_get_double(json_object_object_get(ui.val, "share"));
			printf("      %-16s %10" PRId64 "  %6.2f%%\n", ui.key,
			       json_int(ui.val, "connections"), 100 * share);
		}
	}
}

static int do_status(int argc, char **argv)
{
	struct json_object *o, *maps, *stats, *links, *canary;
	struct json_object_iter it;
	uint64_t st[SM_S_MAX] = {};
	struct sm_active act;
	int err, attached, total;
	size_t i;

	(void)argv;
	if (argc) {
		p_err("usage: sockmesh status");
		return -EINVAL;
	}
	err = read_active(&act);
	if (err)
		return err;
	read_stats(st);
	o = json_object_new_object();
	json_object_object_add(o, "bpffs", json_object_new_string(g.bpffs));
	json_object_object_add(o, "schema", json_object_new_int64(act.schema));
	json_object_object_add(o, "policy_generation",
			       json_object_new_int64((int64_t)act.generation));
	json_object_object_add(o, "active_slot", json_object_new_int64(act.slot));
	links = links_json(&attached, &total);
	json_object_object_add(o, "links", links);
	json_object_object_add(o, "links_attached", json_object_new_int64(attached));

	maps = json_object_new_object();
	for (i = 0; i < sizeof(status_maps) / sizeof(status_maps[0]); i++) {
		struct json_object *m = json_object_new_object();
		uint32_t max = 0;
		long n = 0;

		/* A map that cannot be read has no numbers (null). */
		if (map_fill(status_maps[i].name, status_maps[i].in_slot, act.slot & 1, &n, &max)) {
			json_object_object_add(m, "entries", NULL);
			json_object_object_add(m, "capacity", NULL);
		} else {
			json_object_object_add(m, "entries", json_object_new_int64(n));
			json_object_object_add(m, "capacity", json_object_new_int64(max));
		}
		json_object_object_add(m, "per_policy",
				       json_object_new_boolean(status_maps[i].in_slot != NULL));
		json_object_object_add(maps, status_maps[i].name, m);
	}
	json_object_object_add(o, "maps", maps);
	stats = json_object_new_object();
	for (i = 0; i < SM_S_MAX; i++)
		json_object_object_add(stats, sm_stat_name(i),
				       json_object_new_int64((int64_t)st[i]));
	json_object_object_add(o, "counters", stats);
	canary = canary_json();
	json_object_object_add(o, "canary", canary);

	if (g.json) {
		print_json(o);
	} else {
		printf("sockmesh state under %s\n", g.bpffs);
		printf("  policy generation %" PRIu64 " (slot %u, schema %u)\n",
		       (uint64_t)act.generation, act.slot, act.schema);
		printf("  programs attached: %d of %d pinned links\n", attached, total);
		printf("  maps (entries / capacity; policy maps: the policy in force):\n");
		json_object_object_foreachC(maps, it)
		{
			struct json_object *m = it.val, *e = json_object_object_get(m, "entries");

			if (!e) {
				printf("    %-14s %6s / -\n", it.key, "-");
				continue;
			}
			printf("    %-14s %6" PRId64 " / %" PRId64 "\n", it.key,
			       json_object_get_int64(e),
			       json_object_get_int64(json_object_object_get(m, "capacity")));
		}
		printf("  counters:\n");
		for (i = 0; i < SM_S_MAX; i++)
			printf("    %-18s %" PRIu64 "\n", sm_stat_name(i), st[i]);
		canary_print(canary);
	}
	json_object_put(o);
	return 0;
}

/* ---- services and policy: what the active slot holds ---- */

/* For a verb that takes no argument: the slot in force and the names. */
static int in_force(const char *verb, int argc, struct sm_active *act, struct sm_names *names)
{
	int err;

	if (argc) {
		p_err("usage: sockmesh %s", verb);
		return -EINVAL;
	}
	err = read_active(act);
	return err ?: load_names(names);
}

struct slot_walk {
	int (*in_slot)(const void *key, uint32_t slot);
	uint32_t slot;
	void (*fn)(const void *key, const void *val, void *ctx);
	void *ctx;
};

static int slot_one(const void *key, void *value, void *ctx)
{
	struct slot_walk *w = ctx;

	if (w->in_slot(key, w->slot))
		w->fn(key, value, w->ctx);
	return SM_WALK_NEXT;
}

/* Call fn for every entry of a pinned map whose key is in slot `slot`. */
static int map_walk(const char *name, int (*in_slot)(const void *key, uint32_t slot), uint32_t slot,
		    void (*fn)(const void *key, const void *val, void *ctx), void *ctx)
{
	struct slot_walk w = {in_slot, slot, fn, ctx};
	int fd, err;

	fd = open_map(name);
	if (fd < 0)
		return fd;
	err = sm_map_each(fd, slot_one, &w);
	close(fd);
	return err;
}

struct svc_ctx {
	struct sm_names *names;
	struct json_object *svcs; /* name -> object */
	char cg_mount[PATH_MAX];
};

static struct json_object *svc_obj(struct svc_ctx *c, uint32_t id)
{
	struct json_object *o;
	char name[SM_NAME_LEN];

	sm_names_get(c->names, id, name, sizeof(name));
	if (json_object_object_get_ex(c->svcs, name, &o))
		return o;
	o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_int64(id));
	json_object_object_add(o, "cgroups", json_object_new_array());
	json_object_object_add(o, "endpoints", json_object_new_array());
	json_object_object_add(o, "vips", json_object_new_array());
	json_object_object_add(c->svcs, name, o);
	return o;
}

static void add_str(struct json_object *o, const char *field, const char *s)
{
	struct json_object *arr = json_object_object_get(o, field);
	size_t i;

	for (i = 0; i < json_object_array_length(arr); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), s))
			return;
	json_object_array_add(arr, json_object_new_string(s));
}

static void svc_dest(const void *key, const void *val, void *ctx)
{
	const struct sm_dest_key *k = key;
	const struct sm_dest_val *v = val;
	struct sm_sockaddr sa = {.addr = k->addr, .port = k->port};
	char buf[96], addr[80];

	if (v->kind == SM_DEST_HOST)
		return;
	sm_sockaddr_str(&sa, addr, sizeof(addr));
	snprintf(buf, sizeof(buf), "%s/%s", addr, k->proto == IPPROTO_UDP ? "udp" : "tcp");
	add_str(svc_obj(ctx, v->svc), v->kind == SM_DEST_VIP ? "vips" : "endpoints", buf);
	json_object_object_add(
		svc_obj(ctx, v->svc), "mode",
		json_object_new_string(v->mode == SM_MODE_AUDIT ? "audit" : "enforce"));
}

static void svc_cgroup(const void *key, const void *val, void *ctx)
{
	const struct sm_cgroup_key *k = key;
	const struct sm_cgroup_val *v = val;
	struct svc_ctx *c = ctx;
	char path[PATH_MAX];

	if (sm_cgroup_path_of(c->cg_mount, k->cgid, path, sizeof(path)) || !path[0])
		snprintf(path, sizeof(path), "cgroup-id:%llu", (unsigned long long)k->cgid);
	add_str(svc_obj(c, v->svc), "cgroups", path);
}

static int do_services(int argc, char **argv)
{
	struct json_object_iter si, fi;
	struct svc_ctx c = {};
	struct sm_names names;
	struct sm_active act;
	size_t i;
	int err;

	(void)argv;
	err = in_force("services", argc, &act, &names);
	if (err)
		return err;
	sm_cgroup_mount(c.cg_mount, sizeof(c.cg_mount));
	c.names = &names;
	c.svcs = json_object_new_object();
	map_walk(SM_STR(SM_MAP_DEST), dest_in_slot, act.slot, svc_dest, &c);
	map_walk(SM_STR(SM_MAP_CGROUP), cgroup_in_slot, act.slot, svc_cgroup, &c);
	if (g.json) {
		print_json(c.svcs);
	} else {
		json_object_object_foreachC(c.svcs, si)
		{
			printf("%s\n", si.key);
			json_object_object_foreachC(si.val, fi)
			{
				if (json_object_get_type(fi.val) != json_type_array)
					continue;
				for (i = 0; i < json_object_array_length(fi.val); i++)
					printf("  %-9s %s\n", fi.key,
					       json_object_get_string(
						       json_object_array_get_idx(fi.val, i)));
			}
		}
	}
	json_object_put(c.svcs);
	sm_names_free(&names);
	return 0;
}

struct rule_ctx {
	struct sm_names *names;
	struct json_object *rules; /* array */
};

static void rule_one(const void *key, const void *val, void *ctx)
{
	const struct sm_rule_key *k = key;
	const struct sm_rule_val *v = val;
	struct rule_ctx *c = ctx;
	char src[SM_NAME_LEN], dst[SM_NAME_LEN];
	struct json_object *o;

	/* The way in's copies of TCP rules (abi.h) are no rules of their own. */
	if (k->proto == SM_RULE_PROTO_IN)
		return;
	o = json_object_new_object();
	sm_names_get(c->names, k->src, src, sizeof(src));
	sm_names_get(c->names, k->dst, dst, sizeof(dst));
	json_object_object_add(o, "rule", json_object_new_int64(v->index));
	json_object_object_add(o, "from", json_object_new_string(src));
	json_object_object_add(o, "to", json_object_new_string(dst));
	json_object_object_add(o, "port", k->port ? json_object_new_int(ntohs(k->port)) : NULL);
	json_object_object_add(o, "protocol",
			       json_object_new_string(k->proto == IPPROTO_UDP ? "udp" : "tcp"));
	json_object_array_add(c->rules, o);
}

static const char *rule_str(struct json_object *r, const char *key)
{
	const char *v = json_object_get_string(json_object_object_get(r, key));

	return v ? v : "";
}

/* Same rule, source, destination and protocol? 0 if so. */
static int rule_cmp_keys(struct json_object *x, struct json_object *y)
{
	return json_object_get_int64(json_object_object_get(x, "rule")) !=
		       json_object_get_int64(json_object_object_get(y, "rule")) ||
	       strcmp(rule_str(x, "from"), rule_str(y, "from")) ||
	       strcmp(rule_str(x, "to"), rule_str(y, "to")) ||
	       strcmp(rule_str(x, "protocol"), rule_str(y, "protocol"));
}

static int rule_cmp(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a;
	struct json_object *y = *(struct json_object *const *)b;
	int64_t rx = json_object_get_int64(json_object_object_get(x, "rule"));
	int64_t ry = json_object_get_int64(json_object_object_get(y, "rule"));

	static const char *const keys[] = {"from", "to", "protocol"};
	int64_t px, py;
	size_t i;
	int c;

	if (rx != ry)
		return rx < ry ? -1 : 1;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		c = strcmp(rule_str(x, keys[i]), rule_str(y, keys[i]));
		if (c)
			return c;
	}
	/* By port as a number, "any" (no port) first: ranges come out whole. */
	px = json_object_object_get(x, "port")
		     ? json_object_get_int64(json_object_object_get(x, "port"))
		     : -1;
	py = json_object_object_get(y, "port")
		     ? json_object_get_int64(json_object_object_get(y, "port"))
		     : -1;
	return px < py ? -1 : px > py;
}

/* Entries i and j (j after i) are one rule's consecutive ports. */
static bool rule_next_port(struct json_object *a, int64_t last, struct json_object *b)
{
	struct json_object *pb = json_object_object_get(b, "port");

	return pb && json_object_get_int64(pb) == last + 1 && !rule_cmp_keys(a, b);
}

static int do_policy(int argc, char **argv)
{
	struct rule_ctx c = {};
	struct sm_names names;
	struct sm_active act;
	size_t i, j;
	int err;

	(void)argv;
	err = in_force("policy", argc, &act, &names);
	if (err)
		return err;
	c.names = &names;
	c.rules = json_object_new_array();
	map_walk(SM_STR(SM_MAP_RULE), rule_in_slot, act.slot, rule_one, &c);
	json_object_array_sort(c.rules, rule_cmp);
	if (g.json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "generation",
				       json_object_new_int64((int64_t)act.generation));
		json_object_object_add(o, "rules", json_object_get(c.rules));
		print_json(o);
		json_object_put(o);
	} else {
		printf("policy generation %" PRIu64 ": %zu rule entries in force\n",
		       (uint64_t)act.generation, json_object_array_length(c.rules));
		/* One line per rule and protocol: consecutive ports as a range. */
		for (i = 0; i < json_object_array_length(c.rules); i = j) {
			struct json_object *r = json_object_array_get_idx(c.rules, i);
			struct json_object *port = json_object_object_get(r, "port");
			int64_t first = port ? json_object_get_int64(port) : -1, last = first;
			char ports[32];

			for (j = i + 1;
			     port && j < json_object_array_length(c.rules) &&
			     rule_next_port(r, last, json_object_array_get_idx(c.rules, j));
			     j++)
				last++;
			if (!port)
				snprintf(ports, sizeof(ports), "any");
			else if (first == last)
				snprintf(ports, sizeof(ports), "%" PRId64, first);
			else
				snprintf(ports, sizeof(ports), "%" PRId64 "-%" PRId64, first, last);
			printf("  rule %-4" PRId64 " %s -> %s port %s/%s\n",
			       json_object_get_int64(json_object_object_get(r, "rule")),
			       rule_str(r, "from"), rule_str(r, "to"), ports,
			       rule_str(r, "protocol"));
		}
	}
	json_object_put(c.rules);
	sm_names_free(&names);
	return 0;
}

/* ---- flows ---- */

struct flow_filter {
	const char *trace;
	const char *service;
	const char *verdict;
};

static int flow_match(struct json_object *o, const struct flow_filter *f)
{
	const char *v;

	if (f->trace) {
		v = json_object_get_string(json_object_object_get(o, "trace_id"));
		if (!v || strcasecmp(v, f->trace))
			return 0;
	}
	if (f->service) {
		const char *s = json_object_get_string(json_object_object_get(o, "src"));
		const char *d = json_object_get_string(json_object_object_get(o, "dst"));

		if ((!s || strcmp(s, f->service)) && (!d || strcmp(d, f->service)))
			return 0;
	}
	if (f->verdict) {
		v = json_object_get_string(json_object_object_get(o, "verdict"));
		if (!v || strcmp(v, f->verdict))
			return 0;
	}
	return 1;
}

/* A field of a flow record as text, "-" when the record has none. */
static const char *flow_field(struct json_object *o, const char *name)
{
	const char *v = json_object_get_string(json_object_object_get(o, name));

	return v ? v : "-";
}

static void flow_print(struct json_object *o)
{
	if (g.json) {
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
		return;
	}
	printf("%s %-7s %-6s %s -> %s %s %s -> %s %s\n", flow_field(o, "ts"),
	       flow_field(o, "event"), flow_field(o, "side"), flow_field(o, "src"),
	       flow_field(o, "dst"), flow_field(o, "verdict"), flow_field(o, "orig_dst"),
	       flow_field(o, "dst_addr"), flow_field(o, "trace_id"));
}

/* Where a scan of the flow log stopped, and what it could not read. */
struct flow_pos {
	long pos;
	unsigned long skipped; /* lines that are no flow record */
};

/*
 * Print the matching records of one file from p->pos on, and move p->pos
 * past what was read. 0, or -errno when the file cannot be opened.
 */
static void flow_scan_fp(FILE *fp, struct flow_pos *p, const struct flow_filter *f)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	clearerr(fp);
	if (fseek(fp, p->pos, SEEK_SET))
		return;
	while ((n = getline(&line, &cap, fp)) > 0) {
		struct json_object *o;

		/* A half-written last line is read again next time. */
		if (line[n - 1] != '\n')
			break;
		p->pos += n;
		o = json_tokener_parse(line);
		/* Every flow record is an object; anything else is not one. */
		if (!json_object_is_type(o, json_type_object))
			p->skipped++;
		else if (flow_match(o, f))
			flow_print(o);
		json_object_put(o);
	}
	free(line);
	fflush(stdout);
}

static int flow_scan(const char *path, struct flow_pos *p, const struct flow_filter *f)
{
	FILE *fp;

	fp = fopen(path, "re");
	if (!fp)
		return -errno;
	flow_scan_fp(fp, p, f);
	fclose(fp);
	return 0;
}

/* Say (stderr) how many lines since the last report were no records. */
static void flow_skipped(const char *path, struct flow_pos *p)
{
	if (!p->skipped)
		return;
	p_warn("%s: skipped %lu line%s that %s not flow records", path, p->skipped,
	       p->skipped == 1 ? "" : "s", p->skipped == 1 ? "is" : "are");
	p->skipped = 0;
}

/*
 * Follow the flow log as the agent writes it, from fp (the file as read
 * so far). The file stays open: when the agent rotates it (renames it
 * away and starts a new one), what was written to the old file after the
 * last read is read from it first. Two rotations within one poll (0.2 s)
 * skip the file between them.
 */
__attribute__((noreturn)) static void flow_follow(FILE *fp, struct flow_pos *p,
						  const struct flow_filter *f)
{
	struct timespec ts = {0, 200 * 1000 * 1000};
	struct stat open_st, path_st;

	for (;;) {
		if (fp) {
			flow_scan_fp(fp, p, f);
			flow_skipped(g.flow_log, p);
		}
		nanosleep(&ts, NULL);
		/* Between a rotation's two renames the file may be missing. */
		if (stat(g.flow_log, &path_st))
			continue;
		if (fp && !fstat(fileno(fp), &open_st) && open_st.st_ino == path_st.st_ino &&
		    open_st.st_dev == path_st.st_dev) {
			if (path_st.st_size < p->pos)
				p->pos = 0; /* cut short in place: from the start */
			continue;
		}
		/* Rotated: the rest of the old file, then the new one. */
		if (fp) {
			flow_scan_fp(fp, p, f);
			fclose(fp);
		}
		fp = fopen(g.flow_log, "re");
		p->pos = 0;
	}
}

static int do_flows(int argc, char **argv)
{
	struct flow_filter f = {g.trace, g.service, g.verdict};
	struct flow_pos p = {};
	bool follow = g.follow;
	char path[PATH_MAX];
	struct stat st;
	FILE *fp;
	int i, err;

	(void)argv;
	if (argc) {
		p_err("usage: sockmesh flows [--follow] [--trace ID] "
		      "[--service NAME] [--verdict V]");
		return -EINVAL;
	}
	if (f.verdict && strcmp(f.verdict, "allowed") && strcmp(f.verdict, "denied") &&
	    strcmp(f.verdict, "audit") && strcmp(f.verdict, "no_backend") &&
	    strcmp(f.verdict, "quota")) {
		p_err("--verdict: '%s' is not one of allowed, denied, audit, "
		      "no_backend, quota",
		      f.verdict);
		return -EINVAL;
	}
	if (f.trace && (strlen(f.trace) != 32 || strspn(f.trace, "0123456789abcdefABCDEF") != 32)) {
		p_err("--trace: '%s' is not a trace id (32 hex digits)", f.trace);
		return -EINVAL;
	}
	if (stat(g.flow_log, &st)) {
		err = -errno;
		p_err("flow log %s: %s (see --flow-log)", g.flow_log, strerror(-err));
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		p_err("flow log %s: %s (see --flow-log)", g.flow_log,
		      S_ISDIR(st.st_mode) ? "is a directory, not a file" : "not a regular file");
		return -EINVAL;
	}
	/* Oldest rotated file first, so records come in time order. */
	for (i = 9; i >= 1; i--) {
		snprintf(path, sizeof(path), "%s.%d", g.flow_log, i);
		p.pos = 0;
		err = flow_scan(path, &p, &f);
		if (err && err != -ENOENT) {
			p_err("flow log %s: %s", path, strerror(-err));
			return err;
		}
		flow_skipped(path, &p);
	}
	p.pos = 0;
	fp = fopen(g.flow_log, "re");
	if (!fp) {
		err = -errno;
		p_err("flow log %s: %s (see --flow-log)", g.flow_log, strerror(-err));
		return err;
	}
	flow_scan_fp(fp, &p, &f);
	flow_skipped(g.flow_log, &p);
	if (follow)
		flow_follow(fp, &p, &f); /* until the user stops it */
	fclose(fp);
	return 0;
}

/* ---- explain ---- */

/* s is a decimal number in [min, max], digits only (no sign, no space)? */
static int parse_dec(const char *s, long min, long max, long *out)
{
	unsigned long long v;
	char *end;

	if (!*s || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < (unsigned long long)min || v > (unsigned long long)max)
		return -ERANGE;
	*out = (long)v;
	return 0;
}

/* A duplicate of fd FD of process PID, or -errno. */
static int steal_fd(const char *pid_s, const char *fd_s)
{
	long pid, fdnum;
	int pidfd, sfd, err;

	if (parse_dec(pid_s, 1, INT_MAX, &pid)) {
		p_err("PID '%s' is not a process id (a number from 1 to %d)", pid_s, INT_MAX);
		return -EINVAL;
	}
	if (parse_dec(fd_s, 0, INT_MAX, &fdnum)) {
		p_err("FD '%s' is not a file descriptor number (0 to %d)", fd_s, INT_MAX);
		return -EINVAL;
	}
	pidfd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0) {
		err = -errno;
		p_err("process %s: %s", pid_s, strerror(-err));
		return err;
	}
	sfd = syscall(SYS_pidfd_getfd, pidfd, (int)fdnum, 0);
	err = sfd < 0 ? -errno : 0;
	if (err)
		p_err("fd %s of process %s: %s", fd_s, pid_s, strerror(-err));
	close(pidfd);
	return err ?: sfd;
}

/* One of the socket's own addresses ("" when it has none). */
static struct json_object *sock_addr_json(int fd, int peer)
{
	struct sockaddr_storage ss = {};
	socklen_t len = sizeof(ss);
	struct sm_sockaddr sa = {};
	char buf[80];

	if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
		  : getsockname(fd, (struct sockaddr *)&ss, &len)))
		return NULL;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&ss;

		sa.addr.a[2] = htonl(0xffff);
		sa.addr.a[3] = in->sin_addr.s_addr;
		sa.port = in->sin_port;
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)&ss;

		memcpy(&sa.addr, &in6->sin6_addr, sizeof(sa.addr));
		sa.port = in6->sin6_port;
	} else {
		return NULL;
	}
	sm_sockaddr_str(&sa, buf, sizeof(buf));
	return json_object_new_string(buf);
}

static const char *sock_role(int fd, const struct sm_sk *s)
{
	int listening = 0;
	socklen_t len = sizeof(listening);

	if (!getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) && listening)
		return "listener";
	return s->flags & SM_SK_PASSIVE ? "server" : "client";
}

static struct json_object *flags_json(__u32 flags)
{
	static const char *const names[] = {
		"managed",    "trace_pending", "trace_acked", "passive",   "trace_wait",
		"quota_held", "established",   "closed",      "late",	   "listener",
		"local_peer", "no_space",      "fin_in",      "fin_acked", "trace_counted",
	};
	struct json_object *arr = json_object_new_array();
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (flags & (1U << i))
			json_object_array_add(arr, json_object_new_string(names[i]));
	return arr;
}

static void add_name(struct json_object *o, const char *key, struct sm_names *n, uint32_t svc,
		     uint8_t subset, int of_subset)
{
	char buf[SM_NAME_LEN];

	if (of_subset)
		sm_names_get_subset(n, svc, subset, buf, sizeof(buf));
	else
		sm_names_get(n, svc, buf, sizeof(buf));
	json_object_object_add(o, key, buf[0] ? json_object_new_string(buf) : NULL);
}

/* What the socket state says, in the words a user reads. */
static struct json_object *explain_json(int fd, const struct sm_sk *s, struct sm_names *n)
{
	struct json_object *o = json_object_new_object();
	const char *role = sock_role(fd, s);
	char hex[SOCKMESH_TRACE_HEX_LEN], buf[80];

	add_name(o, "service", n, s->svc, s->subset, 0);
	add_name(o, "subset", n, s->svc, s->subset, 1);
	json_object_object_add(o, "role", json_object_new_string(role));
	json_object_object_add(o, "protocol",
			       json_object_new_string(s->proto == IPPROTO_UDP ? "udp" : "tcp"));
	json_object_object_add(o, "local", sock_addr_json(fd, 0));
	/* What the application sees: a VIP it dialled, not the backend. */
	json_object_object_add(o, "peer", sock_addr_json(fd, 1));
	if (!strcmp(role, "server")) {
		add_name(o, "peer_service", n, s->dst_svc, s->dst_subset, 0);
		add_name(o, "peer_subset", n, s->dst_svc, s->dst_subset, 1);
	} else if (!strcmp(role, "client") && (s->flags & SM_SK_MANAGED)) {
		add_name(o, "dst_service", n, s->dst_svc, s->dst_subset, 0);
		add_name(o, "dst_subset", n, s->dst_svc, s->dst_subset, 1);
		sm_sockaddr_str(&s->orig, buf, sizeof(buf));
		json_object_object_add(o, "orig_dst", json_object_new_string(buf));
		sm_sockaddr_str(&s->dst, buf, sizeof(buf));
		json_object_object_add(o, "dst_addr", json_object_new_string(buf));
	}
	if (strcmp(role, "listener") && (s->flags & SM_SK_MANAGED)) {
		json_object_object_add(o, "verdict",
				       json_object_new_string(sm_verdict_name(s->verdict)));
		json_object_object_add(o, "reason",
				       json_object_new_string(sm_reason_name(s->reason)));
		json_object_object_add(
			o, "rule", s->rule == SM_RULE_NONE ? NULL : json_object_new_int64(s->rule));
	} else if (strcmp(role, "listener")) {
		/*
		 * The socket keeps only an allowed or audited decision: a
		 * refused connect() leaves its storage as it was, so its
		 * verdict field means nothing here. The flow log has the deny.
		 */
		json_object_object_add(o, "verdict", json_object_new_string("none"));
		json_object_object_add(o, "reason", NULL);
		json_object_object_add(o, "rule", NULL);
		json_object_object_add(
			o, "note",
			json_object_new_string(
				"no connection was decided for this socket; a refused "
				"connect() is recorded in the flow log only"));
	}
	sockmesh_trace_id_hex(s->trace_id, hex);
	json_object_object_add(o, "trace_id",
			       strspn(hex, "0") == 32 ? NULL : json_object_new_string(hex));
	json_object_object_add(o, "pid", json_object_new_int64(s->pid));
	json_object_object_add(
		o, "comm", json_object_new_string_len(s->comm, strnlen(s->comm, sizeof(s->comm))));
	json_object_object_add(o, "flags", flags_json(s->flags));
	return o;
}

static int do_explain(int argc, char **argv)
{
	struct json_object_iter it;
	struct json_object *o;
	struct sm_names names;
	struct sm_sk s;
	int sfd, mfd, err;

	if (argc != 2) {
		p_err("usage: sockmesh explain PID FD");
		return -EINVAL;
	}
	sfd = steal_fd(argv[0], argv[1]);
	if (sfd < 0)
		return sfd;
	mfd = open_map(SM_STR(SM_MAP_SK));
	/* Socket storage is looked up with the socket's own fd as the key. */
	err = mfd < 0 ? mfd : bpf_map_lookup_elem(mfd, &sfd, &s) ? -errno : 0;
	if (mfd >= 0)
		close(mfd);
	if (err == -ENOENT)
		p_err("fd %s of process %s: sockmesh knows nothing of this "
		      "socket (not made in a managed cgroup, or never used)",
		      argv[1], argv[0]);
	else if (err && mfd >= 0)
		p_err("fd %s of process %s: %s", argv[1], argv[0], strerror(-err));
	if (!err)
		err = load_names(&names);
	if (err) {
		close(sfd);
		return err;
	}
	o = explain_json(sfd, &s, &names);
	close(sfd);
	if (g.json) {
		print_json(o);
	} else {
		json_object_object_foreachC(o, it)
			printf("%-13s %s\n", it.key, it.val ? json_object_get_string(it.val) : "-");
	}
	json_object_put(o);
	sm_names_free(&names);
	return 0;
}

/* ---- uninstall ---- */

/*
 * Uninstall unlinks what it finds under --bpffs, so it must be a bpf file
 * system: there, every file is a pin. On any other file system the same
 * walk would delete ordinary files. path missing: 0 (nothing of ours).
 */
static int need_bpffs(const char *path)
{
	struct statfs st;
	int err;

	if (statfs(path, &st)) {
		err = -errno;
		if (err == -ENOENT)
			return 0;
		p_err("%s: %s; nothing was removed", path, strerror(-err));
		return err;
	}
	if (st.f_type == BPF_FS_MAGIC)
		return 0;
	p_err("%s is not on a bpf file system (f_type 0x%llx); uninstall removes "
	      "pins from bpffs only, nothing was removed (see --bpffs)",
	      path, (unsigned long long)st.f_type);
	return -EINVAL;
}

/* Every entry of <bpffs>/<sub> is one of our pins (sm_*, bpf_obj_get opens it)? */
static int only_pins(const char *sub)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct dirent *de;
	struct stat st;
	int err, fd;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", g.bpffs, sub);
	err = need_bpffs(dir);
	if (err)
		return err;
	d = opendir(dir);
	if (!d) {
		err = -errno;
		if (err == -ENOENT)
			return 0;
		p_err("%s: %s; nothing was removed", dir, strerror(-err));
		return err;
	}
	while (!err && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		/* Ours by name, and a pin itself, not a link to another one. */
		if (strncmp(de->d_name, "sm_", 3) || lstat(path, &st) || S_ISLNK(st.st_mode)) {
			err = -EINVAL;
			p_err("%s is not a sockmesh pin; uninstall removes those only, "
			      "nothing was removed",
			      path);
			break;
		}
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			close(fd);
			continue;
		}
		err = -EINVAL;
		p_err("%s is not a BPF pin; uninstall removes pins only, nothing "
		      "was removed",
		      path);
	}
	closedir(d);
	return err;
}

static int do_uninstall(int argc, char **argv)
{
	int err;

	(void)argv;
	if (argc) {
		p_err("usage: sockmesh uninstall");
		return -EINVAL;
	}
	if (!sm_pins_exist(g.bpffs) && access(g.bpffs, F_OK)) {
		if (!g.json)
			printf("nothing to remove under %s\n", g.bpffs);
		return 0;
	}
	/* Check everything first: a refusal leaves the node as it was. */
	err = need_bpffs(g.bpffs);
	if (!err)
		err = only_pins("links");
	if (!err)
		err = only_pins("maps");
	if (err)
		return err;
	err = sm_pins_uninstall(g.bpffs);
	if (err) {
		p_err("uninstall under %s: %s", g.bpffs, strerror(-err));
		return err;
	}
	if (!g.json)
		printf("removed every sockmesh program, link and pin under %s\n", g.bpffs);
	return 0;
}

static const char usage[] =
	"Usage: sockmesh [OPTIONS] COMMAND [ARGS]\n"
	"\n"
	"Commands:\n"
	"  status                 programs, policy generation, map fill, counters\n"
	"  check FILE             validate a policy file; nothing is loaded\n"
	"  services               services in force: cgroups, endpoints, VIPs\n"
	"  policy                 rules in force\n"
	"  flows [--follow] [--trace ID] [--service NAME] [--verdict V]\n"
	"                         flow records from the flow log\n"
	"  explain PID FD         what sockmesh knows of one socket\n"
	"  uninstall              detach every program, remove every pin\n"
	"\n"
	"Options (the agent's defaults):\n"
	"  --bpffs DIR            pin directory (default " SM_DEFAULT_BPFFS ")\n"
	"  --cgroup PATH          managed cgroup, for 'check' (default /)\n"
	"  --flow-log FILE        flow log (default " DEFAULT_FLOW_LOG ")\n"
	"  -j, --json             JSON output\n";

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} cmds[] = {
	{"status", do_status},	     {"check", do_check}, {"services", do_services},
	{"policy", do_policy},	     {"flows", do_flows}, {"explain", do_explain},
	{"uninstall", do_uninstall},
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"bpffs", required_argument, NULL, 'b'},
					     {"cgroup", required_argument, NULL, 'c'},
					     {"flow-log", required_argument, NULL, 'l'},
					     {"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {"trace", required_argument, NULL, 't'},
					     {"service", required_argument, NULL, 's'},
					     {"verdict", required_argument, NULL, 'V'},
					     {"follow", no_argument, NULL, 'f'},
					     {}};
	size_t i;
	int c;

	sm_log_init("sockmesh", SM_LOG_WARN);
	/* Our messages, not getopt's (which name the binary by its path). */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":jhf", opts, NULL)) != -1) {
		switch (c) {
		case 'b': g.bpffs = optarg; break;
		case 'c': g.cgroup = optarg; break;
		case 'l': g.flow_log = optarg; break;
		case 'j': g.json = true; break;
		case 't': g.trace = optarg; break;
		case 's': g.service = optarg; break;
		case 'V': g.verdict = optarg; break;
		case 'f': g.follow = true; break;
		case 'h': fputs(usage, stdout); return EXIT_SUCCESS;
		case ':': p_err("option '%s' needs a value", argv[optind - 1]); return EXIT_FAILURE;
		default:
			/*
			 * A long option is named by the word itself (optopt may
			 * hold its letter when it was given a value it does not
			 * take); a short one by optopt.
			 */
			if (!strncmp(argv[optind - 1], "--", 2))
				p_err("option '%s' is unknown, ambiguous or takes no value "
				      "(try 'sockmesh help')",
				      argv[optind - 1]);
			else
				p_err("unknown option '-%c' (try 'sockmesh help'; '--' ends "
				      "options)",
				      optopt);
			return EXIT_FAILURE;
		}
	}
	if (optind >= argc || !strcmp(argv[optind], "help")) {
		fputs(usage, optind >= argc ? stderr : stdout);
		return optind >= argc ? EXIT_FAILURE : EXIT_SUCCESS;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[optind], cmds[i].name))
			return cmds[i].fn(argc - optind - 1, argv + optind + 1) ? EXIT_FAILURE
										: EXIT_SUCCESS;
	p_err("unknown command '%s' (try 'sockmesh help')", argv[optind]);
	return EXIT_FAILURE;
}
