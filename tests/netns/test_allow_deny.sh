#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Allow and deny on real traffic: what a rule allows connects and the
# application gets the server's reply; what no rule allows fails at once
# in connect() with EPERM, puts no SYN on the wire (the netns's TCP
# counters do not move, the server sees nothing), the same through an
# IPv4-mapped address on an IPv6 socket, and leaves a deny record in the
# flow log naming who tried what.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/mesh_lib.sh
source "$(dirname "$0")/mesh_lib.sh"

sb_need_root
sb_init
mesh_start 90 10

# A denied connect() returns long before a lost SYN would be resent (1 s).
FAST_MS=200
N=5

# Connect N times from CGROUP to ADDR (FAMILY 4 or mapped): every attempt
# fails at once with EPERM, no SYN leaves and SERVER_LOG stays empty.
# Sets DENIED_PID for the flow-log checks.
assert_denied() {
	local label=$1 cg=$2 addr=$3 family=$4 server_log=$5
	local opens0 segs0 lines0

	opens0=$(mesh_tcp_counter ActiveOpens)
	segs0=$(mesh_tcp_counter OutSegs)
	lines0=$(mesh_lines "$server_log")
	mesh_smtest "$cg" connect --to "$addr" --family "$family" --count "$N"
	DENIED_PID=$MESH_PID
	sb_log "$label: slowest EPERM after $(sb_json .first_errno_ms "$MESH_OUT") ms"
	sb_assert_json "$label: connect() fails with EPERM" \
		".count == $N and .results == {\"EPERM\": $N}" "$MESH_OUT"
	sb_assert_le "$label: fails at once (slowest, ms)" \
		"$(sb_json .first_errno_ms "$MESH_OUT")" "$FAST_MS"
	sb_assert_eq "$label: no SYN sent (TcpActiveOpens)" "$opens0" \
		"$(mesh_tcp_counter ActiveOpens)"
	sb_assert_eq "$label: no segment sent (TcpOutSegs)" "$segs0" \
		"$(mesh_tcp_counter OutSegs)"
	sb_assert_eq "$label: the server saw no connection" "$lines0" \
		"$(mesh_lines "$server_log")"
}

# The deny records of process PID: N of them, each naming SRC, DST, the
# address dialled, the process and its cgroup.
assert_deny_records() {
	local label=$1 pid=$2 src=$3 dst=$4 orig=$5 cg=$6
	local sel=".event == \"deny\" and .pid == $pid"

	sb_wait_for "$label: $N deny records" 10 mesh_flow_count_is "$sel" "$N"
	sb_assert_json "$label: deny records name src, dst, verdict, reason, pid, comm, cgroup" \
		"all(.src == \"$src\" and .dst == \"$dst\" and
		     .verdict == \"denied\" and .reason == \"no_rule\" and
		     .side == \"client\" and .proto == \"tcp\" and
		     .orig_dst == \"$orig\" and .pid == $pid and
		     .comm == \"smtest\" and .cgroup == \"$cg\" and
		     .node == \"node-a\" and .rule == null and
		     (.ts | test(\"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\\\.[0-9]{9}Z$\")))" \
		"$(mesh_flows "$sel" | jq -s .)"
}

# Denials first, while no other traffic runs in the node: then the TCP
# counters can only move if a denied connect() sent something.
sb_assert_eq "no TCP connection opened yet" 0 "$(mesh_tcp_counter ActiveOpens)"

# frontend -> ratings: ratings has a rule only for reviews.
assert_denied "frontend -> ratings" /frontend "$MESH_RATINGS" 4 \
	"$MESH_LOG_RATINGS"
assert_deny_records "frontend -> ratings" "$DENIED_PID" frontend ratings \
	"$MESH_RATINGS" "$SB_CGROOT/frontend"

assert_denied "frontend -> ratings, v4-mapped" /frontend "$MESH_RATINGS" \
	mapped "$MESH_LOG_RATINGS"
assert_deny_records "frontend -> ratings, v4-mapped" "$DENIED_PID" \
	frontend ratings "$MESH_RATINGS" "$SB_CGROOT/frontend"

# A process of no service ("world") may not dial the VIP: no rule from
# world to reviews. It reaches neither backend.
v_lines=$(($(mesh_lines "$MESH_LOG_V1") + $(mesh_lines "$MESH_LOG_V2")))
assert_denied "world -> reviews VIP" /other "$MESH_VIP" 4 "$MESH_LOG_V1"
assert_deny_records "world -> reviews VIP" "$DENIED_PID" world reviews \
	"$MESH_VIP" "$SB_CGROOT/other"
assert_denied "world -> reviews VIP, v4-mapped" /other "$MESH_VIP" mapped \
	"$MESH_LOG_V2"
assert_deny_records "world -> reviews VIP, v4-mapped" "$DENIED_PID" world \
	reviews "$MESH_VIP" "$SB_CGROOT/other"
sb_assert_eq "no reviews backend saw the world's attempts" "$v_lines" \
	"$(($(mesh_lines "$MESH_LOG_V1") + $(mesh_lines "$MESH_LOG_V2")))"

# The counters do count real connects: an allowed one moves them.
opens0=$(mesh_tcp_counter ActiveOpens)

# frontend -> reviews VIP: allowed, answered by a reviews backend.
mesh_smtest /frontend connect --to "$MESH_VIP" --count 10 --timeout-ms 10000
sb_assert_json "frontend -> VIP: all connected" \
	'.count == 10 and .results == {"ok": 10}' "$MESH_OUT"
sb_assert_json "frontend -> VIP: every reply came from a reviews backend" \
	'(.tags | keys - ["v1", "v2"]) == [] and
	 ((.tags.v1 // 0) + (.tags.v2 // 0)) == 10' "$MESH_OUT"
sb_assert_eq "allowed connects are seen by the counters" \
	$((opens0 + 10)) "$(mesh_tcp_counter ActiveOpens)"
sb_assert_eq "the backends logged the 10 connections" $((v_lines + 10)) \
	"$(($(mesh_lines "$MESH_LOG_V1") + $(mesh_lines "$MESH_LOG_V2")))"

mesh_smtest /frontend connect --to "$MESH_VIP" --family mapped --count 5 \
	--timeout-ms 10000
sb_assert_json "frontend -> VIP, v4-mapped: all connected and answered" \
	'.results == {"ok": 5} and ((.tags.v1 // 0) + (.tags.v2 // 0)) == 5' \
	"$MESH_OUT"

# reviews -> ratings: allowed from either subset's cgroup.
r_lines=$(mesh_lines "$MESH_LOG_RATINGS")
mesh_smtest /reviews-v1 connect --to "$MESH_RATINGS" --count 5 \
	--timeout-ms 10000
sb_assert_json "reviews-v1 -> ratings: answered by ratings" \
	'.results == {"ok": 5} and .tags == {"ratings": 5}' "$MESH_OUT"
mesh_smtest /reviews-v2 connect --to "$MESH_RATINGS" --family mapped \
	--count 5 --timeout-ms 10000
sb_assert_json "reviews-v2 -> ratings, v4-mapped: answered by ratings" \
	'.results == {"ok": 5} and .tags == {"ratings": 5}' "$MESH_OUT"
sb_assert_eq "ratings logged the 10 allowed connections" $((r_lines + 10)) \
	"$(mesh_lines "$MESH_LOG_RATINGS")"

# Allowed connections leave no deny record; only the 4 x N above exist.
sb_assert_eq "deny records: only the denied attempts" $((4 * N)) \
	"$(mesh_flow_count '.event == "deny"')"
sb_assert_eq "the agent counts the denials" $((2 * N)) \
	"$(mesh_metric sockmesh_connections_total \
		'src="frontend",dst="ratings",verdict="denied"')"
sb_assert_eq "the agent counts the world's denials" $((2 * N)) \
	"$(mesh_metric sockmesh_connections_total \
		'src="world",dst="reviews",verdict="denied"')"
