// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * traceparent: a small HTTP server that takes each connection's trace id
 * from sockmesh and hands it on as a W3C Trace Context header.
 *
 *   traceparent [ADDR:]PORT
 *
 * For every accepted connection it reads the id with
 * getsockopt(SOL_SOCKMESH, SOCKMESH_TRACE_ID), answers every request with
 *
 *   traceparent: 00-<trace id>-<span id>-01
 *
 * (a new random 16-hex-digit span id per request) and logs one line per
 * request carrying the same trace id, so this server's log, its callers'
 * logs and both nodes' sockmesh flow logs can be joined on one id.
 *
 * Without sockmesh (the call fails, or says ENOENT: the connection is older
 * than the agent) the server makes a random trace id of its own, as W3C
 * asks of a service that starts a trace, and logs source=local.
 *
 * One connection at a time, one request per connection: an example, not a
 * web server. Build: make (or cc -I../../include traceparent.c).
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sockmesh/sockmesh.h>

#define REQ_MAX	     8192
#define IO_TIMEOUT_S 5

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* Lower-case hex of n bytes into hex (2n + 1 bytes). */
static void to_hex(const unsigned char *b, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		hex[2 * i] = digits[b[i] >> 4];
		hex[2 * i + 1] = digits[b[i] & 0xf];
	}
	hex[2 * n] = '\0';
}

/* n random bytes, not all zero (W3C forbids all-zero ids). */
static void random_id(unsigned char *b, size_t n)
{
	size_t i, any = 0;

	do {
		if (getrandom(b, n, 0) != (ssize_t)n)
			for (i = 0; i < n; i++)
				b[i] = (unsigned char)rand();
		for (i = 0; i < n; i++)
			any |= b[i];
	} while (!any);
}

/*
 * The connection's trace id as 32 hex digits. Returns "sockmesh" when
 * sockmesh gave it, "local" when we had to make one.
 */
static const char *trace_id(int fd, char hex[SOCKMESH_TRACE_HEX_LEN])
{
	unsigned char id[SOCKMESH_TRACE_ID_LEN];
	socklen_t len = sizeof(id);

	if (getsockopt(fd, SOL_SOCKMESH, SOCKMESH_TRACE_ID, id, &len) == 0 &&
	    len == SOCKMESH_TRACE_ID_LEN) {
		sockmesh_trace_id_hex(id, hex);
		return "sockmesh";
	}
	random_id(id, sizeof(id));
	sockmesh_trace_id_hex(id, hex);
	return "local";
}

/* Read the request head (up to the blank line); its length, or -1. */
static ssize_t read_request(int fd, char *buf, size_t len)
{
	size_t have = 0;
	ssize_t n;

	while (have < len - 1) {
		n = recv(fd, buf + have, len - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		have += n;
		buf[have] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			return have;
	}
	return -1;
}

static void send_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= n;
	}
}

static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;

	memset(&ss, 0, sizeof(ss));
	getpeername(fd, (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
	}
	snprintf(buf, len, "%s:%u", ip, port);
}

/* One connection: read the request, answer it, log it. */
static void serve(int fd)
{
	char trace[SOCKMESH_TRACE_HEX_LEN], span[17], req[REQ_MAX];
	char resp[512], body[128], peer[INET6_ADDRSTRLEN + 8], method[16] = "-";
	char path[256] = "-", ts[32];
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	unsigned char span_id[8];
	const char *source;
	struct timespec now;
	struct tm tm;
	int n, b;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	peer_name(fd, peer, sizeof(peer));
	if (read_request(fd, req, sizeof(req)) < 0)
		return;
	sscanf(req, "%15s %255s", method, path);

	/* Step 1: the connection's trace id, and a span for this request. */
	source = trace_id(fd, trace);
	random_id(span_id, sizeof(span_id));
	to_hex(span_id, sizeof(span_id), span);

	/* Step 2: the answer carries it on. */
	b = snprintf(body, sizeof(body), "trace_id %s\n", trace);
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 200 OK\r\n"
		     "traceparent: 00-%s-%s-01\r\n"
		     "Content-Type: text/plain\r\n"
		     "Content-Length: %d\r\n"
		     "Connection: close\r\n"
		     "\r\n%s",
		     trace, span, b, body);
	send_all(fd, resp, n);

	/* Step 3: the log line, with the same id. */
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	printf("ts=%s.%03ldZ trace_id=%s span_id=%s source=%s peer=%s "
	       "method=%s path=%s status=200\n",
	       ts, now.tv_nsec / 1000000, trace, span, source, peer, method, path);
	fflush(stdout);
}

/* "8080", "198.18.1.1:8080" or "[fd00::1]:8080". */
static int listen_on(const char *arg)
{
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	char host[INET6_ADDRSTRLEN + 2] = "";
	const char *colon = strrchr(arg, ':');
	struct sockaddr *sa = (struct sockaddr *)&s4;
	socklen_t sl = sizeof(s4);
	int fd, one = 1, port;

	port = atoi(colon ? colon + 1 : arg);
	if (port <= 0 || port > 65535)
		return -1;
	if (colon) {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - arg), arg);
		if (host[0] == '[') {
			host[strlen(host) - 1] = '\0';
			if (inet_pton(AF_INET6, host + 1, &s6.sin6_addr) != 1)
				return -1;
			s6.sin6_port = htons(port);
			sa = (struct sockaddr *)&s6;
			sl = sizeof(s6);
		} else if (inet_pton(AF_INET, host, &s4.sin_addr) != 1) {
			return -1;
		}
	}
	s4.sin_port = htons(port);
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, sl) || listen(fd, 128)) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_stop};
	int lfd, fd;

	if (argc != 2) {
		fprintf(stderr, "usage: traceparent [ADDR:]PORT\n");
		return 2;
	}
	lfd = listen_on(argv[1]);
	if (lfd < 0) {
		fprintf(stderr, "traceparent: listen on '%s': %s\n", argv[1],
			errno ? strerror(errno) : "bad address");
		return 1;
	}
	/* No SA_RESTART: a signal ends a blocking accept(). */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("listening on %s\n", argv[1]);
	fflush(stdout);

	while (!g_stop) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(fd);
		close(fd);
	}
	close(lfd);
	return 0;
}
