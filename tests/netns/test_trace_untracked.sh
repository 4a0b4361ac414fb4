#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Connections older than the agent. A server and two long-lived client
# connections across the two nodes exist before either agent starts.
# Then the agents start:
#
#   - each node counts the connection ends it finds in sockmesh_untracked_
#     sockets_total (node-a: 2 client sockets; node-b: 2 accepted sockets),
#     once: a restarted agent does not count them again
#   - the connections keep working, data intact both ways
#   - no option is added mid-stream (no option written or received; with
#     tcpdump installed, none on the wire either), no flow records, and
#     getsockopt(SOL_SOCKMESH) says ENOENT on both ends
#   - a new connection to the old listener is traced like any other (the
#     listener is adopted, and counted untracked, at its first SYN)
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/trace_lib.sh
source "$(dirname "$0")/trace_lib.sh"

sb_need_root
sb_init
trace_setup

SLOG=$SB_WORK/server.jsonl
# The old connections wait for agents to start (and restart): long idle.
trace_serve /node-b/server b "[::]:$TR_PORT" "$SLOG" --idle 250

# Two connections, opened and used (first line and "ok") before any agent.
SEND=300000 REPLY=200000
pids=()
for i in 1 2; do
	pids+=("$(sb_run /node-a/client a "$SMTRACE" connect --to "$TR_SERVER" \
		--send "$SEND" --reply "$REPLY" --pause "$SB_WORK/go$i" \
		--timeout-ms 250000)")
	sb_wait_ready "${pids[-1]}" 20 paused
done
ss_a=$(ip netns exec "$(sb_ns a)" ss -Htn state established \
	"( dport = :$TR_PORT )" | wc -l)
sb_assert_eq "two connections established before the agents" 2 "$ss_a"

trace_agent node-a
trace_agent node-b
sb_assert_eq "node-a counts its 2 older client sockets as untracked" 2 \
	"$(sb_metric node-a sockmesh_untracked_sockets_total)"
sb_assert_eq "node-b counts its 2 older accepted sockets as untracked" 2 \
	"$(sb_metric node-b sockmesh_untracked_sockets_total)"

# release I NAME: let paused connection I finish its exchange and check
# it worked untraced.
release() {
	local i=$1 name=$2 pid=${pids[$1 - 1]} out w0 r0 m0 pcap="" cap port
	w0=$(trace_opts node-a written)
	r0=$(trace_opts node-b received)
	m0=$(trace_opts node-b missing)
	if command -v tcpdump >/dev/null 2>&1; then
		pcap=$SB_WORK/old$i.pcap
		sb_run "" b tcpdump -i sb-a -nn -U --immediate-mode -s 128 \
			-w "$pcap" "tcp port $TR_PORT" >/dev/null
		cap=$SB_PID
		sb_wait_for "$name: tcpdump listening" 10 \
			grep -q "listening on" "$(sb_err "$cap")"
	fi
	touch "$SB_WORK/go$i"
	sb_wait "$pid" 120
	out=$(tail -n 1 "$(sb_out "$pid")")
	sb_assert_json "$name: the old connection keeps working, data intact" \
		".ok == 1 and .conns[0].intact and
		 .conns[0].received == 3 + (\"id -ENOENT\n\" | length) + $REPLY" \
		"$out"
	sb_assert_json "$name: getsockopt says ENOENT on both ends" \
		'.conns[0].trace_id == null and
		 .conns[0].trace_id_error == "ENOENT" and
		 .conns[0].server_trace_id == "-ENOENT"' "$out"
	sb_assert_eq "$name: node-a wrote no option" "$w0" \
		"$(trace_opts node-a written)"
	sb_assert_eq "$name: node-b received none" "$r0" \
		"$(trace_opts node-b received)"
	sb_assert_eq "$name: node-b counted none missing" "$m0" \
		"$(trace_opts node-b missing)"
	port=$(sb_json '.conns[0].local' "$out")
	port=${port##*:}
	sb_assert_eq "$name: no flow records on node-a" 0 \
		"$(trace_flows node-a ".src_addr | endswith(\":$port\")" | wc -l)"
	sb_assert_eq "$name: no flow records on node-b" 0 \
		"$(trace_flows node-b ".src_addr | endswith(\":$port\")" | wc -l)"
	if [[ -n $pcap ]]; then
		sb_stop "$cap"
		sb_assert_ge "$name: the capture saw the exchange" \
			"$(tcpdump -r "$pcap" -nn 2>/dev/null | wc -l)" 10
		sb_assert_eq "$name: no segment on the wire carries an option" 0 \
			"$(tcpdump -r "$pcap" -nn -v 2>/dev/null |
				grep -c 'unknown-253' || true)"
	else
		sb_log "$name: tcpdump not installed; capture check skipped"
	fi
}

release 1 "first old connection"

# A restarted agent finds the other old connection marked: not counted twice.
sb_agent_stop node-a
trace_agent node-a
sb_assert_eq "node-a after a restart: still 2 untracked" 2 \
	"$(sb_metric node-a sockmesh_untracked_sockets_total)"
release 2 "second old connection, after node-a's restart"

# A new connection to the listener that predates node-b's agent is traced.
trace_run /node-a/client a connect --to "$TR_SERVER" --send 5000 \
	--reply 5000
sb_assert_json "new connection to the old listener: ids agree" \
	".ok == 1 and .conns[0].intact and
	 (.conns[0].trace_id // \"\" | test(\"$TR_HEX\")) and
	 .conns[0].server_trace_id == .conns[0].trace_id" "$TR_OUT"
id=$(sb_json '.conns[0].trace_id' "$TR_OUT")
sb_wait_for "new connection: node-a's records" 20 \
	trace_flows_are node-a ".trace_id == \"$id\"" 2
sb_wait_for "new connection: node-b's records" 20 \
	trace_flows_are node-b ".trace_id == \"$id\"" 2
sb_assert_eq "node-b: the old listener, adopted at its first SYN, counts" 3 \
	"$(sb_metric node-b sockmesh_untracked_sockets_total)"
