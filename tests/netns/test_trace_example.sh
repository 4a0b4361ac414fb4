#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# examples/traceparent under two agents: node-b runs the example HTTP
# server as the "server" service, node-a's client sends it requests. The
# trace id in each response's W3C traceparent header equals the client's
# own getsockopt(SOL_SOCKMESH) id, the server's log line for the request,
# and both nodes' flow records. A client without sockmesh gets the id
# node-b made for its connection, the one node-b's flow log has.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/trace_lib.sh
source "$(dirname "$0")/trace_lib.sh"

sb_need_root
sb_need_cmd cc
sb_init
trace_setup

# Built the way its README says, with nothing but the public header.
EX=$SB_ROOT/examples/traceparent
cc -O2 -Wall -Wextra -Werror -std=gnu11 -I"$SB_ROOT/include" \
	"$EX/traceparent.c" -o "$SB_WORK/traceparent" ||
	sb_fail "examples/traceparent does not build"

trace_agent node-a
trace_agent node-b
srv=$(sb_run /node-b/server b "$SB_WORK/traceparent" "0.0.0.0:$TR_PORT")
sb_wait_ready "$srv" 20 "listening on 0.0.0.0:$TR_PORT"
SLOG=$(sb_out "$srv")
TP='^00-([0-9a-f]{32})-([0-9a-f]{16})-01$'

# The example's log line for trace id ID, or nothing.
log_line() {
	grep -F "trace_id=$1 " "$SLOG" || true
}

# request NAME CGROUP NETNS TO: one GET; checks the header against the
# server's log and node-b's flow records. Sets ID, the header's trace id.
request() {
	local name=$1 cg=$2 ns=$3 to=$4 tp span line re
	trace_run "$cg" "$ns" http --to "$to"
	sb_assert_json "$name: 200 with a traceparent header" \
		".result == \"ok\" and .status == 200 and
		 (.traceparent | test(\"$TP\"))" "$TR_OUT"
	tp=$(sb_json .traceparent "$TR_OUT")
	[[ $tp =~ $TP ]]
	ID=${BASH_REMATCH[1]}
	span=${BASH_REMATCH[2]}
	sb_wait_for "$name: the server logged the request" 10 \
		grep -qF "trace_id=$ID " "$SLOG"
	line=$(log_line "$ID")
	re="^ts=[^ ]+ trace_id=$ID span_id=$span source=sockmesh "
	re+=".*method=GET path=/ status=200$"
	sb_assert_match "$name: one log line, same trace id, its span, sockmesh's" \
		"$re" "$line"
	sb_wait_for "$name: node-b's records carry the header's id" 20 \
		trace_flows_are node-b ".trace_id == \"$ID\"" 2
}

ids=()
for i in 1 2 3; do
	request "request $i" /node-a/client a "$TR_SERVER"
	sb_assert_eq "request $i: the header's trace id is the client's id" \
		"$(sb_json '.trace_id' "$TR_OUT")" "$ID"
	sb_wait_for "request $i: node-a's records carry it" 20 \
		trace_flows_are node-a ".trace_id == \"$ID\"" 2
	ids+=("$ID")
done
sb_assert_eq "every connection has its own trace id" 3 \
	"$(printf '%s\n' "${ids[@]}" | sort -u | wc -l)"
sb_assert_eq "every request has a span id of its own" 3 \
	"$(grep -o 'span_id=[0-9a-f]*' "$SLOG" | sort -u | wc -l)"

# A client without sockmesh: the server's node made the id.
request "plain client" "" c "$TR_BC4:$TR_PORT"
sb_assert_json "plain client: has no id of its own" '.trace_id == null' \
	"$TR_OUT"
sb_assert_json "plain client: node-b's records name world" \
	'all(.[]; .src == "world" and .side == "server")' \
	"$(trace_flows node-b ".trace_id == \"$ID\"" | jq -sc .)"
