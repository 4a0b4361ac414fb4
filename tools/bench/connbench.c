// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * connbench: a TCP connect-rate load generator for `make bench`.
 *
 *   connbench serve     --listen ADDR:PORT [--listen ...] [--timeout S]
 *   connbench connect   --to ADDR:PORT [--duration-ms MS] [--parallel N]
 *                       [--drain-ms MS]
 *   connbench alternate --base NAME,CGROUP,ADDR:PORT
 *                       --variant NAME,CGROUP,ADDR:PORT [--variant ...]
 *                       [--netns NAME] [--idle-cgroup DIR] [--rounds N]
 *                       [--slice-ms MS] [--warmup-ms MS] [--parallel N]
 *                       [--budget-s S]
 *
 * serve accepts every connection and closes it at once, without reading
 * or writing: the server's FIN ends each connection. It prints "ready"
 * once it listens, and on SIGTERM a JSON line with the count it accepted.
 *
 * connect keeps N non-blocking connections in flight from one thread.
 * Each is socket(), connect(), then, when epoll reports the server's FIN,
 * read() (which returns 0) and close(); a new one replaces it at once.
 * The client closes second, so TIME_WAIT lands on the server's side and
 * the client's ephemeral ports are free again immediately. After
 * --duration-ms no new connection starts and those in flight are waited
 * for (at most --drain-ms). It prints one JSON line:
 *
 *   {"seconds":1.000,"conns":N,"rate":R,"total":T,"errors":E,...}
 *
 * conns counts connections completed inside the timed window and rate is
 * conns/seconds; total also counts the ones drained after it, so total is
 * every connection the kernel handled (what per-connection BPF figures
 * divide by). A connection that fails (connect() refused by policy, a
 * reset, no port left) counts in errors, with the first errno named.
 *
 * alternate runs such windows in the order base, variant 1, base,
 * variant 2, ..., the variants rotated each round, and prints a JSON line
 * per window (round -1: the warm-up). Before each window it moves itself
 * into that target's client cgroup (a full cgroupfs path), so its sockets
 * belong to that cgroup; the windows of a round are a fraction of a
 * second apart. Each line also has cpu_us, the CPU time used by the
 * client cgroup's parent (the client and its servers) during the window
 * and its drain, and agent_us, the CPU time of --idle-cgroup, which is
 * waited for to go idle after each window so its work lands in the right
 * line. --netns joins a named network namespace first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define MAX_LISTEN	    8
#define MAX_PARALLEL	    4096
#define BACKLOG		    4096
#define DEFAULT_DURATION_MS 1000
#define DEFAULT_DRAIN_MS    2000
#define DEFAULT_PARALLEL    32
#define DEFAULT_SERVE_S	    600
#define EVENTS		    64

/*
 * "198.18.0.1:80" or "[fd00::1]:80". Port 0 is refused: nothing listens
 * there and nothing can be dialled.
 */
static int bench_addr_parse(const char *str, struct addr *a)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;

	if (addr_parse(str, FAM_AUTO, a))
		return -EINVAL;
	if (a->ss.ss_family == AF_INET ? !s4->sin_port : !s6->sin6_port)
		return -EINVAL;
	return 0;
}

/* --- serve --- */

static int listen_on(const struct addr *a)
{
	int fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) || listen(fd, BACKLOG)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* Accept everything the listener has queued and close it unread. */
static unsigned long long accept_all(int lfd)
{
	unsigned long long n = 0;
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		close(fd);
		n++;
	}
	return n;
}

static int do_serve(int argc, char **argv)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
					     {"timeout", required_argument, NULL, 't'},
					     {}};
	struct epoll_event ev, evs[EVENTS];
	int lfds[MAX_LISTEN], n_listen = 0, epfd, c, i, n;
	unsigned long long accepted = 0;
	long timeout_s = DEFAULT_SERVE_S;
	long long deadline;
	struct addr a;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (n_listen == MAX_LISTEN || bench_addr_parse(optarg, &a)) {
				fprintf(stderr,
					"connbench: --listen '%s': "
					"expected ADDR:PORT (at most %d)\n",
					optarg, MAX_LISTEN);
				return 2;
			}
			lfds[n_listen] = listen_on(&a);
			if (lfds[n_listen] < 0) {
				fprintf(stderr, "connbench: listen on %s: %s\n", optarg,
					strerror(-lfds[n_listen]));
				return 1;
			}
			n_listen++;
			break;
		case 't':
			if (parse_long(optarg, 1, 86400, &timeout_s))
				return 2;
			break;
		default: return 2;
		}
	}
	if (!n_listen) {
		fprintf(stderr, "connbench serve: --listen is required\n");
		return 2;
	}

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		return 1;
	for (i = 0; i < n_listen; i++) {
		ev.events = EPOLLIN;
		ev.data.fd = lfds[i];
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfds[i], &ev))
			return 1;
	}
	printf("ready\n");
	fflush(stdout);

	/* Bounded even if nobody ever sends SIGTERM. */
	deadline = now_ns() + timeout_s * 1000000000LL;
	while (!g_stop && now_ns() < deadline) {
		n = epoll_wait(epfd, evs, EVENTS, 1000);
		for (i = 0; i < n; i++)
			accepted += accept_all(evs[i].data.fd);
	}
	printf("{\"accepted\":%llu}\n", accepted);
	return 0;
}

/* --- connect --- */

/* In-flight sockets by fd, to close those a drain gives up on. */
#define MAX_FD 65536

struct client {
	struct addr to;
	int epfd;
	int in_flight;
	unsigned char *open;	 /* MAX_FD flags */
	unsigned long long done; /* completed, in the window or after */
	unsigned long long errors;
	int first_err;
};

/* What one timed window measured. */
struct window {
	double secs;
	unsigned long long conns; /* completed inside the window */
	unsigned long long total; /* ... and while draining after it */
	unsigned long long errors;
	int first_err;
	int stuck; /* still open when the drain gave up */
};

static void client_error(struct client *cl, int err)
{
	if (!cl->errors++)
		cl->first_err = err;
}

/* Start one connection; failures that happen at once are counted. */
static void conn_start(struct client *cl)
{
	struct epoll_event ev;
	int fd;

	fd = socket(cl->to.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		client_error(cl, errno);
		return;
	}
	if (connect(fd, (const struct sockaddr *)&cl->to.ss, cl->to.len) && errno != EINPROGRESS) {
		client_error(cl, errno);
		close(fd);
		return;
	}
	/* Readable: the server's FIN (EOF), or an error such as a reset. */
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.fd = fd;
	if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		client_error(cl, errno);
		close(fd);
		return;
	}
	cl->in_flight++;
	if (fd < MAX_FD)
		cl->open[fd] = 1;
}

/* epoll says fd is readable: EOF ends it well, an error badly. */
static void conn_event(struct client *cl, int fd)
{
	char buf[64];
	ssize_t r;

	r = read(fd, buf, sizeof(buf));
	if (r < 0 && errno == EAGAIN)
		return;
	if (r > 0)
		return; /* the server never writes; wait for its FIN */
	if (r < 0)
		client_error(cl, errno);
	else
		cl->done++;
	close(fd);
	cl->in_flight--;
	if (fd < MAX_FD)
		cl->open[fd] = 0;
}

/*
 * Keep `parallel` connections to `to` in flight for duration_ms, then
 * wait (at most drain_ms) for those still open.
 */
static int run_window(const struct addr *to, long duration_ms, long drain_ms, long parallel,
		      struct window *w)
{
	struct client cl = {.to = *to};
	struct epoll_event evs[EVENTS];
	long long t0, t_end, t_drain, now;
	int i, k, n, wait_ms;

	cl.open = calloc(MAX_FD, 1);
	if (!cl.open)
		return -ENOMEM;
	cl.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (cl.epfd < 0) {
		k = -errno;
		free(cl.open);
		return k;
	}

	t0 = now_ns();
	t_end = t0 + duration_ms * 1000000LL;
	for (now = t0; now < t_end && !g_stop; now = now_ns()) {
		/* At most one try per free place: failures do not spin. */
		for (k = (int)parallel - cl.in_flight; k > 0; k--)
			conn_start(&cl);
		wait_ms = (int)((t_end - now) / 1000000) + 1;
		n = epoll_wait(cl.epfd, evs, EVENTS, wait_ms < 100 ? wait_ms : 100);
		for (i = 0; i < n; i++)
			conn_event(&cl, evs[i].data.fd);
	}
	w->conns = cl.done;
	w->secs = (double)(now - t0) / 1e9;

	/* Drain: every connection started is seen to its end (bounded). */
	t_drain = now + drain_ms * 1000000LL;
	while (cl.in_flight > 0 && now_ns() < t_drain) {
		n = epoll_wait(cl.epfd, evs, EVENTS, 100);
		for (i = 0; i < n; i++)
			conn_event(&cl, evs[i].data.fd);
	}
	w->total = cl.done;
	w->errors = cl.errors;
	w->first_err = cl.first_err;
	w->stuck = cl.in_flight;
	for (i = 0; i < MAX_FD && cl.in_flight > 0; i++) {
		if (cl.open[i]) {
			close(i);
			cl.in_flight--;
		}
	}
	close(cl.epfd);
	free(cl.open);
	return 0;
}

static void window_print(const struct window *w)
{
	printf("\"seconds\":%.6f,\"conns\":%llu,\"rate\":%.1f,\"total\":%llu,"
	       "\"errors\":%llu,\"first_errno\":\"%s\",\"stuck\":%d",
	       w->secs, w->conns, w->secs > 0 ? w->conns / w->secs : 0.0, w->total, w->errors,
	       w->first_err ? errno_name(w->first_err) : "none", w->stuck);
}

static int do_connect(int argc, char **argv)
{
	static const struct option opts[] = {{"to", required_argument, NULL, 't'},
					     {"duration-ms", required_argument, NULL, 'd'},
					     {"parallel", required_argument, NULL, 'p'},
					     {"drain-ms", required_argument, NULL, 'r'},
					     {}};
	long duration_ms = DEFAULT_DURATION_MS, drain_ms = DEFAULT_DRAIN_MS;
	long parallel = DEFAULT_PARALLEL;
	struct window w = {};
	int have_to = 0, c, err;
	struct addr to;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (bench_addr_parse(optarg, &to)) {
				fprintf(stderr,
					"connbench: --to '%s': expected "
					"ADDR:PORT\n",
					optarg);
				return 2;
			}
			have_to = 1;
			break;
		case 'd':
			if (parse_long(optarg, 10, 600000, &duration_ms))
				return 2;
			break;
		case 'p':
			if (parse_long(optarg, 1, MAX_PARALLEL, &parallel))
				return 2;
			break;
		case 'r':
			if (parse_long(optarg, 0, 60000, &drain_ms))
				return 2;
			break;
		default: return 2;
		}
	}
	if (!have_to) {
		fprintf(stderr, "connbench connect: --to is required\n");
		return 2;
	}
	err = run_window(&to, duration_ms, drain_ms, parallel, &w);
	if (err) {
		fprintf(stderr, "connbench: epoll: %s\n", strerror(-err));
		return 1;
	}
	printf("{\"parallel\":%ld,", parallel);
	window_print(&w);
	printf("}\n");
	return 0;
}

/* --- alternate --- */

#define MAX_TARGETS    8
#define NAME_LEN       32
#define SETTLE_STEP_MS 20
#define SETTLE_MAX_MS  1000
/* Below this much CPU per SETTLE_STEP_MS (5 %), a cgroup counts as idle. */
#define IDLE_US 1000

/* Where one variant's client runs and what it dials. */
struct target {
	char name[NAME_LEN];
	char cgroup[PATH_MAX]; /* the client's cgroup directory */
	char tree[PATH_MAX];   /* its parent: client and servers */
	struct addr to;
};

/* "NAME,CGROUP_DIR,ADDR:PORT" */
static int target_parse(const char *arg, struct target *t)
{
	const char *c1 = strchr(arg, ','), *c2 = c1 ? strrchr(arg, ',') : NULL;
	char *slash;
	size_t n;

	memset(t, 0, sizeof(*t));
	if (!c1 || c2 == c1 || (size_t)(c1 - arg) >= NAME_LEN || c1 == arg)
		return -EINVAL;
	memcpy(t->name, arg, (size_t)(c1 - arg));
	n = (size_t)(c2 - c1 - 1);
	if (!n || n >= sizeof(t->cgroup) || c1[1] != '/')
		return -EINVAL;
	memcpy(t->cgroup, c1 + 1, n);
	memcpy(t->tree, t->cgroup, n);
	slash = strrchr(t->tree, '/');
	if (!slash || slash == t->tree)
		return -EINVAL;
	*slash = '\0';
	return bench_addr_parse(c2 + 1, &t->to);
}

/* CPU time (us) used so far by the processes of a cgroup subtree. */
static long long cg_usage_us(const char *dir)
{
	char path[PATH_MAX + 16], line[128];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/cpu.stat", dir);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "usage_usec %lld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* Move this process into cgroup DIR; later sockets belong to it. */
static int cg_enter(const char *dir)
{
	char path[PATH_MAX + 16], pid[24];
	int fd, n, err = 0;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(pid, sizeof(pid), "%d\n", getpid());
	if (write(fd, pid, (size_t)n) != n)
		err = -errno;
	close(fd);
	return err;
}

/*
 * Wait until the cgroup DIR (the agent's) is idle: it drains the ring
 * buffer after a window, and that work belongs to the window, not to the
 * next one. Bounded by SETTLE_MAX_MS.
 */
static void cg_settle(const char *dir)
{
	struct timespec step = {.tv_nsec = SETTLE_STEP_MS * 1000000L};
	long long a = cg_usage_us(dir), b;
	int i;

	for (i = 0; i < SETTLE_MAX_MS / SETTLE_STEP_MS && a >= 0; i++) {
		nanosleep(&step, NULL);
		b = cg_usage_us(dir);
		if (b - a < IDLE_US)
			return;
		a = b;
	}
}

static int netns_enter(const char *name)
{
	char path[PATH_MAX];
	int fd, err = 0;

	if (strchr(name, '/'))
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET))
		err = -errno;
	close(fd);
	return err;
}

struct alt_opts {
	struct target targets[MAX_TARGETS]; /* [0] is the baseline */
	int n_targets;
	char idle_cg[PATH_MAX];
	long rounds, slice_ms, warmup_ms, drain_ms, parallel, budget_s;
};

/* One window of target t as a JSON line; round -1 is the warm-up. */
static int alt_slice(const struct alt_opts *o, const struct target *t, long round, long ms)
{
	long long u0, u1, a0 = 0, a1 = 0;
	struct window w = {};
	int err;

	err = cg_enter(t->cgroup);
	if (err) {
		fprintf(stderr, "connbench: join cgroup %s: %s\n", t->cgroup, strerror(-err));
		return err;
	}
	if (o->idle_cg[0])
		a0 = cg_usage_us(o->idle_cg);
	u0 = cg_usage_us(t->tree);
	err = run_window(&t->to, ms, o->drain_ms, o->parallel, &w);
	if (err)
		return err;
	if (o->idle_cg[0]) {
		cg_settle(o->idle_cg);
		a1 = cg_usage_us(o->idle_cg);
	}
	u1 = cg_usage_us(t->tree);

	printf("{\"round\":%ld,\"variant\":\"%s\",", round, t->name);
	window_print(&w);
	printf(",\"cpu_us\":%lld,\"agent_us\":%lld}\n", u1 - u0, a1 - a0);
	fflush(stdout);
	return 0;
}

static int alt_run(const struct alt_opts *o)
{
	long long t0 = now_ns();
	int n_var = o->n_targets - 1, i, err;
	long r;

	/* Warm-up: first connections, page faults, map entries. */
	for (i = 0; i < o->n_targets; i++) {
		err = alt_slice(o, &o->targets[i], -1, o->warmup_ms);
		if (err)
			return err;
	}

	/* A B A C A D ..., the order of B C D rotated each round. */
	for (r = 0; r < o->rounds && !g_stop; r++) {
		if (r >= 3 && now_ns() - t0 > o->budget_s * 1000000000LL) {
			fprintf(stderr,
				"connbench: time budget of %lds used up "
				"after %ld rounds\n",
				o->budget_s, r);
			break;
		}
		for (i = 0; i < n_var && !g_stop; i++) {
			err = alt_slice(o, &o->targets[0], r, o->slice_ms);
			if (!err)
				err = alt_slice(o, &o->targets[1 + (i + r) % n_var], r,
						o->slice_ms);
			if (err)
				return err;
		}
	}
	return 0;
}

static int do_alternate(int argc, char **argv)
{
	static const struct option opts[] = {{"netns", required_argument, NULL, 'n'},
					     {"base", required_argument, NULL, 'b'},
					     {"variant", required_argument, NULL, 'v'},
					     {"idle-cgroup", required_argument, NULL, 'i'},
					     {"rounds", required_argument, NULL, 'R'},
					     {"slice-ms", required_argument, NULL, 's'},
					     {"warmup-ms", required_argument, NULL, 'w'},
					     {"drain-ms", required_argument, NULL, 'r'},
					     {"parallel", required_argument, NULL, 'p'},
					     {"budget-s", required_argument, NULL, 'B'},
					     {}};
	static struct alt_opts o = {
		.n_targets = 1,
		.rounds = 10,
		.slice_ms = 300,
		.warmup_ms = 200,
		.drain_ms = DEFAULT_DRAIN_MS,
		.parallel = DEFAULT_PARALLEL,
		.budget_s = 120,
	};
	const char *netns = NULL;
	int have_base = 0, c, err;
	long *num;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		num = NULL;
		switch (c) {
		case 'n': netns = optarg; break;
		case 'b':
		case 'v':
			if (c == 'v' && o.n_targets == MAX_TARGETS)
				goto bad;
			if (target_parse(optarg, &o.targets[c == 'b' ? 0 : o.n_targets]))
				goto bad;
			if (c == 'b')
				have_base = 1;
			else
				o.n_targets++;
			break;
		case 'i': snprintf(o.idle_cg, sizeof(o.idle_cg), "%s", optarg); break;
		case 'R': num = &o.rounds; break;
		case 's': num = &o.slice_ms; break;
		case 'w': num = &o.warmup_ms; break;
		case 'r': num = &o.drain_ms; break;
		case 'p': num = &o.parallel; break;
		case 'B': num = &o.budget_s; break;
		default: return 2;
		}
		if (num && (parse_long(optarg, 1, 600000, num) ||
			    (num == &o.parallel && *num > MAX_PARALLEL)))
			goto bad;
	}
	if (!have_base || o.n_targets < 2) {
		fprintf(stderr, "connbench alternate: --base and at least one "
				"--variant are required\n");
		return 2;
	}
	if (netns) {
		err = netns_enter(netns);
		if (err) {
			fprintf(stderr, "connbench: netns %s: %s\n", netns, strerror(-err));
			return 1;
		}
	}
	return alt_run(&o) ? 1 : 0;
bad:
	fprintf(stderr, "connbench alternate: bad argument '%s'\n", optarg);
	return 2;
}

static void usage(void)
{
	fprintf(stderr, "usage: connbench serve --listen ADDR:PORT [--listen ...] "
			"[--timeout S]\n"
			"       connbench connect --to ADDR:PORT [--duration-ms MS] "
			"[--parallel N] [--drain-ms MS]\n"
			"       connbench alternate --base NAME,CGROUP,ADDR:PORT "
			"--variant NAME,CGROUP,ADDR:PORT [--variant ...]\n"
			"                 [--netns NAME] [--idle-cgroup DIR] "
			"[--rounds N] [--slice-ms MS] [--warmup-ms MS]\n"
			"                 [--drain-ms MS] [--parallel N] "
			"[--budget-s S]\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage();
		return 2;
	}
	stop_signals_install(0);
	signal(SIGPIPE, SIG_IGN);
	nofile_raise();
	if (!strcmp(argv[1], "serve"))
		return do_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "connect"))
		return do_connect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "alternate"))
		return do_alternate(argc - 1, argv + 1);
	usage();
	return 2;
}
