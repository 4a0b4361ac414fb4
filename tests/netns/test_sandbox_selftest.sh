#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Self-test of tests/lib/sandbox.sh and build/tests/smtest, without the
# agent: real traffic between two namespaces and cgroups of a sandbox, then
# proof that the sandbox leaves nothing behind, whether its test passes,
# fails halfway, is terminated or is killed.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"

sb_need_root
sb_need_cmd jq ip ss
sb_need_build "$SB_SMTEST"

# The outer sandbox only holds scratch files; each check below makes its
# own sandbox in a subshell or a child script and we inspect what remains.
sb_init
SM=$SB_SMTEST

# Run FUNC ARGS... in a subshell with errexit on; print its exit status.
in_subshell() {
	local rc=0
	set +e
	(
		set -e
		"$@"
	) >&2
	rc=$?
	set -e
	echo "$rc"
}

# jq on the last line of a file (what smtest prints last).
last_json() {
	tail -n 1 "$1"
}

# True if FILE has N lines.
lines_eq() {
	[[ $(wc -l <"$1") -eq $2 ]]
}

# A TcpExt counter of the current netns.
tcpext() {
	awk -v k="$1" '$1 == "TcpExt:" {
		if (!n) { for (i = 2; i <= NF; i++) h[i] = $i; n = 1; next }
		for (i = 2; i <= NF; i++) if (h[i] == k) print $i
	}' /proc/net/netstat
}

test_library_helpers() {
	local body rc t0 port

	# Assertions fail with expected and actual, and pass quietly.
	rc=$(in_subshell sb_assert_eq "eq" 1 2 2>"$SB_WORK/assert.err")
	sb_assert_eq "assert_eq fails on a mismatch" 1 "$rc"
	sb_assert_match "assert_eq prints both values" "expected '1', got '2'" \
		"$(cat "$SB_WORK/assert.err")"
	rc=$(in_subshell sb_assert_ge "ge" 3 4 2>/dev/null)
	sb_assert_eq "assert_ge fails below the bound" 1 "$rc"
	rc=$(in_subshell sb_assert_le "le" 5 4 2>/dev/null)
	sb_assert_eq "assert_le fails above the bound" 1 "$rc"
	rc=$(in_subshell sb_assert_json "json" '.a == 2' '{"a": 1}' 2>/dev/null)
	sb_assert_eq "assert_json fails on false" 1 "$rc"
	sb_assert_ge "assert_ge takes decimals" 2.5 2.25
	sb_assert_json "assert_json reads JSON text" '.a == 1' '{"a": 1}'

	# sb_wait_for gives up at its deadline, not much later.
	t0=$(_sb_now_ms)
	rc=$(in_subshell sb_wait_for "never" 0.3 false 2>/dev/null)
	sb_assert_eq "wait_for fails on timeout" 1 "$rc"
	sb_assert_le "wait_for stops near its deadline (ms)" \
		$(($(_sb_now_ms) - t0)) 1500
	sb_wait_for "true at once" 1 true

	# Prometheus samples: sums over matching labels, 0 when absent.
	body='# HELP sockmesh_connections_total connections
# TYPE sockmesh_connections_total counter
sockmesh_connections_total{src="a",dst="b",verdict="allowed"} 3
sockmesh_connections_total{src="a",dst="c",verdict="denied"} 2
sockmesh_connections_total{src="x y",dst="b",verdict="denied"} 4
sockmesh_connections_total_other 100
sockmesh_policy_generation 7'
	sb_assert_eq "metric sum" 9 \
		"$(sb_prom_sum sockmesh_connections_total <<<"$body")"
	sb_assert_eq "metric by label" 6 \
		"$(sb_prom_sum sockmesh_connections_total 'verdict="denied"' \
			<<<"$body")"
	sb_assert_eq "metric without labels" 7 \
		"$(sb_prom_sum sockmesh_policy_generation <<<"$body")"
	sb_assert_eq "absent metric" 0 \
		"$(sb_prom_sum sockmesh_nope <<<"$body")"

	port=$(sb_port)
	sb_assert_match "sb_port gives a port" '^[0-9]+$' "$port"
	sb_assert_eq "nothing uses that port" "" \
		"$(ss -Htan "( sport = :$port )")"
	sb_assert_eq "cgroup2 mount from mountinfo" "$SB_CGMOUNT" \
		"$(sb_cgroup2_mount)"
}

# The traffic checks; runs in a subshell with a sandbox of its own.
traffic_sandbox() {
	local idfile=$1 a b srv out rc h log cg
	sb_init
	echo "$SB_ID" >"$idfile"

	sb_netns a 198.18.10.1/32 fd00:10::1/128
	sb_netns b
	sb_veth a 198.18.11.1/24,fd00:11::1/64 b 198.18.11.2/24,fd00:11::2/64
	sb_route b 198.18.10.1/32 198.18.11.1
	sb_route b fd00:10::1/128 fd00:11::1
	a=$(sb_ns a)
	b=$(sb_ns b)
	sb_assert_eq "no IPv4 default route" "" \
		"$(ip -n "$b" route show default)"
	sb_assert_eq "no IPv6 default route" "" \
		"$(ip -n "$b" -6 route show default)"

	# Guards: no addresses outside the test ranges, no default routes.
	rc=$(in_subshell sb_netns bad 10.1.2.3/32 2>/dev/null)
	sb_assert_eq "address outside 198.18.0.0/15 refused" 1 "$rc"
	rc=$(in_subshell sb_route b default 198.18.11.1 2>/dev/null)
	sb_assert_eq "default route refused" 1 "$rc"

	cg=$(sb_cgroup /srv)
	sb_assert_eq "sb_cgroup path" "$SB_CGMOUNT$SB_CGROOT/srv" "$cg"
	log=$SB_WORK/tcp.jsonl
	srv=$(sb_run /srv a "$SM" serve --listen 198.18.11.1:8080 --tag v1 \
		--log "$log" --timeout 120)
	sb_wait_ready "$srv"
	sb_assert_eq "server sits in cgroup /srv" "0::$SB_CGROOT/srv" \
		"$(grep '^0::' "/proc/$srv/cgroup")"
	sb_assert_eq "server sits in netns a" "$a" "$(ip netns identify "$srv")"
	sb_assert_match "sb_exec joins its cgroup" "^0::$SB_CGROOT/cli\$" \
		"$(sb_exec /cli b grep '^0::' /proc/self/cgroup)"
	sb_assert_eq "sb_exec with no cgroup uses the host cgroup" \
		"0::$SB_CGROOT-host" "$(sb_exec "" "" grep '^0::' /proc/self/cgroup)"
	rc=0
	sb_exec "" b sh -c 'exit 7' || rc=$?
	sb_assert_eq "sb_exec returns the exit status" 7 "$rc"

	# TCP, sequential and parallel.
	out=$(sb_exec /cli b "$SM" connect --to 198.18.11.1:8080 --count 20)
	sb_assert_json "20 connections ok" \
		'.count == 20 and .results == {"ok": 20}' "$out"
	sb_assert_json "every reply tagged v1" '.tags == {"v1": 20}' "$out"
	sb_assert_json "getpeername is the server" \
		'.peers == {"198.18.11.1:8080": 20}' "$out"
	out=$(sb_exec /cli b "$SM" connect --to 198.18.11.1:8080 --count 400 \
		--parallel 4)
	sb_assert_json "400 parallel connections ok" '.results.ok == 400' "$out"
	sb_assert_le "400 connections are quick (ms)" \
		"$(sb_json .elapsed_ms "$out")" 10000
	out=$(sb_exec /cli b "$SM" connect --to 198.18.11.1:8080 --send 100000)
	sb_assert_json "100000 bytes sent" '.results.ok == 1' "$out"
	sb_assert_json "server counted 100000 bytes" \
		'.bytes_received == 100000' "$(tail -n 1 "$log")"
	sb_wait_for "server logged 421 connections" 5 lines_eq "$log" 421
	sb_assert_json "server log fields" \
		'(.peer | test("^198\\.18\\.11\\.2:")) and
		 .local == "198.18.11.1:8080" and .proto == "tcp" and
		 has("trace_id")' "$(head -n 1 "$log")"

	# A dual-stack listener on [::], reached over v4, v6 and v4-mapped,
	# on addresses of lo that netns b reaches through a route.
	h=$(sb_run /srv a "$SM" serve --listen '[::]:8081' --tag ds \
		--timeout 120)
	sb_wait_ready "$h"
	out=$(sb_exec /cli b "$SM" connect --to 198.18.10.1:8081 --count 3)
	sb_assert_json "v4 to a dual-stack listener" \
		'.results.ok == 3 and .peers == {"198.18.10.1:8081": 3}' "$out"
	out=$(sb_exec /cli b "$SM" connect --to '[fd00:10::1]:8081' --count 3)
	sb_assert_json "v6" \
		'.results.ok == 3 and .peers == {"[fd00:10::1]:8081": 3}' "$out"
	out=$(sb_exec /cli b "$SM" connect --to 198.18.10.1:8081 --count 3 \
		--family mapped)
	sb_assert_json "v4-mapped on an AF_INET6 socket" \
		'.results.ok == 3 and .peers == {"[::ffff:198.18.10.1]:8081": 3}' \
		"$out"
	rc=0
	sb_exec /cli b "$SM" connect --to 198.18.10.1:8081 --family 6 \
		2>/dev/null || rc=$?
	sb_assert_eq "family 6 with an IPv4 address is a usage error" 2 "$rc"

	# Failures come back as errno names, bounded in time.
	out=$(sb_exec /cli b "$SM" connect --to 198.18.11.1:9 --count 3)
	sb_assert_json "closed port" '.results == {"ECONNREFUSED": 3}' "$out"
	sb_assert_le "refused at once (ms)" "$(sb_json .first_errno_ms "$out")" 500
	out=$(sb_exec /cli b "$SM" connect --to 198.18.99.1:80)
	sb_assert_json "no default route: unreachable" \
		'.results == {"ENETUNREACH": 1}' "$out"
	out=$(sb_exec /cli b "$SM" connect --to 198.18.11.77:80 \
		--timeout-ms 300)
	sb_assert_json "silent host: our timeout" \
		'.results == {"ETIMEDOUT": 1}' "$out"
	sb_assert_ge "timeout not early (ms)" "$(sb_json .first_errno_ms "$out")" 250
	sb_assert_le "timeout not late (ms)" "$(sb_json .first_errno_ms "$out")" 2000

	# trace: one connection, client-side view.
	out=$(sb_exec /cli b "$SM" trace --to 198.18.11.1:8080)
	sb_assert_json "trace output" \
		'.result == "ok" and .peer == "198.18.11.1:8080" and
		 (.local | test("^198\\.18\\.11\\.2:")) and has("trace_id")' "$out"

	# --hold keeps N sockets open until released.
	h=$(sb_run "" b "$SM" connect --to 198.18.11.1:8080 --count 50 \
		--parallel 2 --hold)
	sb_wait_ready "$h" 10 "held 50"
	sb_assert_ge "server sees 50 open connections" \
		"$(sb_exec "" a ss -Htn state established '( sport = :8080 )' |
			wc -l)" 50
	sb_stop "$h"
	sb_assert_json "held connections reported" \
		'.held == 50 and .results.ok == 50' "$(last_json "$(sb_out "$h")")"

	# UDP: connected, sendto, sendmmsg; the reply's source is what
	# recvfrom() says.
	h=$(sb_run /srv a "$SM" serve --udp --listen 198.18.11.1:5353 --tag u1 \
		--timeout 120)
	sb_wait_ready "$h"
	out=$(sb_exec /cli b "$SM" connect --udp --to 198.18.11.1:5353 --count 5)
	sb_assert_json "udp connected" \
		'.results.ok == 5 and .tags.u1 == 5 and
		 .reply_sources == {"198.18.11.1:5353": 5} and
		 .peers == {"198.18.11.1:5353": 5}' "$out"
	out=$(sb_exec /cli b "$SM" connect --udp --unconnected \
		--to 198.18.11.1:5353 --count 5)
	sb_assert_json "udp sendto" \
		'.results.ok == 5 and .reply_sources == {"198.18.11.1:5353": 5}
		 and .peers == {}' "$out"
	out=$(sb_exec /cli b "$SM" connect --udp --sendmmsg \
		--to 198.18.11.1:5353 --count 5)
	sb_assert_json "udp sendmmsg" '.results.ok == 5 and .tags.u1 == 5' "$out"
	out=$(sb_exec /cli b "$SM" connect --udp --to 198.18.11.1:5354)
	sb_assert_json "udp to a closed port" \
		'.results == {"ECONNREFUSED": 1}' "$out"

	# A dual-stack UDP server answers from the address that was dialled.
	h=$(sb_run /srv a "$SM" serve --udp --listen '[::]:5354' --tag u6 \
		--timeout 120)
	sb_wait_ready "$h"
	out=$(sb_exec /cli b "$SM" connect --udp --unconnected \
		--to 198.18.10.1:5354 --count 2)
	sb_assert_json "udp v4 reply from the dialled address" \
		'.reply_sources == {"198.18.10.1:5354": 2}' "$out"
	out=$(sb_exec /cli b "$SM" connect --udp --unconnected \
		--to '[fd00:10::1]:5354' --count 2)
	sb_assert_json "udp v6 reply from the dialled address" \
		'.reply_sources == {"[fd00:10::1]:5354": 2}' "$out"
	out=$(sb_exec /cli b "$SM" connect --udp --unconnected --family mapped \
		--to 198.18.10.1:5354 --count 2)
	sb_assert_json "udp v4-mapped reply source" \
		'.reply_sources == {"[::ffff:198.18.10.1]:5354": 2}' "$out"

	# TCP fast open (per-netns sysctl): data rides on the SYN once the
	# client holds a cookie.
	sb_exec "" a sysctl -qw net.ipv4.tcp_fastopen=3
	sb_exec "" b sysctl -qw net.ipv4.tcp_fastopen=3
	h=$(sb_run /srv a "$SM" serve --listen 198.18.11.1:8082 --tag tfo \
		--fastopen --timeout 120)
	sb_wait_ready "$h"
	out=$(sb_exec /cli b "$SM" connect --to 198.18.11.1:8082 --count 3 \
		--fastopen)
	sb_assert_json "sendto(MSG_FASTOPEN)" \
		'.results.ok == 3 and .tags.tfo == 3' "$out"
	out=$(sb_exec /cli b "$SM" connect --to 198.18.11.1:8082 --count 3 \
		--fastopen-connect)
	sb_assert_json "TCP_FASTOPEN_CONNECT" \
		'.results.ok == 3 and .tags.tfo == 3' "$out"
	sb_assert_ge "SYNs carried data" \
		"$(sb_exec "" b bash -c "$(declare -f tcpext); tcpext TCPFastOpenActive")" 1

	# --max-conns ends a server by itself.
	h=$(sb_run /srv a "$SM" serve --listen 198.18.11.1:8083 --max-conns 2)
	sb_wait_ready "$h"
	sb_exec /cli b "$SM" connect --to 198.18.11.1:8083 --count 2 >/dev/null
	sb_wait "$h" 5
	sb_assert_json "server stops after --max-conns" '.served == 2' \
		"$(last_json "$(sb_out "$h")")"
}

# A test script that makes a bit of everything, then ends as MODE says:
# fail (an unexpected command failure), wait (to be signalled), pass.
write_child() {
	cat >"$1" <<'EOF'
set -euo pipefail
source "$1"
idfile=$2 mode=$3
sb_init
echo "$SB_ID" >"$idfile.tmp"
sb_netns a 198.18.20.1/32
sb_netns b
sb_veth a 198.18.21.1/24 b 198.18.21.2/24
sb_run /svc/x a "$SB_SMTEST" serve --listen 198.18.21.1:80 --timeout 120 >/dev/null
sb_wait_ready "$SB_PID"
sb_run "" b "$SB_SMTEST" serve --listen 198.18.21.2:80 --timeout 120 >/dev/null
sb_wait_ready "$SB_PID"
mkdir -p "$SB_BPFFS"
if command -v bpftool >/dev/null; then
	bpftool -n map create "$SB_BPFFS/sm_selftest" type array key 4 \
		value 4 entries 1 name sm_selftest
fi
echo "log of $SB_ID" >"$SB_WORK/child.log"
mv "$idfile.tmp" "$idfile"
case $mode in
fail) ip link show dev no-such-device-sb >/dev/null 2>&1 ;;
wait)
	sb_run "" "" sleep 60 >/dev/null
	sb_wait "$SB_PID" 90
	;;
esac
exit 0
EOF
}

# Run the child in MODE, signalled with SIG once set up, with SB_KEEP=KEEP;
# print its sandbox id and exit status.
run_child() {
	local mode=$1 sig=${2:-} keep=${3:-0} idfile=$SB_WORK/child-$1.id
	local pid rc=0
	rm -f "$idfile"
	SB_KEEP=$keep bash "$SB_WORK/child.sh" "$SB_ROOT/tests/lib/sandbox.sh" "$idfile" \
		"$mode" >"$SB_WORK/child-$mode.out" 2>&1 &
	pid=$!
	if [[ -n $sig ]]; then
		sb_wait_for "child ($mode) set up" 20 test -s "$idfile"
		kill "-$sig" "$pid"
	fi
	wait "$pid" || rc=$?
	echo "$(cat "$idfile" 2>/dev/null || cat "$idfile.tmp") $rc"
}

# Nothing of sandbox ID remains.
assert_gone() {
	sb_assert_eq "$1: nothing left" "" "$(sb_leaks "$2")"
}

test_library_helpers

rc=$(in_subshell traffic_sandbox "$SB_WORK/traffic.id")
sb_assert_eq "traffic checks passed" 0 "$rc"
assert_gone "after a passing test" "$(cat "$SB_WORK/traffic.id")"

write_child "$SB_WORK/child.sh"
read -r id rc < <(run_child pass)
sb_assert_eq "child passes" 0 "$rc"
assert_gone "after a child that passed" "$id"

read -r id rc < <(run_child fail)
sb_assert_eq "child fails halfway" 1 "$rc"
assert_gone "after a child that failed" "$id"

read -r id rc < <(run_child wait TERM)
sb_assert_eq "child terminated" 143 "$rc"
assert_gone "after SIGTERM" "$id"

read -r id rc < <(run_child fail "" 1)
sb_assert_eq "child fails with SB_KEEP=1" 1 "$rc"
assert_gone "kernel state with SB_KEEP=1" "$id"
sb_assert_eq "SB_KEEP=1 keeps the logs" "log of $id" \
	"$(cat "/tmp/sockmesh-keep-$id/child.log")"
rm -rf "/tmp/sockmesh-keep-$id"

# SIGKILL skips every trap: that is what sb_reap (tests/run) is for.
read -r id rc < <(run_child wait KILL)
sb_assert_eq "child killed" 137 "$rc"
sb_assert_match "SIGKILL leaves state behind" "leak: netns $id-a" \
	"$(sb_leaks "$id")"
sb_reap "$id"
assert_gone "after sb_reap" "$id"
