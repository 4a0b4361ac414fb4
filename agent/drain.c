// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * drain: close. After a reload removes endpoints from a service, client
 * connections that reached them through a VIP are closed, so long-lived
 * clients (gRPC, HTTP/2 pools) reconnect and get a live backend.
 *
 * The kernel's socket iterator walks the sockets of one network namespace,
 * the one its reader was in when the iterator was made. Services live in
 * namespaces of their own, so the iterator is run in each namespace that a
 * process of the managed cgroup subtree is in.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "log.h"
#include "mapiter.h"
#include "sockmesh.skel.h"

#define MAX_NETNS 4096

/* Network namespaces of the processes under one cgroup directory. */
struct netns_set {
	ino_t ino[MAX_NETNS];
	int fd[MAX_NETNS];
	unsigned int n;
};

static void netns_add_pid(struct netns_set *ns, const char *pid)
{
	char path[64];
	struct stat st;
	unsigned int i;
	int fd;

	snprintf(path, sizeof(path), "/proc/%s/ns/net", pid);
	if (stat(path, &st))
		return;
	for (i = 0; i < ns->n; i++)
		if (ns->ino[i] == st.st_ino)
			return;
	if (ns->n == MAX_NETNS)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ns->ino[ns->n] = st.st_ino;
	ns->fd[ns->n++] = fd;
}

/* Every process in dir and the cgroups below it. */
static void netns_walk(struct netns_set *ns, const char *dir, int depth)
{
	char path[PATH_MAX], pid[32];
	struct dirent *de;
	FILE *f;
	DIR *d;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (f) {
		while (fgets(pid, sizeof(pid), f)) {
			pid[strcspn(pid, "\n")] = '\0';
			netns_add_pid(ns, pid);
		}
		fclose(f);
	}
	if (depth >= SM_CGROUP_MAX_DEPTH)
		return;
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		netns_walk(ns, path, depth + 1);
	}
	closedir(d);
}

/* Run the iterator once, in the caller's thread's current namespace. */
static int iterate(struct bpf_link *link)
{
	char buf[256];
	int fd, err = 0;
	ssize_t n;

	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd < 0)
		return -errno;
	/* The program prints nothing; reading to the end runs it. */
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	if (n < 0)
		err = -errno;
	close(fd);
	return err;
}

/* Run it in every namespace in ns, then come back to our own. */
static int iterate_all(struct bpf_link *link, const struct netns_set *ns)
{
	int self, err = 0, e;
	unsigned int i;

	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	err = iterate(link);
	for (i = 0; i < ns->n; i++) {
		if (setns(ns->fd[i], CLONE_NEWNET)) {
			err = err ?: -errno;
			continue;
		}
		e = iterate(link);
		err = err ?: e;
	}
	if (setns(self, CLONE_NEWNET)) {
		/* Only this thread moved; every later netns use would be wrong. */
		pr_warn("drain: cannot return to our network namespace: %s\n", strerror(errno));
		abort();
	}
	close(self);
	return err;
}

static const struct sm_svc_val *svc_of(const struct sm_image *img, uint32_t id)
{
	struct sm_svc_key key = {.svc = id};

	return sm_kvs_find(&img->maps[SM_PM_SVC], &key);
}

/* One endpoint of a service, as drain compares them. */
struct svc_ep {
	uint32_t svc;
	struct sm_sockaddr sa;
};

static int svc_ep_cmp(const void *x, const void *y)
{
	const struct svc_ep *p = x, *q = y;

	if (p->svc != q->svc)
		return p->svc < q->svc ? -1 : 1;
	return memcmp(&p->sa, &q->sa, sizeof(p->sa));
}

/* Every service's endpoints (its every-endpoint list), sorted. */
static struct svc_ep *endpoints_of(const struct sm_image *img, size_t *n)
{
	const struct sm_kvs *b = &img->maps[SM_PM_BACKEND];
	struct svc_ep *eps;
	size_t i;

	*n = 0;
	eps = calloc(b->n + 1, sizeof(*eps));
	if (!eps)
		return NULL;
	for (i = 0; i < b->n; i++) {
		const struct sm_backend_key *k = (const void *)(b->keys + i * b->key_size);
		const struct sm_backend_val *v = (const void *)(b->vals + i * b->val_size);

		if ((k->slot >> 1) != SM_LIST_ALL)
			continue;
		eps[*n].svc = k->svc;
		eps[(*n)++].sa = v->sa;
	}
	qsort(eps, *n, sizeof(*eps), svc_ep_cmp);
	return eps;
}

/*
 * Endpoints of drain: close services that old has and new does not, into
 * the drain map. Returns how many; *lost counts those the map had no
 * room for.
 */
static int removed(const struct sm_image *old, const struct sm_image *new, int map_fd,
		   unsigned int *lost)
{
	size_t n_now, n_was, i;
	struct svc_ep *now, *was;
	int n = 0;

	*lost = 0;
	now = endpoints_of(new, &n_now);
	was = endpoints_of(old, &n_was);
	if (!now || !was) {
		n = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n_was; i++) {
		const struct sm_svc_val *sv = svc_of(new, was[i].svc);

		/* A service that is gone entirely drains like drain: close. */
		if ((sv && sv->drain == SM_DRAIN_KEEP) ||
		    bsearch(&was[i], now, n_now, sizeof(*now), svc_ep_cmp))
			continue;
		if (bpf_map_update_elem(map_fd, &was[i].sa, &was[i].svc, BPF_ANY))
			(*lost)++;
		else
			n++;
	}
out:
	free(now);
	free(was);
	return n;
}

static uint64_t drained_total(struct sm_agent *a)
{
	int fd = sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_STATS));
	int ncpu = libbpf_num_possible_cpus(), c;
	__u32 key = SM_S_DRAINED;
	__u64 *vals, sum = 0;

	vals = calloc(ncpu, sizeof(*vals));
	if (vals && !bpf_map_lookup_elem(fd, &key, vals))
		for (c = 0; c < ncpu; c++)
			sum += vals[c];
	free(vals);
	return sum;
}

static int drop(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)value;
	(void)ctx;
	return SM_WALK_DELETE;
}

static void drain_clear(int map_fd)
{
	sm_map_each(map_fd, drop, NULL);
}

int sm_drain(struct sm_agent *a, const struct sm_image *old, const struct sm_image *new)
{
	int map_fd = sm_dp_map_fd(&a->dp, SM_STR(SM_MAP_DRAIN));
	struct netns_set *ns;
	unsigned int i, lost;
	uint64_t before;
	int n, err;

	if (!old || !new || map_fd < 0)
		return 0;
	n = removed(old, new, map_fd, &lost);
	if (n < 0) {
		pr_warn("drain: %s; connections to removed endpoints stay open\n", strerror(-n));
		drain_clear(map_fd);
		return n;
	}
	if (lost)
		pr_warn("drain: %u removed endpoint(s) more than map %s holds; "
			"connections to them stay open\n",
			lost, SM_STR(SM_MAP_DRAIN));
	if (!n)
		return 0;
	if (!a->drain_link) {
		a->drain_link = bpf_program__attach_iter(a->dp.skel->progs.sm_drain_tcp, NULL);
		if (!a->drain_link) {
			err = -errno;
			pr_warn("drain: iterator: %s; connections to %d removed "
				"endpoint(s) stay open\n",
				strerror(-err), n);
			drain_clear(map_fd);
			return err;
		}
	}
	ns = calloc(1, sizeof(*ns));
	if (!ns) {
		drain_clear(map_fd);
		return -ENOMEM;
	}
	before = drained_total(a);
	netns_walk(ns, a->cg_abs, 0);
	err = iterate_all(a->drain_link, ns);
	for (i = 0; i < ns->n; i++)
		close(ns->fd[i]);
	free(ns);
	drain_clear(map_fd);
	pr_info("drain: %d endpoint(s) removed; %llu connection(s) to them "
		"closed\n",
		n, (unsigned long long)(drained_total(a) - before));
	if (err)
		pr_warn("drain: some network namespaces could not be walked: "
			"%s\n",
			strerror(-err));
	return err;
}

/*
 * Connections older than the agent: the iterator marks and counts each
 * once (bpf/lib/late.h), in every network namespace of the managed
 * subtree. Run once at start, after the programs are attached: sockets
 * made from then on have state of their own.
 */
int sm_late_scan(struct sm_agent *a)
{
	struct bpf_link *link;
	struct netns_set *ns;
	unsigned int i;
	int err;

	link = bpf_program__attach_iter(a->dp.skel->progs.sm_late_tcp, NULL);
	if (!link) {
		err = -errno;
		pr_warn("untracked: iterator: %s; connections older than the "
			"agent are not counted\n",
			strerror(-err));
		return err;
	}
	ns = calloc(1, sizeof(*ns));
	if (!ns) {
		bpf_link__destroy(link);
		return -ENOMEM;
	}
	netns_walk(ns, a->cg_abs, 0);
	err = iterate_all(link, ns);
	for (i = 0; i < ns->n; i++)
		close(ns->fd[i]);
	free(ns);
	bpf_link__destroy(link);
	if (err)
		pr_warn("untracked: some network namespaces could not be "
			"walked: %s\n",
			strerror(-err));
	return err;
}
