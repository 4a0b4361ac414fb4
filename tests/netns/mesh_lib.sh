# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# shellcheck shell=bash
#
# mesh_lib.sh: the demo mesh of examples/policy.yaml on one node, with the
# agent enforcing it, for the integration tests in tests/netns/. Source it
# after tests/lib/sandbox.sh and call mesh_start after sb_init.
#
#   netns "node", every address on lo:
#     frontend   198.18.1.1  (client; listens nowhere here)
#     reviews-v1 198.18.1.2:9080   server tagged "v1"
#     reviews-v2 198.18.1.3:9080   server tagged "v2"
#     ratings    198.18.1.4:9090   server tagged "ratings"
#     reviews VIP 198.19.0.10:9080 (on no interface: sockmesh rewrites it)
#   cgroups $SB_CGROOT/{frontend,reviews-v1,reviews-v2,ratings,other};
#   "other" is inside the managed subtree but belongs to no service, so
#   its processes are "world" to the agent.
#
# Each server logs one JSON line per connection to $MESH_LOG_V1,
# $MESH_LOG_V2 and $MESH_LOG_RATINGS.

[[ -n ${_MESH_LOADED:-} ]] && return 0
_MESH_LOADED=1

MESH_VIP=198.19.0.10:9080
MESH_V1=198.18.1.2:9080
MESH_V2=198.18.1.3:9080
MESH_RATINGS=198.18.1.4:9090

# Write the mesh policy to FILE with subset weights V1 and V2; EXTRA is
# YAML appended to the services map (indented two spaces), RULES to the
# rules list. Written beside FILE and renamed, as a ConfigMap update is,
# so the agent never reads half a file.
mesh_policy() {
	local file=$1 w1=$2 w2=$3 extra=${4:-} rules=${5:-}
	cat >"$file.tmp" <<EOF
apiVersion: sockmesh/v1
node: node-a
defaults:
  mode: enforce
  egress: allow
services:
  frontend:
    cgroups: [$SB_CGROOT/frontend]
    endpoints: [198.18.1.1:8080]
  reviews:
    vip: [$MESH_VIP]
    protocol: tcp
    subsets:
      v1: {weight: $w1, cgroups: [$SB_CGROOT/reviews-v1], endpoints: [$MESH_V1]}
      v2: {weight: $w2, cgroups: [$SB_CGROOT/reviews-v2], endpoints: [$MESH_V2]}
  ratings:
    cgroups: [$SB_CGROOT/ratings]
    endpoints: [$MESH_RATINGS]
$extra
rules:
  - {from: frontend, to: reviews, ports: [9080]}
  - {from: reviews, to: ratings, ports: [9090]}
  - {from: world, to: frontend, ports: [8080]}
$rules
EOF
	mv -f "$file.tmp" "$file"
}

# Start a tagged server in CGROUP listening on ADDR, logging to LOG.
_mesh_server() {
	local cg=$1 addr=$2 tag=$3 log=$4
	: >"$log"
	sb_run "$cg" node "$SB_SMTEST" serve --listen "$addr" --tag "$tag" \
		--log "$log" --timeout 900 >/dev/null
	sb_wait_ready "$SB_PID" 20
}

# Make the node, write the policy (weights V1 V2, default 90 10, plus
# EXTRA services and RULES as for mesh_policy), start the agent and the
# servers. Sets MESH_NS, MESH_POLICY, MESH_URL, MESH_FLOWS, MESH_LOG_*.
mesh_start() {
	local w1=${1:-90} w2=${2:-10} extra=${3:-} rules=${4:-} c
	sb_need_cmd jq curl ip
	sb_need_build "$SB_SMTEST"
	sb_need_agent

	sb_netns node 198.18.1.1/32 198.18.1.2/32 198.18.1.3/32 198.18.1.4/32
	MESH_NS=$(sb_ns node)
	for c in frontend reviews-v1 reviews-v2 ratings other; do
		sb_cgroup "/$c" >/dev/null
	done

	# Its own directory: the agent watches the policy's directory.
	mkdir "$SB_WORK/policy"
	MESH_POLICY=$SB_WORK/policy/policy.yaml
	mesh_policy "$MESH_POLICY" "$w1" "$w2" "$extra" "$rules"
	sb_agent_start sockmesh "$MESH_POLICY" --timeout 30
	MESH_URL=$(sb_agent sockmesh url)
	MESH_FLOWS=$(sb_agent sockmesh flows)

	MESH_LOG_V1=$SB_WORK/v1.log
	MESH_LOG_V2=$SB_WORK/v2.log
	MESH_LOG_RATINGS=$SB_WORK/ratings.log
	_mesh_server /reviews-v1 "$MESH_V1" v1 "$MESH_LOG_V1"
	_mesh_server /reviews-v2 "$MESH_V2" v2 "$MESH_LOG_V2"
	_mesh_server /ratings "$MESH_RATINGS" ratings "$MESH_LOG_RATINGS"
	export MESH_NS MESH_POLICY MESH_URL MESH_FLOWS MESH_LOG_V1 MESH_LOG_V2 \
		MESH_LOG_RATINGS
}

# Run smtest ARGS... in CGROUP in the node and wait for it (bounded).
# Sets MESH_PID (the pid the datapath sees: smtest itself) and MESH_OUT
# (the JSON it printed last). Fails the test if smtest fails to run.
mesh_smtest() {
	local cg=$1
	shift
	sb_run_json 120 "$cg" node "$SB_SMTEST" "$@"
	MESH_PID=$SB_PID
	MESH_OUT=$SB_OUT
}

# Print counter NAME of the Tcp: lines of /proc/net/snmp in the node.
mesh_tcp_counter() {
	ip netns exec "$MESH_NS" cat /proc/net/snmp | awk -v k="$1" '
		$1 == "Tcp:" {
			if (!n) { for (i = 2; i <= NF; i++) h[i] = $i; n = 1; next }
			for (i = 2; i <= NF; i++) if (h[i] == k) print $i
		}'
}

# Print the number of lines of FILE (0 if it does not exist).
mesh_lines() {
	if [[ -e $1 ]]; then
		wc -l <"$1"
	else
		echo 0
	fi
}

# Print the flow records (one compact JSON object a line) for which the jq
# expression FILTER is true. A line still being written is skipped.
mesh_flows() {
	[[ -e $MESH_FLOWS ]] || return 0
	jq -cR "fromjson? | select($1)" "$MESH_FLOWS"
}

# Print how many flow records match FILTER.
mesh_flow_count() {
	mesh_flows "$1" | wc -l
}

# True when exactly N flow records match FILTER (for sb_wait_for).
mesh_flow_count_is() {
	[[ $(mesh_flow_count "$1") -eq $2 ]]
}

# Print metric NAME of the agent summed over samples whose labels match
# the regex LABELS.
mesh_metric() {
	sb_metric sockmesh "$1" "${2:-}"
}

# True when metric NAME{LABELS} equals N (for sb_wait_for).
mesh_metric_is() {
	[[ $(mesh_metric "$1" "$2") == "$3" ]]
}
