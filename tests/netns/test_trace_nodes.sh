#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# One trace id per connection across two nodes: node-a's client and
# node-b's server (two network namespaces joined by a veth, each with its
# own agent) read the same id with getsockopt(SOL_SOCKMESH), and both
# nodes' flow logs carry it, however the id gets across:
#
#   plain       on the SYN; the server echoes it on the SYN-ACK
#   SYN cookies net.ipv4.tcp_syncookies=2 on node-b: the SYN-ACK keeps no
#               state and no echo; the client sends the id on its next
#               segments and the server adopts it from the ACK
#   Fast Open   the SYN has no room (cookie request, or cookie and data):
#               no_space is counted and the id follows the SYN
#   many        50 clients at once to one listener: every accepted socket
#               has its own client's id
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/trace_lib.sh
source "$(dirname "$0")/trace_lib.sh"

sb_need_root
sb_init
trace_setup
trace_agent node-a
trace_agent node-b

SLOG=$SB_WORK/server.jsonl
trace_serve /node-b/server b "[::]:$TR_PORT" "$SLOG" --fastopen

# check NAME N: the last smtrace connect ran N connections; each one's ids
# agree (client getsockopt, server getsockopt as the server answered it,
# the server's log line), the bytes are intact, and both nodes have a
# connect and a close record with the id.
check() {
	local name=$1 n=$2 ids in
	sb_assert_json "$name: $n connections ok, data intact" \
		".count == $n and .ok == $n and all(.conns[]; .intact)" "$TR_OUT"
	sb_assert_json "$name: the client's getsockopt reads a trace id" \
		"all(.conns[]; .trace_id // \"\" | test(\"$TR_HEX\"))" "$TR_OUT"
	sb_assert_json "$name: the server's getsockopt reads the same id" \
		'all(.conns[]; .server_trace_id == .trace_id)' "$TR_OUT"
	sb_assert_json "$name: every connection has its own id" \
		"[.conns[].trace_id] | unique | length == $n" "$TR_OUT"
	ids=$(jq -c '[.conns[].trace_id]' <<<"$TR_OUT")
	in="$ids as \$ids | .trace_id | IN(\$ids[])"
	sb_assert_json "$name: one intact server log line for each id" \
		"map(select($in)) | length == $n and
		 all(.[]; .intact and .result == \"ok\")" "$(jq -sc . "$SLOG")"
	sb_wait_for "$name: node-a has a connect and a close record per id" 20 \
		trace_flows_are node-a "$in" $((2 * n))
	sb_wait_for "$name: node-b has a connect and a close record per id" 20 \
		trace_flows_are node-b "$in" $((2 * n))
	sb_assert_json "$name: node-a's records are the client's, 2 per id" \
		"(group_by(.trace_id) | length == $n) and
		 all(.[]; .side == \"client\" and .src == \"client\" and
		     .dst == \"server\")" "$(trace_flows node-a "$in" | jq -sc .)"
	sb_assert_json "$name: node-b's records are the server's, 2 per id" \
		"(group_by(.trace_id) | length == $n) and
		 all(.[]; .side == \"server\" and .src == \"client\" and
		     .dst == \"server\")" "$(trace_flows node-b "$in" | jq -sc .)"
}

# delta NODE RESULT BEFORE: how much sockmesh_trace_options_total moved.
delta() {
	echo $(($(trace_opts "$1" "$2") - $3))
}

# --- plain: the option on the SYN, IPv4 and IPv6 ---
w0=$(trace_opts node-a written)
r0=$(trace_opts node-b received)
ns0=$(trace_opts node-a no_space)
trace_run /node-a/client a connect --to "$TR_SERVER" --send 5000 \
	--reply 3000 --count 3
check "plain v4" 3
trace_run /node-a/client a connect --to "$TR_SERVER6" --send 5000 \
	--reply 3000
check "plain v6" 1
sb_assert_eq "plain: node-a wrote 4 options" 4 "$(delta node-a written "$w0")"
sb_assert_eq "plain: node-b received 4" 4 "$(delta node-b received "$r0")"
sb_assert_eq "plain: the SYNs had room" 0 "$(delta node-a no_space "$ns0")"

# --- SYN cookies on node-b: no state, no echo, the id comes on the ACK ---
ip netns exec "$(sb_ns b)" sysctl -qw net.ipv4.tcp_syncookies=2
c0=$(trace_snmp b TcpExtSyncookiesRecv)
w0=$(trace_opts node-a written)
r0=$(trace_opts node-b received)
m0=$(trace_opts node-b missing)
trace_run /node-a/client a connect --to "$TR_SERVER" --send 2000 \
	--reply 2000 --count 5
check "syncookies" 5
trace_run /node-a/client a connect --to "$TR_SERVER6" --send 2000 \
	--reply 2000 --count 2
check "syncookies v6" 2
sb_assert_ge "syncookies: node-b answered with cookies" \
	"$(($(trace_snmp b TcpExtSyncookiesRecv) - c0))" 7
sb_assert_eq "syncookies: node-a wrote 7 options" 7 \
	"$(delta node-a written "$w0")"
sb_assert_eq "syncookies: node-b received 7" 7 \
	"$(delta node-b received "$r0")"
sb_assert_eq "syncookies: none missing" 0 "$(delta node-b missing "$m0")"
ip netns exec "$(sb_ns b)" sysctl -qw net.ipv4.tcp_syncookies=1

# --- Fast Open both ways: no room on the SYN ---
for ns in a b; do
	ip netns exec "$(sb_ns "$ns")" sysctl -qw net.ipv4.tcp_fastopen=3
done
ns0=$(trace_opts node-a no_space)
r0=$(trace_opts node-b received)
# The first connection asks for a cookie (its data waits for the handshake).
trace_run /node-a/client a connect --to "$TR_SERVER" --send 1000 \
	--reply 1000 --fastopen --step
check "fastopen, cookie request" 1
fa0=$(trace_snmp a TcpExtTCPFastOpenActive)
fp0=$(trace_snmp b TcpExtTCPFastOpenPassive)
# Later ones carry the cookie and their first line on the SYN.
trace_run /node-a/client a connect --to "$TR_SERVER" --send 1000 \
	--reply 1000 --fastopen --step --count 4
check "fastopen, MSG_FASTOPEN" 4
trace_run /node-a/client a connect --to "$TR_SERVER" --send 1000 \
	--reply 1000 --fastopen-connect --step --count 4
check "fastopen, TCP_FASTOPEN_CONNECT" 4
sb_assert_eq "fastopen: 8 SYNs carried data (node-a)" 8 \
	"$(($(trace_snmp a TcpExtTCPFastOpenActive) - fa0))"
sb_assert_eq "fastopen: node-b took 8 data SYNs" 8 \
	"$(($(trace_snmp b TcpExtTCPFastOpenPassive) - fp0))"
sb_assert_eq "fastopen: no room on any of the 9 SYNs" 9 \
	"$(delta node-a no_space "$ns0")"
sb_assert_eq "fastopen: node-b adopted all 9 ids" 9 \
	"$(delta node-b received "$r0")"

# Fast Open with the whole request on the SYN: the server may read it before
# the id arrives (then its getsockopt says ENOENT), but never another id.
trace_run /node-a/client a connect --to "$TR_SERVER" --send 20 \
	--reply 10 --fastopen --count 5
sb_assert_json "fastopen, request on the SYN: ok, and no wrong id" \
	'.ok == 5 and all(.conns[]; .server_trace_id == .trace_id or
			   .server_trace_id == "-ENOENT")' "$TR_OUT"
sb_log "fastopen, request on the SYN: $(jq '[.conns[] |
	select(.server_trace_id == "-ENOENT")] | length' <<<"$TR_OUT") of 5 \
servers read before the id arrived"
ids=$(jq -c '[.conns[].trace_id]' <<<"$TR_OUT")
sb_wait_for "fastopen, request on the SYN: node-b has the clients' ids" 20 \
	trace_flows_are node-b "$ids as \$ids | .trace_id | IN(\$ids[])" 10
for ns in a b; do
	ip netns exec "$(sb_ns "$ns")" sysctl -qw net.ipv4.tcp_fastopen=1
done

# --- many clients at once: each accepted socket gets its own client's id ---
n0=$(wc -l <"$SLOG")
trace_run /node-a/client a connect --to "$TR_SERVER" --send 3000 \
	--reply 100 --count 50 --parallel 50 --step
check "50 parallel" 50
sb_assert_eq "50 parallel: the server's 50 log lines hold exactly the \
clients' ids" "$(jq -r '.conns[].trace_id' <<<"$TR_OUT" | sort | tr '\n' ' ')" \
	"$(tail -n +$((n0 + 1)) "$SLOG" | jq -r .trace_id | sort | tr '\n' ' ')"
