#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Connections that never establish, or are reset, give back their
# max_concurrent unit, whatever way they end:
#   refused      RST to the SYN: the unit goes back when the RST arrives
#   no route     connect() fails before any SYN (ENETUNREACH): the unit
#                goes back when the socket is closed or dials again
#   SYN lost     the application gives up (its own timeout, then close())
#                or the kernel does (tcp_syn_retries, socket still open);
#                while the SYN is unanswered the connection holds its unit
#   full backlog the listener's accept queue is full, so its SYNs are
#                dropped: a timeout like the one above
#   reset        the server's listener goes away with connections still
#                queued: they are reset, and their units go back while
#                the client still holds the sockets
# After each, sockmesh_quota_active is 0 and the limit still lets exactly
# max_concurrent through (a unit given back twice would let more in).
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/quota_lib.sh
source "$(dirname "$0")/quota_lib.sh"

sb_need_root
sb_init
N=4
q_start "  - {from: client, to: server, max_concurrent: $N}"

# Set sysctl KEY=VALUE in the node's netns (its own; nothing else uses it).
node_sysctl() {
	ip netns exec "$Q_NS" sysctl -qw "$1" || sb_fail "sysctl $1"
}

# SIGKILL process PID (stopped or not) and wait until it is gone; no job
# notice from the shell.
kill_quietly() {
	disown "$1" 2>/dev/null || true
	kill -KILL "$1"
	sb_wait "$1" 10 || true
}

# Assert process PID left N client close records saying not_established.
assert_unestablished_closes() {
	local label=$1 pid=$2 n=$3
	local sel=".event == \"close\" and .side == \"client\" and .pid == $pid"
	sb_wait_for "$label: $n close records" 20 _close_count_is "$sel" "$n"
	sb_assert_json "$label: close records say not_established" \
		'all(.error == "not_established" and .src == "client" and
		     .dst == "server")' "$(q_flows "$sel" | jq -s .)"
}

_close_count_is() {
	local n
	n=$(q_flows "$1" | wc -l)
	[[ $n -eq $2 ]] || { echo "$n close records, want $2"; return 1; }
}

# --- refused: nothing listens on the port ---

q_smtest /client connect --to "$Q_REFUSED" --count 20
sb_assert_json "refused, one at a time: ECONNREFUSED, never EDQUOT" \
	'.results == {"ECONNREFUSED": 20}' "$Q_OUT"
assert_unestablished_closes "refused" "$Q_PID" 20
q_assert_active "refused" client server 0
q_smtest /client connect --to "$Q_REFUSED" --count 400 --parallel 8
sb_assert_json "refused, 8 threads: only ECONNREFUSED and EDQUOT" \
	'(.results | keys - ["ECONNREFUSED", "EDQUOT"]) == [] and
	 .results.ECONNREFUSED > 0' "$Q_OUT"
q_assert_active "refused, 8 threads" client server 0

# --- no route: connect() fails before a SYN is sent ---

q_smtest /client connect --to "$Q_NOROUTE" --count 20 --parallel 2
sb_assert_json "no route: ENETUNREACH, each socket closed at once" \
	'.results == {"ENETUNREACH": 20}' "$Q_OUT"
q_assert_active "no route" client server 0

# One socket dialling again after failures (as some applications do)
# must not pile up units: it holds at most the last attempt's.
REDIAL_PY='
import errno, os, socket, sys, time
s = socket.socket()
out = []
for t in sys.argv[2].split(","):
    host, port = t.rsplit(":", 1)
    e = s.connect_ex((host, int(port)))
    out.append(errno.errorcode.get(e, str(e)) if e else "ok")
print(" ".join(out), flush=True)
end = time.time() + 60
while not os.path.exists(sys.argv[1]) and time.time() < end:
    time.sleep(0.02)
s.close()
'

# Dial TARGETS (comma-separated) on one socket from the client; check
# what each attempt returned (RESULTS), the gauge while the socket is
# open (OPEN) and after it is closed (0).
redial() {
	local label=$1 targets=$2 results=$3 open=$4 go pid
	go=$SB_WORK/redial.$RANDOM
	sb_run /client node python3 -c "$REDIAL_PY" "$go" "$targets" >/dev/null
	pid=$SB_PID
	sb_wait_for "$label: dialled" 30 test -s "$(sb_out "$pid")"
	sb_assert_eq "$label: what connect() returned" "$results" \
		"$(head -n 1 "$(sb_out "$pid")")"
	q_assert_active "$label, socket open" client server "$open"
	touch "$go"
	sb_wait "$pid" 30 || sb_fail "$label: python exited with $?"
	q_assert_active "$label, socket closed" client server 0
}

if command -v python3 >/dev/null 2>&1; then
	r=$Q_NOROUTE
	redial "no route, 3 times on one socket" "$r,$r,$r" \
		"ENETUNREACH ENETUNREACH ENETUNREACH" 1
	redial "no route twice, then the server" "$r,$r,$Q_SRV" \
		"ENETUNREACH ENETUNREACH ok" 1
	r=$Q_REFUSED
	redial "refused, 3 times on one socket" "$r,$r,$r" \
		"ECONNREFUSED ECONNREFUSED ECONNREFUSED" 0
	redial "refused, then the server" "$r,$Q_SRV" "ECONNREFUSED ok" 1
else
	sb_log "python3 not installed: dialling again on one socket not tested"
fi

# --- SYN lost: the application gives up ---

q_smtest /client connect --to "$Q_LOST" --count 8 --parallel 4 \
	--timeout-ms 200
sb_assert_json "lost SYN, smtest gives up: ETIMEDOUT" \
	'.results == {"ETIMEDOUT": 8}' "$Q_OUT"
assert_unestablished_closes "lost SYN, smtest gives up" "$Q_PID" 8
q_assert_active "lost SYN, smtest gives up" client server 0

# --- SYN lost: the kernel gives up (1 retry: after 1 + 2 s) ---

node_sysctl net.ipv4.tcp_syn_retries=1
sb_run /client node "$SB_SMTEST" connect --to "$Q_LOST" --count 6 \
	--parallel 6 --timeout-ms 60000 >/dev/null
lost_pid=$SB_PID
q_assert_active "SYNs unanswered: the pending connects hold the quota" \
	client server "$N"
sb_wait "$lost_pid" 60
lost_out=$(tail -n 1 "$(sb_out "$lost_pid")")
sb_assert_json "lost SYN, the kernel gives up: $N ETIMEDOUT, 2 EDQUOT" \
	".results == {\"ETIMEDOUT\": $N, \"EDQUOT\": 2} and
	 .first_errno_ms >= 2000" "$lost_out"
q_assert_quota_records "while SYNs were pending" "$lost_pid" 2 client \
	server quota_concurrent
q_assert_active "lost SYN, the kernel gives up" client server 0
node_sysctl net.ipv4.tcp_syn_retries=6

# --- full backlog: a listener that accepts nothing, queue of 2 ---

node_sysctl net.core.somaxconn=1
q_server "$Q_FREE1" stuck
stuck=$SB_PID
node_sysctl net.core.somaxconn=4096
kill -STOP "$stuck"
q_hold /client "$Q_FREE1" 6 --timeout-ms 300
full=$Q_HOLD_PID
sb_assert_eq "full backlog: 2 connect, into the accept queue" 2 "$Q_HELD"
q_assert_active "full backlog, 2 held" client server 2
q_release "$full"
sb_assert_json "full backlog: the rest time out, none is refused" \
	'.results == {"ok": 2, "ETIMEDOUT": 4}' "$Q_OUT"
q_assert_active "full backlog" client server 0
kill_quietly "$stuck"

# --- reset: queued connections of a listener that goes away ---

q_server "$Q_FREE2" doomed
doomed=$SB_PID
kill -STOP "$doomed"
q_hold /client "$Q_FREE2" 3
reset=$Q_HOLD_PID
sb_assert_eq "3 connections queued at a stopped server" 3 "$Q_HELD"
q_assert_active "3 queued" client server 3
# Killed, its listener closes and resets what is queued. A FIN would
# leave the clients in CLOSE_WAIT, still holding their units.
kill_quietly "$doomed"
q_assert_active "reset by the server, sockets still open" client server 0
sb_wait_for "3 close records of the reset connections" 20 _close_count_is \
	".event == \"close\" and .side == \"client\" and .pid == $reset" 3
q_release "$reset"
sb_assert_json "the reset connections had connected" '.results == {"ok": 3}' \
	"$Q_OUT"
q_assert_active "reset, sockets closed" client server 0

q_assert_exact_limit "after it all" /client "$Q_SRV" "$N" client server
