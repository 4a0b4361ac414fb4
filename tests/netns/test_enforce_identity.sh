#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# One identity per socket: a socket belongs to the service of the cgroup
# that created it, whoever uses it later and wherever its process goes.
#
#   - passed over a unix socket (SCM_RIGHTS) to a process of another
#     service, or of no service, the socket keeps its maker's service
#   - a process moved to another cgroup between socket() and connect()
#     keeps the service its socket was made in
#   - a cgroup made below a service cgroup after the agent started belongs
#     to that service
#   - a sibling cgroup whose name merely starts with a service cgroup's
#     name (/client-evil next to /client) does not
#
# Every case has a must-pass (made by client, which a rule lets reach
# server) and a must-deny (made by intruder, which no rule lets), and the
# flow log and metrics must name the maker's service each time.
set -euo pipefail
# shellcheck source=tests/netns/enforce_lib.sh
source "$(dirname "$0")/enforce_lib.sh"

sb_need_root
enf_need "$SMSOCK"
sb_init

SRV=198.18.60.1
TCP=$SRV:8080
UDP=$SRV:5353

sb_netns n "$SRV/32"
enf_cgroups /server /client /intruder /nobody /newcomer

enf_policy <<EOF
apiVersion: sockmesh/v1
node: node-id
services:
  server:
    cgroups: [$SB_CGROOT/server]
    protocol: both
    endpoints: [$TCP, $UDP]
  client:
    cgroups: [$SB_CGROOT/client]
  intruder:
    cgroups: [$SB_CGROOT/intruder]
rules:
  - {from: [client], to: [server], ports: [8080, 5353]}
EOF
enf_agent

enf_serve /server n "$TCP" tcp
enf_serve /server n "$UDP" udp --udp

# Metrics snapshot: "allowed-by-client denied-by-intruder other".
snapshot() {
	echo "$(enf_conns client server allowed)" \
		"$(enf_conns intruder server denied)" \
		"$(enf_conns world server denied)"
}

# expect NAME PID OUT MAKER CGROUP PROTO BEFORE: the use of a socket made
# in service MAKER (client: passes; intruder, world: EPERM) by process PID,
# whose last output line is OUT; CGROUP is where the socket was made.
expect() {
	local name=$1 pid=$2 out=$3 maker=$4 cg=$5 proto=$6 before=$7
	local ca cd cw ev
	read -r ca cd cw <<<"$before"
	if [[ $maker == client ]]; then
		sb_assert_json "$name: the reply arrives" \
			".result == \"ok\" and .reply == \"$proto\" and
			 .bytes_received == 4" "$out"
		ev=connect
		((ca += 1))
	else
		sb_assert_json "$name: EPERM at connect/send" \
			'.result == "EPERM" and .bytes_received == 0' "$out"
		ev=deny
		if [[ $maker == world ]]; then ((cw += 1)); else ((cd += 1)); fi
	fi
	sb_assert_eq "$name: metrics name $maker" "$ca $cd $cw" "$(snapshot)"
	sb_wait_for "$name: $ev record" 20 enf_records_ge "$pid" "$ev" 1
	sb_assert_json "$name: $ev record names $maker, made in $cg" \
		"length == 1 and all(.[]; .src == \"$maker\" and
		  .dst == \"server\" and .proto == \"$proto\" and
		  .comm == \"smsock\" and .cgroup == \"$SB_CGROOT$cg\")" \
		"$(enf_records "$pid" "$ev")"
	[[ $maker == client && $proto == tcp ]] || return 0
	sb_wait_for "$name: close record" 20 enf_records_ge "$pid" close 1
	sb_assert_json "$name: close record names $maker too" \
		"all(.[]; .src == \"$maker\" and .bytes_received == 4 and
		  .bytes_sent == 18)" "$(enf_records "$pid" close)"
}

# pass NAME MAKER_CG USER_CG UDP: a socket made in MAKER_CG is handed to a
# process in USER_CG ("" is a cgroup outside the managed subtree), which
# connects it (TCP) or sends with it unconnected (UDP).
pass() {
	local name=$1 mcg=$2 ucg=$3 udp=$4 sock=$SB_WORK/pass.sock r p
	local maker=${2#/} before to=$TCP proto=tcp
	local -a uopt=()
	[[ $maker != nobody ]] || maker=world
	if ((udp)); then
		to=$UDP proto=udp uopt=(--udp --unconnected)
	fi
	before=$(snapshot)
	r=$(sb_run "$ucg" n "$SMSOCK" receive --unix "$sock" --to "$to" \
		"${uopt[@]}")
	sb_wait_ready "$r" 30
	p=$(sb_run "$mcg" n "$SMSOCK" pass --unix "$sock" "${uopt[@]:0:1}")
	sb_wait "$p" 20 || sb_fail "$name: smsock pass failed"
	sb_wait "$r" 20 || sb_fail "$name: smsock receive failed"
	expect "$name" "$r" "$(enf_result "$r")" "$maker" \
		"$mcg" "$proto" "$before"
}

test_fd_passing() {
	pass "tcp client -> intruder" /client /intruder 0
	pass "tcp intruder -> client" /intruder /client 0
	pass "tcp client -> no service" /client /nobody 0
	pass "tcp intruder -> no service" /intruder /nobody 0
	pass "tcp client -> unmanaged cgroup" /client "" 0
	pass "tcp intruder -> unmanaged cgroup" /intruder "" 0
	pass "tcp no service -> client" /nobody /client 0
	pass "udp client -> intruder" /client /intruder 1
	pass "udp intruder -> client" /intruder /client 1
}

# move NAME FROM TO UDP: socket() in FROM, the process moves to TO, then
# connect() (TCP) or sendto() (UDP).
move() {
	local name=$1 from=$2 to_cg=$3 udp=$4 go=$SB_WORK/go.$RANDOM m
	local maker=${2#/} before to=$TCP proto=tcp
	local -a uopt=()
	[[ $maker != nobody ]] || maker=world
	if ((udp)); then
		to=$UDP proto=udp uopt=(--udp --unconnected)
	fi
	before=$(snapshot)
	m=$(sb_run "$from" n "$SMSOCK" move --to "$to" --go "$go" "${uopt[@]}")
	sb_wait_ready "$m" 30 created
	echo "$m" >"$SB_CGMOUNT$SB_CGROOT$to_cg/cgroup.procs"
	sb_assert_eq "$name: process now in $to_cg" "0::$SB_CGROOT$to_cg" \
		"$(grep '^0::' "/proc/$m/cgroup")"
	touch "$go"
	sb_wait "$m" 20 || sb_fail "$name: smsock move failed"
	expect "$name" "$m" "$(enf_result "$m")" "$maker" "$from" \
		"$proto" "$before"
}

test_move() {
	move "tcp made in client, moved to intruder" /client /intruder 0
	move "tcp made in intruder, moved to client" /intruder /client 0
	move "udp made in client, moved to intruder" /client /intruder 1
	move "udp made in intruder, moved to client" /intruder /client 1
	move "tcp made in no service, moved to client" /nobody /client 0
	move "udp made in no service, moved to client" /nobody /client 1
}

# Made after the agent started: still the service above.
test_late_cgroups() {
	local p before ca cd cw
	read -r ca cd cw <<<"$(snapshot)"
	p=$(enf_connect /client/late/deeper --to "$TCP")
	sb_assert_json "new cgroup below client: passes" \
		'.results == {"ok": 1} and .tags == {"tcp": 1}' \
		"$(enf_result "$p")"
	sb_wait_for "new cgroup below client: connect record" 20 \
		enf_records_ge "$p" connect 1
	sb_assert_json "new cgroup below client: named client" \
		"all(.[]; .src == \"client\" and
		  .cgroup == \"$SB_CGROOT/client/late/deeper\")" \
		"$(enf_records "$p" connect)"

	p=$(enf_connect /intruder/late --to "$TCP")
	sb_assert_json "new cgroup below intruder: EPERM" \
		'.results == {"EPERM": 1}' "$(enf_result "$p")"
	sb_wait_for "new cgroup below intruder: deny record" 20 \
		enf_records_ge "$p" deny 1
	sb_assert_json "new cgroup below intruder: named intruder" \
		"all(.[]; .src == \"intruder\" and .reason == \"no_rule\" and
		  .cgroup == \"$SB_CGROOT/intruder/late\")" \
		"$(enf_records "$p" deny)"
	sb_assert_eq "late cgroups: metrics" "$((ca + 1)) $((cd + 1)) $cw" \
		"$(snapshot)"
}

# /client-evil shares a prefix with /client and is no service: world,
# which no rule lets reach server.
test_prefix_sibling() {
	local p ca cd cw
	read -r ca cd cw <<<"$(snapshot)"
	p=$(enf_connect /client-evil --to "$TCP")
	sb_assert_json "/client-evil: EPERM" '.results == {"EPERM": 1}' \
		"$(enf_result "$p")"
	sb_wait_for "/client-evil: deny record" 20 enf_records_ge "$p" deny 1
	sb_assert_json "/client-evil: named world, not client" \
		"all(.[]; .src == \"world\" and .reason == \"no_rule\" and
		  .cgroup == \"$SB_CGROOT/client-evil\")" \
		"$(enf_records "$p" deny)"
	p=$(enf_connect /client --to "$TCP")
	sb_assert_json "/client itself: passes" '.results == {"ok": 1}' \
		"$(enf_result "$p")"
	sb_assert_eq "prefix sibling: metrics" \
		"$((ca + 1)) $cd $((cw + 1))" "$(snapshot)"
}

# The policy with service newcomer (cgroup /newcomer) and a rule that lets
# it reach server.
add_newcomer() {
	sed -e "s|^rules:|  newcomer:\n    cgroups: [$SB_CGROOT/newcomer]\nrules:|" \
		-e '$a\  - {from: [newcomer], to: [server], ports: [8080]}' \
		"$ENF_POLICY" | enf_policy
}

# A socket made in a cgroup that a reload then makes a service's takes
# that service when its own process, still there, first uses it: the
# cgroup that made it is the service's now.
test_service_after_socket() {
	local m go=$SB_WORK/go.reload
	m=$(sb_run /newcomer n "$SMSOCK" move --to "$TCP" --go "$go")
	sb_wait_ready "$m" 30 created
	enf_reload add_newcomer
	touch "$go"
	sb_wait "$m" 20 || sb_fail "smsock move failed"
	sb_assert_json "socket made before its cgroup was a service's: passes" \
		'.result == "ok" and .reply == "tcp"' \
		"$(enf_result "$m")"
	sb_wait_for "newcomer: connect record" 20 enf_records_ge "$m" connect 1
	sb_assert_json "newcomer: named after its cgroup's service" \
		"all(.[]; .src == \"newcomer\" and .rule == 1 and
		  .cgroup == \"$SB_CGROOT/newcomer\")" \
		"$(enf_records "$m" connect)"
	sb_assert_eq "newcomer: counted" 1 \
		"$(enf_conns newcomer server allowed)"
}

test_move
test_fd_passing
test_late_cgroups
test_prefix_sibling
test_service_after_socket
