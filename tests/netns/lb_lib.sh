# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# shellcheck shell=bash
#
# lb_lib.sh: one node for the load-balancing tests (tests/netns/test_lb_*.sh).
# Source it after tests/lib/sandbox.sh; call lb_setup after sb_init.
#
#   netns "node": every address a test names is on lo; VIPs are on no
#   interface (sockmesh rewrites them). The policy lives in a directory
#   of its own, which the agent watches: lb_reload rewrites it.
#   Servers: smtest serve (replies with its tag and closes) for counting,
#   lb_tool.py serve (answers every line, keeps the connection) for
#   long-lived connections. Clients: smtest connect for volume,
#   lb_tool.py for what smtest does not do (see the top of lb_tool.py).

[[ -n ${_LB_LOADED:-} ]] && return 0
_LB_LOADED=1

LB_TOOL=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lb_tool.py

# Make the node with ADDRs on lo and the policy directory; needs the
# build, the agent, python3, jq and curl.
lb_setup() {
	sb_need_cmd jq curl ip python3
	sb_need_build "$SB_SMTEST" "$SB_BUILD/sockmesh"
	sb_need_agent
	sb_netns node "$@"
	LB_NS=$(sb_ns node)
	mkdir "$SB_WORK/policy"
	LB_POLICY=$SB_WORK/policy/policy.yaml
	export LB_NS LB_POLICY
}

# Write the policy: the header, then BODY (the services: map and the
# rules: list) as given. Written beside the file and renamed, as a
# ConfigMap update is, so the agent never reads half a file.
lb_policy() {
	cat >"$LB_POLICY.tmp" <<EOF
apiVersion: sockmesh/v1
node: node-lb
defaults:
  mode: enforce
  egress: allow
$1
EOF
	mv -f "$LB_POLICY.tmp" "$LB_POLICY"
}

# Start the agent on the policy written by lb_policy.
lb_agent() {
	sb_agent_start sockmesh "$LB_POLICY" --timeout 120
	LB_URL=$(sb_agent sockmesh url)
	LB_FLOWS=$(sb_agent sockmesh flows)
	LB_LOG=$(sb_agent sockmesh log)
	export LB_URL LB_FLOWS LB_LOG
}

# Print metric NAME of the agent, summed over samples matching LABELS.
lb_metric() {
	sb_metric sockmesh "$1" "${2:-}"
}

# Rewrite the policy with BODY and wait until the agent has applied it:
# a successful reload counted (the agent counts it last, after the
# switch and any drain), the generation up by one.
lb_reload() {
	local gen ok
	gen=$(lb_metric sockmesh_policy_generation)
	ok=$(lb_metric sockmesh_policy_reloads_total 'result="success"')
	lb_policy "$1"
	sb_wait_for "reload $((ok + 1)) counted" 60 sb_metric_ge sockmesh \
		sockmesh_policy_reloads_total 'result="success"' $((ok + 1))
	sb_assert_eq "reload applied: generation $((gen + 1))" $((gen + 1)) \
		"$(lb_metric sockmesh_policy_generation)"
}

# Start smtest serve in CGROUP on ADDR answering TAG (more smtest serve
# flags may follow); its log is $SB_WORK/srv.TAG.log.
lb_serve() {
	local cg=$1 addr=$2 tag=$3
	shift 3
	: >"$SB_WORK/srv.$tag.log"
	sb_run "$cg" node "$SB_SMTEST" serve --listen "$addr" --tag "$tag" \
		--log "$SB_WORK/srv.$tag.log" --timeout 900 "$@" >/dev/null
	sb_wait_ready "$SB_PID" 60
}

# Start lb_tool.py serve (long-lived connections) in CGROUP on ADDR.
lb_serve_lines() {
	sb_run "$1" node python3 "$LB_TOOL" serve --listen "$2" --tag "$3" \
		--timeout 900 >/dev/null
	sb_wait_ready "$SB_PID" 60
}

# Print the lines of server log TAG (connections or datagrams it served).
lb_served() {
	wc -l <"$SB_WORK/srv.$1.log"
}

# Run CMD... in CGROUP in the node (in netns $LB_RUN_NS if set: "" is
# the root one), wait (bounded) and set LB_OUT to the JSON it printed
# last; fail the test if it did not run to the end.
_lb_run() {
	local cg=$1
	shift
	sb_run_json 300 "$cg" "${LB_RUN_NS-node}" "$@"
	LB_OUT=$SB_OUT
}

# smtest ARGS... in CGROUP; LB_OUT is its JSON.
lb_smtest() {
	local cg=$1
	shift
	_lb_run "$cg" "$SB_SMTEST" "$@"
}

# lb_tool.py ARGS... in CGROUP; LB_OUT is its JSON.
lb_tool() {
	local cg=$1
	shift
	_lb_run "$cg" python3 "$LB_TOOL" "$@"
}

# The binomial window of K successes in N trials of probability P:
# prints "MEAN BOUND", BOUND being 5 standard deviations.
lb_window() {
	awk -v n="$1" -v p="$2" 'BEGIN {
		printf "%.1f %.1f\n", n * p, 5 * sqrt(n * p * (1 - p))
	}'
}

# Assert K of N lies within 5 sigma of N*P. Every share in WRONG... (what
# a plausible wrong implementation would give) must lie outside that
# window, so the check can fail a wrong datapath, not only pass a right
# one.
lb_binom() {
	local label=$1 k=$2 n=$3 p=$4 mean bound w
	shift 4
	read -r mean bound < <(lb_window "$n" "$p")
	sb_log "$label: $k of $n = $(awk -v k="$k" -v n="$n" \
		'BEGIN { printf "%.4f", k / n }') (expected $p: $mean +- $bound)"
	for w in "$@"; do
		awk -v m="$mean" -v b="$bound" -v n="$n" -v w="$w" \
			'BEGIN { exit !((n * w - m) ^ 2 > b * b) }' ||
			sb_fail "$label: a share of $w would pass too; more samples"
	done
	awk -v k="$k" -v m="$mean" -v b="$bound" \
		'BEGIN { exit !((k - m) ^ 2 <= b * b) }' ||
		sb_fail "$label: $k of $n is outside $mean +- $bound (5 sigma)"
	echo "ok: $label"
}

# Print the flow records (one compact object a line) matching jq FILTER;
# a line still being written is skipped.
lb_flows() {
	[[ -e $LB_FLOWS ]] || return 0
	jq -cR "fromjson? | select($1)" "$LB_FLOWS"
}

# True when at least N flow records match FILTER (for sb_wait_for).
lb_flows_ge() {
	(($(lb_flows "$1" | wc -l) >= $2))
}

# build/sockmesh ARGS... against this sandbox's pins.
lb_cli() {
	"$SB_BUILD/sockmesh" --bpffs "$(sb_agent sockmesh bpffs)" \
		--cgroup "$SB_CGROOT" "$@"
}
