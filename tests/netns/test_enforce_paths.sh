#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Enforcement on every way out of a socket: TCP over IPv4, IPv6 and
# IPv4-mapped IPv6; connected UDP; unconnected UDP through sendto(),
# sendmsg() and sendmmsg(); TCP Fast Open through sendto(MSG_FASTOPEN) and
# TCP_FASTOPEN_CONNECT. Each path is tried by a service that no rule lets
# through (must fail with EPERM, nothing reaches the server) and by one a
# rule allows (must get the server's reply), and we check what the flow log
# and sockmesh_connections_total recorded for each. Last, the kernel's own
# errors stay its own: send() with no address on an unconnected UDP socket
# is EDESTADDRREQ, and a second connect() of a connected TCP socket is
# EISCONN, whatever the policy says.
set -euo pipefail
# shellcheck source=tests/netns/enforce_lib.sh
source "$(dirname "$0")/enforce_lib.sh"

sb_need_root
enf_need "$SMSOCK"
sb_init

SRV4=198.18.40.1
SRV6=fd00:40::1

sb_netns n "$SRV4/32" "$SRV6/128"
# Fast Open is a per-namespace sysctl: 3 = client and server.
sb_exec "" n sysctl -qw net.ipv4.tcp_fastopen=3

enf_policy <<EOF
apiVersion: sockmesh/v1
node: node-paths
services:
  server:
    cgroups: [$SB_CGROOT/server]
    protocol: both
    endpoints: [$SRV4:8080, "[$SRV6]:8080", $SRV4:8081, $SRV4:5353,
                "[$SRV6]:5353"]
  client:
    cgroups: [$SB_CGROOT/client]
  intruder:
    cgroups: [$SB_CGROOT/intruder]
rules:
  - {from: [client], to: [server], ports: [8080, 8081, 5353]}
EOF
# The service cgroups exist before the agent resolves the policy.
enf_cgroups /server /client /intruder
enf_agent

# Dual-stack servers take IPv4, IPv6 and IPv4-mapped clients alike.
SLOG=$SB_WORK/server.jsonl
enf_serve /server n '[::]:8080' tcp --log "$SLOG"
enf_serve /server n "$SRV4:8081" tfo --fastopen --log "$SLOG"
enf_serve /server n '[::]:5353' udp --udp --log "$SLOG"

# Run a client in cgroup CG and wait for it; prints its pid. Its JSON
# output is in $(sb_out PID).
client() {
	local cg=$1 pid
	shift
	pid=$(sb_run "$cg" n "$@")
	sb_wait "$pid" 60 || sb_fail "client $* exited with an error"
	echo "$pid"
}

# True once the servers logged N requests.
served_eq() {
	[[ $(wc -l <"$SLOG") -eq $1 ]]
}

N=3
PAYLOAD_LEN=18	# smtest's default request: "hello from smtest\n"

# check_path NAME PROTO ORIG_DST ARGS...: the path that ARGS make smtest
# take, denied for intruder and allowed for client, N times each.
check_path() {
	local name=$1 proto=$2 orig=$3 pid out d0 a0 s0 tag
	shift 3
	tag=$([[ $proto == udp ]] && echo udp || echo tcp)
	[[ " $* " != *" --fastopen"* ]] || tag=tfo
	d0=$(enf_conns intruder server denied)
	a0=$(enf_conns client server allowed)
	s0=$(wc -l <"$SLOG")

	# Denied: EPERM at once, nothing reaches the server.
	pid=$(client /intruder "$SB_SMTEST" connect --count "$N" "$@")
	out=$(enf_result "$pid")
	sb_assert_json "$name: intruder gets EPERM" \
		".results == {\"EPERM\": $N} and .tags == {}" "$out"
	sb_assert_le "$name: EPERM at once (ms)" \
		"$(sb_json .first_errno_ms "$out")" 1500
	sb_assert_eq "$name: $N denies counted" "$((d0 + N))" \
		"$(enf_conns intruder server denied)"
	sb_wait_for "$name: $N deny records" 20 enf_records_ge "$pid" deny "$N"
	sb_assert_json "$name: deny records name the decision" \
		"length == $N and all(.[];
		  .src == \"intruder\" and .dst == \"server\" and
		  .verdict == \"denied\" and .reason == \"no_rule\" and
		  .proto == \"$proto\" and .orig_dst == \"$orig\" and
		  .comm == \"smtest\" and .side == \"client\" and
		  .cgroup == \"$SB_CGROOT/intruder\")" \
		"$(enf_records "$pid" deny)"

	# Allowed: the server's reply arrives.
	pid=$(client /client "$SB_SMTEST" connect --count "$N" "$@")
	out=$(enf_result "$pid")
	sb_assert_json "$name: client gets the reply" \
		".results == {\"ok\": $N} and .tags == {\"$tag\": $N}" "$out"
	sb_assert_eq "$name: $N allowed counted" "$((a0 + N))" \
		"$(enf_conns client server allowed)"
	sb_wait_for "$name: $N connect records" 20 enf_records_ge "$pid" \
		connect "$N"
	sb_assert_json "$name: connect records" \
		"length == $N and all(.[];
		  .src == \"client\" and .dst == \"server\" and
		  .verdict == \"allowed\" and .reason == \"rule\" and
		  .rule == 0 and .proto == \"$proto\" and
		  .orig_dst == \"$orig\")" "$(enf_records "$pid" connect)"
	sb_assert_eq "$name: no deny records for client" 0 \
		"$(enf_records "$pid" deny | jq length)"

	# The servers saw the client's requests, whole, and nothing else.
	sb_wait_for "$name: servers logged $N requests" 20 served_eq \
		"$((s0 + N))"
	sb_assert_json "$name: servers got every byte" \
		"length == $N and all(.[]; .bytes_received == $PAYLOAD_LEN)" \
		"$(tail -n "$N" "$SLOG" | jq -sc .)"
}

test_tcp() {
	check_path "tcp v4" tcp "$SRV4:8080" --to "$SRV4:8080"
	check_path "tcp v6" tcp "[$SRV6]:8080" --to "[$SRV6]:8080"
	check_path "tcp v4-mapped" tcp "$SRV4:8080" --to "$SRV4:8080" \
		--family mapped
}

test_udp() {
	local fam
	for fam in 4 mapped; do
		check_path "udp connected ($fam)" udp "$SRV4:5353" --udp \
			--to "$SRV4:5353" --family "$fam"
		check_path "udp sendto ($fam)" udp "$SRV4:5353" --udp \
			--unconnected --to "$SRV4:5353" --family "$fam"
		check_path "udp sendmsg ($fam)" udp "$SRV4:5353" --udp \
			--sendmsg --to "$SRV4:5353" --family "$fam"
		check_path "udp sendmmsg ($fam)" udp "$SRV4:5353" --udp \
			--sendmmsg --to "$SRV4:5353" --family "$fam"
	done
	check_path "udp connected (6)" udp "[$SRV6]:5353" --udp \
		--to "[$SRV6]:5353"
	check_path "udp sendto (6)" udp "[$SRV6]:5353" --udp --unconnected \
		--to "[$SRV6]:5353"
	check_path "udp sendmsg (6)" udp "[$SRV6]:5353" --udp --sendmsg \
		--to "[$SRV6]:5353"
	check_path "udp sendmmsg (6)" udp "[$SRV6]:5353" --udp --sendmmsg \
		--to "[$SRV6]:5353"
}

# A TCP counter of netns n.
tcpext() {
	sb_exec "" n cat /proc/net/netstat | awk -v k="$1" '
		$1 == "TcpExt:" {
			if (!n) { for (i = 2; i <= NF; i++) h[i] = $i; n = 1; next }
			for (i = 2; i <= NF; i++) if (h[i] == k) print $i
		}'
}

# The client's first connection fetches the server's cookie; from then on
# SYNs carry data, so in the second and third checks the intruder's SYN
# would have carried its request: it is refused before it is built.
test_fastopen() {
	local before
	before=$(tcpext TCPFastOpenActive)
	check_path "tfo sendto(MSG_FASTOPEN)" tcp "$SRV4:8081" \
		--to "$SRV4:8081" --fastopen
	check_path "tfo TCP_FASTOPEN_CONNECT" tcp "$SRV4:8081" \
		--to "$SRV4:8081" --fastopen-connect
	check_path "tfo v4-mapped sendto(MSG_FASTOPEN)" tcp "$SRV4:8081" \
		--to "$SRV4:8081" --fastopen --family mapped
	sb_assert_ge "SYNs carried data (TFO in use)" \
		"$(($(tcpext TCPFastOpenActive) - before))" 1
}

# EDESTADDRREQ is the kernel's answer for a datagram with no address; the
# sendmsg hooks never run for it. Tried from a service under a policy
# that would deny, and from one that would allow.
test_no_address() {
	local cg pid fam how out what
	for cg in /intruder /client; do
		for fam in 4 6; do
			for how in "" --sendmsg; do
				what="$cg, v$fam${how:+, sendmsg}"
				pid=$(client "$cg" "$SMSOCK" noaddr --family "$fam" \
					$how)
				out=$(enf_result "$pid")
				sb_assert_json "no address ($what): EDESTADDRREQ" \
					'.result == "EDESTADDRREQ"' "$out"
			done
		done
	done
}

# A connect() on a TCP socket that is connected already is the kernel's
# to answer (EISCONN); one that was denied stays denied.
test_connect_again() {
	local pid s0
	s0=$(wc -l <"$SLOG")
	pid=$(client /client "$SMSOCK" again --to "$SRV4:8080")
	sb_assert_json "client: second connect() is the kernel's EISCONN" \
		'.again == "EISCONN"' "$(head -n 1 "$(sb_out "$pid")")"
	sb_assert_json "client: first connect() passed" '.result == "ok"' \
		"$(enf_result "$pid")"
	pid=$(client /intruder "$SMSOCK" again --to "$SRV4:8080")
	sb_assert_json "intruder: both connect() calls EPERM" \
		'.again == "EPERM"' "$(head -n 1 "$(sb_out "$pid")")"
	sb_assert_json "intruder: first connect() EPERM" '.result == "EPERM"' \
		"$(enf_result "$pid")"
	# The server logs the client's one connection when it closes.
	sb_wait_for "again: the server logged one connection" 20 served_eq \
		"$((s0 + 1))"
}

test_tcp
test_connect_again
test_udp
test_fastopen
test_no_address

# Nothing the intruder sent reached a server: every datagram and
# connection the servers logged came from the client's runs.
sb_assert_eq "no records of the intruder but denies" "[]" \
	"$(jq -sc 'map(select(.src == "intruder" and .event != "deny"))' \
		"$ENF_FLOWS")"
sb_assert_eq "agent kept up: no events lost" 0 \
	"$(sb_metric sockmesh sockmesh_events_lost_total)"
