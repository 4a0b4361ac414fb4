/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The agent's HTTP server: a thin layer over libmicrohttpd that routes
 * exact paths to handlers, checks an optional bearer token, collects
 * request bodies up to a limit and answers its own errors as JSON.
 *
 * Threads: the server runs one internal thread (MHD's polling thread), and
 * every handler is called on it. So handlers never run concurrently with
 * each other, but they do run concurrently with the rest of the agent, and
 * whatever they read must be locked or otherwise safe to share. A handler
 * that blocks stalls every other request; keep them short.
 *
 * What the wrapper answers by itself, always with {"error": "..."}:
 * 404 for an unknown path, 405 with Allow for a known path and another
 * method, 401 with "WWW-Authenticate: Bearer" when a token is configured,
 * the route requires it and the request lacks it, 413 for a body over the
 * limit, and 500 when a handler fails. A HEAD request is served by the GET
 * route of its path (MHD sends no body). Requests that are not valid HTTP
 * never reach this code: libmicrohttpd answers them itself (400, 413 for
 * an absurd Content-Length, 414, 431 past 32 KiB of request line and
 * headers, 505) with a small HTML body, or closes the connection.
 */
#ifndef SM_HTTP_H
#define SM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SM_HTTP_DEFAULT_LISTEN "127.0.0.1:9477"
#define SM_HTTP_JSON	       "application/json"

struct sm_http_opts {
	const char *listen;	 /* "ADDR:PORT", ADDR IPv4 or [IPv6]; NULL: default */
	const char *token;	 /* bearer token; NULL or "": no authentication */
	const char *tls_cert;	 /* PEM file; NULL: plain HTTP */
	const char *tls_key;	 /* PEM file; needed with tls_cert */
	unsigned int max_conns;	 /* 0: 256 */
	unsigned int max_per_ip; /* connections one client address may hold; 0: 16 */
	unsigned int timeout_s;	 /* idle seconds before a connection closes; 0: 10 */
	size_t max_body;	 /* request body limit in bytes; 0: 4 MiB */
};

struct MHD_Connection;

/* What a handler sees of the request; valid only during the call. */
struct sm_http_req {
	const char *method; /* "GET", "HEAD", "PUT", ... */
	const char *path;   /* no query string, percent-decoded */
	const char *body;   /* never NULL; NUL-terminated after body_len bytes */
	size_t body_len;
	struct MHD_Connection *conn; /* for sm_http_query() and sm_http_header() */
};

/* A query parameter, percent-decoded; NULL when absent or given without '='. */
const char *sm_http_query(const struct sm_http_req *req, const char *name);
/*
 * The first query parameter whose name is not in known (NULL-terminated),
 * or NULL: a misspelt filter must not pass for no filter.
 */
const char *sm_http_query_unknown(const struct sm_http_req *req, const char *const *known);
/* A request header, by case-insensitive name; NULL when absent. */
const char *sm_http_header(const struct sm_http_req *req, const char *name);

#define SM_HTTP_MAX_HEADERS 8

/*
 * What a handler answers. It starts as 200, SM_HTTP_JSON, no body and no
 * extra headers. content_type must outlive the server (a literal); body
 * is malloc'd and the wrapper frees it, also when the handler fails.
 */
struct sm_http_resp {
	unsigned int status;
	const char *content_type;
	char *body;
	size_t len;
	/* Extra headers, copied in by sm_http_resp_header(); the wrapper frees them. */
	char *hdr_names[SM_HTTP_MAX_HEADERS];
	char *hdr_values[SM_HTTP_MAX_HEADERS];
	size_t n_hdrs;
};

/*
 * A handler returns 0 with resp filled, or -errno and the client gets 500
 * (the body it may have set is dropped). arg is the one given to start.
 */
typedef int (*sm_http_handler_fn)(const struct sm_http_req *req, struct sm_http_resp *resp,
				  void *arg);

struct sm_http_route {
	const char *method; /* "GET", "PUT", ... */
	const char *path;   /* exact: "/v1/status" */
	sm_http_handler_fn handler;
	bool auth; /* needs the bearer token, if one is configured */
};

struct sm_http;

/*
 * Start serving. The routes array is copied, but its strings must outlive
 * the server (literals). 0 or -errno; failures are logged with the step
 * and the file or address at fault.
 */
int sm_http_start(struct sm_http **out, const struct sm_http_opts *opts,
		  const struct sm_http_route *routes, size_t n_routes, void *arg);
/* Stop serving and free everything; waits for a running handler. NULL is fine. */
void sm_http_stop(struct sm_http *h);
/* The port actually bound (useful with port 0). */
uint16_t sm_http_port(const struct sm_http *h);

/*
 * Parse "ADDR:PORT" (IPv4 literal, or IPv6 literal in brackets) into *ss.
 * 0 or -EINVAL. The agent can check --listen with it before starting.
 */
int sm_http_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Add an extra header, copying name and value. 0, -ENOSPC or -ENOMEM. */
int sm_http_resp_header(struct sm_http_resp *resp, const char *name, const char *value);

struct json_object;

/*
 * Set status and an application/json body serialised from obj, ending in a
 * newline. obj stays the caller's (put it afterwards). 0 or -ENOMEM.
 */
int sm_http_resp_json(struct sm_http_resp *resp, unsigned int status, struct json_object *obj);
/* Set status and the body {"error": "<message, cut at 511 bytes>"}. 0 or -ENOMEM. */
int sm_http_resp_error(struct sm_http_resp *resp, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* SM_HTTP_H */
