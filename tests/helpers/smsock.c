// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * smsock: one socket, used in the ways the enforcement tests need and
 * smtest does not do: made by one process and used by another, made before
 * its process moves to another cgroup, or sent on without an address.
 *
 *   smsock pass    --unix PATH [--udp] [--family 4|6]
 *       make a socket, hand it over the unix socket PATH (SCM_RIGHTS)
 *   smsock receive --unix PATH --to ADDR:PORT [--udp] [--unconnected]
 *                  [--family 4|6|mapped] [--timeout-ms MS]
 *       listen on PATH, print "ready", take one socket and use it
 *   smsock move    --to ADDR:PORT --go FILE [--udp] [--unconnected]
 *                  [--family 4|6|mapped] [--timeout-ms MS]
 *       make a socket, print "created", wait until FILE exists (the test
 *       moves this process to another cgroup meanwhile), then use it
 *   smsock noaddr  [--family 4|6] [--sendmsg]
 *       send() (or sendmsg() without msg_name) on an unconnected UDP
 *       socket: what the kernel says when there is nowhere to send to
 *   smsock again   --to ADDR:PORT [--family 4|6|mapped]
 *       TCP connect() twice on one socket: the second answer is the
 *       kernel's ("again" in the JSON)
 *
 * Using a socket: TCP connects, sends a line, shuts down its side and
 * reads the reply; UDP connects and sends (or, --unconnected, sendto())
 * one datagram and reads the reply. The last line of output is JSON:
 *   {"result": "ok"|"EPERM"|..., "step": "connect"|"send"|"recv"|"",
 *    "reply": "TAG", "bytes_received": N, "pid": PID}
 * Every blocking call is bounded by a timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define DEFAULT_TIMEOUT_MS 2000
#define GO_WAIT_MS	   60000
#define PAYLOAD		   "hello from smsock\n"

struct opts {
	const char *unix_path;
	const char *to;
	const char *go;
	enum family fam;
	int udp;
	int unconnected;
	int use_sendmsg;
	long timeout_ms;
};

/* What using the socket came to. */
struct outcome {
	int err; /* 0 or the errno of the step that failed */
	const char *step;
	char reply[128];
	long bytes;
};

static void outcome_print(const struct outcome *o)
{
	size_t i;

	printf("{\"result\": \"%s\", \"step\": \"%s\", \"reply\": \"",
	       o->err ? errno_name(o->err) : "ok", o->err ? o->step : "");
	/* Tags are plain words; anything else is left out, not escaped. */
	for (i = 0; o->reply[i]; i++)
		if (o->reply[i] >= 0x20 && o->reply[i] != '"' && o->reply[i] != '\\')
			putchar(o->reply[i]);
	printf("\", \"bytes_received\": %ld, \"pid\": %d}\n", o->bytes, (int)getpid());
	fflush(stdout);
}

static int sock_make(const struct opts *o, int family)
{
	int fd = socket(family, (o->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	sock_timeouts(fd, o->timeout_ms);
	return fd;
}

static void reply_read(int fd, int udp, struct outcome *out)
{
	char buf[4096];
	ssize_t n;
	size_t k;

	out->step = "recv";
	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			out->err = timeout_errno(errno);
			return;
		}
		if (n == 0)
			return;
		if (!out->bytes) {
			k = strcspn(buf, "\n");
			if (k > (size_t)n)
				k = n;
			if (k >= sizeof(out->reply))
				k = sizeof(out->reply) - 1;
			memcpy(out->reply, buf, k);
			out->reply[k] = '\0';
		}
		out->bytes += n;
		/* One datagram is the whole UDP reply. */
		if (udp)
			return;
	}
}

/* Connect (or not), send one line, read the reply. */
static void sock_use(int fd, const struct opts *o, struct outcome *out)
{
	struct addr to;
	ssize_t n;

	memset(out, 0, sizeof(*out));
	out->step = "address";
	if (addr_parse(o->to, o->fam, &to)) {
		out->err = EINVAL;
		return;
	}

	if (!o->udp || !o->unconnected) {
		out->step = "connect";
		if (connect(fd, (struct sockaddr *)&to.ss, to.len) < 0) {
			out->err = timeout_errno(errno);
			return;
		}
	}

	out->step = "send";
	if (o->udp && o->unconnected)
		n = sendto(fd, PAYLOAD, strlen(PAYLOAD), MSG_NOSIGNAL, (struct sockaddr *)&to.ss,
			   to.len);
	else
		n = send(fd, PAYLOAD, strlen(PAYLOAD), MSG_NOSIGNAL);
	if (n < 0) {
		out->err = timeout_errno(errno);
		return;
	}
	if (!o->udp)
		shutdown(fd, SHUT_WR);
	reply_read(fd, o->udp, out);
}

/* The address family a socket for o->to needs. */
static int to_family(const struct opts *o)
{
	struct addr a;

	if (addr_parse(o->to, o->fam, &a))
		return -EINVAL;
	return a.ss.ss_family;
}

static int unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

/* pass: the socket is made here, in this process's cgroup. */
static int cmd_pass(const struct opts *o)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = "S", .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.buf,
			   .msg_controllen = sizeof(ctl.buf)};
	int family = o->fam == FAM_6 ? AF_INET6 : AF_INET;
	struct sockaddr_un sun;
	struct cmsghdr *cm;
	int fd, ufd;

	if (unix_addr(o->unix_path, &sun))
		return 2;
	fd = sock_make(o, family);
	ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || ufd < 0 || connect(ufd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		perror("smsock pass");
		return 1;
	}
	memset(&ctl, 0, sizeof(ctl));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(ufd, &m, 0) != 1) {
		perror("smsock pass: sendmsg");
		return 1;
	}
	printf("{\"passed\": true, \"pid\": %d}\n", (int)getpid());
	close(ufd);
	close(fd);
	return 0;
}

/* One socket from the unix listener, or -errno. */
static int fd_take(int lfd, long timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct timeval tv = {.tv_sec = timeout_ms / 1000};
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.buf,
			   .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *cm;
	int cfd, fd = -EPROTO;

	setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (cfd < 0)
		return -errno;
	setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (recvmsg(cfd, &m, MSG_CMSG_CLOEXEC) == 1) {
		cm = CMSG_FIRSTHDR(&m);
		if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	}
	close(cfd);
	return fd;
}

/* receive: the socket is used here, in another cgroup than its maker's. */
static int cmd_receive(const struct opts *o)
{
	struct sockaddr_un sun;
	struct outcome out;
	int lfd, fd;

	if (unix_addr(o->unix_path, &sun) || to_family(o) < 0)
		return 2;
	unlink(o->unix_path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 1) < 0) {
		perror("smsock receive: listen");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);

	/* Waiting for the other process may take as long as any test step. */
	fd = fd_take(lfd, GO_WAIT_MS);
	close(lfd);
	unlink(o->unix_path);
	if (fd < 0) {
		fprintf(stderr, "smsock receive: no socket: %s\n", strerror(-fd));
		return 1;
	}
	sock_use(fd, o, &out);
	outcome_print(&out);
	close(fd);
	return 0;
}

/* move: socket() here, connect() after the test moved us elsewhere. */
static int cmd_move(const struct opts *o)
{
	long long deadline = now_ms() + GO_WAIT_MS;
	struct outcome out;
	int family = to_family(o), fd;

	if (family < 0 || !o->go)
		return 2;
	fd = sock_make(o, family);
	if (fd < 0) {
		perror("smsock move: socket");
		return 1;
	}
	printf("created\n");
	fflush(stdout);
	while (access(o->go, F_OK)) {
		if (now_ms() > deadline) {
			fprintf(stderr, "smsock move: no %s\n", o->go);
			return 1;
		}
		usleep(10000);
	}
	sock_use(fd, o, &out);
	outcome_print(&out);
	close(fd);
	return 0;
}

/* noaddr: an unconnected UDP socket has nowhere to send to. */
static int cmd_noaddr(const struct opts *o)
{
	struct iovec iov = {.iov_base = PAYLOAD, .iov_len = strlen(PAYLOAD)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	struct outcome out;
	struct opts uo = *o;
	ssize_t n;
	int fd;

	uo.udp = 1;
	fd = sock_make(&uo, o->fam == FAM_6 ? AF_INET6 : AF_INET);
	if (fd < 0) {
		perror("smsock noaddr: socket");
		return 1;
	}
	memset(&out, 0, sizeof(out));
	out.step = "send";
	if (o->use_sendmsg)
		n = sendmsg(fd, &m, MSG_NOSIGNAL);
	else
		n = send(fd, PAYLOAD, strlen(PAYLOAD), MSG_NOSIGNAL);
	if (n < 0)
		out.err = errno;
	outcome_print(&out);
	close(fd);
	return 0;
}

/* again: a second connect() on a TCP socket. */
static int cmd_again(const struct opts *o)
{
	struct outcome out;
	struct addr to;
	int fd, err = 0;

	if (addr_parse(o->to, o->fam, &to))
		return 2;
	fd = sock_make(o, to.ss.ss_family);
	if (fd < 0) {
		perror("smsock again: socket");
		return 1;
	}
	memset(&out, 0, sizeof(out));
	out.step = "connect";
	if (connect(fd, (struct sockaddr *)&to.ss, to.len) < 0)
		out.err = timeout_errno(errno);
	if (connect(fd, (struct sockaddr *)&to.ss, to.len) < 0)
		err = errno;
	printf("{\"again\": \"%s\"}\n", err ? errno_name(err) : "ok");
	outcome_print(&out);
	close(fd);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: smsock pass --unix PATH [--udp] [--family 4|6]\n"
			"       smsock receive --unix PATH --to ADDR:PORT [--udp] "
			"[--unconnected]\n"
			"                      [--family 4|6|mapped] [--timeout-ms MS]\n"
			"       smsock move --to ADDR:PORT --go FILE [--udp] "
			"[--unconnected]\n"
			"                   [--family 4|6|mapped] [--timeout-ms MS]\n"
			"       smsock noaddr [--family 4|6] [--sendmsg]\n"
			"       smsock again --to ADDR:PORT [--family 4|6|mapped]\n");
}

static int opts_parse(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{"unix", required_argument, NULL, 'x'},
		{"to", required_argument, NULL, 't'},
		{"go", required_argument, NULL, 'g'},
		{"family", required_argument, NULL, 'f'},
		{"udp", no_argument, NULL, 'u'},
		{"unconnected", no_argument, NULL, 'U'},
		{"sendmsg", no_argument, NULL, 'm'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	o->timeout_ms = DEFAULT_TIMEOUT_MS;
	while ((opt = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (opt) {
		case 'x': o->unix_path = optarg; break;
		case 't': o->to = optarg; break;
		case 'g': o->go = optarg; break;
		case 'f':
			if (family_parse(optarg, &o->fam))
				return -EINVAL;
			break;
		case 'u': o->udp = 1; break;
		case 'U': o->unconnected = 1; break;
		case 'm': o->use_sendmsg = 1; break;
		case 'T':
			if (parse_long(optarg, 1, 600000, &o->timeout_ms))
				return -EINVAL;
			break;
		default: return -EINVAL;
		}
	}
	return optind == argc ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	struct opts o;
	int ret = 2;

	memset(&o, 0, sizeof(o));
	if (argc < 2 || opts_parse(argc - 1, argv + 1, &o)) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "pass") && o.unix_path)
		ret = cmd_pass(&o);
	else if (!strcmp(argv[1], "receive") && o.unix_path && o.to)
		ret = cmd_receive(&o);
	else if (!strcmp(argv[1], "move") && o.to)
		ret = cmd_move(&o);
	else if (!strcmp(argv[1], "noaddr"))
		ret = cmd_noaddr(&o);
	else if (!strcmp(argv[1], "again") && o.to)
		ret = cmd_again(&o);
	if (ret == 2)
		usage();
	return ret;
}
