#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# A hundred reloads under load. Each one moves the canary weights of two
# VIPs (100/0 <-> 0/100), turns the rule to one of them on or off, and
# adds a service with a rule, so that a connection decided half on one
# policy and half on the other cannot go unnoticed (see ops_lib.sh): a
# connection to web is "ok from a" or EPERM, one to web2 "ok from c" or
# "ok from d", in any single generation. The triggers take turns: the file
# rewritten in place, a new file renamed over it, a ConfigMap-style
# ..data symlink swap, SIGHUP after a change no watcher can see, and
# PUT /v1/policy with the bearer token. Besides a steady background load,
# each trigger comes with a burst of connections to both VIPs, and each
# reload also rewrites a thousand backends of a third VIP written between
# the weights and the rules, so that a reload takes long enough to be
# caught half-way: an agent that wrote the policy in force in place (no
# second slot) fails this test on about one reload in three.
#
# Asserts: every connection of the load is consistent with one
# generation (zero to a wrong backend, zero wrong verdicts); after each
# reload the new generation is in force (the VIPs and the service it
# added answer as it says); sockmesh_policy_generation went up by exactly
# 100, and so did reloads_total{result="success"}, with no error.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node

RELOADS=${OPS_RELOADS:-100}
# Backends of VIP bulk, whose ports move with every generation: each
# reload rewrites 2 * BULK map entries between the entries of web and
# web2, which widens the moment a half-written policy would be seen.
BULK=${OPS_BULK:-1000}
# Connections to web and to web2 started with each reload's trigger.
BURST=${OPS_BURST:-400}
# Every policy text has this many bytes, so that a change can keep the
# file's size (for the SIGHUP step).
SIZE=40960
D=$SB_WORK/cfg
P=$D/policy.yaml
mkdir "$D"

# Print policy generation GEN (with GEN extra services), padded to SIZE.
text() {
	local body pad
	body=$(ops_policy "$1" "$1" "" "$BULK")
	pad=$((SIZE - ${#body} - 3))
	((pad > 0)) || sb_fail "policy $1 is longer than $SIZE bytes"
	printf '%s\n#%*s\n' "$body" "$pad" ''
}

text 0 >"$P"
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$TOKEN" >"$SB_WORK/token"
sb_agent_start sockmesh "$P" --timeout "$OPS_AGENT_TIMEOUT" -- --allow-policy-put \
	--token-file "$SB_WORK/token"
URL=$(sb_agent sockmesh url)
PID=$(sb_agent sockmesh pid)

# /metrics and /v1 need the token too.
metric() {
	curl -fsS --max-time 5 -H "Authorization: Bearer $TOKEN" \
		"$URL/metrics" | sb_prom_sum "$@"
}

gen_is() {
	[[ $(metric sockmesh_policy_generation) == "$1" ]]
}

G0=$(metric sockmesh_policy_generation)
OK0=$(metric sockmesh_policy_reloads_total 'result="success"')
ERR0=$(metric sockmesh_policy_reloads_total 'result="error"')

# --- the layouts the triggers need ---

# The policy file as a ConfigMap mounts it: policy.yaml -> ..data/
# policy.yaml, ..data -> ..vN. Same text, so no reload.
to_configmap() {
	local v=..v$1.0
	mkdir "$D/$v"
	cat "$P" >"$D/$v/policy.yaml"
	ln -s "$v" "$D/..data"
	ln -s ..data/policy.yaml "$D/policy.yaml.lnk"
	mv -fT "$D/policy.yaml.lnk" "$P"
}

# Back to a plain file, same text.
to_regular() {
	cat "$P" >"$P.reg"
	mv -fT "$P.reg" "$P"
	rm -rf "$D/..data" "$D"/..v*
}

# --- the triggers ---

# In place: one write() of the whole text (cp), as an editor that
# rewrites the file does; made outside the watched directory.
rewrite_in_place() {
	text "$1" >"$SB_WORK/next.yaml"
	cp "$SB_WORK/next.yaml" "$P"
}

rename_over() {
	text "$1" >"$P.tmp"
	mv -fT "$P.tmp" "$P"
}

configmap_swap() {
	local old
	old=$(readlink "$D/..data")
	mkdir "$D/..v$1"
	text "$1" >"$D/..v$1/policy.yaml"
	ln -s "..v$1" "$D/..data_tmp"
	mv -fT "$D/..data_tmp" "$D/..data"
	rm -rf "${D:?}/$old"
}

# Change the file behind the symlink, in place, with its size and mtime
# kept: neither inotify (another directory) nor polling (same identity)
# sees it. Then SIGHUP.
sighup() {
	local t
	t=$(readlink -f "$P")
	touch -r "$t" "$SB_WORK/mtime.ref"
	text "$1" >"$SB_WORK/next.yaml"
	cp "$SB_WORK/next.yaml" "$t"
	touch -m -r "$SB_WORK/mtime.ref" "$t"
	if [[ ${2:-} == check ]]; then
		# Longer than two polling ticks: nothing may notice it.
		sleep 2.5
		sb_assert_eq "an unseen change is not applied before SIGHUP" \
			$((G0 + $1 - 1)) "$(metric sockmesh_policy_generation)"
	fi
	kill -HUP "$PID"
}

put() {
	local code
	text "$1" >"$SB_WORK/put.yaml"
	code=$(curl -sS --max-time 20 -o "$SB_WORK/put.out" -w '%{http_code}' \
		-X PUT -H "Authorization: Bearer $TOKEN" \
		--data-binary @"$SB_WORK/put.yaml" "$URL/v1/policy")
	[[ $code == 200 ]] ||
		sb_fail "PUT generation $1: HTTP $code: $(cat "$SB_WORK/put.out")"
}

# Start BURST connections to web and to web2, two threads each.
burst_start() {
	local t
	BURST_PIDS=()
	for t in web="$OPS_WEB" web2="$OPS_WEB2"; do
		sb_run /client node "$SB_SMTEST" connect --to "${t#*=}" \
			--count "$BURST" --parallel 2 --timeout-ms 10000 >/dev/null
		BURST_PIDS+=("${t%%=*}=$SB_PID")
	done
}

# Wait for the bursts; their JSON joins the load's, checked at the end.
burst_end() {
	local b
	for b in "${BURST_PIDS[@]}"; do
		sb_wait "${b#*=}" 120 || true
		tail -n 1 "$(sb_out "${b#*=}")" >>"$SB_WORK/load/${b%%=*}.jsonl"
	done
}

# One connection from the client: its JSON.
probe() {
	sb_exec /client node "$SB_SMTEST" connect --to "$1" --timeout-ms 10000
}

ops_load_start 600 web="$OPS_WEB" web2="$OPS_WEB2" stable="$OPS_STABLE" \
	locked="$OPS_LOCKED"
sb_wait_for "the load is running" 30 ops_load_runs_ge locked 3

t_start=$(_sb_now_ms)
max_ms=0
for ((k = 1; k <= RELOADS; k++)); do
	t0=$(_sb_now_ms)
	burst_start
	case $((k % 5)) in
	1) how="rewrite in place"; rewrite_in_place "$k" ;;
	2) how="rename"; rename_over "$k" ;;
	3) how="ConfigMap ..data swap"; to_configmap "$k"; configmap_swap "$k" ;;
	4)
		how="SIGHUP"
		sighup "$k" "$( ((k == 4)) && echo check)"
		;;
	0) how="PUT /v1/policy"; to_regular; put "$k" ;;
	esac
	sb_wait_for "generation $k in force after: $how" 60 gen_is $((G0 + k))
	ms=$(($(_sb_now_ms) - t0))
	((k == 4)) || ((ms <= max_ms)) || max_ms=$ms
	burst_end

	# The generation is in force: the service it added, the VIPs.
	out=$(probe "198.18.4.$k:80")
	[[ $(jq -c .results <<<"$out") == '{"ENETUNREACH":1}' ]] ||
		sb_fail "generation $k ($how): new service x$k: $out"
	out=$(probe "$OPS_WEB")
	if ((k % 2 == 0)); then
		want='{"ok":1} {"a":1}' want2='{"c":1}'
	else
		want='{"EPERM":1} {}' want2='{"d":1}'
	fi
	[[ $(jq -c '.results, .tags' <<<"$out" | xargs) == "$(xargs <<<"$want")" ]] ||
		sb_fail "generation $k ($how): web: $out"
	out=$(probe "$OPS_WEB2")
	[[ $(jq -c .tags <<<"$out") == "$want2" ]] ||
		sb_fail "generation $k ($how): web2: $out"
done
total_ms=$(($(_sb_now_ms) - t_start))
echo "ok: $RELOADS reloads, each in force and checked"

before=$(ops_load_runs locked)
sb_wait_for "3 more load rounds" 60 ops_load_runs_ge locked $((before + 3))
ops_load_stop

ops_load_assert web \
	'(.results | keys - ["ok", "EPERM"]) == [] and
	 (.tags | keys - ["a"]) == [] and (.results.ok // 0) == (.tags.a // 0)' \
	"web: every connection to a when allowed, or EPERM; never b"
ops_load_assert web2 \
	'.results == {"ok": .count} and (.tags | keys - ["c", "d"]) == []' \
	"web2: every connection to c or d, never EHOSTUNREACH"
ops_load_assert stable \
	'.results == {"ok": .count} and .tags == {"stable": .count}' \
	"stable: every connection allowed"
ops_load_assert locked '.results == {"EPERM": .count}' \
	"locked: every connection denied"
sb_assert_json "the load saw web both allowed and denied" \
	'(map(.results.ok // 0) | add) > 0 and (map(.results.EPERM // 0) | add) > 0' \
	"$(jq -s . "$SB_WORK/load/web.jsonl")"
sb_assert_json "the load saw both canary backends of web2" \
	'(map(.tags.c // 0) | add) > 0 and (map(.tags.d // 0) | add) > 0' \
	"$(jq -s . "$SB_WORK/load/web2.jsonl")"

sb_assert_eq "sockmesh_policy_generation went up by $RELOADS" \
	$((G0 + RELOADS)) "$(metric sockmesh_policy_generation)"
sb_assert_eq "reloads_total{result=\"success\"} went up by $RELOADS" \
	$((OK0 + RELOADS)) "$(metric sockmesh_policy_reloads_total 'result="success"')"
sb_assert_eq "no reload failed" "$ERR0" \
	"$(metric sockmesh_policy_reloads_total 'result="error"')"
sb_assert_json "/v1/status: generation, no error" \
	".policy_generation == $((G0 + RELOADS)) and .last_error == null" \
	"$(curl -fsS --max-time 5 -H "Authorization: Bearer $TOKEN" \
		"$URL/v1/status")"
sb_assert_eq "the same agent all along" "$PID" "$(sb_agent sockmesh pid)"
kill -0 "$PID" || sb_fail "the agent is gone"
# Every service added along the way is in force, and no more.
for i in 1 $((RELOADS / 2)) "$RELOADS"; do
	sb_assert_eq "x$i: allowed (no route: ENETUNREACH)" '{"ENETUNREACH":1}' \
		"$(probe "198.18.4.$i:80" | jq -c .results)"
done
sb_assert_eq "x$((RELOADS + 1)): never added, denied" '{"EPERM":1}' \
	"$(probe "198.18.4.$((RELOADS + 1)):80" | jq -c .results)"

sb_log "$RELOADS reloads in $total_ms ms (slowest $max_ms ms, the SIGHUP" \
	"check's 2.5 s wait aside); load connections: web $(ops_load_conns web)," \
	"web2 $(ops_load_conns web2), stable $(ops_load_conns stable)," \
	"locked $(ops_load_conns locked)"
