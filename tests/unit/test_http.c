// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The HTTP wrapper, driven over real loopback sockets with hand-written
 * HTTP/1.1: routing, query parameters, bearer tokens, bodies and their
 * limit, garbage that must not hurt the server, and TLS when openssl and
 * curl are there to make a certificate and speak it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "http.h"
#include "log.h"

#define TOKEN	 "s3cret-t0ken"
#define MAX_BODY (256 * 1024)

/*
 * What handlers saw, for the test thread to check afterwards. The socket
 * already orders the accesses; the lock tells helgrind so.
 */
struct seen {
	pthread_mutex_t lock;
	pid_t tid;
	int body_terminated;
};

static struct seen g_seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int seen_get(const int *field)
{
	int v;

	pthread_mutex_lock(&g_seen.lock);
	v = *field;
	pthread_mutex_unlock(&g_seen.lock);
	return v;
}

static int h_hello(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	struct seen *seen = arg;

	pthread_mutex_lock(&seen->lock);
	seen->tid = gettid();
	pthread_mutex_unlock(&seen->lock);
	resp->content_type = "text/plain";
	resp->body = strdup(req->method);
	if (!resp->body)
		return -ENOMEM;
	resp->len = strlen(resp->body);
	return sm_http_resp_header(resp, "X-Test", "yes");
}

static int h_query(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	const char *name = sm_http_query(req, "name");
	const char *agent = sm_http_header(req, "user-agent");
	struct json_object *obj = json_object_new_object();
	int err;

	(void)arg;
	json_object_object_add(obj, "name", name ? json_object_new_string(name) : NULL);
	json_object_object_add(obj, "agent", agent ? json_object_new_string(agent) : NULL);
	err = sm_http_resp_json(resp, 200, obj);
	json_object_put(obj);
	return err;
}

/* Echo the body back; 500 if it is not NUL-terminated as promised. */
static int h_echo(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	struct seen *seen = arg;

	pthread_mutex_lock(&seen->lock);
	seen->body_terminated = req->body[req->body_len] == '\0';
	pthread_mutex_unlock(&seen->lock);
	resp->status = 201;
	resp->content_type = "application/octet-stream";
	resp->body = malloc(req->body_len + 1);
	if (!resp->body)
		return -ENOMEM;
	memcpy(resp->body, req->body, req->body_len);
	resp->len = req->body_len;
	return 0;
}

static int h_secret(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	(void)req;
	(void)arg;
	return sm_http_resp_error(resp, 418, "%s %d", "teapot", 7);
}

/* Fails after setting a body: the wrapper must free it and answer 500. */
static int h_fail(const struct sm_http_req *req, struct sm_http_resp *resp, void *arg)
{
	(void)req;
	(void)arg;
	resp->body = strdup("lost");
	resp->len = 4;
	sm_http_resp_header(resp, "X-Lost", "1");
	return -EIO;
}

static const struct sm_http_route routes[] = {
	{"GET", "/hello", h_hello, false},  {"GET", "/query", h_query, false},
	{"PUT", "/echo", h_echo, false},    {"POST", "/echo", h_echo, false},
	{"GET", "/secret", h_secret, true}, {"GET", "/fail", h_fail, false},
};

/* --- a tiny HTTP client --- */

struct reply {
	char *raw; /* everything the server sent */
	size_t len;
	int status;	  /* 0: no status line */
	const char *body; /* inside raw */
	size_t body_len;
};

static int connect_to(int family, uint16_t port)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timeval tv = {.tv_sec = 10};
	int fd, err;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin6.sin6_addr = in6addr_loopback;
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	/* A broken server fails the test instead of hanging it. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (family == AF_INET6)
		err = connect(fd, (struct sockaddr *)&sin6, sizeof(sin6));
	else
		err = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	assert_int_equal(err, 0);
	return fd;
}

/* Send all of buf; false if the peer went away first. */
static bool send_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		buf += n;
		len -= n;
	}
	return true;
}

/* Read until the server closes; ECONNRESET after a response still counts. */
static void read_reply(int fd, struct reply *r)
{
	size_t cap = 4096;
	const char *end;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	r->raw = malloc(cap);
	for (;;) {
		if (r->len + 1 == cap)
			r->raw = realloc(r->raw, cap *= 2);
		n = recv(fd, r->raw + r->len, cap - r->len - 1, 0);
		if (n <= 0)
			break;
		r->len += n;
	}
	if (n < 0 && errno != ECONNRESET)
		fail_msg("recv: %s, after %zu bytes:\n%.300s", strerror(errno), r->len, r->raw);
	r->raw[r->len] = '\0';
	if (sscanf(r->raw, "HTTP/1.%*d %d ", &r->status) != 1)
		r->status = 0;
	end = strstr(r->raw, "\r\n\r\n");
	if (end) {
		r->body = end + 4;
		r->body_len = r->len - (r->body - r->raw);
	}
	close(fd);
}

static void request_n(int family, uint16_t port, const char *req, size_t len, struct reply *r)
{
	int fd = connect_to(family, port);

	assert_true(send_all(fd, req, len));
	read_reply(fd, r);
}

static void request(uint16_t port, const char *req, struct reply *r)
{
	request_n(AF_INET, port, req, strlen(req), r);
}

/* A header's value (case-insensitive name) copied into buf; false if absent. */
static bool header(const struct reply *r, const char *name, char *buf, size_t size)
{
	size_t nlen = strlen(name);
	const char *p, *eol;

	for (p = strstr(r->raw, "\r\n"); p && p + 2 < r->body; p = eol) {
		p += 2;
		eol = strstr(p, "\r\n");
		if (!eol || strncasecmp(p, name, nlen) || p[nlen] != ':')
			continue;
		p += nlen + 1;
		while (*p == ' ')
			p++;
		snprintf(buf, size, "%.*s", (int)(eol - p), p);
		return true;
	}
	return false;
}

static void reply_free(struct reply *r)
{
	free(r->raw);
}

/* A JSON error reply: the status, the content type and {"error": "..."}. */
static void expect_error(struct reply *r, int status)
{
	struct json_object *obj, *msg;
	char ctype[64];

	if (r->status != status)
		print_error("reply:\n%s\n", r->raw);
	assert_int_equal(r->status, status);
	assert_true(header(r, "Content-Type", ctype, sizeof(ctype)));
	assert_string_equal(ctype, "application/json");
	obj = json_tokener_parse(r->body);
	assert_non_null(obj);
	assert_true(json_object_object_get_ex(obj, "error", &msg));
	assert_true(json_object_is_type(msg, json_type_string));
	assert_true(json_object_get_string_len(msg) > 0);
	json_object_put(obj);
}

/* --- fixtures --- */

static struct sm_http *start(const struct sm_http_opts *opts)
{
	struct sm_http *h = NULL;

	assert_int_equal(
		sm_http_start(&h, opts, routes, sizeof(routes) / sizeof(routes[0]), &g_seen), 0);
	assert_non_null(h);
	assert_int_not_equal(sm_http_port(h), 0);
	return h;
}

static int setup(void **state)
{
	struct sm_http_opts opts = {
		.listen = "127.0.0.1:0",
		.token = TOKEN,
		.max_body = MAX_BODY,
	};

	*state = start(&opts);
	return 0;
}

static int teardown(void **state)
{
	sm_http_stop(*state);
	return 0;
}

static uint16_t port_of(void **state)
{
	return sm_http_port(*state);
}

/* --- tests --- */

static void test_ok(void **state)
{
	struct reply r;
	char v[64];
	pid_t tid;

	request(port_of(state), "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	assert_true(header(&r, "Content-Type", v, sizeof(v)));
	assert_string_equal(v, "text/plain");
	assert_true(header(&r, "X-Test", v, sizeof(v)));
	assert_string_equal(v, "yes");
	assert_int_equal(r.body_len, 3);
	assert_memory_equal(r.body, "GET", 3);
	/* Handlers run on the server's thread, not the caller's. */
	tid = seen_get(&g_seen.tid);
	assert_true(tid != 0 && tid != gettid());
	reply_free(&r);

	/* HEAD is served by the GET route, without a body. */
	request(port_of(state), "HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 0);
	reply_free(&r);
}

static void expect_query(uint16_t port, const char *target, const char *want)
{
	struct json_object *obj, *name;
	struct reply r;
	char req[512];

	snprintf(req, sizeof(req),
		 "GET %s HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\n"
		 "Connection: close\r\n\r\n",
		 target);
	request(port, req, &r);
	assert_int_equal(r.status, 200);
	obj = json_tokener_parse(r.body);
	assert_non_null(obj);
	assert_true(json_object_object_get_ex(obj, "name", &name));
	if (want)
		assert_string_equal(json_object_get_string(name), want);
	else
		assert_null(name);
	assert_true(json_object_object_get_ex(obj, "agent", &name));
	assert_string_equal(json_object_get_string(name), "t/1");
	json_object_put(obj);
	reply_free(&r);
}

static void test_query(void **state)
{
	expect_query(port_of(state), "/query?name=reviews", "reviews");
	expect_query(port_of(state), "/query?limit=3&name=a%20b%22c", "a b\"c");
	expect_query(port_of(state), "/query?name=", "");
	expect_query(port_of(state), "/query", NULL);
	expect_query(port_of(state), "/query?other=1", NULL);
	/* Malformed escapes reach the handler as whatever MHD makes of them. */
	expect_query(port_of(state), "/query?%zz=%&&=&name=x%", "x%");
}

static void test_not_found(void **state)
{
	struct reply r;

	request(port_of(state), "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	expect_error(&r, 404);
	reply_free(&r);

	/* Paths are exact. */
	request(port_of(state), "GET /hello/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	expect_error(&r, 404);
	reply_free(&r);
}

static void test_method(void **state)
{
	struct reply r;
	char allow[64];

	request(port_of(state), "DELETE /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		&r);
	expect_error(&r, 405);
	assert_true(header(&r, "Allow", allow, sizeof(allow)));
	assert_string_equal(allow, "GET, HEAD");
	reply_free(&r);

	request(port_of(state), "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	expect_error(&r, 405);
	assert_true(header(&r, "Allow", allow, sizeof(allow)));
	assert_string_equal(allow, "PUT, POST");
	reply_free(&r);
}

static void expect_unauthorized(uint16_t port, const char *auth_line)
{
	struct reply r;
	char req[512], v[64];

	snprintf(req, sizeof(req), "GET /secret HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
		 auth_line);
	request(port, req, &r);
	expect_error(&r, 401);
	assert_true(header(&r, "WWW-Authenticate", v, sizeof(v)));
	assert_string_equal(v, "Bearer");
	reply_free(&r);
}

static void expect_authorized(uint16_t port, const char *auth_line)
{
	struct reply r;
	char req[512];

	snprintf(req, sizeof(req), "GET /secret HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
		 auth_line);
	request(port, req, &r);
	expect_error(&r, 418);
	assert_non_null(strstr(r.body, "\"teapot 7\""));
	reply_free(&r);
}

static void test_auth(void **state)
{
	uint16_t port = port_of(state);
	struct reply r;

	expect_unauthorized(port, "");
	expect_unauthorized(port, "Authorization: Bearer wrong\r\n");
	expect_unauthorized(port, "Authorization: Bearer s3cret-t0ke\r\n");
	expect_unauthorized(port, "Authorization: Bearer s3cret-t0kenX\r\n");
	expect_unauthorized(port, "Authorization: Bearer S3CRET-T0KEN\r\n");
	expect_unauthorized(port, "Authorization: Basic czNjcmV0LXQwa2Vu\r\n");
	expect_unauthorized(port, "Authorization: " TOKEN "\r\n");
	expect_unauthorized(port, "Authorization: Bearer\r\n");
	expect_authorized(port, "Authorization: Bearer " TOKEN "\r\n");
	expect_authorized(port, "authorization: bearer " TOKEN "\r\n");

	/* Routes that do not ask for the token do without it. */
	request(port, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);
}

/* Without a configured token, no route asks for one. */
static void test_no_token(void **state)
{
	struct sm_http_opts opts = {.listen = "127.0.0.1:0", .token = ""};
	struct sm_http *h = start(&opts);

	(void)state;
	expect_authorized(sm_http_port(h), "");
	sm_http_stop(h);
}

/* A body of len bytes, with every byte value, NULs included. */
static char *make_body(size_t len)
{
	char *body = malloc(len);
	size_t i;

	for (i = 0; i < len; i++)
		body[i] = (char)(i * 7 + i / 256);
	return body;
}

static void put_body(uint16_t port, const char *method, size_t len, int want)
{
	char *body = make_body(len);
	char head[256];
	struct reply r;
	int fd;

	snprintf(head, sizeof(head),
		 "%s /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n",
		 method, len);
	fd = connect_to(AF_INET, port);
	assert_true(send_all(fd, head, strlen(head)));
	/* On a 413 the server may close before taking it all. */
	send_all(fd, body, len);
	read_reply(fd, &r);
	if (want == 201) {
		assert_int_equal(r.status, 201);
		assert_int_equal(r.body_len, len);
		assert_memory_equal(r.body, body, len);
		assert_true(seen_get(&g_seen.body_terminated));
	} else {
		expect_error(&r, want);
	}
	reply_free(&r);
	free(body);
}

static void test_body(void **state)
{
	uint16_t port = port_of(state);

	put_body(port, "PUT", 0, 201);
	put_body(port, "PUT", 1, 201);
	put_body(port, "PUT", 100000, 201);
	put_body(port, "POST", MAX_BODY, 201);
	put_body(port, "PUT", MAX_BODY + 1, 413);
}

/* A chunked body gives no length up front; it is counted as it arrives. */
static void put_chunked(uint16_t port, size_t chunk, size_t n_chunks, int want)
{
	static const char head[] = "PUT /echo HTTP/1.1\r\nHost: x\r\n"
				   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
	char *body = make_body(chunk);
	char line[64];
	struct reply r;
	size_t i;
	int fd;

	fd = connect_to(AF_INET, port);
	assert_true(send_all(fd, head, sizeof(head) - 1));
	for (i = 0; i < n_chunks; i++) {
		snprintf(line, sizeof(line), "%zx\r\n", chunk);
		assert_true(send_all(fd, line, strlen(line)));
		assert_true(send_all(fd, body, chunk));
		assert_true(send_all(fd, "\r\n", 2));
	}
	assert_true(send_all(fd, "0\r\n\r\n", 5));
	read_reply(fd, &r);
	if (want == 201) {
		assert_int_equal(r.status, 201);
		assert_int_equal(r.body_len, chunk * n_chunks);
	} else {
		expect_error(&r, want);
	}
	reply_free(&r);
	free(body);
}

static void test_chunked(void **state)
{
	put_chunked(port_of(state), 4096, MAX_BODY / 4096, 201);
	put_chunked(port_of(state), 4096, MAX_BODY / 4096 + 1, 413);
}

/* The default limit is 4 MiB, refused from the header alone. */
static void test_default_limit(void **state)
{
	struct sm_http_opts opts = {.listen = "127.0.0.1:0"};
	struct sm_http *h = start(&opts);
	struct reply r;

	(void)state;
	request(sm_http_port(h),
		"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4194305\r\n"
		"Connection: close\r\n\r\n",
		&r);
	expect_error(&r, 413);
	reply_free(&r);
	request(sm_http_port(h),
		"PUT /echo HTTP/1.1\r\nHost: x\r\n"
		"Content-Length: 99999999999999999999999\r\nConnection: close\r\n\r\n",
		&r);
	assert_true(r.status >= 400 && r.status < 500);
	reply_free(&r);
	sm_http_stop(h);
}

static void test_handler_fails(void **state)
{
	struct reply r;
	char v[16];

	request(port_of(state), "GET /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	expect_error(&r, 500);
	assert_false(header(&r, "X-Lost", v, sizeof(v)));
	reply_free(&r);
}

/*
 * Garbage on one connection; while it is still open, a good request on
 * another must be served (the one server thread is not stuck on it).
 */
static void garbage(uint16_t port, const char *req, size_t len)
{
	struct reply r;
	int fd;

	fd = connect_to(AF_INET, port);
	/* The server may close before taking all of a huge request. */
	send_all(fd, req, len);

	request(port, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);

	/*
	 * MHD answers 4xx or 505, or closes, or (for a request line that
	 * starts with a NUL) waits for more; our EOF ends that wait.
	 */
	shutdown(fd, SHUT_WR);
	read_reply(fd, &r);
	if (getenv("TEST_VERBOSE") || (r.status && r.status < 400))
		print_message("request:\n%.200s\nreply:\n%.300s\n", req, r.raw);
	assert_true(r.status == 0 || r.status >= 400);
	reply_free(&r);
}

/* A literal, NULs and all. */
#define GARBAGE(port, lit) garbage(port, lit, sizeof(lit) - 1)

static void test_garbage(void **state)
{
	static const char head[] = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ";
	uint16_t port = port_of(state);
	size_t big = 100000;
	char *huge;

	GARBAGE(port, "GARBAGE\r\n\r\n");
	GARBAGE(port, "GET\r\n\r\n");
	GARBAGE(port, "GET /hello HTTP/9.9\r\nHost: x\r\n\r\n");
	GARBAGE(port, "GET /hello HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n");
	GARBAGE(port, "\x00\xff\xfe\r\n");
	GARBAGE(port, "\x01\x02\xff\r\n\r\n");
	GARBAGE(port, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n");
	GARBAGE(port, "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		      "Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n");
	GARBAGE(port, "PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		      "zz\r\n\r\n");

	/* One header far over the per-connection memory. */
	huge = malloc(big + 64);
	memcpy(huge, head, sizeof(head) - 1);
	memset(huge + sizeof(head) - 1, 'a', big);
	strcpy(huge + sizeof(head) - 1 + big, "\r\n\r\n");
	garbage(port, huge, strlen(huge));
	/* And a request line (URL) far over it. */
	memcpy(huge, "GET /", 5);
	memset(huge + 5, 'b', big);
	strcpy(huge + 5 + big, " HTTP/1.1\r\nHost: x\r\n\r\n");
	garbage(port, huge, strlen(huge));
	free(huge);
}

/* Stopping with an idle connection open neither hangs nor leaks. */
static void test_stop_with_open_conn(void **state)
{
	struct sm_http_opts opts = {.listen = "127.0.0.1:0"};
	struct sm_http *h = start(&opts);
	char buf[16];
	int fd;

	(void)state;
	fd = connect_to(AF_INET, sm_http_port(h));
	assert_true(send_all(fd, "GET /hel", 8));
	usleep(100000);
	sm_http_stop(h);
	/* The server closed our half-sent request. */
	assert_true(recv(fd, buf, sizeof(buf), 0) <= 0);
	close(fd);
	sm_http_stop(NULL);
}

static void test_ipv6(void **state)
{
	struct sm_http_opts opts = {.listen = "[::1]:0"};
	struct sm_http *h = NULL;
	struct reply r;
	int fd;

	(void)state;
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0) {
		skip();
		return;
	}
	close(fd);
	if (sm_http_start(&h, &opts, routes, 1, &g_seen)) {
		/* No ::1 here (IPv6 disabled in this namespace). */
		skip();
		return;
	}
	request_n(AF_INET6, sm_http_port(h),
		  "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 54, &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);
	sm_http_stop(h);
}

/* A connection from 127.0.0.2 that sends half a request and waits. */
static int idle_client(uint16_t port)
{
	struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
	static const char half[] = "GET /hello HTTP/1.1\r\nHost: x\r\n";
	struct timeval tv = {.tv_sec = 1};
	int fd;

	src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	dst.sin_port = htons(port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof(dst)), 0);
	send_all(fd, half, sizeof(half) - 1);
	return fd;
}

/*
 * Idle clients at one address cannot starve everyone else: past the
 * per-address limit the server closes their connections at once, and a
 * request from another address (a node's probe) is answered meanwhile,
 * though the idle ones outnumber the server's connection limit. The idle
 * timeout is far off: only the per-address limit can close them.
 */
static void test_idle_clients(void **state)
{
	struct sm_http_opts opts = {.listen = "127.0.0.1:0", .max_conns = 32, .timeout_s = 120};
	int fds[64], closed = 0, i;
	struct sm_http *h;
	struct reply r;
	char c;

	(void)state;
	h = start(&opts);
	for (i = 0; i < 64; i++)
		fds[i] = idle_client(sm_http_port(h));
	for (i = 16; i < 64; i++) {
		ssize_t n = recv(fds[i], &c, 1, 0);

		/* Closed by the server, not a timeout of ours. */
		closed += n == 0 || (n < 0 && errno == ECONNRESET);
	}
	/* libmicrohttpd lets the connection at the limit in too. */
	assert_in_range(closed, 47, 48);
	request(sm_http_port(h), "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	assert_int_equal(r.status, 200);
	reply_free(&r);
	for (i = 0; i < 64; i++)
		close(fds[i]);
	sm_http_stop(h);
}

static void expect_listen(const char *s, int family, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;

	assert_int_equal(sm_http_parse_listen(s, &ss, &len), 0);
	assert_int_equal(ss.ss_family, family);
	if (family == AF_INET) {
		assert_int_equal(len, sizeof(struct sockaddr_in));
		assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), port);
	} else {
		assert_int_equal(len, sizeof(struct sockaddr_in6));
		assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), port);
	}
}

static void test_parse_listen(void **state)
{
	static const char *const bad[] = {
		"",
		":80",
		"127.0.0.1",
		"127.0.0.1:",
		"127.0.0.1:x",
		"127.0.0.1:65536",
		"127.0.0.1:-1",
		"127.0.0.1:+1",
		"127.0.0.1: 1",
		"127.0.0.1:80x",
		"::1:80",
		"[::1]",
		"[::1:80",
		"::1]:80",
		"[127.0.0.1]:80",
		"localhost:80",
		"[]:80",
		"1.2.3:80",
		"[fe80::1%lo]:80",
		"127.0.0.1:99999999999999999999",
	};
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i;

	(void)state;
	expect_listen(SM_HTTP_DEFAULT_LISTEN, AF_INET, 9477);
	expect_listen("0.0.0.0:0", AF_INET, 0);
	expect_listen("[::]:65535", AF_INET6, 65535);
	expect_listen("[fd00::10]:9080", AF_INET6, 9080);
	expect_listen("[::ffff:127.0.0.1]:1", AF_INET6, 1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sm_http_parse_listen(bad[i], &ss, &len) != -EINVAL)
			fail_msg("'%s' parsed", bad[i]);
	}
	assert_int_equal(sm_http_parse_listen(NULL, &ss, &len), -EINVAL);
}

static void test_start_errors(void **state)
{
	struct sm_http_opts opts = {.listen = "127.0.0.1:0"};
	struct sm_http *h = NULL, *h2 = NULL;
	char busy[32];

	(void)state;
	opts.listen = "nonsense";
	assert_int_equal(sm_http_start(&h, &opts, routes, 1, NULL), -EINVAL);

	opts.listen = "127.0.0.1:0";
	opts.tls_cert = "/nonexistent/cert.pem";
	opts.tls_key = "/nonexistent/key.pem";
	assert_int_equal(sm_http_start(&h, &opts, routes, 1, NULL), -ENOENT);
	opts.tls_key = NULL;
	assert_int_equal(sm_http_start(&h, &opts, routes, 1, NULL), -EINVAL);
	opts.tls_cert = "/dev/null";
	opts.tls_key = "/dev/null";
	assert_int_equal(sm_http_start(&h, &opts, routes, 1, NULL), -EINVAL);
	opts.tls_cert = "/";
	assert_true(sm_http_start(&h, &opts, routes, 1, NULL) < 0);
	assert_null(h);

	/* A port already taken. */
	opts.tls_cert = opts.tls_key = NULL;
	h = start(&opts);
	snprintf(busy, sizeof(busy), "127.0.0.1:%u", sm_http_port(h));
	opts.listen = busy;
	assert_true(sm_http_start(&h2, &opts, routes, 1, NULL) < 0);
	assert_null(h2);
	sm_http_stop(h);
}

static int run(const char *cmd)
{
	int status = system(cmd);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A self-signed certificate from openssl, fetched through curl. */
static void test_tls(void **state)
{
	char dir[] = "/tmp/test_http.XXXXXX";
	char cert[64], key[64], cmd[512];
	struct sm_http_opts opts = {.listen = "127.0.0.1:0", .token = TOKEN};
	struct sm_http *h = NULL;

	(void)state;
	if (access("/usr/bin/openssl", X_OK) || access("/usr/bin/curl", X_OK)) {
		skip();
		return;
	}
	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec "
		 "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost "
		 "-keyout %s -out %s 2>/dev/null",
		 key, cert);
	assert_int_equal(run(cmd), 0);

	opts.tls_cert = cert;
	opts.tls_key = key;
	h = start(&opts);
	snprintf(cmd, sizeof(cmd),
		 "curl -sfk -o /dev/null -H 'Authorization: Bearer %s' "
		 "https://127.0.0.1:%u/secret -w '%%{http_code}' | grep -qx 418",
		 TOKEN, sm_http_port(h));
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "curl -sk https://127.0.0.1:%u/hello | grep -qx GET",
		 sm_http_port(h));
	assert_int_equal(run(cmd), 0);
	/* Plain HTTP to a TLS port gets no answer. */
	snprintf(cmd, sizeof(cmd), "curl -s -m 5 http://127.0.0.1:%u/hello | grep -q GET",
		 sm_http_port(h));
	assert_int_not_equal(run(cmd), 0);
	sm_http_stop(h);

	/* A key that is not the certificate's. */
	snprintf(cmd, sizeof(cmd),
		 "openssl genpkey -algorithm EC "
		 "-pkeyopt ec_paramgen_curve:prime256v1 -out %s 2>/dev/null",
		 key);
	assert_int_equal(run(cmd), 0);
	h = NULL;
	assert_true(sm_http_start(&h, &opts, routes, 1, NULL) < 0);
	assert_null(h);

	unlink(cert);
	unlink(key);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_listen),  cmocka_unit_test(test_ok),
		cmocka_unit_test(test_query),	      cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_method),	      cmocka_unit_test(test_auth),
		cmocka_unit_test(test_body),	      cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_handler_fails), cmocka_unit_test(test_garbage),
	};
	const struct CMUnitTest alone[] = {
		cmocka_unit_test(test_no_token),
		cmocka_unit_test(test_default_limit),
		cmocka_unit_test(test_stop_with_open_conn),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_start_errors),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_idle_clients),
	};
	int failed;

	/* The start-error tests print warnings: what an operator would read. */
	sm_log_init("test_http", getenv("TEST_VERBOSE") ? SM_LOG_DEBUG : SM_LOG_WARN);
	failed = cmocka_run_group_tests_name("one server", tests, setup, teardown);
	failed += cmocka_run_group_tests_name("own servers", alone, NULL, NULL);
	return failed;
}
