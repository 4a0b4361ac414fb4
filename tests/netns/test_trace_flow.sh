#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Trace ids and flow records on real traffic: for a connection frontend ->
# VIP the client's trace id (getsockopt on the client socket) equals the
# server's (getsockopt on the accepted socket); the flow log holds a
# connect and a close record for each side with that id, the close records
# carry the exact bytes each way (both sides count bytes_sent from src, the
# client, to dst), and GET /v1/flows?trace_id= returns them (limit= bounds
# them; a limit that is not a number from 1 to 1000000 is a 400).
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/mesh_lib.sh
source "$(dirname "$0")/mesh_lib.sh"

sb_need_root
sb_init
mesh_start 90 10

# More than fits in one segment or one receive window step.
SEND=100000
HEX='^[0-9a-f]{32}$'
ZERO=00000000000000000000000000000000

# The server log line (either backend) for which jq FILTER is true.
server_line() {
	cat "$MESH_LOG_V1" "$MESH_LOG_V2" | jq -c "select($1)"
}

# Step 1: one connection that sends SEND bytes; the server answers its tag.
mesh_smtest /frontend connect --to "$MESH_VIP" --send "$SEND" \
	--timeout-ms 20000
sb_assert_json "the connection went through" \
	'.results == {"ok": 1} and (.tags | length) == 1 and
	 (.trace_ids | length) == 1 and .trace_errors == {}' "$MESH_OUT"
pid=$MESH_PID
tid=$(sb_json '.trace_ids[0]' "$MESH_OUT")
tag=$(sb_json '.tags | keys[0]' "$MESH_OUT")
backend=$MESH_V1
[[ $tag == v1 ]] || backend=$MESH_V2
reply=$((${#tag} + 1))	# the tag and a newline
sb_log "trace id $tid, answered by $tag ($backend)"
sb_assert_match "client trace id is 32 hex digits" "$HEX" "$tid"
[[ $tid != "$ZERO" ]] || sb_fail "client trace id is all zeros"

line=$(server_line ".trace_id == \"$tid\"")
[[ -n $line ]] || sb_fail "no server logged a connection with trace id $tid"
sb_assert_json "the server read the same trace id from the accepted socket" \
	".trace_id == \"$tid\" and .bytes_received == $SEND and
	 .local == \"$backend\"" "$line"

# Step 2: the flow log, both sides, connect and close.
sb_wait_for "4 flow records with trace id $tid" 10 \
	mesh_flow_count_is ".trace_id == \"$tid\"" 4
recs=$(mesh_flows ".trace_id == \"$tid\"" | jq -s .)
one() {
	local r
	r=$(jq -c "[.[] | select(.event == \"$1\" and .side == \"$2\")] |
		if length == 1 then .[0] else empty end" <<<"$recs")
	[[ -n $r ]] || sb_fail "not exactly one $1 record of the $2: $recs"
	echo "$r"
}
c_conn=$(one connect client)
s_conn=$(one connect server)
c_close=$(one close client)
s_close=$(one close server)

sb_assert_json "client connect record" \
	".src == \"frontend\" and .dst == \"reviews\" and .subset == \"$tag\" and
	 .orig_dst == \"$MESH_VIP\" and .dst_addr == \"$backend\" and
	 .proto == \"tcp\" and .verdict == \"allowed\" and .reason == \"rule\" and
	 .rule == 0 and .pid == $pid and .comm == \"smtest\" and
	 .cgroup == \"$SB_CGROOT/frontend\" and .node == \"node-a\"" "$c_conn"
sb_assert_json "server connect record, naming the rule that let it in" \
	".src == \"frontend\" and .dst == \"reviews\" and .subset == \"$tag\" and
	 .dst_addr == \"$backend\" and .verdict == \"allowed\" and
	 .reason == \"rule\" and .rule == 0 and
	 .comm == \"smtest\" and .cgroup == \"$SB_CGROOT/reviews-$tag\"" "$s_conn"
sb_assert_json "both ends name the same client address" \
	'.[0].src_addr == .[1].src_addr and .[0].src_addr != ""' \
	"[$c_conn, $s_conn]"
sb_assert_json "client close: bytes sent $SEND, received $reply" \
	".bytes_sent == $SEND and .bytes_received == $reply and
	 .pid == $pid and .cookie == $(sb_json .cookie "$c_conn") and
	 .duration_ns > 0 and (has(\"error\") | not)" \
	"$c_close"
# Both ends report the connection the same way round (README, "The flow
# log"): bytes_sent went from src, the client, to dst.
sb_assert_json "server close: the same bytes, src to dst $SEND, back $reply" \
	".bytes_sent == $SEND and .bytes_received == $reply and
	 .cookie == $(sb_json .cookie "$s_conn") and .duration_ns > 0 and
	 (has(\"error\") | not)" "$s_close"

# Step 3: the agent's query by trace id returns exactly those records.
api=$(curl -fsS --max-time 5 "$MESH_URL/v1/flows?trace_id=$tid")
sb_assert_json "GET /v1/flows?trace_id= returns the 4 records" \
	"length == 4 and all(.[]; .trace_id == \"$tid\") and
	 ([.[] | .event + \"/\" + .side] | sort) ==
	 [\"close/client\", \"close/server\", \"connect/client\", \"connect/server\"]" \
	"$api"
sb_assert_json "the API and the file agree on the close records" \
	"([.[] | select(.event == \"close\") | [.side, .bytes_sent, .bytes_received]] | sort) ==
	 [[\"client\", $SEND, $reply], [\"server\", $SEND, $reply]]" "$api"
api=$(curl -fsS --max-time 5 "$MESH_URL/v1/flows?trace_id=$tid&limit=2")
sb_assert_json "GET /v1/flows?trace_id=&limit=2: the newest 2 of them" \
	"length == 2 and all(.[]; .trace_id == \"$tid\")" "$api"
for bad in 0 -1 +2 " 2" 2x 1000001; do
	code=$(curl -sS --max-time 5 -o "$SB_WORK/limit.out" -w '%{http_code}' \
		-G --data-urlencode "limit=$bad" "$MESH_URL/v1/flows")
	sb_assert_eq "limit='$bad': 400" 400 "$code"
	sb_assert_json "limit='$bad': the error names it" \
		".error | test(\"limit: '\")" "$(cat "$SB_WORK/limit.out")"
done

# Step 4: getsockopt right after connect() (smtest trace), v4 and v4-mapped:
# the server's accepted socket reads the same id.
for fam in 4 mapped; do
	mesh_smtest /frontend trace --to "$MESH_VIP" --family "$fam" \
		--timeout-ms 10000
	t=$(sb_json '.trace_id // ""' "$MESH_OUT")
	sb_assert_match "trace, $fam: client id right after connect()" "$HEX" "$t"
	# The server's socket is IPv4: it sees the mapped client as v4.
	local_addr=$(sb_json .local "$MESH_OUT")
	if [[ $local_addr =~ ^\[::ffff:([0-9.]+)\]:([0-9]+)$ ]]; then
		local_addr=${BASH_REMATCH[1]}:${BASH_REMATCH[2]}
	fi
	line=$(server_line ".peer == \"$local_addr\"")
	[[ -n $line ]] || sb_fail "trace, $fam: no server logged $local_addr"
	sb_assert_json "trace, $fam: the server's id for that connection is the same" \
		".trace_id == \"$t\"" "$line"
done

# Step 5: every connection has its own id, and the servers read exactly
# the clients' ids.
n1=$(mesh_lines "$MESH_LOG_V1")
n2=$(mesh_lines "$MESH_LOG_V2")
mesh_smtest /frontend connect --to "$MESH_VIP" --count 50 --parallel 2 \
	--timeout-ms 10000
sb_assert_json "50 connections, 50 distinct ids" \
	'.results == {"ok": 50} and (.trace_ids | unique | length) == 50' \
	"$MESH_OUT"
sb_assert_eq "the servers' ids are the clients' ids" \
	"$(jq -c '.trace_ids | sort' <<<"$MESH_OUT")" \
	"$({ tail -n +$((n1 + 1)) "$MESH_LOG_V1"
	     tail -n +$((n2 + 1)) "$MESH_LOG_V2"; } |
		jq -sc '[.[].trace_id] | sort')"
