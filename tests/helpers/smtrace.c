// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * smtrace: TCP traffic for the trace id tests (tests/netns/test_trace_*).
 * Both ends read the connection's trace id with getsockopt(SOL_SOCKMESH)
 * and count every byte they move, so a test can hold the flow log's close
 * records and the ids against what the applications saw.
 *
 *   smtrace serve   --listen ADDR:PORT [--log FILE] [--fastopen]
 *                   [--timeout S] [--idle S]
 *   smtrace connect --to ADDR:PORT [--send N] [--reply N]
 *                   [--closer client|server] [--step] [--count N]
 *                   [--parallel P] [--fastopen|--fastopen-connect]
 *                   [--pause FILE] [--close-delay MS] [--timeout-ms MS]
 *   smtrace opts    --to ADDR:PORT [--timeout-ms MS]
 *   smtrace http    --to ADDR:PORT [--timeout-ms MS]
 *
 * The exchange on one connection:
 *
 *   client: "smtrace SEND REPLY CLOSER DELAY\n", then SEND body bytes
 *   server: "ok\n" once it has the first line; after the body it reads
 *           its trace id and answers "id HEX\n" (or "id -ERRNO\n")
 *           followed by REPLY bytes
 *   CLOSER "c": the client closes first, the server on its EOF;
 *          "s": the server closes right after its reply, the client on
 *          its EOF
 *   DELAY  milliseconds the second end waits between its EOF and its
 *          close(): its FIN comes well after its ACK of the first FIN
 *
 * Body bytes follow a fixed pattern, so each end can tell whether what
 * arrived is exactly what was sent. --step makes the client wait for "ok"
 * before the body: with Fast Open the first line rides on the SYN and the
 * body follows the handshake. Without it the first line and the body go
 * out together, in full-size segments from the first. --pause FILE stops the client after "ok"
 * until FILE exists (it prints "paused"): the connection is open and used
 * before that and after.
 *
 * connect prints one JSON object: {"count", "ok", "conns": [{"result",
 * "trace_id", "trace_error", "server_trace_id", "sent", "received",
 * "intact", "local", "peer", "elapsed_ms"}, ...]}. serve logs one JSON
 * line per connection: {"peer", "local", "trace_id", "trace_error",
 * "received", "sent", "intact", "closer"}. Every blocking call is bounded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_SERVE_S	   120
#define PAUSE_MAX_S	   280
#define MAX_CONNS	   1000
#define LINE_LEN	   128
#define CHUNK		   65536

static void delay_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	while (ms > 0 && nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The body's byte at offset i. */
static unsigned char pattern(long i)
{
	return (unsigned char)(i % 251);
}

/* --- addresses --- */

/* Both ends' addresses; "?" for one the socket no longer has. */
static void sock_names(int fd, char *local, char *peer)
{
	if (sock_addr_get(fd, END_LOCAL, local, ADDR_STRLEN))
		snprintf(local, ADDR_STRLEN, "?");
	if (sock_addr_get(fd, END_PEER, peer, ADDR_STRLEN))
		snprintf(peer, ADDR_STRLEN, "?");
}

/* --- socket helpers: 0 or a positive errno --- */

/* Send n pattern bytes. */
static int send_body(int fd, long n, long *count)
{
	unsigned char buf[CHUNK];
	long off = 0, take, i;
	int err;

	while (off < n) {
		take = n - off < CHUNK ? n - off : CHUNK;
		for (i = 0; i < take; i++)
			buf[i] = pattern(off + i);
		err = send_all(fd, buf, take, 0, count);
		if (err)
			return err;
		off += take;
	}
	return 0;
}

/* Receive exactly n pattern bytes; *intact is cleared on a wrong byte. */
static int recv_body(int fd, long n, long *count, int *intact)
{
	unsigned char buf[CHUNK];
	long off = 0, i;
	ssize_t r;

	while (off < n) {
		r = recv(fd, buf, n - off < CHUNK ? n - off : CHUNK, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return timeout_errno(errno);
		if (r == 0) {
			*intact = 0;
			return EPIPE; /* the peer closed early */
		}
		for (i = 0; i < r; i++)
			if (buf[i] != pattern(off + i))
				*intact = 0;
		off += r;
		*count += r;
	}
	return 0;
}

/* One line, byte by byte (nothing after it is consumed). */
static int recv_line(int fd, char *line, size_t len, long *count)
{
	size_t have = 0;
	ssize_t r;
	char c;

	for (;;) {
		r = recv(fd, &c, 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return timeout_errno(errno);
		if (r == 0)
			return EPIPE;
		(*count)++;
		if (c == '\n')
			break;
		if (have + 1 < len)
			line[have++] = c;
	}
	line[have] = '\0';
	return 0;
}

/* Read until EOF; anything that arrives is counted and makes it "extra". */
static int recv_eof(int fd, long *count, int *extra)
{
	char buf[4096];
	ssize_t r;

	for (;;) {
		r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return timeout_errno(errno);
		if (r == 0)
			return 0;
		*count += r;
		*extra = 1;
	}
}

static void json_trace(FILE *f, const char *key, const char *hex, int err)
{
	if (hex[0])
		fprintf(f, "\"%s\": \"%s\", \"%s_error\": null", key, hex, key);
	else
		fprintf(f, "\"%s\": null, \"%s_error\": \"%s\"", key, key, errno_name(err));
}

/* --- serve --- */

struct server {
	int fd;
	int logfd;
	long idle_s; /* a connection's longest wait for the client */
	pthread_mutex_t lock;
};

struct sconn {
	struct server *srv;
	int fd;
};

/* One connection, all of it, then one log line written with one write(). */
static void *sconn_run(void *arg)
{
	struct sconn *c = arg;
	char line[LINE_LEN], hex[SOCKMESH_TRACE_HEX_LEN], closer = 'c';
	char local[ADDR_STRLEN], peer[ADDR_STRLEN], *out = NULL;
	long received = 0, sent = 0, body = 0, reply = 0, delay = 0;
	int err, terr = 0, intact = 1, extra = 0;
	const char *step = "";
	size_t outlen = 0;
	FILE *f;

	sock_names(c->fd, local, peer);
	hex[0] = '\0';
	err = recv_line(c->fd, line, sizeof(line), &received);
	step = "header";
	if (!err && sscanf(line, "smtrace %ld %ld %c %ld", &body, &reply, &closer, &delay) != 4)
		err = EPROTO;
	if (!err)
		err = send_all(c->fd, "ok\n", 3, 0, &sent);
	if (!err) {
		step = "body";
		err = recv_body(c->fd, body, &received, &intact);
	}
	if (!err) {
		/* Every byte of the request is in: the id must be known. */
		step = "reply";
		terr = trace_id_get(c->fd, hex);
		if (terr)
			snprintf(line, sizeof(line), "id -%s\n", errno_name(terr));
		else
			snprintf(line, sizeof(line), "id %s\n", hex);
		err = send_all(c->fd, line, strlen(line), 0, &sent);
	}
	if (!err)
		err = send_body(c->fd, reply, &sent);
	if (!err && closer != 's') {
		step = "eof";
		err = recv_eof(c->fd, &received, &extra);
		if (extra)
			intact = 0;
		delay_ms(delay);
	}
	close(c->fd);

	f = open_memstream(&out, &outlen);
	if (f) {
		fprintf(f, "{\"peer\": \"%s\", \"local\": \"%s\", ", peer, local);
		json_trace(f, "trace_id", hex, terr);
		fprintf(f,
			", \"received\": %ld, \"sent\": %ld, "
			"\"intact\": %s, \"closer\": \"%c\", \"result\": \"%s\", "
			"\"step\": \"%s\"}\n",
			received, sent, intact ? "true" : "false", closer,
			err ? errno_name(err) : "ok", err ? step : "");
		fclose(f);
		if (c->srv->logfd >= 0 && write(c->srv->logfd, out, outlen) != (ssize_t)outlen)
			perror("smtrace serve: log");
		free(out);
	}
	free(c);
	return NULL;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'}, {"log", required_argument, NULL, 'L'},
		{"fastopen", no_argument, NULL, 'F'},	  {"timeout", required_argument, NULL, 'T'},
		{"idle", required_argument, NULL, 'I'},	  {NULL, 0, NULL, 0},
	};
	struct server s = {.fd = -1, .logfd = -1, .idle_s = DEFAULT_TIMEOUT_MS * 3 / 1000};
	const char *listen_s = NULL, *log_path = NULL;
	int opt, one = 1, zero = 0, qlen = 1024, fastopen = 0, fd;
	long timeout_s = DEFAULT_SERVE_S;
	long long deadline;
	pthread_attr_t attr;
	struct addr a;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen_s = optarg; break;
		case 'L': log_path = optarg; break;
		case 'F': fastopen = 1; break;
		case 'T':
			if (parse_long(optarg, 1, 86400, &timeout_s))
				goto usage;
			break;
		case 'I':
			if (parse_long(optarg, 1, 86400, &s.idle_s))
				goto usage;
			break;
		default: goto usage;
		}
	}
	if (!listen_s || optind != argc || addr_parse(listen_s, FAM_AUTO, &a))
		goto usage;

	stop_signals_install(0);
	if (log_path) {
		s.logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (s.logfd < 0) {
			perror("smtrace serve: log");
			return 1;
		}
	}
	s.fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s.fd < 0) {
		perror("smtrace serve: socket");
		return 1;
	}
	setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a.ss.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&a.ss)->sin6_addr))
		setsockopt(s.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (fastopen)
		setsockopt(s.fd, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen));
	if (bind(s.fd, (struct sockaddr *)&a.ss, a.len) || listen(s.fd, 1024)) {
		fprintf(stderr, "smtrace serve: listen %s: %s\n", listen_s, strerror(errno));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	deadline = now_ms() + timeout_s * 1000;
	while (!g_stop && now_ms() < deadline) {
		struct pollfd p = {.fd = s.fd, .events = POLLIN};
		struct sconn *c;
		pthread_t t;

		if (poll(&p, 1, 200) <= 0)
			continue;
		fd = accept4(s.fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->srv = &s;
		c->fd = fd;
		sock_timeouts(fd, s.idle_s * 1000);
		if (pthread_create(&t, &attr, sconn_run, c)) {
			close(fd);
			free(c);
		}
	}
	close(s.fd);
	return 0;
usage:
	fprintf(stderr, "usage: smtrace serve --listen ADDR:PORT [--log FILE] "
			"[--fastopen] [--timeout S] [--idle S]\n");
	return 2;
}

/* --- connect --- */

struct ccfg {
	struct addr to;
	long send, reply, count, parallel, timeout_ms, delay_ms;
	char closer;
	int step, fastopen, fastopen_connect;
	const char *pause;
};

struct cres {
	int err;
	const char *step;
	char trace[SOCKMESH_TRACE_HEX_LEN];
	int trace_err;
	char server_trace[LINE_LEN];
	long sent, received;
	int intact;
	char local[ADDR_STRLEN], peer[ADDR_STRLEN];
	long long elapsed_ms;
};

/* Wait until path exists (bounded); "paused" tells the test we are there. */
static void pause_at(const char *path)
{
	long long deadline = now_ms() + PAUSE_MAX_S * 1000;
	struct stat st;

	printf("paused\n");
	fflush(stdout);
	while (stat(path, &st) && now_ms() < deadline) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
}

/*
 * Open the connection; with Fast Open the first line rides on the SYN.
 * Without --step the first line waits for the body (MSG_MORE), so the
 * segments right after the handshake are full-size.
 */
static int open_conn(const struct ccfg *c, int fd, const char *hdr, long *sent)
{
	int more = c->step || c->pause || !c->send ? 0 : MSG_MORE;
	int one = 1;
	ssize_t n;

	if (c->fastopen) {
		n = sendto(fd, hdr, strlen(hdr), MSG_FASTOPEN | MSG_NOSIGNAL,
			   (const struct sockaddr *)&c->to.ss, c->to.len);
		if (n < 0)
			return timeout_errno(errno);
		*sent += n;
		return send_all(fd, hdr + n, strlen(hdr) - n, 0, sent);
	}
	if (c->fastopen_connect &&
	    setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)))
		return errno;
	if (connect(fd, (const struct sockaddr *)&c->to.ss, c->to.len))
		return timeout_errno(errno);
	return send_all(fd, hdr, strlen(hdr), more, sent);
}

static void conn_once(const struct ccfg *c, struct cres *r)
{
	char hdr[LINE_LEN], line[LINE_LEN];
	long long t0 = now_ms();
	int fd, extra = 0;

	r->intact = 1;
	r->step = "socket";
	fd = socket(c->to.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r->err = errno;
		return;
	}
	sock_timeouts(fd, c->timeout_ms);
	snprintf(hdr, sizeof(hdr), "smtrace %ld %ld %c %ld\n", c->send, c->reply, c->closer,
		 c->delay_ms);

	r->step = "connect";
	r->err = open_conn(c, fd, hdr, &r->sent);
	if (r->err)
		goto out;
	if (c->step || c->pause) {
		r->step = "ok";
		r->err = recv_line(fd, line, sizeof(line), &r->received);
		if (r->err)
			goto out;
		if (c->pause)
			pause_at(c->pause);
	}
	r->step = "body";
	r->err = send_body(fd, c->send, &r->sent);
	if (r->err)
		goto out;
	if (!c->step && !c->pause) {
		r->step = "ok";
		r->err = recv_line(fd, line, sizeof(line), &r->received);
		if (r->err)
			goto out;
	}
	r->step = "id";
	r->err = recv_line(fd, line, sizeof(line), &r->received);
	if (r->err)
		goto out;
	snprintf(r->server_trace, sizeof(r->server_trace), "%s",
		 strncmp(line, "id ", 3) ? line : line + 3);
	r->trace_err = trace_id_get(fd, r->trace);
	sock_names(fd, r->local, r->peer);
	r->step = "reply";
	r->err = recv_body(fd, c->reply, &r->received, &r->intact);
	if (r->err)
		goto out;
	if (c->closer == 's') {
		/* The server's FIN comes first; then ours. */
		r->step = "eof";
		r->err = recv_eof(fd, &r->received, &extra);
		if (extra)
			r->intact = 0;
		delay_ms(c->delay_ms);
	}
out:
	close(fd);
	r->elapsed_ms = now_ms() - t0;
}

struct worker {
	pthread_t t;
	const struct ccfg *cfg;
	struct cres *res;
	long first, n;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	long i;

	for (i = w->first; i < w->first + w->n; i++)
		conn_once(w->cfg, &w->res[i]);
	return NULL;
}

static void results_json(const struct cres *res, long n)
{
	long i, ok = 0;

	for (i = 0; i < n; i++)
		ok += !res[i].err;
	printf("{\"count\": %ld, \"ok\": %ld, \"conns\": [", n, ok);
	for (i = 0; i < n; i++) {
		const struct cres *r = &res[i];

		printf("%s{\"result\": \"%s\", \"step\": \"%s\", ", i ? ", " : "",
		       r->err ? errno_name(r->err) : "ok", r->err ? r->step : "");
		json_trace(stdout, "trace_id", r->trace, r->trace_err);
		printf(", \"server_trace_id\": \"%s\", \"sent\": %ld, "
		       "\"received\": %ld, \"intact\": %s, \"local\": \"%s\", "
		       "\"peer\": \"%s\", \"elapsed_ms\": %lld}",
		       r->server_trace, r->sent, r->received,
		       r->intact && !r->err ? "true" : "false", r->local, r->peer, r->elapsed_ms);
	}
	printf("]}\n");
	fflush(stdout);
}

static int cmd_connect(int argc, char **argv)
{
	static const struct option opts[] = {
		{"to", required_argument, NULL, 't'},
		{"send", required_argument, NULL, 's'},
		{"reply", required_argument, NULL, 'r'},
		{"closer", required_argument, NULL, 'c'},
		{"step", no_argument, NULL, 'S'},
		{"count", required_argument, NULL, 'n'},
		{"parallel", required_argument, NULL, 'P'},
		{"fastopen", no_argument, NULL, 'F'},
		{"fastopen-connect", no_argument, NULL, 'C'},
		{"pause", required_argument, NULL, 'p'},
		{"close-delay", required_argument, NULL, 'D'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	struct ccfg c = {
		.count = 1, .parallel = 1, .closer = 'c', .timeout_ms = DEFAULT_TIMEOUT_MS};
	const char *to = NULL;
	struct worker *w;
	struct cres *res;
	long i, next = 0;
	int opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': to = optarg; break;
		case 's':
			if (parse_long(optarg, 0, 1L << 34, &c.send))
				goto usage;
			break;
		case 'r':
			if (parse_long(optarg, 0, 1L << 34, &c.reply))
				goto usage;
			break;
		case 'c':
			if (strcmp(optarg, "client") && strcmp(optarg, "server"))
				goto usage;
			c.closer = optarg[0] == 's' ? 's' : 'c';
			break;
		case 'S': c.step = 1; break;
		case 'n':
			if (parse_long(optarg, 1, MAX_CONNS, &c.count))
				goto usage;
			break;
		case 'P':
			if (parse_long(optarg, 1, MAX_CONNS, &c.parallel))
				goto usage;
			break;
		case 'F': c.fastopen = 1; break;
		case 'C': c.fastopen_connect = 1; break;
		case 'p': c.pause = optarg; break;
		case 'D':
			if (parse_long(optarg, 0, 60000, &c.delay_ms))
				goto usage;
			break;
		case 'T':
			if (parse_long(optarg, 1, 600000, &c.timeout_ms))
				goto usage;
			break;
		default: goto usage;
		}
	}
	if (!to || optind != argc || addr_parse(to, FAM_AUTO, &c.to) ||
	    (c.fastopen && c.fastopen_connect) || (c.pause && c.count > 1))
		goto usage;
	if (c.parallel > c.count)
		c.parallel = c.count;

	res = calloc(c.count, sizeof(*res));
	w = calloc(c.parallel, sizeof(*w));
	if (!res || !w) {
		perror("smtrace: calloc");
		return 1;
	}
	for (i = 0; i < c.parallel; i++) {
		w[i].cfg = &c;
		w[i].res = res;
		w[i].first = next;
		w[i].n = c.count / c.parallel + (i < c.count % c.parallel);
		next += w[i].n;
		if (pthread_create(&w[i].t, NULL, worker_run, &w[i])) {
			perror("smtrace: thread");
			return 1;
		}
	}
	for (i = 0; i < c.parallel; i++)
		pthread_join(w[i].t, NULL);
	results_json(res, c.count);
	free(res);
	free(w);
	return 0;
usage:
	fprintf(stderr, "usage: smtrace connect --to ADDR:PORT [--send N] [--reply N] "
			"[--closer client|server]\n"
			"       [--step] [--count N] [--parallel P] "
			"[--fastopen|--fastopen-connect]\n"
			"       [--pause FILE] [--close-delay MS] [--timeout-ms MS]\n");
	return 2;
}

/* --- opts: what other getsockopt calls return --- */

static void opt_int(int fd, int level, int name, const char *key)
{
	socklen_t len = sizeof(int);
	int v = 0;

	if (getsockopt(fd, level, name, &v, &len))
		printf("\"%s\": \"%s\", ", key, errno_name(errno));
	else
		printf("\"%s\": [%d, %u], ", key, v, len);
}

static void opt_tcp_info(int fd)
{
	char big[8192];
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len)) {
		printf("\"tcp_info\": \"%s\", ", errno_name(errno));
	} else {
		printf("\"tcp_info\": {\"len\": %u, \"state\": %u, "
		       "\"options\": %u, \"snd_wscale\": %u, "
		       "\"rcv_wscale\": %u, \"snd_mss\": %u, \"advmss\": %u, "
		       "\"pmtu\": %u}, ",
		       len, ti.tcpi_state, ti.tcpi_options, ti.tcpi_snd_wscale, ti.tcpi_rcv_wscale,
		       ti.tcpi_snd_mss, ti.tcpi_advmss, ti.tcpi_pmtu);
	}
	/* A buffer over a page: the kernel's answer, whatever BPF sees. */
	len = sizeof(big);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, big, &len))
		printf("\"tcp_info_8k\": \"%s\", ", errno_name(errno));
	else
		printf("\"tcp_info_8k\": %u, ", len);
}

static void opt_congestion(int fd)
{
	char name[32] = "";
	socklen_t len = sizeof(name);

	if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len))
		printf("\"congestion\": \"%s\", ", errno_name(errno));
	else
		printf("\"congestion\": \"%.*s\", ", (int)strnlen(name, len), name);
}

/* SOL_SOCKMESH with a buffer of blen bytes, or another optname. */
static void opt_sockmesh(int fd, int name, socklen_t blen, const char *key)
{
	unsigned char buf[64];
	socklen_t len = blen;

	if (getsockopt(fd, SOL_SOCKMESH, name, buf, &len))
		printf("\"%s\": \"%s\"", key, errno_name(errno));
	else
		printf("\"%s\": %u", key, len);
}

static int cmd_opts(int argc, char **argv)
{
	static const struct option opts[] = {
		{"to", required_argument, NULL, 't'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	struct ccfg c = {.closer = 'c', .timeout_ms = DEFAULT_TIMEOUT_MS};
	const char *to = NULL;
	long sent = 0, received = 0;
	char line[LINE_LEN];
	int opt, fd, err;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': to = optarg; break;
		case 'T':
			if (parse_long(optarg, 1, 600000, &c.timeout_ms))
				goto usage;
			break;
		default: goto usage;
		}
	}
	if (!to || optind != argc || addr_parse(to, FAM_AUTO, &c.to))
		goto usage;

	fd = socket(c.to.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("smtrace opts: socket");
		return 1;
	}
	sock_timeouts(fd, c.timeout_ms);
	err = open_conn(&c, fd, "smtrace 0 0 c 0\n", &sent);
	/* The whole exchange first: the connection is settled on both ends. */
	if (!err)
		err = recv_line(fd, line, sizeof(line), &received);
	if (!err)
		err = recv_line(fd, line, sizeof(line), &received);
	printf("{\"result\": \"%s\", ", err ? errno_name(err) : "ok");
	opt_int(fd, SOL_SOCKET, SO_TYPE, "so_type");
	opt_int(fd, SOL_SOCKET, SO_DOMAIN, "so_domain");
	opt_int(fd, SOL_SOCKET, SO_PROTOCOL, "so_protocol");
	opt_int(fd, SOL_SOCKET, SO_ERROR, "so_error");
	opt_int(fd, SOL_SOCKET, SO_KEEPALIVE, "so_keepalive");
	opt_int(fd, SOL_SOCKET, SO_SNDBUF, "so_sndbuf");
	opt_int(fd, IPPROTO_TCP, TCP_NODELAY, "tcp_nodelay");
	opt_int(fd, IPPROTO_TCP, TCP_MAXSEG, "tcp_maxseg");
	opt_int(fd, IPPROTO_IP, IP_TOS, "ip_tos");
	opt_int(fd, IPPROTO_IP, IP_TTL, "ip_ttl");
	opt_tcp_info(fd);
	opt_congestion(fd);
	opt_sockmesh(fd, SOCKMESH_TRACE_ID, SOCKMESH_TRACE_ID_LEN, "sm_id");
	printf(", ");
	opt_sockmesh(fd, SOCKMESH_TRACE_ID, 8, "sm_id_short");
	printf(", ");
	opt_sockmesh(fd, SOCKMESH_TRACE_ID, 64, "sm_id_long");
	printf(", ");
	opt_sockmesh(fd, SOCKMESH_TRACE_ID + 1, 16, "sm_other");
	printf("}\n");
	fflush(stdout);
	close(fd);
	return err ? 1 : 0;
usage:
	fprintf(stderr, "usage: smtrace opts --to ADDR:PORT [--timeout-ms MS]\n");
	return 2;
}

/* --- http: one GET; the response's traceparent against our own id --- */

static int cmd_http(int argc, char **argv)
{
	static const struct option opts[] = {
		{"to", required_argument, NULL, 't'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	static const char req[] = "GET / HTTP/1.1\r\nHost: smtrace\r\n"
				  "Connection: close\r\n\r\n";
	char hex[SOCKMESH_TRACE_HEX_LEN], resp[8192], tp[LINE_LEN] = "";
	long timeout_ms = DEFAULT_TIMEOUT_MS, sent = 0;
	const char *to = NULL, *h, *status_end;
	int opt, fd, err = 0, terr, status = 0;
	size_t have = 0;
	struct addr a;
	ssize_t r;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': to = optarg; break;
		case 'T':
			if (parse_long(optarg, 1, 600000, &timeout_ms))
				goto usage;
			break;
		default: goto usage;
		}
	}
	if (!to || optind != argc || addr_parse(to, FAM_AUTO, &a))
		goto usage;

	fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("smtrace http: socket");
		return 1;
	}
	sock_timeouts(fd, timeout_ms);
	if (connect(fd, (struct sockaddr *)&a.ss, a.len))
		err = timeout_errno(errno);
	if (!err)
		err = send_all(fd, req, sizeof(req) - 1, 0, &sent);
	while (!err && have < sizeof(resp) - 1) {
		r = recv(fd, resp + have, sizeof(resp) - 1 - have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			err = timeout_errno(errno);
		if (r <= 0)
			break;
		have += r;
	}
	resp[have] = '\0';
	terr = trace_id_get(fd, hex);
	close(fd);

	sscanf(resp, "HTTP/1.%*d %d", &status);
	status_end = strstr(resp, "\r\n\r\n");
	h = strcasestr(resp, "\r\ntraceparent:");
	if (h && (!status_end || h < status_end)) {
		h += strlen("\r\ntraceparent:");
		h += strspn(h, " \t");
		snprintf(tp, sizeof(tp), "%.*s", (int)strcspn(h, "\r\n"), h);
	}
	printf("{\"result\": \"%s\", \"status\": %d, \"traceparent\": \"%s\", ",
	       err ? errno_name(err) : "ok", status, tp);
	json_trace(stdout, "trace_id", hex, terr);
	printf("}\n");
	return err ? 1 : 0;
usage:
	fprintf(stderr, "usage: smtrace http --to ADDR:PORT [--timeout-ms MS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && !strcmp(argv[1], "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "connect"))
		return cmd_connect(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "opts"))
		return cmd_opts(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "http"))
		return cmd_http(argc - 1, argv + 1);
	fprintf(stderr, "usage: smtrace serve|connect|opts|http ...\n");
	return 2;
}
