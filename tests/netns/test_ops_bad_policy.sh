#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# A bad policy never costs the one in force. Four kinds of bad file (a
# YAML syntax error, an unknown field, a rule naming an unknown service,
# more rules than the agent's --map-size rule=16 holds) are each refused
# as a whole while the agent runs: the located error is in the agent's
# log and in /v1/status last_error, reloads_total{result="error"} counts
# it, the previous policy goes on deciding connections (and the refused
# policy's new service names take no ids), the agent keeps
# running, and the next good file applies; a FIFO at the path is refused
# without stalling the agent; putting back the text in force after a bad
# file clears the error. The agent also refuses to
# start on a bad file: on a first install it leaves nothing pinned or
# attached, and on a restart the programs already attached keep enforcing.
# Bad flags (--listen, TLS and token files) are refused before anything
# is loaded. Last, `sockmesh check --cgroup` reads --cgroup the way the
# agent does.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node

# Bad variants of generation GEN, printed. The first line of each is
# "LINE:COL: MESSAGE-REGEX", what the error must say; the policy follows.
bad_syntax() {
	local text
	text=$(ops_policy "$1" | sed 's/^services:$/services:\n  broken: {endpoints: [198.18.0.9:80/')
	echo "$(grep -n '^  broken' <<<"$text" | cut -d: -f1 | xargs expr 1 +):9: error: invalid YAML"
	echo "$text"
}

bad_field() {
	local text
	text=$(ops_policy "$1" | sed 's/^  web2:$/  web2:\n    colour: blue/')
	echo "$(grep -n colour <<<"$text" | cut -d: -f1):5: error: unknown field 'colour' in service 'web2'"
	echo "$text"
}

bad_service() {
	local text
	text=$(ops_policy "$1" 0 "  - {from: client, to: [nosuch], ports: [80]}")
	echo "$(grep -n nosuch <<<"$text" | cut -d: -f1):25: error: field 'to' in rule [0-9]+: unknown service 'nosuch'"
	echo "$text"
}

# 20 more services, each with a rule: more than 16 sm_rule entries.
bad_too_big() {
	local text
	text=$(ops_policy "$1" 20)
	echo "0:0: error: policy needs [0-9]+ entries in map sm_rule, which holds 16 per policy \\(raise --map-size rule=N\\)"
	echo "$text"
}

# Run bad variant KIND of generation GEN: sets WANT (its first line) and
# TEXT (the policy).
bad() {
	local out
	out=$("$1" "$2")
	WANT=${out%%$'\n'*}
	TEXT=${out#*$'\n'}
}

# Assert the verdict of a connection to web: "allowed" (to backend a) or
# "denied" (EPERM), and that stable and locked are as always.
assert_web() {
	local label=$1 want=$2 out
	out=$(sb_exec /client node "$SB_SMTEST" connect --to "$OPS_WEB" \
		--timeout-ms 10000)
	if [[ $want == allowed ]]; then
		sb_assert_json "$label: web allowed, to a" \
			'.results == {"ok": 1} and .tags == {"a": 1}' "$out"
	else
		sb_assert_json "$label: web denied" '.results == {"EPERM": 1}' "$out"
	fi
	out=$(sb_exec /client node "$SB_SMTEST" connect --to "$OPS_LOCKED" \
		--timeout-ms 10000)
	sb_assert_json "$label: locked denied" '.results == {"EPERM": 1}' "$out"
	out=$(sb_exec /client node "$SB_SMTEST" connect --to "$OPS_STABLE" \
		--timeout-ms 10000)
	sb_assert_json "$label: stable allowed" '.results == {"ok": 1}' "$out"
}

metric() {
	sb_metric sockmesh "$@"
}

metric_is() {
	[[ $(metric "$1" "$2") == "$3" ]]
}

# --- a first install on a bad file: refused, nothing loaded ---

bad bad_field 0
printf '%s\n' "$TEXT" >"$OPS_POLICY"
want=$WANT
sb_agent_start first "$OPS_POLICY" --no-wait -- --map-size rule=16
rc=0
sb_wait "$(sb_agent first pid)" "$OPS_AGENT_TIMEOUT" || rc=$?
sb_assert_eq "first start on a bad file: exit status" 1 "$rc"
grep -Eq "^$OPS_POLICY:${want//\'/\'}" "$(sb_agent first log)" ||
	sb_fail "first start: no '$OPS_POLICY:$want' in" \
		"$(cat "$(sb_agent first log)")"
echo "ok: first start: the located error on stderr"
sb_assert_eq "first start: nothing pinned" "" \
	"$(find "$(sb_agent first bpffs)" -mindepth 1)"
sb_assert_eq "first start: nothing attached" "" "$(ops_cgroup_progs)"

# Too big for the maps is found once they are made: they go again.
bad bad_too_big 0
printf '%s\n' "$TEXT" >"$OPS_POLICY"
sb_agent_start first2 "$OPS_POLICY" --no-wait -- --map-size rule=16
rc=0
sb_wait "$(sb_agent first2 pid)" "$OPS_AGENT_TIMEOUT" || rc=$?
sb_assert_eq "first start, too big: exit status" 1 "$rc"
grep -Eq "^$OPS_POLICY: ${WANT#*: }" "$(sb_agent first2 log)" ||
	sb_fail "first start, too big: no reason in $(cat "$(sb_agent first2 log)")"
echo "ok: first start, too big: the reason on stderr"
sb_assert_eq "first start, too big: nothing left pinned" "" \
	"$(find "$(sb_agent first2 bpffs)" -mindepth 1 2>/dev/null)"
sb_assert_eq "first start, too big: nothing attached" "" "$(ops_cgroup_progs)"

# Bad flags are refused before anything is loaded.
ops_write "$OPS_POLICY" "$(ops_policy 0)"
for flags in "--listen bogus" "--listen 127.0.0.1:70000" \
	"--tls-cert $SB_WORK/none.pem --tls-key $SB_WORK/none.pem" \
	"--token-file $SB_WORK/none"; do
	rc=0
	# shellcheck disable=SC2086 # FLAGS are words
	timeout 20 "$SB_BUILD/sockmesh-agent" --policy "$OPS_POLICY" \
		--cgroup "$SB_CGROOT" --bpffs "$SB_WORK/bpffs/flags" \
		--flow-log "" $flags >"$SB_WORK/flags.out" 2>&1 || rc=$?
	sb_assert_eq "$flags: refused" 1 "$rc"
	sb_assert_match "$flags: the message names it" "${flags%% *} '" \
		"$(cat "$SB_WORK/flags.out")"
	sb_assert_eq "$flags: nothing pinned" "" \
		"$(find "$SB_WORK/bpffs/flags" -mindepth 1 2>/dev/null)"
	sb_assert_eq "$flags: nothing attached" "" "$(ops_cgroup_progs)"
done

# --- the agent runs; bad files come and go ---

ops_write "$OPS_POLICY" "$(ops_policy 0)"
ops_agent -- --map-size rule=16
LOG=$(sb_agent sockmesh log)
PID=$(sb_agent sockmesh pid)
sb_assert_eq "sockmesh_map_capacity{map=\"sm_rule\"}" 16 \
	"$(metric sockmesh_map_capacity 'map="sm_rule"')"
n=$(metric sockmesh_map_entries 'map="sm_rule"')
sb_assert_ge "sockmesh_map_entries{map=\"sm_rule\"}: the rules in force" "$n" 3
sb_assert_le "... within the capacity" "$n" 16
assert_web "generation 0" allowed
web=allowed

gen=1
for kind in bad_syntax bad_field bad_service bad_too_big; do
	g0=$(metric sockmesh_policy_generation)
	e0=$(metric sockmesh_policy_reloads_total 'result="error"')
	names0=$(metric sockmesh_map_entries 'map="sm_names"')
	bad "$kind" "$gen"
	want=$WANT
	loc=${want%%: *}
	re=$OPS_POLICY:$want
	[[ $loc != 0:0 ]] || re="$OPS_POLICY: ${want#*: }"

	ops_write "$OPS_POLICY" "$TEXT"
	sb_wait_for "$kind: reloads_total{result=\"error\"} + 1" 20 \
		metric_is sockmesh_policy_reloads_total 'result="error"' $((e0 + 1))
	status=$(ops_get /v1/status)
	jq -r .last_error <<<"$status" | grep -Eq "^$re" ||
		sb_fail "$kind: /v1/status last_error is not /$re/: $status"
	echo "ok: $kind: /v1/status last_error: $(jq -r .last_error <<<"$status" | head -n 1)"
	grep -Eq "$re" "$LOG" || sb_fail "$kind: no /$re/ in the agent's log"
	echo "ok: $kind: the same error in the agent's log"
	sb_assert_eq "$kind: the generation in force stays" "$g0" \
		"$(metric sockmesh_policy_generation)"
	# bad_too_big names 20 new services: none of them keeps an id.
	sb_assert_eq "$kind: no service name kept in sm_names" "$names0" \
		"$(metric sockmesh_map_entries 'map="sm_names"')"
	assert_web "$kind refused" "$web"
	kill -0 "$PID" || sb_fail "$kind: the agent is gone"

	# The next good file applies.
	ops_write "$OPS_POLICY" "$(ops_policy "$gen")"
	sb_wait_for "$kind: then generation $gen applies" 20 \
		metric_is sockmesh_policy_generation "" $((g0 + 1))
	sb_assert_json "$kind: last_error cleared" '.last_error == null' \
		"$(ops_get /v1/status)"
	[[ $web == allowed ]] && web=denied || web=allowed
	assert_web "good generation $gen" "$web"
	gen=$((gen + 1))
done

# A bad file, then the text in force put back: an unchanged reload, which
# clears the error from /v1/status.
u0=$(metric sockmesh_policy_reloads_total 'result="unchanged"')
g_in=$(metric sockmesh_policy_generation)
bad bad_field "$gen"
ops_write "$OPS_POLICY" "$TEXT"
sb_wait_for "bad again: reloads_total{result=\"error\"} = 5" 20 \
	metric_is sockmesh_policy_reloads_total 'result="error"' 5
# A FIFO at the path (nothing ever writes it): refused at once, and the
# agent goes on answering.
mkfifo "$SB_WORK/fifo"
mv -f "$SB_WORK/fifo" "$OPS_POLICY"
sb_wait_for "a FIFO: reloads_total{result=\"error\"} = 6" 20 \
	metric_is sockmesh_policy_reloads_total 'result="error"' 6
sb_assert_match "a FIFO: last_error says why" "not a regular file" \
	"$(ops_get /v1/status | jq -r .last_error)"
sb_assert_eq "a FIFO: the agent still answers /healthz" 200 \
	"$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' \
		"$(sb_agent sockmesh url)/healthz")"
ops_write "$OPS_POLICY" "$(ops_policy $((gen - 1)))"
sb_wait_for "the text in force back: reloads_total{result=\"unchanged\"} + 1" \
	20 metric_is sockmesh_policy_reloads_total 'result="unchanged"' $((u0 + 1))
sb_assert_json "... last_error cleared" '.last_error == null' \
	"$(ops_get /v1/status)"
sb_assert_eq "... the generation in force stays" "$g_in" \
	"$(metric sockmesh_policy_generation)"
sb_assert_eq "6 errors counted" 6 \
	"$(metric sockmesh_policy_reloads_total 'result="error"')"
kill -0 "$PID" || sb_fail "the agent is gone"
sb_assert_eq "the same agent all along" "$PID" "$(sb_agent sockmesh pid)"

# --- a restart on a bad file: refused; what is attached keeps enforcing ---

links=$(ops_pinned_links)
sb_agent_stop sockmesh
bad bad_syntax "$gen"
printf '%s\n' "$TEXT" >"$OPS_POLICY"
want=$WANT
n=$(wc -l <"$LOG")
sb_agent_start sockmesh "$OPS_POLICY" --no-wait -- --map-size rule=16
rc=0
sb_wait "$(sb_agent sockmesh pid)" "$OPS_AGENT_TIMEOUT" || rc=$?
sb_assert_eq "restart on a bad file: exit status" 1 "$rc"
tail -n +$((n + 1)) "$LOG" | grep -Eq "^$OPS_POLICY:$want" ||
	sb_fail "restart: no '$OPS_POLICY:$want' in:" \
		"$(tail -n +$((n + 1)) "$LOG")"
echo "ok: restart: the located error on stderr"
sb_assert_eq "restart refused: links and programs untouched" "$links" \
	"$(ops_pinned_links)"
assert_web "no agent, restart refused" "$web"

ops_write "$OPS_POLICY" "$(ops_policy $((gen - 1)))"
ops_agent -- --map-size rule=16
sb_assert_eq "good file again: the same generation" "$((g0 + 1))" \
	"$(metric sockmesh_policy_generation)"
assert_web "restarted" "$web"

# `sockmesh check --cgroup` reads --cgroup as the agent does: relative,
# with a trailing slash, or absolute under the cgroup2 mount, and a
# policy cgroup may be written absolute too. Only the cgroup outside the
# subtree is an error, located.
cat >"$SB_WORK/cg.yaml" <<EOF2
apiVersion: sockmesh/v1
services:
  inside: {cgroups: [$SB_CGROOT/inside]}
  absolute: {cgroups: [$SB_CGMOUNT$SB_CGROOT/absolute]}
  outside: {cgroups: [$SB_CGROOT-elsewhere/outside]}
EOF2
for cg in "$SB_CGROOT" "$SB_CGROOT/" "$SB_CGMOUNT$SB_CGROOT"; do
	rc=0
	"$SB_BUILD/sockmesh" --cgroup "$cg" check "$SB_WORK/cg.yaml" \
		>"$SB_WORK/cg.out" 2>&1 || rc=$?
	sb_assert_eq "check --cgroup $cg: exit status" 1 "$rc"
	sb_assert_eq "check --cgroup $cg: one error, for 'outside' at 5:23" \
		"$SB_WORK/cg.yaml:5:23: error: cgroup '$SB_CGROOT-elsewhere/outside' is outside the managed cgroup '$SB_CGROOT' (--cgroup)" \
		"$(cat "$SB_WORK/cg.out")"
done
