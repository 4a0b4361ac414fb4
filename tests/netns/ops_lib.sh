# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# shellcheck shell=bash
#
# ops_lib.sh: a small node, a policy with "generations" and a background
# load of new connections, for the operations tests (test_ops_*.sh).
# Source it in place of tests/lib/sandbox.sh, which it sources; call
# ops_node after sb_init and start the agent with ops_agent.
#
#   netns "node", every address on lo, every server in the unmanaged host
#   cgroup (servers accept; only the client side is decided here):
#     198.18.0.1:80  "a"       subset a of VIP web  198.19.0.10:80
#     198.18.0.2:80  "b"       subset b of VIP web
#     198.18.0.3:80  "c"       subset c of VIP web2 198.19.0.11:80
#     198.18.0.4:80  "d"       subset d of VIP web2
#     198.18.0.10:80 and [fd00:18::10]:80  "stable"   always allowed
#     198.18.0.11:80 "locked"  no rule ever lets the client in
#     198.18.4.N:80  service xN (N = 1, 2, ...): no host; allowed means
#                    ENETUNREACH (no route), denied means EPERM
#   cgroup $SB_CGROOT/client is service "client"; egress is denied, so
#   the client reaches nothing outside the mesh.
#
# A policy "generation" G (ops_policy G N) alternates two shapes whose
# mixes are impossible to miss:
#   G even: web   -> a (100) / b (0), and a rule lets client reach web;
#           web2  -> c (100, endpoint) / d (0, no endpoint)
#   G odd:  web   -> a (0) / b (100), and no rule: web is denied;
#           web2  -> c (0, no endpoint) / d (100, endpoint)
# so, in any single generation, a connection to web is "ok from a" or
# EPERM and one to web2 is "ok from c" or "ok from d". A connection that
# took its rule from one generation and its backend from the other would
# be "ok from b"; one that took the weights of one generation and the
# endpoint list of the other would fail with EHOSTUNREACH. web2 keeps
# (drain: keep) the connections to the endpoint a generation removes, so
# that one still exchanging data at the switch is not closed.

[[ -n ${_OPS_LOADED:-} ]] && return 0
_OPS_LOADED=1

# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

# An agent start loads and verifies the BPF object: seconds of CPU, far
# more on a busy machine.
export OPS_AGENT_TIMEOUT=120

OPS_WEB=198.19.0.10:80
OPS_WEB2=198.19.0.11:80
OPS_STABLE=198.18.0.10:80
OPS_STABLE6='[fd00:18::10]:80'
OPS_LOCKED=198.18.0.11:80

# The 13 attach types our programs use, as bpftool names them.
OPS_ATTACH_TYPES="cgroup_getsockopt cgroup_inet4_connect
cgroup_inet4_getpeername cgroup_inet6_connect cgroup_inet6_getpeername
cgroup_inet_ingress cgroup_inet_sock_create cgroup_inet_sock_release
cgroup_sock_ops cgroup_udp4_recvmsg cgroup_udp4_sendmsg cgroup_udp6_recvmsg
cgroup_udp6_sendmsg"

# Make the node: netns, addresses, the client cgroup, the servers and
# the directory of the policy file, $OPS_POLICY. With GEN [N], write the
# policy of generation GEN (ops_policy GEN N) there. Sets OPS_NS and
# OPS_POLICY.
# shellcheck disable=SC2120 # GEN and N are optional
ops_node() {
	local t
	sb_need_cmd jq curl ip bpftool
	sb_need_build "$SB_SMTEST"
	sb_need_agent
	sb_netns node 198.18.0.1/32 198.18.0.2/32 198.18.0.3/32 198.18.0.4/32 \
		198.18.0.10/32 198.18.0.11/32 fd00:18::10/128
	OPS_NS=$(sb_ns node)
	sb_cgroup /client >/dev/null
	for t in a=198.18.0.1:80 b=198.18.0.2:80 c=198.18.0.3:80 \
		d=198.18.0.4:80 stable=198.18.0.10:80 stable="[fd00:18::10]:80" \
		locked=198.18.0.11:80; do
		sb_run "" node "$SB_SMTEST" serve --listen "${t#*=}" \
			--tag "${t%%=*}" --timeout 900 >/dev/null
		sb_wait_ready "$SB_PID" 20
	done
	mkdir -p "$SB_WORK/load"
	mkdir "$SB_WORK/policy"
	OPS_POLICY=$SB_WORK/policy/policy.yaml
	export OPS_NS OPS_POLICY
	(($# == 0)) || ops_write "$OPS_POLICY" "$(ops_policy "$@")"
}

# Start agent "sockmesh" on $OPS_POLICY and wait until it is ready; ARGS
# go to sb_agent_start (e.g. -- --map-size rule=16 for the agent).
# shellcheck disable=SC2120 # ARGS are optional
ops_agent() {
	sb_agent_start sockmesh "$OPS_POLICY" --timeout "$OPS_AGENT_TIMEOUT" "$@"
}

# Print the policy of generation GEN with N extra services x1..xN (rules
# to them come first, so the other rules' indices move as N grows).
# EXTRA_RULES (YAML list items) are added at the end. With BULK > 0, VIP
# 198.19.0.12:80 of service bulk has BULK backends whose ports move with
# every generation: a reload then rewrites 2 * BULK backend entries
# between the weights of web and web2 and their rules and endpoints.
ops_policy() {
	local gen=$1 n=${2:-0} extra_rules=${3:-} bulk=${4:-0}
	local i wa wb wc wd ec ed web_rule
	if ((gen % 2 == 0)); then
		wa=100 wb=0 wc=100 wd=0 ec=198.18.0.3:80 ed=''
		web_rule="  - {from: client, to: [web], ports: [80]}"
	else
		wa=0 wb=100 wc=0 wd=100 ec='' ed=198.18.0.4:80
		web_rule=
	fi
	cat <<EOF
apiVersion: sockmesh/v1
# generation $gen
node: ops
defaults: {mode: enforce, egress: deny}
services:
  client:
    cgroups: [$SB_CGROOT/client]
  stable:
    endpoints: [$OPS_STABLE, "$OPS_STABLE6"]
  locked:
    endpoints: [$OPS_LOCKED]
  web:
    vip: [$OPS_WEB]
    subsets:
      a: {weight: $wa, endpoints: [198.18.0.1:80]}
      b: {weight: $wb, endpoints: [198.18.0.2:80]}
  web2:
    vip: [$OPS_WEB2]
    drain: keep
    subsets:
      c: {weight: $wc, endpoints: [$ec]}
      d: {weight: $wd, endpoints: [$ed]}
EOF
	for ((i = 1; i <= n; i++)); do
		echo "  x$i: {endpoints: [198.18.4.$i:80]}"
	done
	if ((bulk > 0)); then
		echo "  bulk:"
		echo "    vip: [198.19.0.12:80]"
		echo "    subsets:"
		printf '      p: {weight: 1, endpoints: [198.18.8.1:%d' \
			$((1000 + gen % 2))
		for ((i = 1; i < bulk; i++)); do
			printf ', 198.18.8.1:%d' $((1000 + 2 * i + gen % 2))
		done
		echo "]}"
	fi
	echo "rules:"
	for ((i = n; i >= 1; i--)); do
		echo "  - {from: client, to: [x$i], ports: [80]}"
	done
	echo "  - {from: client, to: [stable, web2], ports: [80]}"
	[[ -z $web_rule ]] || echo "$web_rule"
	[[ -z $extra_rules ]] || echo "$extra_rules"
}

# Write TEXT to FILE through a temporary file and a rename.
ops_write() {
	printf '%s\n' "$2" >"$1.tmp"
	mv -f "$1.tmp" "$1"
}

# Start the background load: one loop in the client cgroup that runs,
# round after round until ops_load_stop (or MAX_S seconds), one
# `smtest connect --count 5` per TARGET (NAME=ADDR), each run's JSON
# appended to $SB_WORK/load/NAME.jsonl. Sets OPS_LOAD_PID.
ops_load_start() {
	local max_s=$1
	shift
	rm -f "$SB_WORK/load/stop" "$SB_WORK/load/"*.jsonl
	cat >"$SB_WORK/load/run.sh" <<'EOF'
dir=$1 smtest=$2 max_s=$3
shift 3
end=$((SECONDS + max_s))
echo ready
while [[ ! -e $dir/stop ]] && ((SECONDS < end)); do
	for t in "$@"; do
		out=$("$smtest" connect --to "${t#*=}" --count 5 \
			--timeout-ms 10000 2>&1) || out="{\"smtest_error\": $?}"
		printf '%s\n' "$out" >>"$dir/${t%%=*}.jsonl"
	done
	sleep 0.01
done
EOF
	sb_run /client node bash "$SB_WORK/load/run.sh" "$SB_WORK/load" \
		"$SB_SMTEST" "$max_s" "$@" >/dev/null
	OPS_LOAD_PID=$SB_PID
	sb_wait_ready "$OPS_LOAD_PID" 10
	export OPS_LOAD_PID
}

# Stop the load and wait for its last round.
ops_load_stop() {
	touch "$SB_WORK/load/stop"
	sb_wait "$OPS_LOAD_PID" 60 || true
}

# Print how many smtest runs the load has made for target NAME.
ops_load_runs() {
	local f=$SB_WORK/load/$1.jsonl
	if [[ -e $f ]]; then
		wc -l <"$f"
	else
		echo 0
	fi
}

# True once target NAME has had N more runs than BEFORE (sb_wait_for).
ops_load_runs_ge() {
	(($(ops_load_runs "$1") >= $2))
}

# Print the connections the load made to target NAME.
ops_load_conns() {
	jq -s 'map(.count // 0) | add // 0' "$SB_WORK/load/$1.jsonl"
}

# Assert that every connection to target NAME came out as jq predicate
# GOOD says for one run's JSON ("results" and "tags" tallies), e.g.
#   '.results == {"ok": .count} and (.tags | keys) == ["a"]'
# and print how many runs there were.
ops_load_assert() {
	local name=$1 good=$2 label=$3 f bad n
	f=$SB_WORK/load/$name.jsonl
	[[ -s $f ]] || sb_fail "$label: the load made no run to $name"
	n=$(wc -l <"$f")
	bad=$(jq -c "select(($good) | not) | {count, results, tags}" "$f" 2>&1) ||
		bad="jq: $bad"
	[[ -z $bad ]] || sb_fail "$label: $(grep -c . <<<"$bad") runs to" \
		"$name break '$good', as: $(head -n 3 <<<"$bad" )"
	echo "ok: $label ($n runs, $(ops_load_conns "$name") connections)"
}

# Print "<attach type> <prog id> <prog name>" of every program attached to
# the managed cgroup, sorted.
ops_cgroup_progs() {
	bpftool -j cgroup show "$SB_CGMOUNT$SB_CGROOT" |
		jq -r '.[] | "\(.attach_type) \(.id) \(.name)"' | sort
}

# Assert exactly one program per hook on the managed cgroup, all ours
# (sm_*); print their ids, one line.
ops_assert_one_per_hook() {
	local label=$1 progs types n
	progs=$(ops_cgroup_progs)
	n=$(wc -l <<<"$progs")
	types=$(awk '{ print $1 }' <<<"$progs" | xargs)
	[[ $n -eq 13 ]] || sb_fail "$label: $n programs on the cgroup: $progs"
	[[ $types == "$(xargs <<<"$OPS_ATTACH_TYPES")" ]] ||
		sb_fail "$label: attach types '$types'"
	awk '$3 !~ /^sm_/ { exit 1 }' <<<"$progs" ||
		sb_fail "$label: a program not named sm_*: $progs"
	echo "ok: $label" >&2
	awk '{ print $2 }' <<<"$progs" | sort -n | tr '\n' ' '
	echo
}

# Print "<link pin> <link id> <prog id>" of every pinned link, sorted.
ops_pinned_links() {
	local f
	for f in "$SB_BPFFS"/links/*; do
		bpftool -j link show pinned "$f" |
			jq -r --arg n "${f##*/}" '"\($n) \(.id) \(.prog_id)"'
	done
}

# Print "<map pin> <map id>" of every pinned map, sorted.
ops_pinned_maps() {
	local f
	for f in "$SB_BPFFS"/maps/*; do
		echo "${f##*/} $(bpftool -j map show pinned "$f" | jq .id)"
	done
}

# Print the ids of every bpf link on the managed cgroup, sorted.
ops_cgroup_link_ids() {
	local cgid
	cgid=$(stat -c %i "$SB_CGMOUNT$SB_CGROOT")
	bpftool -j link show | jq -r --argjson c "$cgid" \
		'.[] | select(.type == "cgroup" and .cgroup_id == $c) | .id' |
		sort -n | tr '\n' ' '
	echo
}

# GET PATH from agent NAME (default sockmesh); prints the body.
ops_get() {
	curl -sS --max-time 5 "$(sb_agent "${2:-sockmesh}" url)$1"
}
