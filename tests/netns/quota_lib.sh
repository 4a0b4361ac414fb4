# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# shellcheck shell=bash
#
# quota_lib.sh: one node with a client service, a server service and the
# agent enforcing quotas between them, for tests/netns/test_quota_*.sh.
# Source it after tests/lib/sandbox.sh and call q_start after sb_init.
#
#   netns "node" (198.18.2.1 on lo):
#     198.18.2.1:8080    server, TCP and UDP, replies "srv"
#     198.18.2.1:8081    endpoint of server where nothing listens (refused)
#     198.18.2.1:8082    free for a test's own listener
#     198.18.2.1:8083    free for a test's own listener
#     198.18.9.9:8080    endpoint of server routed into netns "void", which
#                        drops what it gets: a SYN sent there is lost
#     198.18.200.1:8080  endpoint of server with no route at all: connect()
#                        fails with ENETUNREACH before any SYN is sent
#   cgroups $SB_CGROOT/{client,server,other,batch}: client and server are
#   services; "other" lies in the managed subtree but belongs to no
#   service, so it is "world" to the agent; batch is for a test's extras.
#   Rules: client -> server and world -> server on the ports above.

[[ -n ${_Q_LOADED:-} ]] && return 0
_Q_LOADED=1

Q_SRV=198.18.2.1:8080
Q_REFUSED=198.18.2.1:8081
Q_FREE1=198.18.2.1:8082
Q_FREE2=198.18.2.1:8083
Q_LOST=198.18.9.9:8080
Q_NOROUTE=198.18.200.1:8080

# A quota refusal is decided inside connect(); 500 ms leaves room for a
# busy machine and is still half of the first SYN retransmission (1 s).
# shellcheck disable=SC2034 # for the tests
Q_FAST_MS=500

# Write the policy to FILE. QUOTAS are YAML list items ("  - {...}", one
# per line) or "" for none; EXTRA_SVC is added to the services map and
# EXTRA_RULES to the rules (both indented two spaces). Written beside
# FILE and renamed, so the agent never reads half a file.
q_policy() {
	local file=$1 quotas=$2 extra_svc=${3:-} extra_rules=${4:-}
	local ports="[8080, 8081, 8082, 8083]"
	{
		cat <<EOF
apiVersion: sockmesh/v1
node: node-q
defaults:
  mode: enforce
  egress: allow
services:
  client:
    cgroups: [$SB_CGROOT/client]
  server:
    cgroups: [$SB_CGROOT/server]
    protocol: both
    endpoints: [$Q_SRV, $Q_REFUSED, $Q_FREE1, $Q_FREE2, $Q_LOST, $Q_NOROUTE]
EOF
		[[ -z $extra_svc ]] || echo "$extra_svc"
		cat <<EOF
rules:
  - {from: client, to: server, ports: $ports}
  - {from: world, to: server, ports: $ports}
EOF
		[[ -z $extra_rules ]] || echo "$extra_rules"
		if [[ -n $quotas ]]; then
			echo "quotas:"
			echo "$quotas"
		fi
	} >"$file.tmp"
	mv -f "$file.tmp" "$file"
}

# Make the node, write the policy (arguments as for q_policy after FILE),
# start the agent and the servers. Sets Q_NS, Q_POLICY, Q_FLOWS, Q_URL.
q_start() {
	local c
	sb_need_cmd jq curl ip
	sb_need_build "$SB_SMTEST"
	sb_need_agent

	sb_netns node 198.18.2.1/32
	sb_netns void
	sb_veth node 198.18.5.1/24 void 198.18.5.2/24
	sb_route node 198.18.9.0/24 198.18.5.2
	Q_NS=$(sb_ns node)
	for c in client server other batch; do
		sb_cgroup "/$c" >/dev/null
	done

	# Its own directory: the agent watches the policy's directory.
	mkdir "$SB_WORK/policy"
	Q_POLICY=$SB_WORK/policy/policy.yaml
	q_policy "$Q_POLICY" "$@"
	# Loading the datapath is the verifier's work: on a loaded machine
	# that alone can take half a minute.
	# Every refusal gets its own flow record: the tests count them.
	sb_agent_start sockmesh "$Q_POLICY" --timeout 120 -- \
		--deny-records-per-second 0
	Q_FLOWS=$(sb_agent sockmesh flows)
	Q_URL=$(sb_agent sockmesh url)

	q_server "$Q_SRV" srv
	sb_run /server node "$SB_SMTEST" serve --listen "$Q_SRV" --udp \
		--tag srv-udp --timeout 900 >/dev/null
	sb_wait_ready "$SB_PID" 20
	export Q_NS Q_POLICY Q_FLOWS Q_URL
}

# Start a TCP server of service server on ADDR replying TAG; sets SB_PID.
q_server() {
	sb_run /server node "$SB_SMTEST" serve --listen "$1" --tag "$2" \
		--timeout 900 >/dev/null
	sb_wait_ready "$SB_PID" 20
}

# The policy generation in force.
q_generation() {
	sb_metric sockmesh sockmesh_policy_generation
}

# True once the policy generation is above GEN.
_q_generation_above() {
	local g
	g=$(q_generation) || return 1
	((g > $1))
}

# Rewrite the policy (arguments as for q_policy after FILE) and wait
# until the agent has put it in force.
q_reload() {
	local gen
	gen=$(q_generation)
	q_policy "$Q_POLICY" "$@"
	sb_wait_for "policy generation above $gen" 30 _q_generation_above "$gen"
}

# Run smtest ARGS... in CGROUP in the node and wait for it (bounded).
# Sets Q_PID and Q_OUT (the JSON it printed last); fails the test if
# smtest does not finish cleanly.
q_smtest() {
	local cg=$1
	shift
	sb_run_json 180 "$cg" node "$SB_SMTEST" "$@"
	Q_PID=$SB_PID
	Q_OUT=$SB_OUT
}

# True once process PID has printed its "held N" line.
_q_held_line() {
	grep -q '^held [0-9]*$' "$(sb_out "$1")"
}

# Open COUNT connections from CGROUP to ADDR and keep open the ones that
# connect (smtest connect --hold; more ARGS... go to smtest). Sets
# Q_HOLD_PID and Q_HELD (how many it holds open).
q_hold() {
	local cg=$1 addr=$2 count=$3
	shift 3
	sb_run "$cg" node "$SB_SMTEST" connect --to "$addr" --count "$count" \
		--hold --hold-max 600 --timeout-ms 5000 "$@" >/dev/null
	Q_HOLD_PID=$SB_PID
	sb_wait_for "smtest $Q_HOLD_PID holds its connections" 120 \
		_q_held_line "$Q_HOLD_PID"
	# shellcheck disable=SC2034 # for the tests
	Q_HELD=$(awk '/^held / { print $2 }' "$(sb_out "$Q_HOLD_PID")")
}

# Close the connections holder PID keeps; sets Q_OUT to its report
# (what each of its connect() calls returned).
q_release() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	sb_wait "$pid" 60 || true
	Q_OUT=$(tail -n 1 "$(sb_out "$pid")")
	[[ $Q_OUT == \{* ]] || sb_fail "holder $pid printed no report"
}

# sockmesh_quota_active of SRC -> DST.
q_active() {
	sb_metric sockmesh sockmesh_quota_active "^src=\"$1\",dst=\"$2\"\$"
}

# True if sockmesh_quota_active of SRC -> DST is N (for sb_wait_for).
q_active_is() {
	local v
	v=$(q_active "$1" "$2") || return 1
	[[ $v == "$3" ]] || { echo "sockmesh_quota_active is $v, want $3"; return 1; }
}

# Assert sockmesh_quota_active of SRC -> DST is N, waiting (bounded) for
# closes still on their way through the kernel.
q_assert_active() {
	local label=$1 src=$2 dst=$3 n=$4
	sb_wait_for "$label: sockmesh_quota_active{$src,$dst} = $n" 20 \
		q_active_is "$src" "$dst" "$n"
	echo "ok: $label: sockmesh_quota_active{src=\"$src\",dst=\"$dst\"} = $n"
}

# sockmesh_connections_total of SRC -> DST with VERDICT.
q_conns() {
	sb_metric sockmesh sockmesh_connections_total \
		"^src=\"$1\",dst=\"$2\",verdict=\"$3\"\$"
}

# The flow log and its rotated parts, oldest first.
q_flow_lines() {
	local i
	for ((i = 9; i >= 1; i--)); do
		[[ -r $Q_FLOWS.$i ]] && cat "$Q_FLOWS.$i"
	done
	[[ -r $Q_FLOWS ]] && cat "$Q_FLOWS"
	return 0
}

# Flow records matching the jq condition SEL, one per line.
q_flows() {
	q_flow_lines | jq -c "select($1)"
}

# How many deny records process PID left (quick: no JSON parsing).
q_deny_count() {
	q_flow_lines | grep -F '"event":"deny"' | grep -cF "\"pid\":$1," || true
}

# True if process PID left N deny records (for sb_wait_for).
q_deny_count_is() {
	local n
	n=$(q_deny_count "$1")
	[[ $n -eq $2 ]] || { echo "$n deny records, want $2"; return 1; }
}

# Assert that process PID left exactly N deny records, and that each
# says quota, names SRC and DST, and the limit REASON (quota_rate or
# quota_concurrent).
q_assert_quota_records() {
	local label=$1 pid=$2 n=$3 src=$4 dst=$5 reason=$6

	sb_wait_for "$label: $n deny records" 20 q_deny_count_is "$pid" "$n"
	echo "ok: $label: $n deny records"
	((n > 0)) || return 0
	sb_assert_json "$label: each says quota, $reason, $src -> $dst" \
		"all(.verdict == \"quota\" and .reason == \"$reason\" and
		     .src == \"$src\" and .dst == \"$dst\" and
		     .proto == \"tcp\" and .side == \"client\" and
		     .comm == \"smtest\")" \
		"$(q_flows ".event == \"deny\" and .pid == $pid" | jq -s .)"
}

# Assert the quota limit of SRC_CG -> ADDR still holds exactly N: hold
# N + 5 connections at once, exactly N connect and 5 get EDQUOT; then
# close them and see the gauge of SRC -> DST back at 0. A count that went
# below zero (a unit given back twice) would let more than N through.
q_assert_exact_limit() {
	local label=$1 cg=$2 addr=$3 n=$4 src=$5 dst=$6
	q_hold "$cg" "$addr" $((n + 5)) --parallel 4
	q_assert_active "$label: limit reached" "$src" "$dst" "$n"
	q_release "$Q_HOLD_PID"
	sb_assert_json "$label: exactly $n of $((n + 5)) connect, 5 get EDQUOT" \
		".results == {\"ok\": $n, \"EDQUOT\": 5} and .held == $n" "$Q_OUT"
	q_assert_active "$label: all closed" "$src" "$dst" 0
}
