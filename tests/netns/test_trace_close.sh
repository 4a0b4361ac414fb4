#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Close records across two nodes, finding them by trace id, and
# getsockopt calls that are not ours.
#
#   close records  node-a's client and node-b's server each write one per
#                  connection: bytes_sent is exactly what the client sent
#                  (its first line and body) and bytes_received what the
#                  server sent back, on both nodes, whether the client or
#                  the server closes first; srtt_us > 0; a connection held
#                  open for a while lasts that long
#   pair metrics   sockmesh_bytes_total, sockmesh_connection_duration_
#                  seconds_count and sockmesh_tcp_retransmits_total of
#                  client -> server move by exactly what the records say
#   finding        node-b's flow log rotates by size (--flow-log-max-bytes);
#                  `sockmesh flows --trace ID` finds a connection's records
#                  in the rotated files, and GET /v1/flows?trace_id= in the
#                  agent's window, on both nodes
#   getsockopt     a client under sockmesh gets exactly what a client
#                  outside it gets for SO_TYPE, TCP_INFO, TCP_MAXSEG, ...;
#                  SOL_SOCKMESH answers the id, EINVAL for a short buffer,
#                  and other optnames of the level are left to the kernel
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/trace_lib.sh
source "$(dirname "$0")/trace_lib.sh"

sb_need_root
sb_need_build "$SB_BUILD/sockmesh"
sb_init
trace_setup
MAXB=4000
trace_agent node-a
trace_agent node-b --flow-log-max-bytes "$MAXB" --flow-log-keep 9
FLOWS_B=$(sb_agent node-b flows)

SLOG=$SB_WORK/server.jsonl
trace_serve /node-b/server b "[::]:$TR_PORT" "$SLOG"
PAIR='src="client",dst="server"'

# pair NODE METRIC [LABELS]: client -> server sample of METRIC on NODE.
pair() {
	sb_metric "$1" "$2" "$PAIR${3:+,$3}"
}

# Snapshot of node NODE's pair counters: "bytes_sent bytes_received
# closed retransmits".
pair_snap() {
	echo "$(pair "$1" sockmesh_bytes_total 'direction="sent"')" \
		"$(pair "$1" sockmesh_bytes_total 'direction="received"')" \
		"$(pair "$1" sockmesh_connection_duration_seconds_count)" \
		"$(pair "$1" sockmesh_tcp_retransmits_total)"
}

# What moved from snapshot BEFORE to AFTER, field by field.
snap_delta() {
	local -a b a
	read -ra b <<<"$1"
	read -ra a <<<"$2"
	echo "$((a[0] - b[0])) $((a[1] - b[1])) $((a[2] - b[2])) $((a[3] - b[3]))"
}

# close_case NAME SMTRACE_ARGS...: run the connections, then hold every
# one's close records on both nodes against the bytes the ends counted,
# and the pair counters against the records.
close_case() {
	local name=$1 a0 b0 a1 b1 ids in n recs_a recs_b
	shift
	a0=$(pair_snap node-a)
	b0=$(pair_snap node-b)
	trace_run /node-a/client a connect --to "$TR_SERVER" "$@"
	n=$(sb_json .count "$TR_OUT")
	sb_assert_json "$name: $n connections, ids agree, data intact" \
		".ok == $n and all(.conns[]; .intact and
		 .server_trace_id == .trace_id)" "$TR_OUT"
	ids=$(jq -c '[.conns[].trace_id]' <<<"$TR_OUT")
	in="$ids as \$ids | (.trace_id | IN(\$ids[])) and .event == \"close\""
	sb_wait_for "$name: node-a's close records" 20 \
		trace_flows_are node-a "$in" "$n"
	sb_wait_for "$name: node-b's close records" 20 \
		trace_flows_are node-b "$in" "$n"
	recs_a=$(trace_flows node-a "$in" | jq -sc .)
	recs_b=$(trace_flows node-b "$in" | jq -sc .)
	# One document: the client's view (.c, by id in .m), the server's log
	# lines (.s), and each node's close records (.a, .b).
	all=$(jq -sc --argjson c "$TR_OUT" --argjson a "$recs_a" \
		--argjson b "$recs_b" '{c: $c, s: ., a: $a, b: $b,
		  m: ($c.conns | map({key: .trace_id, value: .}) | from_entries)}' \
		"$SLOG")

	sb_assert_json "$name: the server read what the client sent, and back" \
		".m as \$m | [.s[] | select(.trace_id as \$t | \$m | has(\$t))] |
		 length == $n and all(.[]; \$m[.trace_id] as \$c |
		   .received == \$c.sent and .sent == \$c.received)" "$all"
	sb_assert_json "$name: node-a's records: exact bytes, srtt, duration" \
		".m as \$m | .a | length == $n and all(.[]; \$m[.trace_id] as \$c |
		   .side == \"client\" and
		   .bytes_sent == \$c.sent and .bytes_received == \$c.received and
		   .srtt_us > 0 and .duration_ns > 0 and
		   .duration_ns < (\$c.elapsed_ms + 10000) * 1000000 and
		   (has(\"error\") | not))" "$all"
	sb_assert_json "$name: node-b's records: the same bytes, src -> dst" \
		".m as \$m | .b | length == $n and all(.[]; \$m[.trace_id] as \$c |
		   .side == \"server\" and
		   .bytes_sent == \$c.sent and .bytes_received == \$c.received and
		   .srtt_us > 0 and .duration_ns > 0 and
		   .duration_ns < (\$c.elapsed_ms + 10000) * 1000000 and
		   (has(\"error\") | not))" "$all"
	a1=$(pair_snap node-a)
	b1=$(pair_snap node-b)
	sb_assert_eq "$name: node-a's pair counters moved by the records" \
		"$(jq -r '[(map(.bytes_sent) | add), (map(.bytes_received) | add),
			    length, (map(.retransmits) | add)] | @tsv' <<<"$recs_a" |
			tr '\t' ' ')" \
		"$(snap_delta "$a0" "$a1")"
	sb_assert_eq "$name: node-b's pair counters moved by the records" \
		"$(jq -r '[(map(.bytes_sent) | add), (map(.bytes_received) | add),
			    length, (map(.retransmits) | add)] | @tsv' <<<"$recs_b" |
			tr '\t' ' ')" \
		"$(snap_delta "$b0" "$b1")"
}

close_case "client closes first" --send 300000 --reply 200000 \
	--closer client --count 3
FIRST=$(sb_json '.conns[0].trace_id' "$TR_OUT")
close_case "server closes first" --send 250000 --reply 350000 \
	--closer server --count 3
# The second FIN well after the ACK of the first: the end that closed first
# has handed its connection to a time-wait socket before the peer's FIN.
close_case "client first, server's FIN late" --send 100000 --reply 70000 \
	--closer client --close-delay 300 --count 2
close_case "server first, client's FIN late" --send 80000 --reply 90000 \
	--closer server --close-delay 300 --count 2
close_case "small, client first" --send 0 --reply 0 --closer client \
	--count 2
close_case "small, server first" --send 1 --reply 1 --closer server \
	--count 2

# A connection held open: its records say how long.
pid=$(sb_run /node-a/client a "$SMTRACE" connect --to "$TR_SERVER" \
	--send 1000 --reply 1000 --pause "$SB_WORK/go" --timeout-ms 30000)
sb_wait_ready "$pid" 20 paused
sleep 1.5
touch "$SB_WORK/go"
sb_wait "$pid" 60
out=$(tail -n 1 "$(sb_out "$pid")")
sb_assert_json "held connection: ok" '.ok == 1' "$out"
id=$(sb_json '.conns[0].trace_id' "$out")
ms=$(sb_json '.conns[0].elapsed_ms' "$out")
for node in node-a node-b; do
	sb_wait_for "held connection: $node's close record" 20 \
		trace_flows_are "$node" ".trace_id == \"$id\" and .event == \"close\"" 1
	sb_assert_json "held connection: $node's duration is the time it was open" \
		".duration_ns >= 1500000000 and
		 .duration_ns <= ($ms + 5000) * 1000000" \
		"$(trace_flows "$node" ".trace_id == \"$id\" and .event == \"close\"")"
done

# --- finding records by id: rotated files, the CLI and the API ---
sb_assert_ge "node-b's flow log was rotated" \
	"$(find "$(dirname "$FLOWS_B")" -name "$(basename "$FLOWS_B").*" | wc -l)" 2
for f in "$FLOWS_B" "$FLOWS_B".*; do
	# A file is rotated once a record takes it past the limit.
	sb_assert_le "$(basename "$f") kept near the size limit" \
		"$(stat -c %s "$f")" $((MAXB + 2000))
done
! grep -q "\"$FIRST\"" "$FLOWS_B" ||
	sb_fail "the first connection's records are still in the live file"
cli=$("$SB_BUILD/sockmesh" --json --flow-log "$FLOWS_B" flows --trace "$FIRST")
sb_assert_json "sockmesh flows --trace finds node-b's records in rotated files" \
	"length == 2 and all(.[]; .trace_id == \"$FIRST\" and
	 .side == \"server\") and
	 ([.[].event] | sort) == [\"close\", \"connect\"]" "$(jq -sc . <<<"$cli")"
cli=$("$SB_BUILD/sockmesh" --json --flow-log "$(sb_agent node-a flows)" \
	flows --trace "$FIRST")
sb_assert_json "sockmesh flows --trace finds node-a's records" \
	"length == 2 and all(.[]; .trace_id == \"$FIRST\" and
	 .side == \"client\")" "$(jq -sc . <<<"$cli")"
for node in node-a node-b; do
	api=$(curl -fsS --max-time 5 \
		"$(sb_agent "$node" url)/v1/flows?trace_id=$FIRST")
	sb_assert_json "GET /v1/flows?trace_id= on $node: connect and close" \
		"length == 2 and all(.[]; .trace_id == \"$FIRST\") and
		 ([.[].event] | sort) == [\"close\", \"connect\"]" "$api"
done

# --- getsockopt that is not ours ---
trace_run /node-a/client a opts --to "$TR_SERVER"
managed=$TR_OUT
trace_run "" a opts --to "$TR_SERVER"
plain=$TR_OUT
sb_assert_json "getsockopt under sockmesh: SOL_SOCKMESH answers the id" \
	'.result == "ok" and .sm_id == 16 and .sm_id_long == 16 and
	 .sm_id_short == "EINVAL"' "$managed"
sb_assert_json "getsockopt outside sockmesh: the level is unknown" \
	'.sm_id | test("^E")' "$plain"
sb_assert_eq "getsockopt: other levels answer the same under sockmesh" \
	"$(jq -c 'del(.sm_id, .sm_id_short, .sm_id_long)' <<<"$plain")" \
	"$(jq -c 'del(.sm_id, .sm_id_short, .sm_id_long)' <<<"$managed")"
sb_assert_json "getsockopt: the kernel's answers look right" \
	'.so_type[0] == 1 and .so_protocol[0] == 6 and .tcp_info.state == 1 and
	 .tcp_info.len > 100 and .tcp_info_8k >= .tcp_info.len and
	 (.sm_other | type) == "string"' "$managed"
