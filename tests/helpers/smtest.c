// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * smtest: drives real traffic for the integration tests and reports, as
 * JSON on stdout, what the application saw: which errno connect() gave,
 * which backend answered, what getpeername() and recvfrom() returned and
 * which trace id getsockopt(SOL_SOCKMESH) read.
 *
 *   smtest serve   --listen ADDR:PORT [--udp] [--tag TAG] [--max-conns N]
 *                  [--log FILE] [--timeout S] [--fastopen]
 *   smtest connect --to ADDR:PORT [--count N] [--parallel P] [--udp]
 *                  [--connected|--unconnected] [--sendmsg|--sendmmsg]
 *                  [--send BYTES]
 *                  [--family 4|6|mapped] [--fastopen|--fastopen-connect]
 *                  [--timeout-ms MS] [--hold] [--hold-max S]
 *   smtest trace   --to ADDR:PORT [--family 4|6|mapped] [--timeout-ms MS]
 *                  [--hold]
 *
 * Addresses are "198.18.1.1:80" or "[fd00::1]:80"; "[::]:80" is a
 * dual-stack listener. Every blocking call is bounded by a timeout, so a
 * test never hangs on this program.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_SERVE_S	   60
#define DEFAULT_HOLD_MAX_S 300
#define MAX_TRACE_IDS	   100
#define KEY_LEN		   64
#define REPLY_LEN	   256
#define DEFAULT_PAYLOAD	   "hello from smtest\n"

/* --- small utilities --- */

/* Write a JSON string literal, escaping what JSON requires. */
static void json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	for (; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* --- replies and waits --- */

/* The first line of src, cut to fit dst. */
static void first_line(char *dst, size_t dlen, const char *src)
{
	size_t n = strcspn(src, "\n");

	if (n >= dlen)
		n = dlen - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * Read until EOF (or, for UDP, one datagram) and keep the first line as
 * the tag; 0 or a positive errno. Bounded by deadline_us and by the
 * socket's receive timeout.
 */
static int recv_tag(int fd, char *tag, size_t tlen, long long deadline_us)
{
	char buf[REPLY_LEN], chunk[4096];
	size_t have = 0, take;
	ssize_t n;

	for (;;) {
		if (now_us() > deadline_us)
			return ETIMEDOUT;
		n = recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return timeout_errno(errno);
		}
		if (n == 0)
			break;
		/* A long reply is drained; only its start is kept. */
		take = sizeof(buf) - 1 - have;
		if (take > (size_t)n)
			take = n;
		memcpy(buf + have, chunk, take);
		have += take;
	}
	buf[have] = '\0';
	first_line(tag, tlen, buf);
	return 0;
}

/*
 * Wait until stdin reaches EOF, a stop signal arrives or max_s passes.
 * Only a pipe, socket or terminal on stdin counts: a background job's
 * /dev/null would end the wait at once, so then only a signal does.
 */
static void wait_release(int max_s)
{
	long long deadline = now_us() + (long long)max_s * 1000000;
	struct pollfd p = {.fd = 0, .events = POLLIN};
	struct stat st;
	char buf[256];

	if (fstat(0, &st) < 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(0)))
		p.fd = -1; /* poll() ignores it, and just sleeps */

	while (!g_stop && now_us() < deadline) {
		if (poll(&p, 1, 200) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (p.revents & (POLLIN | POLLHUP)) {
			if (read(0, buf, sizeof(buf)) <= 0)
				return;
		} else if (p.revents) {
			return;
		}
	}
}

/* --- tallies: string -> count, printed as a JSON object --- */

struct tally_ent {
	char key[KEY_LEN];
	long n;
};

struct tally {
	struct tally_ent *ent;
	size_t n, cap;
};

static void tally_add(struct tally *t, const char *key)
{
	struct tally_ent *grown;
	size_t i;

	for (i = 0; i < t->n; i++) {
		if (!strncmp(t->ent[i].key, key, KEY_LEN - 1)) {
			t->ent[i].n++;
			return;
		}
	}
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 8;
		grown = realloc(t->ent, t->cap * sizeof(*grown));
		if (!grown) {
			perror("smtest: realloc");
			exit(1);
		}
		t->ent = grown;
	}
	snprintf(t->ent[t->n].key, KEY_LEN, "%s", key);
	t->ent[t->n].n = 1;
	t->n++;
}

static void tally_json(FILE *f, const struct tally *t)
{
	size_t i;

	fputc('{', f);
	for (i = 0; i < t->n; i++) {
		if (i)
			fputs(", ", f);
		json_str(f, t->ent[i].key);
		fprintf(f, ": %ld", t->ent[i].n);
	}
	fputc('}', f);
}

/* --- connect --- */

struct client_cfg {
	struct addr to;
	long count;
	long parallel;
	int udp;
	int unconnected;
	int sendmmsg;
	int sendmsg;
	int fastopen;
	int fastopen_connect;
	int hold;
	long hold_max_s;
	int timeout_ms;
	char *payload;
	size_t payload_len;
};

/* What one connection (or datagram exchange) saw. */
struct conn_result {
	int err;	   /* 0, or the errno of the step that failed */
	long long fail_us; /* from the connect() call to the failure */
	char tag[KEY_LEN];
	char peer[ADDR_STRLEN];
	char source[ADDR_STRLEN];
	char trace[SOCKMESH_TRACE_HEX_LEN];
	int trace_err;
};

struct client_stats {
	pthread_mutex_t lock;
	long count;
	struct tally results, tags, peers, sources, trace_errors;
	char trace_ids[MAX_TRACE_IDS][SOCKMESH_TRACE_HEX_LEN];
	int ntrace;
	long long max_fail_us;
};

static void stats_record(struct client_stats *st, const struct conn_result *r)
{
	pthread_mutex_lock(&st->lock);
	st->count++;
	tally_add(&st->results, r->err ? errno_name(r->err) : "ok");
	if (r->err && r->fail_us > st->max_fail_us)
		st->max_fail_us = r->fail_us;
	if (r->tag[0])
		tally_add(&st->tags, r->tag);
	if (r->peer[0])
		tally_add(&st->peers, r->peer);
	if (r->source[0])
		tally_add(&st->sources, r->source);
	if (r->trace[0] && st->ntrace < MAX_TRACE_IDS)
		memcpy(st->trace_ids[st->ntrace++], r->trace, SOCKMESH_TRACE_HEX_LEN);
	if (r->trace_err)
		tally_add(&st->trace_errors, errno_name(r->trace_err));
	pthread_mutex_unlock(&st->lock);
}

static void stats_free(struct client_stats *st)
{
	free(st->results.ent);
	free(st->tags.ent);
	free(st->peers.ent);
	free(st->sources.ent);
	free(st->trace_errors.ent);
	pthread_mutex_destroy(&st->lock);
}

static void stats_json(FILE *f, const struct client_stats *st, long long elapsed_us, long held)
{
	int i;

	fprintf(f, "{\"count\": %ld, \"results\": ", st->count);
	tally_json(f, &st->results);
	fputs(", \"tags\": ", f);
	tally_json(f, &st->tags);
	fputs(", \"peers\": ", f);
	tally_json(f, &st->peers);
	fputs(", \"reply_sources\": ", f);
	tally_json(f, &st->sources);
	fputs(", \"trace_ids\": [", f);
	for (i = 0; i < st->ntrace; i++)
		fprintf(f, "%s\"%s\"", i ? ", " : "", st->trace_ids[i]);
	fputs("], \"trace_errors\": ", f);
	tally_json(f, &st->trace_errors);
	if (held >= 0)
		fprintf(f, ", \"held\": %ld", held);
	fprintf(f, ", \"elapsed_ms\": %lld, \"first_errno_ms\": %.3f}\n", elapsed_us / 1000,
		st->max_fail_us / 1000.0);
}

static void note_socket(int fd, struct conn_result *r)
{
	sock_addr_get(fd, END_PEER, r->peer, sizeof(r->peer));
	r->trace_err = trace_id_get(fd, r->trace);
}

/*
 * Open the connection: connect(), or with --fastopen a sendto() with
 * MSG_FASTOPEN that carries the payload; *sent says how much went out.
 */
static int tcp_open(const struct client_cfg *c, int fd, size_t *sent)
{
	const struct sockaddr *to = (const struct sockaddr *)&c->to.ss;
	int one = 1;
	ssize_t n;

	*sent = 0;
	if (c->fastopen_connect &&
	    setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)) < 0)
		return errno;
	if (c->fastopen && c->payload_len) {
		n = sendto(fd, c->payload, c->payload_len, MSG_FASTOPEN | MSG_NOSIGNAL, to,
			   c->to.len);
		if (n < 0)
			return timeout_errno(errno);
		*sent = n;
		return 0;
	}
	if (connect(fd, to, c->to.len) < 0)
		return timeout_errno(errno);
	return 0;
}

/*
 * One TCP connection: open, send the payload, shutdown(SHUT_WR), read the
 * reply. With --hold the open socket is handed back in *keep instead.
 */
static void tcp_once(const struct client_cfg *c, struct conn_result *r, int *keep)
{
	long long t0, deadline;
	size_t sent;
	int fd;

	fd = socket(c->to.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r->err = errno;
		return;
	}
	sock_timeouts(fd, c->timeout_ms);

	t0 = now_us();
	r->err = tcp_open(c, fd, &sent);
	if (r->err)
		goto fail;
	if (keep) {
		note_socket(fd, r);
		*keep = fd;
		return;
	}

	/* A fast-open socket is connected only once its data went out. */
	r->err = send_all(fd, c->payload + sent, c->payload_len - sent, 0, NULL);
	if (r->err)
		goto fail;
	note_socket(fd, r);

	shutdown(fd, SHUT_WR);
	deadline = now_us() + (long long)c->timeout_ms * 1000;
	r->err = recv_tag(fd, r->tag, sizeof(r->tag), deadline);
	if (r->err)
		goto fail;
	close(fd);
	return;
fail:
	r->fail_us = now_us() - t0;
	close(fd);
}

static int udp_send(const struct client_cfg *c, int fd)
{
	struct iovec iov = {.iov_base = c->payload, .iov_len = c->payload_len};
	struct mmsghdr m;

	if (!c->unconnected) {
		if (send(fd, c->payload, c->payload_len, 0) < 0)
			return timeout_errno(errno);
		return 0;
	}
	memset(&m, 0, sizeof(m));
	m.msg_hdr.msg_name = (void *)&c->to.ss;
	m.msg_hdr.msg_namelen = c->to.len;
	m.msg_hdr.msg_iov = &iov;
	m.msg_hdr.msg_iovlen = 1;
	if (c->sendmsg) {
		if (sendmsg(fd, &m.msg_hdr, 0) < 0)
			return timeout_errno(errno);
		return 0;
	}
	if (!c->sendmmsg) {
		if (sendto(fd, c->payload, c->payload_len, 0, (const struct sockaddr *)&c->to.ss,
			   c->to.len) < 0)
			return timeout_errno(errno);
		return 0;
	}
	if (sendmmsg(fd, &m, 1, 0) != 1)
		return timeout_errno(errno);
	return 0;
}

/*
 * One UDP exchange on a fresh socket: send a datagram (connected, sendto
 * or sendmmsg) and wait for the reply, noting the source recvfrom() gives.
 */
static void udp_once(const struct client_cfg *c, struct conn_result *r, int *keep)
{
	struct sockaddr_storage src;
	char buf[REPLY_LEN];
	socklen_t slen = sizeof(src);
	long long t0;
	ssize_t n;
	int fd;

	memset(&src, 0, sizeof(src));
	fd = socket(c->to.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r->err = errno;
		return;
	}
	sock_timeouts(fd, c->timeout_ms);

	t0 = now_us();
	if (!c->unconnected) {
		if (connect(fd, (const struct sockaddr *)&c->to.ss, c->to.len) < 0) {
			r->err = errno;
			goto fail;
		}
		note_socket(fd, r);
		if (keep) {
			*keep = fd;
			return;
		}
	}
	r->err = udp_send(c, fd);
	if (r->err)
		goto fail;

	n = recvfrom(fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&src, &slen);
	if (n < 0) {
		r->err = timeout_errno(errno);
		goto fail;
	}
	buf[n] = '\0';
	first_line(r->tag, sizeof(r->tag), buf);
	addr_format(&src, r->source, sizeof(r->source));
	close(fd);
	return;
fail:
	r->fail_us = now_us() - t0;
	close(fd);
}

struct worker {
	pthread_t thread;
	const struct client_cfg *cfg;
	struct client_stats *stats;
	int *held; /* --hold: where connection i keeps its fd */
	long first, n;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct conn_result r;
	long i;

	for (i = w->first; i < w->first + w->n; i++) {
		int *keep = w->held ? &w->held[i] : NULL;

		memset(&r, 0, sizeof(r));
		if (w->cfg->udp)
			udp_once(w->cfg, &r, keep);
		else
			tcp_once(w->cfg, &r, keep);
		stats_record(w->stats, &r);
	}
	return NULL;
}

static void usage_connect(void)
{
	fprintf(stderr, "usage: smtest connect --to ADDR:PORT [--count N] "
			"[--parallel P] [--udp]\n"
			"       [--connected|--unconnected] [--sendmsg|--sendmmsg] "
			"[--send BYTES] [--family 4|6|mapped]\n"
			"       [--fastopen|--fastopen-connect] [--timeout-ms MS] "
			"[--hold] [--hold-max S]\n");
}

/* BYTES bytes of 'x' ending in a newline, so the server stops there. */
static char *payload_make(long bytes)
{
	char *p = malloc(bytes ? bytes : 1);

	if (!p) {
		perror("smtest: malloc");
		exit(1);
	}
	if (bytes) {
		memset(p, 'x', bytes - 1);
		p[bytes - 1] = '\n';
	}
	return p;
}

static int connect_args(int argc, char **argv, struct client_cfg *c)
{
	static const struct option opts[] = {
		{"to", required_argument, NULL, 't'},
		{"count", required_argument, NULL, 'n'},
		{"parallel", required_argument, NULL, 'P'},
		{"udp", no_argument, NULL, 'u'},
		{"connected", no_argument, NULL, 'c'},
		{"unconnected", no_argument, NULL, 'U'},
		{"sendmsg", no_argument, NULL, 'S'},
		{"sendmmsg", no_argument, NULL, 'M'},
		{"send", required_argument, NULL, 's'},
		{"family", required_argument, NULL, 'f'},
		{"fastopen", no_argument, NULL, 'F'},
		{"fastopen-connect", no_argument, NULL, 'C'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{"hold", no_argument, NULL, 'h'},
		{"hold-max", required_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	enum family fam = FAM_AUTO;
	const char *to = NULL;
	long bytes = -1, v;
	int opt;

	c->count = 1;
	c->parallel = 1;
	c->timeout_ms = DEFAULT_TIMEOUT_MS;
	c->hold_max_s = DEFAULT_HOLD_MAX_S;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': to = optarg; break;
		case 'n':
			if (parse_long(optarg, 1, 10000000, &c->count))
				return -EINVAL;
			break;
		case 'P':
			if (parse_long(optarg, 1, 1024, &c->parallel))
				return -EINVAL;
			break;
		case 'u': c->udp = 1; break;
		case 'c': c->unconnected = 0; break;
		case 'U': c->unconnected = 1; break;
		case 'S':
			c->sendmsg = 1;
			c->unconnected = 1;
			break;
		case 'M':
			c->sendmmsg = 1;
			c->unconnected = 1;
			break;
		case 's':
			if (parse_long(optarg, 0, 1L << 30, &bytes))
				return -EINVAL;
			break;
		case 'f':
			if (family_parse(optarg, &fam))
				return -EINVAL;
			break;
		case 'F': c->fastopen = 1; break;
		case 'C': c->fastopen_connect = 1; break;
		case 'T':
			if (parse_long(optarg, 1, 600000, &v))
				return -EINVAL;
			c->timeout_ms = v;
			break;
		case 'h': c->hold = 1; break;
		case 'H':
			if (parse_long(optarg, 1, 86400, &c->hold_max_s))
				return -EINVAL;
			break;
		default: return -EINVAL;
		}
	}
	if (!to || optind != argc) {
		fprintf(stderr, "smtest connect: --to ADDR:PORT is required\n");
		return -EINVAL;
	}
	if (addr_parse(to, fam, &c->to)) {
		fprintf(stderr,
			"smtest connect: bad address '%s' for this "
			"family\n",
			to);
		return -EINVAL;
	}
	if (c->udp && (c->fastopen || c->fastopen_connect)) {
		fprintf(stderr, "smtest connect: fast open is TCP only\n");
		return -EINVAL;
	}
	if (c->hold && c->unconnected) {
		fprintf(stderr, "smtest connect: --hold needs connected "
				"sockets\n");
		return -EINVAL;
	}
	if (bytes > 65507 && c->udp) {
		fprintf(stderr, "smtest connect: a datagram holds at most "
				"65507 bytes\n");
		return -EINVAL;
	}
	if (c->parallel > c->count)
		c->parallel = c->count;
	if (bytes < 0) {
		c->payload = strdup(DEFAULT_PAYLOAD);
		c->payload_len = strlen(DEFAULT_PAYLOAD);
	} else {
		c->payload = payload_make(bytes);
		c->payload_len = bytes;
	}
	return 0;
}

static int held_wait_close(int *held, long count, long max_s)
{
	long i, k = 0;

	for (i = 0; i < count; i++)
		k += held[i] >= 0;
	printf("held %ld\n", k);
	fflush(stdout);
	wait_release(max_s);
	for (i = 0; i < count; i++)
		if (held[i] >= 0)
			close(held[i]);
	return k;
}

/*
 * Run the connections on cfg->parallel threads, split as evenly as we
 * can; 0, or -errno if a thread could not be started (the ones that were
 * are waited for).
 */
static int workers_run(const struct client_cfg *cfg, struct client_stats *st, int *held)
{
	long i, started, per, extra, next = 0;
	struct worker *w;
	int err = 0;

	w = calloc(cfg->parallel, sizeof(*w));
	if (!w)
		return -ENOMEM;
	per = cfg->count / cfg->parallel;
	extra = cfg->count % cfg->parallel;
	for (i = 0; i < cfg->parallel; i++) {
		w[i].cfg = cfg;
		w[i].stats = st;
		w[i].held = held;
		w[i].first = next;
		w[i].n = per + (i < extra);
		next += w[i].n;
	}

	if (cfg->parallel == 1) {
		worker_run(&w[0]);
		goto out;
	}
	for (started = 0; started < cfg->parallel; started++) {
		err = -pthread_create(&w[started].thread, NULL, worker_run, &w[started]);
		if (err)
			break;
	}
	for (i = 0; i < started; i++)
		pthread_join(w[i].thread, NULL);
out:
	free(w);
	return err;
}

static int cmd_connect(int argc, char **argv)
{
	struct client_cfg cfg;
	struct client_stats st;
	long i, held_n = -1;
	int *held = NULL, err, ret = 1;
	long long t0;

	memset(&cfg, 0, sizeof(cfg));
	memset(&st, 0, sizeof(st));
	pthread_mutex_init(&st.lock, NULL);
	if (connect_args(argc, argv, &cfg)) {
		usage_connect();
		ret = 2;
		goto out;
	}
	if (cfg.hold) {
		stop_signals_install(SIGHUP);
		held = malloc(cfg.count * sizeof(*held));
		if (!held) {
			perror("smtest: malloc");
			goto out;
		}
		for (i = 0; i < cfg.count; i++)
			held[i] = -1;
	}

	t0 = now_us();
	err = workers_run(&cfg, &st, held);
	if (err) {
		fprintf(stderr, "smtest: threads: %s\n", strerror(-err));
		goto out;
	}
	if (held)
		held_n = held_wait_close(held, cfg.count, cfg.hold_max_s);
	stats_json(stdout, &st, now_us() - t0, held_n);
	fflush(stdout);
	ret = 0;
out:
	stats_free(&st);
	free(held);
	free(cfg.payload);
	return ret;
}

/* --- trace --- */

static void trace_json(int err, int fd)
{
	char local[ADDR_STRLEN] = "", peer[ADDR_STRLEN] = "";
	char hex[SOCKMESH_TRACE_HEX_LEN] = "";
	int terr = 0;

	if (!err) {
		sock_addr_get(fd, END_LOCAL, local, sizeof(local));
		sock_addr_get(fd, END_PEER, peer, sizeof(peer));
		terr = trace_id_get(fd, hex);
	}
	printf("{\"result\": \"%s\", \"trace_id\": ", err ? errno_name(err) : "ok");
	if (hex[0])
		printf("\"%s\"", hex);
	else
		printf("null");
	if (terr)
		printf(", \"trace_error\": \"%s\"", errno_name(terr));
	printf(", \"local\": ");
	json_str(stdout, local);
	printf(", \"peer\": ");
	json_str(stdout, peer);
	printf("}\n");
	fflush(stdout);
}

static int cmd_trace(int argc, char **argv)
{
	static const struct option opts[] = {
		{"to", required_argument, NULL, 't'},
		{"family", required_argument, NULL, 'f'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{"hold", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	enum family fam = FAM_AUTO;
	long timeout_ms = DEFAULT_TIMEOUT_MS;
	char tag[KEY_LEN];
	const char *to = NULL;
	int opt, fd, err, hold = 0;
	struct addr a;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': to = optarg; break;
		case 'f':
			if (family_parse(optarg, &fam))
				goto usage;
			break;
		case 'T':
			if (parse_long(optarg, 1, 600000, &timeout_ms))
				goto usage;
			break;
		case 'h': hold = 1; break;
		default: goto usage;
		}
	}
	if (!to || optind != argc || addr_parse(to, fam, &a))
		goto usage;
	if (hold)
		stop_signals_install(SIGHUP);

	fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("smtest trace: socket");
		return 1;
	}
	sock_timeouts(fd, timeout_ms);
	err = connect(fd, (struct sockaddr *)&a.ss, a.len) ? errno : 0;
	trace_json(timeout_errno(err), fd);
	if (err) {
		close(fd);
		return 1;
	}

	/* --hold: keep the connection open for inspection first. */
	if (hold)
		wait_release(DEFAULT_HOLD_MAX_S);
	err = send_all(fd, DEFAULT_PAYLOAD, strlen(DEFAULT_PAYLOAD), 0, NULL);
	if (!err) {
		shutdown(fd, SHUT_WR);
		err = recv_tag(fd, tag, sizeof(tag), now_us() + timeout_ms * 1000);
	}
	close(fd);
	if (err) {
		fprintf(stderr, "smtest trace: exchange with %s: %s\n", to, errno_name(err));
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: smtest trace --to ADDR:PORT "
			"[--family 4|6|mapped] [--timeout-ms MS] [--hold]\n");
	return 2;
}

/* --- serve --- */

struct server {
	struct addr listen;
	int udp;
	int fastopen;
	const char *tag;
	long max_conns;
	long timeout_s;
	int fd;
	int logfd;
	long served;
};

/* One accepted TCP connection still reading its request. */
struct sconn {
	int fd;
	long bytes;
	char peer[ADDR_STRLEN];
	char local[ADDR_STRLEN];
};

/* One JSON line per connection or datagram, written with one write(). */
static void log_conn(struct server *s, const char *peer, const char *local, int fd, long bytes)
{
	char hex[SOCKMESH_TRACE_HEX_LEN] = "";
	char *line = NULL;
	size_t len = 0;
	int terr = 0;
	FILE *f;

	if (s->logfd < 0)
		return;
	if (fd >= 0)
		terr = trace_id_get(fd, hex);
	f = open_memstream(&line, &len);
	if (!f)
		return;
	fprintf(f, "{\"proto\": \"%s\", \"peer\": ", s->udp ? "udp" : "tcp");
	json_str(f, peer);
	fputs(", \"local\": ", f);
	json_str(f, local);
	fputs(", \"trace_id\": ", f);
	if (hex[0])
		fprintf(f, "\"%s\"", hex);
	else
		fputs("null", f);
	if (terr)
		fprintf(f, ", \"trace_error\": \"%s\"", errno_name(terr));
	fprintf(f, ", \"bytes_received\": %ld}\n", bytes);
	fclose(f);
	if (write(s->logfd, line, len) != (ssize_t)len)
		perror("smtest serve: log");
	free(line);
}

static int listen_open(struct server *s)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&s->listen.ss;
	int one = 1, zero = 0, qlen = 256;
	int type = s->udp ? SOCK_DGRAM : SOCK_STREAM;
	int fd;

	fd = socket(s->listen.ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->listen.ss.ss_family == AF_INET6) {
		/* "[::]" takes IPv4 too, whatever the sysctl default says. */
		if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (s->udp)
			setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
	} else if (s->udp) {
		setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	}
	if (s->fastopen && !s->udp)
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen));
	if (bind(fd, (struct sockaddr *)&s->listen.ss, s->listen.len) < 0 ||
	    (!s->udp && listen(fd, 4096) < 0)) {
		int err = -errno;

		close(fd);
		return err;
	}
	s->fd = fd;
	return 0;
}

/* Reply to a finished request, log it and close the connection. */
static void sconn_finish(struct server *s, struct sconn *c)
{
	char reply[KEY_LEN + 2];
	int n;

	n = snprintf(reply, sizeof(reply), "%s\n", s->tag);
	if (send(c->fd, reply, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EPIPE &&
	    errno != ECONNRESET)
		perror("smtest serve: send");
	log_conn(s, c->peer, c->local, c->fd, c->bytes);
	close(c->fd);
	free(c);
	s->served++;
}

/* Read what is there; the request ends at a newline or at EOF. */
static void sconn_read(struct server *s, struct sconn *c)
{
	char buf[16384];
	ssize_t n;

	for (;;) {
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0 || memchr(buf, '\n', n)) {
			if (n > 0)
				c->bytes += n;
			sconn_finish(s, c);
			return;
		}
		c->bytes += n;
	}
}

static void tcp_accept_some(struct server *s, int efd)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
	struct sockaddr_storage ss;
	struct sconn *c;
	socklen_t sl;
	int i, fd;

	/* Take a batch, then let the open connections have a turn. */
	for (i = 0; i < 64; i++) {
		memset(&ss, 0, sizeof(ss));
		sl = sizeof(ss);
		fd = accept4(s->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				perror("smtest serve: accept");
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		addr_format(&ss, c->peer, sizeof(c->peer));
		sock_addr_get(fd, END_LOCAL, c->local, sizeof(c->local));
		ev.data.ptr = c;
		if (epoll_ctl(efd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

static int serve_tcp(struct server *s, long long deadline)
{
	struct epoll_event ev = {.events = EPOLLIN}, evs[256];
	int efd, n, i, wait_ms;

	efd = epoll_create1(EPOLL_CLOEXEC);
	if (efd < 0)
		return -errno;
	ev.data.ptr = NULL; /* NULL marks the listener */
	epoll_ctl(efd, EPOLL_CTL_ADD, s->fd, &ev);

	while (!g_stop && (!s->max_conns || s->served < s->max_conns)) {
		wait_ms = (deadline - now_us()) / 1000;
		if (wait_ms <= 0)
			break;
		n = epoll_wait(efd, evs, 256, wait_ms < 500 ? wait_ms : 500);
		for (i = 0; i < n; i++) {
			if (!evs[i].data.ptr)
				tcp_accept_some(s, efd);
			else
				sconn_read(s, evs[i].data.ptr);
			if (s->max_conns && s->served >= s->max_conns)
				break;
		}
	}
	close(efd);
	return 0;
}

/* The address a datagram was sent to, from its IP(V6)_PKTINFO. */
static void pktinfo_dst(struct msghdr *m, const struct server *s, struct sockaddr_storage *dst)
{
	struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)dst;
	struct sockaddr_in *d4 = (struct sockaddr_in *)dst;
	struct cmsghdr *cm;

	memcpy(dst, &s->listen.ss, sizeof(*dst));
	for (cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo *pi = (void *)CMSG_DATA(cm);

			d4->sin_addr = pi->ipi_addr;
		} else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo *pi = (void *)CMSG_DATA(cm);

			d6->sin6_addr = pi->ipi6_addr;
		}
	}
}

/*
 * Answer from the address the datagram went to, not from whatever source
 * the routing table would pick for a wildcard socket.
 */
static void udp_reply(struct server *s, const struct sockaddr_storage *to, socklen_t tolen,
		      const struct sockaddr_storage *from)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
		struct cmsghdr align;
	} ctl;
	char reply[KEY_LEN + 2];
	struct iovec iov = {.iov_base = reply};
	struct msghdr m = {.msg_name = (void *)to,
			   .msg_namelen = tolen,
			   .msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.buf};
	struct cmsghdr *cm;

	iov.iov_len = snprintf(reply, sizeof(reply), "%s\n", s->tag);
	memset(&ctl, 0, sizeof(ctl));
	cm = (struct cmsghdr *)ctl.buf;
	if (from->ss_family == AF_INET6) {
		struct in6_pktinfo pi = {
			.ipi6_addr = ((struct sockaddr_in6 *)from)->sin6_addr,
		};

		m.msg_controllen = CMSG_SPACE(sizeof(pi));
		cm->cmsg_level = IPPROTO_IPV6;
		cm->cmsg_type = IPV6_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
	} else {
		struct in_pktinfo pi = {
			.ipi_spec_dst = ((struct sockaddr_in *)from)->sin_addr,
		};

		m.msg_controllen = CMSG_SPACE(sizeof(pi));
		cm->cmsg_level = IPPROTO_IP;
		cm->cmsg_type = IP_PKTINFO;
		cm->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
	}
	if (sendmsg(s->fd, &m, MSG_DONTWAIT) < 0)
		perror("smtest serve: sendmsg");
}

static int serve_udp(struct server *s, long long deadline)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
			 CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} ctl;
	char buf[65536], peer[ADDR_STRLEN], local[ADDR_STRLEN];
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	struct sockaddr_storage from, dst;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr m;
	int wait_ms;
	ssize_t n;

	while (!g_stop && (!s->max_conns || s->served < s->max_conns)) {
		wait_ms = (deadline - now_us()) / 1000;
		if (wait_ms <= 0)
			break;
		if (poll(&p, 1, wait_ms < 500 ? wait_ms : 500) <= 0)
			continue;

		memset(&m, 0, sizeof(m));
		m.msg_name = &from;
		m.msg_namelen = sizeof(from);
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = ctl.buf;
		m.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(s->fd, &m, MSG_DONTWAIT);
		if (n < 0)
			continue;

		pktinfo_dst(&m, s, &dst);
		udp_reply(s, &from, m.msg_namelen, &dst);
		addr_format(&from, peer, sizeof(peer));
		addr_format(&dst, local, sizeof(local));
		log_conn(s, peer, local, -1, n);
		s->served++;
	}
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"udp", no_argument, NULL, 'u'},
		{"tag", required_argument, NULL, 't'},
		{"max-conns", required_argument, NULL, 'm'},
		{"log", required_argument, NULL, 'L'},
		{"timeout", required_argument, NULL, 'T'},
		{"fastopen", no_argument, NULL, 'F'},
		{NULL, 0, NULL, 0},
	};
	struct server s = {.tag = "smtest", .timeout_s = DEFAULT_SERVE_S, .fd = -1, .logfd = -1};
	const char *listen_s = NULL, *log_path = NULL;
	long long t0, deadline;
	int opt, err;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen_s = optarg; break;
		case 'u': s.udp = 1; break;
		case 't': s.tag = optarg; break;
		case 'm':
			if (parse_long(optarg, 1, 100000000, &s.max_conns))
				goto usage;
			break;
		case 'L': log_path = optarg; break;
		case 'T':
			if (parse_long(optarg, 1, 86400, &s.timeout_s))
				goto usage;
			break;
		case 'F': s.fastopen = 1; break;
		default: goto usage;
		}
	}
	if (!listen_s || optind != argc || addr_parse(listen_s, FAM_AUTO, &s.listen))
		goto usage;
	if (strlen(s.tag) >= KEY_LEN - 1 || strchr(s.tag, '\n')) {
		fprintf(stderr,
			"smtest serve: --tag: one line, at most %d "
			"characters\n",
			KEY_LEN - 2);
		return 2;
	}

	stop_signals_install(SIGHUP);
	if (log_path) {
		s.logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (s.logfd < 0) {
			fprintf(stderr, "smtest serve: log '%s': %s\n", log_path, strerror(errno));
			return 1;
		}
	}
	err = listen_open(&s);
	if (err) {
		fprintf(stderr, "smtest serve: listen %s: %s\n", listen_s, strerror(-err));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);

	t0 = now_us();
	deadline = t0 + s.timeout_s * 1000000;
	err = s.udp ? serve_udp(&s, deadline) : serve_tcp(&s, deadline);
	if (err) {
		fprintf(stderr, "smtest serve: %s\n", strerror(-err));
		return 1;
	}
	printf("{\"served\": %ld, \"elapsed_ms\": %lld}\n", s.served, (now_us() - t0) / 1000);
	close(s.fd);
	if (s.logfd >= 0)
		close(s.logfd);
	return 0;
usage:
	fprintf(stderr, "usage: smtest serve --listen ADDR:PORT [--udp] [--tag TAG] "
			"[--max-conns N]\n"
			"       [--log FILE] [--timeout S] [--fastopen]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: smtest serve|connect|trace ...\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	nofile_raise();
	/* Subcommand options start after the subcommand name. */
	if (!strcmp(argv[1], "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "connect"))
		return cmd_connect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "trace"))
		return cmd_trace(argc - 1, argv + 1);
	fprintf(stderr,
		"smtest: unknown command '%s' (serve, connect, "
		"trace)\n",
		argv[1]);
	return 2;
}
