#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Peers without sockmesh, and full-size segments while the option rides on
# data. Node-a and node-b run agents; the plain host (ns c) runs none.
#
#   node-a -> plain   the plain server ignores the option: the connection
#                     works, node-a's records carry the client's id
#   plain -> node-b   no option arrives: node-b counts it missing, makes an
#                     id of its own, and the server application reads that
#                     same id with getsockopt
#   bulk (MSS)        a few MB from node-a while the option is still on the
#                     client's first data segments (no echo from a plain
#                     server, or from node-b answering with SYN cookies),
#                     over a 1400-byte link too: the data arrives intact
#                     and no segment needed fragmenting (the sender's
#                     IpFrag*/Ip6Frag* counters stay 0). With tcpdump
#                     installed, the capture also shows the option on
#                     full-size data segments and no IP packet over the MTU.
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

SLOG_B=$SB_WORK/server-b.jsonl
SLOG_C=$SB_WORK/server-c.jsonl
trace_serve /node-b/server b "[::]:$TR_PORT" "$SLOG_B"
trace_serve "" c "[::]:$TR_PORT" "$SLOG_C"
BULK=4000000

# The ids of the last smtrace connect as a jq IN() condition on .trace_id.
ids_in() {
	echo "$(jq -c '[.conns[].trace_id]' <<<"$TR_OUT") as \$ids |
		.trace_id | IN(\$ids[])"
}

# --- node-a -> plain server: the option is ignored ---
w0=$(trace_opts node-a written)
trace_run /node-a/client a connect --to "$TR_CA4:$TR_PORT" --send 3000 \
	--reply 3000 --count 3
sb_assert_json "to a plain server: connections work, data intact" \
	'.ok == 3 and all(.conns[]; .intact)' "$TR_OUT"
sb_assert_json "to a plain server: the client has its id" \
	"all(.conns[]; .trace_id // \"\" | test(\"$TR_HEX\"))" "$TR_OUT"
sb_assert_json "to a plain server: the server application has none" \
	'all(.conns[]; .server_trace_id | test("^-E"))' "$TR_OUT"
sb_assert_eq "to a plain server: node-a wrote 3 options" 3 \
	"$(($(trace_opts node-a written) - w0))"
sb_wait_for "to a plain server: node-a's connect and close records" 20 \
	trace_flows_are node-a "$(ids_in)" 6
sb_assert_json "to a plain server: the records are the client's, to world" \
	'all(.[]; .side == "client" and .src == "client" and .dst == "world")' \
	"$(trace_flows node-a "$(ids_in)" | jq -sc .)"

# --- plain client -> node-b: missing, the server makes its own id ---
m0=$(trace_opts node-b missing)
r0=$(trace_opts node-b received)
trace_run "" c connect --to "$TR_BC4:$TR_PORT" --send 100 --reply 3000 \
	--count 3
sb_assert_json "from a plain client: connections work, data intact" \
	'.ok == 3 and all(.conns[]; .intact)' "$TR_OUT"
sb_assert_json "from a plain client: the client application has no id" \
	'all(.conns[]; .trace_id == null)' "$TR_OUT"
sb_assert_json "from a plain client: the server application reads an id" \
	"all(.conns[]; .server_trace_id | test(\"$TR_HEX\")) and
	 ([.conns[].server_trace_id] | unique | length == 3)" "$TR_OUT"
sb_wait_for "from a plain client: node-b counts 3 missing" 20 \
	sb_metric_ge node-b sockmesh_trace_options_total 'result="missing"' \
	$((m0 + 3))
sb_assert_eq "from a plain client: exactly 3 missing" 3 \
	"$(($(trace_opts node-b missing) - m0))"
sb_assert_eq "from a plain client: none received" 0 \
	"$(($(trace_opts node-b received) - r0))"
sids=$(jq -c '[.conns[].server_trace_id]' <<<"$TR_OUT")
sin="$sids as \$ids | .trace_id | IN(\$ids[])"
sb_wait_for "from a plain client: node-b's records carry the server's ids" 20 \
	trace_flows_are node-b "$sin" 6
sb_assert_json "from a plain client: node-b's records: world -> server" \
	'all(.[]; .side == "server" and .src == "world" and .dst == "server")' \
	"$(trace_flows node-b "$sin" | jq -sc .)"

# --- bulk transfers: the option's room is kept out of the MSS ---

FRAG_SENDER="IpFragOKs IpFragCreates IpFragFails Ip6FragOKs Ip6FragCreates
	Ip6FragFails"
FRAG_RECEIVER="IpReasmReqds Ip6ReasmReqds"

# frag_sum NS NAMES: the sum of those counters in netns NS.
frag_sum() {
	local ns=$1 k sum=0
	for k in $2; do
		sum=$((sum + $(trace_snmp "$ns" "$k")))
	done
	echo "$sum"
}

# One segment per packet on node-a's link to the plain host, so a capture
# there shows the segments themselves, not offload super-packets.
ip -n "$(sb_ns a)" link set sb-c gso_max_segs 1
ip -n "$(sb_ns a)" link set sb-b gso_max_segs 1

# bulk NAME ECHO CAPTURE_NS CAPTURE_DEV MTU TO: BULK bytes from node-a's
# client to TO; ECHO 0: no echo comes back, the option is still pending on
# the first data segments. The capture is taken at the receiving end.
bulk() {
	local name=$1 echo=$2 cns=$3 cdev=$4 mtu=$5 to=$6 f0 r0 pcap="" pid
	local id big full_opt data_opt
	f0=$(frag_sum a "$FRAG_SENDER")
	r0=$(frag_sum "$cns" "$FRAG_RECEIVER")
	if command -v tcpdump >/dev/null 2>&1; then
		pcap=$SB_WORK/$cns.pcap
		rm -f "$pcap"
		sb_run "" "$cns" tcpdump -i "$cdev" -nn -U --immediate-mode \
			-s 128 -w "$pcap" "tcp port $TR_PORT" >/dev/null
		pid=$SB_PID
		sb_wait_for "$name: tcpdump listening" 10 \
			grep -q "listening on" "$(sb_err "$pid")"
	fi
	# Header and body go out in one write: the first segments after the
	# handshake are full-size.
	trace_run /node-a/client a connect --to "$to" --send "$BULK" \
		--reply 1000 --timeout-ms 60000
	sb_assert_json "$name: $BULK bytes arrive intact, and the reply" \
		".ok == 1 and .conns[0].intact and
		 .conns[0].sent == $BULK + (\"smtrace $BULK 1000 c 0\n\" | length)" \
		"$TR_OUT"
	sb_assert_eq "$name: no segment was fragmented on the way out" 0 \
		"$(($(frag_sum a "$FRAG_SENDER") - f0))"
	sb_assert_eq "$name: nothing to reassemble at the receiver" 0 \
		"$(($(frag_sum "$cns" "$FRAG_RECEIVER") - r0))"
	id=$(sb_json '.conns[0].trace_id' "$TR_OUT")
	sb_wait_for "$name: node-a's close record" 20 \
		trace_flows_are node-a ".trace_id == \"$id\" and .event == \"close\"" 1
	sb_assert_json "$name: the close record counts the bytes" \
		".bytes_sent == $(sb_json '.conns[0].sent' "$TR_OUT") and
		 .bytes_received == $(sb_json '.conns[0].received' "$TR_OUT")" \
		"$(trace_flows node-a ".trace_id == \"$id\" and .event == \"close\"")"
	[[ -n $pcap ]] || {
		sb_log "$name: tcpdump not installed; capture checks skipped"
		return 0
	}
	sb_stop "$pid"
	# One line a packet: "IP (... length L) src > dst: Flags [.], ...,
	# options [...], length N", or IP6 with "payload length: L".
	tcpdump -r "$pcap" -nn -v 2>/dev/null |
		tr '\n' ' ' | sed 's/ \(IP6\? (\)/\n\1/g' >"$pcap.txt"
	read -r big full_opt data_opt < <(awk '
		/^IP6? \(/ {
			if (match($0, /payload length: [0-9]+/))
				l = substr($0, RSTART + 16, RLENGTH - 16) + 40
			else if (match($0, /length [0-9]+\)/))
				l = substr($0, RSTART + 7, RLENGTH - 8) + 0
			else
				next
			n++; len[n] = l
			if (l > max) max = l
			# The id option: ExID and 16 bytes (not the 4-byte echo).
			opt[n] = match($0, /unknown-253 0x534d[0-9a-f]*/) &&
				 RLENGTH == 18 + 32
			data[n] = ($0 ~ /\], length [1-9]/)
		}
		END {
			for (i = 1; i <= n; i++) {
				if (opt[i] && len[i] == max) f++
				if (opt[i] && data[i]) d++
			}
			print max + 0, f + 0, d + 0
		}' "$pcap.txt")
	sb_assert_le "$name: no IP packet on the wire over the MTU $mtu" \
		"$big" "$mtu"
	sb_assert_eq "$name: the largest packets fill the MTU" "$mtu" "$big"
	if ((echo)); then
		sb_assert_eq "$name: echoed: no data segment carries the option" \
			0 "$data_opt"
	else
		sb_assert_ge "$name: full-size data segments carried the option" \
			"$full_opt" 1
	fi
}

bulk "bulk to a plain server" 0 c sb-a "$TR_AC_MTU" "$TR_CA4:$TR_PORT"
bulk "bulk v6 to a plain server" 0 c sb-a "$TR_AC_MTU" "[$TR_CA6]:$TR_PORT"
bulk "bulk to node-b" 1 b sb-a 1500 "$TR_SERVER"
ip netns exec "$(sb_ns b)" sysctl -qw net.ipv4.tcp_syncookies=2
bulk "bulk to node-b with SYN cookies" 0 b sb-a 1500 "$TR_SERVER"
ip netns exec "$(sb_ns b)" sysctl -qw net.ipv4.tcp_syncookies=1
