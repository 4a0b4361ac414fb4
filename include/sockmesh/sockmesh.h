/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * sockmesh for applications.
 *
 * On a connected TCP socket of a process that sockmesh manages, read the
 * connection's trace id, the same on the client and on the server:
 *
 *	unsigned char id[SOCKMESH_TRACE_ID_LEN];
 *	char hex[SOCKMESH_TRACE_HEX_LEN];
 *	socklen_t len = sizeof(id);
 *
 *	if (getsockopt(fd, SOL_SOCKMESH, SOCKMESH_TRACE_ID, id, &len) == 0)
 *		sockmesh_trace_id_hex(id, hex);
 *
 * A socket that sockmesh's programs never see (no sockmesh on the node, or
 * a socket made outside the cgroup subtree the agent manages) fails as an
 * unknown socket level does: EOPNOTSUPP or ENOPROTOOPT, depending on the
 * protocol. A socket sockmesh sees that has no trace id (not a TCP
 * connection, opened before the agent started, or the id is still on its
 * way) fails with ENOENT.
 */
#ifndef SOCKMESH_SOCKMESH_H
#define SOCKMESH_SOCKMESH_H

/* A private socket level; no kernel protocol uses this number. */
#define SOL_SOCKMESH	  0x534d
#define SOCKMESH_TRACE_ID 1

#define SOCKMESH_TRACE_ID_LEN  16
#define SOCKMESH_TRACE_HEX_LEN 33 /* 32 hex digits and a NUL */

/* W3C trace-id form: 32 lower-case hex digits. */
static inline void sockmesh_trace_id_hex(const unsigned char *id, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < SOCKMESH_TRACE_ID_LEN; i++) {
		hex[2 * i] = digits[id[i] >> 4];
		hex[2 * i + 1] = digits[id[i] & 0xf];
	}
	hex[2 * SOCKMESH_TRACE_ID_LEN] = '\0';
}

#endif /* SOCKMESH_SOCKMESH_H */
