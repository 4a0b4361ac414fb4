/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * helpers.h: what the test helpers (smtest, smtrace, smsock) and the
 * bench's load generator (tools/bench/connbench.c) share: monotonic time,
 * errno names, stop signals, number and "ADDR:PORT" parsing, address
 * formatting, socket timeouts, sending and the sockmesh trace id.
 *
 * Every function is static inline, so a program that includes this and
 * does not use one gets no warning and no copy of it. What a socket call
 * gave the application comes back as 0 or a positive errno, the way the
 * programs report it; set-up steps (parsing, options) return 0 or -errno.
 */
#ifndef SOCKMESH_TEST_HELPERS_H
#define SOCKMESH_TEST_HELPERS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "sockmesh/sockmesh.h"

/* "[" + an IPv6 address + "]:65535" and a NUL. */
#define ADDR_STRLEN (INET6_ADDRSTRLEN + 8)

/* Set by a stop signal (see stop_signals_install). */
static volatile sig_atomic_t g_stop;

/* --- time: CLOCK_MONOTONIC in ns, us and ms --- */

static inline long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline long long now_us(void)
{
	return now_ns() / 1000;
}

static inline long long now_ms(void)
{
	return now_ns() / 1000000;
}

/* --- errors, signals, limits --- */

/*
 * "EPERM" for EPERM. A number glibc cannot name comes out as "E<n>", in a
 * buffer of the calling thread that the next such call reuses.
 */
static inline const char *errno_name(int err)
{
	static __thread char buf[16];
	const char *name = strerrorname_np(err);

	if (name)
		return name;
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

static inline void stop_signal_handler(int sig)
{
	(void)sig;
	g_stop = 1;
}

/*
 * SIGTERM, SIGINT and extra_sig (unless 0) set g_stop. No SA_RESTART: a
 * signal must wake poll() and epoll_wait() at once.
 */
static inline void stop_signals_install(int extra_sig)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop_signal_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (extra_sig)
		sigaction(extra_sig, &sa, NULL);
}

/* Thousands of open sockets need more than the usual 1024 descriptors. */
static inline void nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A decimal number within [min, max], all of s; 0 or -EINVAL. */
static inline int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* --- addresses --- */

/* What --family asks for; FAM_AUTO takes the address as written. */
enum family { FAM_AUTO, FAM_4, FAM_6, FAM_MAPPED };

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* "4", "6" or "mapped"; 0 or -EINVAL. */
static inline int family_parse(const char *s, enum family *fam)
{
	if (!strcmp(s, "4"))
		*fam = FAM_4;
	else if (!strcmp(s, "6"))
		*fam = FAM_6;
	else if (!strcmp(s, "mapped"))
		*fam = FAM_MAPPED;
	else
		return -EINVAL;
	return 0;
}

/* Split "ip:port" or "[ip6]:port" into host and port; 0 or -EINVAL. */
static inline int addr_split(const char *str, char *host, size_t hlen, long *port)
{
	const char *sep, *start = str;
	size_t n;

	if (*str == '[') {
		sep = strchr(str, ']');
		if (!sep || sep[1] != ':')
			return -EINVAL;
		start = str + 1;
		n = sep - start;
		sep++;
	} else {
		sep = strrchr(str, ':');
		if (!sep)
			return -EINVAL;
		n = sep - str;
	}
	if (n == 0 || n >= hlen)
		return -EINVAL;
	memcpy(host, start, n);
	host[n] = '\0';
	return parse_long(sep + 1, 0, 65535, port);
}

/*
 * Parse ADDR:PORT for the family asked for; 0, -EINVAL for what is no
 * address, or -EAFNOSUPPORT for one of the other family. FAM_MAPPED turns
 * an IPv4 address into ::ffff:a.b.c.d on an AF_INET6 socket, the form a
 * dual-stack application uses to reach an IPv4 peer.
 */
static inline int addr_parse(const char *str, enum family fam, struct addr *a)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
	char host[INET6_ADDRSTRLEN];
	struct in_addr v4;
	long port;

	memset(a, 0, sizeof(*a));
	if (addr_split(str, host, sizeof(host), &port))
		return -EINVAL;

	if (inet_pton(AF_INET, host, &v4) == 1) {
		if (fam == FAM_6)
			return -EAFNOSUPPORT;
		if (fam == FAM_MAPPED) {
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(port);
			s6->sin6_addr.s6_addr[10] = 0xff;
			s6->sin6_addr.s6_addr[11] = 0xff;
			memcpy(&s6->sin6_addr.s6_addr[12], &v4, 4);
			a->len = sizeof(*s6);
			return 0;
		}
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		s4->sin_addr = v4;
		a->len = sizeof(*s4);
		return 0;
	}

	if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
		return -EINVAL;
	if (fam == FAM_4 || (fam == FAM_MAPPED && !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)))
		return -EAFNOSUPPORT;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(port);
	a->len = sizeof(*s6);
	return 0;
}

/* "198.18.1.1:80", "[fd00::1]:80", "[::ffff:198.18.1.1]:80"; else "?". */
static inline void addr_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

/* Which end of a socket sock_addr_get formats. */
enum sock_end { END_LOCAL, END_PEER };

/*
 * The address of this end (getsockname) or of the peer (getpeername),
 * formatted into buf; 0, or the errno of the call and buf "".
 */
static inline int sock_addr_get(int fd, enum sock_end end, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int err;

	memset(&ss, 0, sizeof(ss));
	buf[0] = '\0';
	if (end == END_PEER)
		err = getpeername(fd, (struct sockaddr *)&ss, &sl);
	else
		err = getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (err < 0)
		return errno;
	addr_format(&ss, buf, len);
	return 0;
}

/* --- sockets --- */

/* SO_SNDTIMEO and SO_RCVTIMEO of ms milliseconds; 0 or -errno. */
static inline int sock_timeouts(int fd, long ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		return -errno;
	return 0;
}

/*
 * A blocking call that ran into SO_SNDTIMEO/SO_RCVTIMEO says EINPROGRESS
 * (connect) or EAGAIN (send, recv); both mean our own timeout expired.
 */
static inline int timeout_errno(int err)
{
	if (err == EINPROGRESS || err == EAGAIN || err == EWOULDBLOCK)
		return ETIMEDOUT;
	return err;
}

/*
 * Send all of buf with MSG_NOSIGNAL and flags, adding each byte that went
 * out to *count unless count is NULL; 0 or a positive errno.
 */
static inline int send_all(int fd, const void *buf, size_t len, int flags, long *count)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL | flags);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return timeout_errno(errno);
		}
		p += n;
		len -= n;
		if (count)
			*count += n;
	}
	return 0;
}

/* The socket's sockmesh trace id as hex; 0 or the errno getsockopt gave. */
static inline int trace_id_get(int fd, char hex[SOCKMESH_TRACE_HEX_LEN])
{
	unsigned char id[SOCKMESH_TRACE_ID_LEN];
	socklen_t len = sizeof(id);

	hex[0] = '\0';
	if (getsockopt(fd, SOL_SOCKMESH, SOCKMESH_TRACE_ID, id, &len) < 0)
		return errno;
	if (len != SOCKMESH_TRACE_ID_LEN)
		return EPROTO;
	sockmesh_trace_id_hex(id, hex);
	return 0;
}

#endif /* SOCKMESH_TEST_HELPERS_H */
