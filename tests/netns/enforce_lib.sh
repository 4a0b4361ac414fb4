# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# shellcheck shell=bash
#
# enforce_lib.sh: what the enforcement tests (test_enforce_*.sh) share.
# Source it in place of tests/lib/sandbox.sh, which it sources; call
# enf_need before sb_init.
#
#   one agent, "sockmesh", on the policy file that enf_policy writes
#   ($ENF_POLICY), its flow log in $ENF_FLOWS;
#   servers: smtest serve, started by enf_serve, up to 280 s;
#   clients: smtest connect in netns "n", run by enf_connect, which
#   prints the client's pid: its JSON is $(enf_result PID), and the
#   flow records it caused are $(enf_records PID EVENT);
#   sockmesh_connections_total per source, destination and verdict is
#   $(enf_conns SRC DST VERDICT).

[[ -n ${_ENF_LOADED:-} ]] && return 0
_ENF_LOADED=1

# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

# shellcheck disable=SC2034 # for the tests that source this
SMSOCK=$SB_BUILD/tests/smsock

# Skip unless jq, ip and curl are installed, and fail unless smtest, the
# agent and every named build output are built.
# shellcheck disable=SC2120 # the outputs are optional
enf_need() {
	sb_need_cmd jq ip curl
	sb_need_build "$SB_SMTEST" "$@"
	sb_need_agent
}

# Make the cgroups CG... under the test root.
enf_cgroups() {
	local cg
	for cg; do
		sb_cgroup "$cg" >/dev/null
	done
}

# Write the policy read from stdin to $SB_WORK/policy.yaml, which
# ENF_POLICY then names: beside the file first, then renamed, so the
# agent never reads half a file.
enf_policy() {
	ENF_POLICY=$SB_WORK/policy.yaml
	cat >"$ENF_POLICY.new"
	mv "$ENF_POLICY.new" "$ENF_POLICY"
}

# Start agent "sockmesh" on $ENF_POLICY and wait until it is ready; sets
# ENF_FLOWS, its flow log.
enf_agent() {
	sb_agent_start sockmesh "$ENF_POLICY" --timeout 120
	ENF_FLOWS=$(sb_agent sockmesh flows)
}

# Run CMD ARGS... (which writes a new policy) and wait until the agent has
# applied it: sockmesh_policy_generation went up.
enf_reload() {
	local gen
	gen=$(sb_metric sockmesh sockmesh_policy_generation)
	"$@"
	sb_wait_for "policy reloaded" 20 sb_metric_ge sockmesh \
		sockmesh_policy_generation "" "$((gen + 1))"
}

# enf_serve CG NS ADDR TAG [ARGS...]: smtest serve on ADDR, answering TAG,
# in cgroup CG and netns NS; returns once it listens.
enf_serve() {
	local cg=$1 ns=$2 addr=$3 tag=$4 pid
	shift 4
	pid=$(sb_run "$cg" "$ns" "$SB_SMTEST" serve --listen "$addr" \
		--tag "$tag" "$@" --timeout 280)
	sb_wait_ready "$pid" 30
}

# Run smtest connect ARGS... from cgroup CG in netns n and wait for it;
# prints its pid.
enf_connect() {
	local cg=$1 p
	shift
	p=$(sb_run "$cg" n "$SB_SMTEST" connect "$@")
	sb_wait "$p" 30 || sb_fail "smtest connect $* failed"
	echo "$p"
}

# The last line a process run by sb_run printed: smtest's JSON.
enf_result() {
	tail -n 1 "$(sb_out "$1")"
}

# sockmesh_connections_total for SRC -> DST with VERDICT.
enf_conns() {
	sb_metric sockmesh sockmesh_connections_total \
		"src=\"$1\",dst=\"$2\",verdict=\"$3\""
}

# The flow log records of process PID with event EVENT, as a JSON array.
enf_records() {
	jq -sc --argjson pid "$1" --arg ev "$2" \
		'map(select(.pid == $pid and .event == $ev))' "$ENF_FLOWS"
}

# True once process PID has N records of event EVENT in the flow log.
enf_records_ge() {
	[[ -s $ENF_FLOWS ]] && (($(enf_records "$1" "$2" | jq length) >= $3))
}
