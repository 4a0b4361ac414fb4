// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "http.h"
#include "log.h"

/*
 * Room for many scrapers and probes; no one client address may hold more
 * than a few connections, so idle clients elsewhere cannot starve the
 * node's probes, and an idle connection goes after a few seconds.
 */
#define DEFAULT_MAX_CONNS  256
#define DEFAULT_MAX_PER_IP 16
#define DEFAULT_TIMEOUT_S  10
#define DEFAULT_MAX_BODY   (4u << 20)
/* Request line plus headers must fit in this much per connection. */
#define CONN_MEMORY 32768
/* No PEM file we accept is anywhere near this; it stops us reading /dev/zero. */
#define PEM_MAX (1u << 20)

struct sm_http {
	struct MHD_Daemon *daemon;
	struct sm_http_route *routes;
	size_t n_routes;
	void *arg;
	char *token; /* NULL: no authentication */
	size_t token_len;
	char *cert; /* PEM text; MHD reads it while starting */
	char *key;
	size_t key_len;
	size_t max_body;
	uint16_t port;
	/* Set before MHD's thread exists, so that thread reads it race-free. */
	pid_t starter;
};

/* Per request, from the headers until MHD reports it completed. */
struct req_state {
	const struct sm_http_route *route;
	char *body;
	size_t len;
	size_t cap;
	int err; /* -E2BIG (over the limit), -ENOMEM: the rest is dropped */
};

/* Split "HOST:PORT" or "[HOST]:PORT"; *bracketed says which it was. */
static int split_listen(const char *s, char *host, size_t size, bool *bracketed, uint16_t *port)
{
	const char *colon, *h = s;
	unsigned long p;
	size_t hlen;
	char *end;

	colon = s ? strrchr(s, ':') : NULL;
	if (!colon || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (*end || errno || p > 65535)
		return -EINVAL;

	hlen = colon - s;
	*bracketed = hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']';
	if (*bracketed) {
		h = s + 1;
		hlen -= 2;
	}
	if (!hlen || hlen >= size)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = p;
	return 0;
}

int sm_http_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	char host[INET6_ADDRSTRLEN];
	bool bracketed;
	uint16_t port;

	if (split_listen(s, host, sizeof(host), &bracketed, &port))
		return -EINVAL;

	/* IPv6 only in brackets, so "::1:80" is never ambiguous. */
	memset(ss, 0, sizeof(*ss));
	if (!bracketed && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (bracketed && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

const char *sm_http_query(const struct sm_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct unknown_arg {
	const char *const *known;
	const char *first;
};

static enum MHD_Result unknown_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	struct unknown_arg *u = cls;
	const char *const *k;

	(void)kind;
	(void)value;
	for (k = u->known; *k; k++)
		if (!strcmp(*k, key))
			return MHD_YES;
	u->first = key;
	return MHD_NO;
}

const char *sm_http_query_unknown(const struct sm_http_req *req, const char *const *known)
{
	struct unknown_arg u = {known, NULL};

	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, unknown_arg, &u);
	return u.first;
}

const char *sm_http_header(const struct sm_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int sm_http_resp_header(struct sm_http_resp *resp, const char *name, const char *value)
{
	char *n, *v;

	if (resp->n_hdrs >= SM_HTTP_MAX_HEADERS)
		return -ENOSPC;
	n = strdup(name);
	v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return -ENOMEM;
	}
	resp->hdr_names[resp->n_hdrs] = n;
	resp->hdr_values[resp->n_hdrs] = v;
	resp->n_hdrs++;
	return 0;
}

int sm_http_resp_json(struct sm_http_resp *resp, unsigned int status, struct json_object *obj)
{
	const char *s;
	size_t len;
	char *body;

	/* Unescaped slashes: cgroup paths stay readable and greppable. */
	s = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (!s)
		return -ENOMEM;
	body = malloc(len + 2);
	if (!body)
		return -ENOMEM;
	memcpy(body, s, len);
	body[len] = '\n';
	body[len + 1] = '\0';

	free(resp->body);
	resp->body = body;
	resp->len = len + 1;
	resp->status = status;
	resp->content_type = SM_HTTP_JSON;
	return 0;
}

static int resp_error_msg(struct sm_http_resp *resp, unsigned int status, const char *text)
{
	struct json_object *obj, *msg;
	int err = -ENOMEM;

	obj = json_object_new_object();
	if (!obj)
		return err;
	msg = json_object_new_string(text);
	if (!msg || json_object_object_add(obj, "error", msg))
		goto err_put_obj;
	err = sm_http_resp_json(resp, status, obj);

err_put_obj:
	json_object_put(obj);
	return err;
}

int sm_http_resp_error(struct sm_http_resp *resp, unsigned int status, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return resp_error_msg(resp, status, buf);
}

static void resp_release(struct sm_http_resp *resp)
{
	size_t i;

	for (i = 0; i < resp->n_hdrs; i++) {
		free(resp->hdr_names[i]);
		free(resp->hdr_values[i]);
	}
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

static void resp_init(struct sm_http_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->status = MHD_HTTP_OK;
	resp->content_type = SM_HTTP_JSON;
}

static struct MHD_Response *mhd_response(struct sm_http_resp *resp)
{
	struct MHD_Response *r;

	if (!resp->body)
		return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	r = MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, free);
	/* From here MHD frees the body, also if the response fails later. */
	if (r)
		resp->body = NULL;
	return r;
}

/* Hand resp to MHD and release what is left of it. */
static enum MHD_Result queue_resp(struct MHD_Connection *conn, struct sm_http_resp *resp)
{
	enum MHD_Result ret = MHD_NO;
	struct MHD_Response *r;
	size_t i;

	r = mhd_response(resp);
	if (!r)
		goto out_release;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type) != MHD_YES)
		goto out_destroy;
	for (i = 0; i < resp->n_hdrs; i++) {
		if (MHD_add_response_header(r, resp->hdr_names[i], resp->hdr_values[i]) !=
		    MHD_YES) {
			pr_debug("http: response header '%s': not valid, dropped",
				 resp->hdr_names[i]);
		}
	}
	ret = MHD_queue_response(conn, resp->status, r);

out_destroy:
	MHD_destroy_response(r);
out_release:
	resp_release(resp);
	return ret;
}

/* The wrapper's own errors; hdr may name one extra header to send. */
static enum MHD_Result queue_error(struct MHD_Connection *conn, unsigned int status,
				   const char *hdr, const char *value, const char *msg)
{
	struct sm_http_resp resp;

	resp_init(&resp);
	/* Without memory the status alone still tells the client enough. */
	resp_error_msg(&resp, status, msg);
	resp.status = status;
	if (hdr)
		sm_http_resp_header(&resp, hdr, value);
	return queue_resp(conn, &resp);
}

static bool method_matches(const struct sm_http_route *r, const char *method)
{
	return !strcmp(r->method, method) ||
	       (!strcmp(method, MHD_HTTP_METHOD_HEAD) && !strcmp(r->method, MHD_HTTP_METHOD_GET));
}

/* The route for path and method; NULL with *path_known set if only the method is wrong. */
static const struct sm_http_route *route_find(const struct sm_http *h, const char *path,
					      const char *method, bool *path_known)
{
	size_t i;

	*path_known = false;
	for (i = 0; i < h->n_routes; i++) {
		if (strcmp(h->routes[i].path, path))
			continue;
		*path_known = true;
		if (method_matches(&h->routes[i], method))
			return &h->routes[i];
	}
	return NULL;
}

/* 405 with the methods the path does take, HEAD included wherever GET is. */
static enum MHD_Result queue_405(const struct sm_http *h, struct MHD_Connection *conn,
				 const char *path)
{
	char allow[256] = "";
	size_t i, len = 0;

	for (i = 0; i < h->n_routes && len < sizeof(allow); i++) {
		if (strcmp(h->routes[i].path, path))
			continue;
		len += snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "",
				h->routes[i].method);
		if (!strcmp(h->routes[i].method, MHD_HTTP_METHOD_GET) && len < sizeof(allow))
			len += snprintf(allow + len, sizeof(allow) - len, ", HEAD");
	}
	return queue_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, MHD_HTTP_HEADER_ALLOW, allow,
			   "method not allowed");
}

/*
 * Compare the whole expected token whatever the input, so the time taken
 * tells an attacker nothing about how much of a guess was right.
 */
static bool token_equal(const char *given, const char *want, size_t want_len)
{
	size_t given_len = strlen(given);
	volatile unsigned char diff = given_len != want_len;
	size_t i;

	for (i = 0; i < want_len; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < given_len ? given[i] : 0);
	return !diff;
}

static bool authorized(const struct sm_http *h, struct MHD_Connection *conn)
{
	const char *v;

	v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	/* The scheme is case-insensitive (RFC 9110); the token is not. */
	if (!v || strncasecmp(v, "Bearer ", 7))
		return false;
	v += 7;
	while (*v == ' ')
		v++;
	return token_equal(v, h->token, h->token_len);
}

/* A declared body over the limit is refused before any of it is read. */
static bool declared_too_large(const struct sm_http *h, struct MHD_Connection *conn)
{
	const char *v;

	v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	return v && strtoull(v, NULL, 10) > h->max_body;
}

/* First call for a request: headers are in, the body (if any) is not. */
static enum MHD_Result on_headers(struct sm_http *h, struct MHD_Connection *conn, const char *path,
				  const char *method, void **con_cls)
{
	const struct sm_http_route *route;
	struct req_state *rs;
	bool path_known;

	route = route_find(h, path, method, &path_known);
	if (!route && !path_known)
		return queue_error(conn, MHD_HTTP_NOT_FOUND, NULL, NULL, "not found");
	if (!route)
		return queue_405(h, conn, path);
	if (route->auth && h->token && !authorized(h, conn))
		return queue_error(conn, MHD_HTTP_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				   "Bearer", "missing or wrong bearer token");
	if (declared_too_large(h, conn))
		return queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, NULL,
				   "request body too large");

	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return MHD_NO;
	rs->route = route;
	*con_cls = rs;
	return MHD_YES;
}

/* Keep a piece of the body, or drop it once the body is over the limit. */
static void take_body(const struct sm_http *h, struct req_state *rs, const char *data, size_t size)
{
	size_t cap = rs->cap ? rs->cap : 4096;
	char *p;

	if (rs->err)
		return;
	rs->err = -E2BIG;
	if (size > h->max_body - rs->len)
		goto err_drop;
	/* One spare byte for the NUL handlers may rely on. */
	while (cap < rs->len + size + 1)
		cap *= 2;
	if (cap != rs->cap) {
		rs->err = -ENOMEM;
		p = realloc(rs->body, cap);
		if (!p)
			goto err_drop;
		rs->body = p;
		rs->cap = cap;
	}
	memcpy(rs->body + rs->len, data, size);
	rs->len += size;
	rs->body[rs->len] = '\0';
	rs->err = 0;
	return;

err_drop:
	/*
	 * A declared length over the limit never gets here: only chunked
	 * bodies do. MHD cannot answer before the body ends, so it keeps
	 * reading it and we keep none of it.
	 */
	free(rs->body);
	rs->body = NULL;
	rs->len = 0;
	rs->cap = 0;
}

/* Last call for a request: run the handler and queue what it answered. */
static enum MHD_Result dispatch(struct sm_http *h, struct req_state *rs,
				struct MHD_Connection *conn, const char *path, const char *method)
{
	struct sm_http_req req = {
		.method = method,
		.path = path,
		.body = rs->body ? rs->body : "",
		.body_len = rs->len,
		.conn = conn,
	};
	struct sm_http_resp resp;
	int err;

	resp_init(&resp);
	err = rs->route->handler(&req, &resp, h->arg);
	if (err) {
		pr_debug("http: %s %s: handler failed: %s", method, path, strerror(-err));
		resp_release(&resp);
		resp_init(&resp);
		sm_http_resp_error(&resp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error: %s",
				   strerror(-err));
		resp.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	if (!resp.content_type)
		resp.content_type = SM_HTTP_JSON;
	if (resp.status < 100 || resp.status > 999) {
		pr_debug("http: %s %s: handler set status %u", method, path, resp.status);
		resp.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	return queue_resp(conn, &resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct sm_http *h = cls;
	struct req_state *rs = *con_cls;

	(void)version;
	if (!rs)
		return on_headers(h, conn, url, method, con_cls);
	if (*upload_data_size) {
		take_body(h, rs, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (rs->err == -E2BIG)
		return queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, NULL,
				   "request body too large");
	if (rs->err)
		return queue_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL,
				   "out of memory");
	return dispatch(h, rs, conn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req_state *rs = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (!rs)
		return;
	free(rs->body);
	free(rs);
	*con_cls = NULL;
}

/*
 * MHD's own messages. Those on the thread that starts the server say why
 * it could not (address in use, certificate and key do not match): they
 * are warnings. Those on MHD's thread are mostly about misbehaving
 * clients, who must not be able to flood the log: they are debug output.
 */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct sm_http *h = cls;
	char buf[512];
	size_t len;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	len = strlen(buf);
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (gettid() == h->starter)
		pr_warn("http: libmicrohttpd: %s", buf);
	else
		pr_debug("http: libmicrohttpd: %s", buf);
}

/* All of f into a NUL-terminated string: MHD wants PEM text so. */
static int read_all(FILE *f, char **out, size_t *out_len)
{
	size_t len = 0, cap = 4096, n;
	char *buf, *p;
	int err;

	*out = NULL;
	*out_len = 0;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	errno = 0;
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (len < cap - 1)
			continue;
		err = -EFBIG;
		if (cap >= PEM_MAX)
			goto err_free;
		err = -ENOMEM;
		p = realloc(buf, cap * 2);
		if (!p)
			goto err_free;
		buf = p;
		cap *= 2;
	}
	if (ferror(f)) {
		err = errno > 0 ? -errno : -EIO;
		goto err_free;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	return 0;

err_free:
	free(buf);
	return err;
}

static int read_pem(const char *what, const char *path, char **out, size_t *out_len)
{
	FILE *f;
	int err;

	f = fopen(path, "re");
	if (!f) {
		err = -errno;
		pr_warn("http: TLS %s '%s': %s", what, path, strerror(-err));
		return err;
	}
	err = read_all(f, out, out_len);
	fclose(f);
	if (err) {
		pr_warn("http: TLS %s '%s': read: %s", what, path, strerror(-err));
		return err;
	}
	if (!*out_len) {
		pr_warn("http: TLS %s '%s': empty file", what, path);
		free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

static int load_tls(struct sm_http *h, const struct sm_http_opts *opts)
{
	size_t cert_len;
	int err;

	if (!opts->tls_cert && !opts->tls_key)
		return 0;
	if (!opts->tls_cert || !opts->tls_key) {
		pr_warn("http: TLS needs both a certificate and a key file");
		return -EINVAL;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		pr_warn("http: TLS: libmicrohttpd was built without TLS support");
		return -EOPNOTSUPP;
	}
	err = read_pem("certificate", opts->tls_cert, &h->cert, &cert_len);
	if (err)
		return err;
	return read_pem("key", opts->tls_key, &h->key, &h->key_len);
}

/* The key and the token are secrets: wipe them before the memory goes back. */
static void http_free(struct sm_http *h)
{
	if (h->key)
		explicit_bzero(h->key, h->key_len);
	if (h->token)
		explicit_bzero(h->token, h->token_len);
	free(h->key);
	free(h->cert);
	free(h->token);
	free(h->routes);
	free(h);
}

static int http_setup(struct sm_http *h, const struct sm_http_opts *opts,
		      const struct sm_http_route *routes, size_t n_routes)
{
	if (n_routes) {
		h->routes = calloc(n_routes, sizeof(*routes));
		if (!h->routes)
			return -ENOMEM;
		memcpy(h->routes, routes, n_routes * sizeof(*routes));
	}
	h->n_routes = n_routes;
	h->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
	if (opts->token && *opts->token) {
		h->token = strdup(opts->token);
		if (!h->token)
			return -ENOMEM;
		h->token_len = strlen(h->token);
	}
	return load_tls(h, opts);
}

static uint16_t ss_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static struct MHD_Daemon *daemon_start(struct sm_http *h, const struct sm_http_opts *opts,
				       const struct sockaddr_storage *ss)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem tls[] = {
		{MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, h->key},
		{MHD_OPTION_END, 0, NULL},
	};

	if (ss->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (h->cert)
		flags |= MHD_USE_TLS;
	/* The port only makes MHD's messages name it; the address is what binds. */
	return MHD_start_daemon(flags, ss_port(ss), NULL, NULL, on_request, h,
				MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_SOCK_ADDR,
				ss, MHD_OPTION_CONNECTION_LIMIT,
				opts->max_conns ? opts->max_conns : DEFAULT_MAX_CONNS,
				MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				opts->max_per_ip ? opts->max_per_ip : DEFAULT_MAX_PER_IP,
				MHD_OPTION_CONNECTION_TIMEOUT,
				opts->timeout_s ? opts->timeout_s : DEFAULT_TIMEOUT_S,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
				MHD_OPTION_ARRAY, h->cert ? tls : &tls[2], MHD_OPTION_END);
}

int sm_http_start(struct sm_http **out, const struct sm_http_opts *opts,
		  const struct sm_http_route *routes, size_t n_routes, void *arg)
{
	const char *addr = opts->listen ? opts->listen : SM_HTTP_DEFAULT_LISTEN;
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage ss;
	struct sm_http *h;
	socklen_t sslen;
	int err;

	err = sm_http_parse_listen(addr, &ss, &sslen);
	if (err) {
		pr_warn("http: listen address '%s': expected IPv4:PORT or [IPv6]:PORT", addr);
		return err;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->arg = arg;
	err = http_setup(h, opts, routes, n_routes);
	if (err)
		goto err_free_server;

	h->starter = gettid();
	h->daemon = daemon_start(h, opts, &ss);
	if (!h->daemon) {
		/* MHD gives no errno; its own message, logged just above, says why. */
		err = -EIO;
		pr_warn("http: start on %s failed", addr);
		goto err_free_server;
	}
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : 0;
	pr_debug("http: listening on %s%s (port %u)", addr, h->cert ? " with TLS" : "", h->port);
	*out = h;
	return 0;

err_free_server:
	http_free(h);
	return err;
}

void sm_http_stop(struct sm_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	http_free(h);
}

uint16_t sm_http_port(const struct sm_http *h)
{
	return h->port;
}
