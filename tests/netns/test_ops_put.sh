#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# PUT /v1/policy. Off unless the agent runs with --allow-policy-put: 403,
# with or without a bearer token configured (and the option alone, with
# no --token-file, is refused at start). When on: 401 without the token
# or with a wrong one; 400 with the located errors for a bad body, which
# changes nothing; 200 for a good body, which is then in force.
set -euo pipefail
# shellcheck source=tests/netns/ops_lib.sh
source "$(dirname "$0")/ops_lib.sh"

sb_need_root
sb_init
ops_node 0

TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$TOKEN" >"$SB_WORK/token"
ops_policy 1 >"$SB_WORK/gen1.yaml"

# PUT FILE to the agent with extra curl ARGS; prints "CODE BODY".
put() {
	local file=$1 code
	shift
	code=$(curl -sS --max-time 20 -o "$SB_WORK/put.out" -w '%{http_code}' \
		-X PUT "$@" --data-binary @"$file" \
		"$(sb_agent sockmesh url)/v1/policy")
	echo "$code $(cat "$SB_WORK/put.out")"
}

auth() {
	echo "Authorization: Bearer $1"
}

# GET PATH with the token.
get() {
	curl -fsS --max-time 5 -H "$(auth "$TOKEN")" \
		"$(sb_agent sockmesh url)$1"
}

metric() {
	get /metrics | sb_prom_sum "$@"
}

web_result() {
	sb_exec /client node "$SB_SMTEST" connect --to "$OPS_WEB" \
		--timeout-ms 10000 | jq -c .results
}

# --- off ---

# Sandboxed flags all the same, should it start after all.
rc=0
timeout 20 "$SB_BUILD/sockmesh-agent" --policy "$OPS_POLICY" \
	--allow-policy-put --cgroup "$SB_CGROOT" \
	--bpffs "$SB_WORK/bpffs/noflag" --listen "127.0.0.1:$(sb_port)" \
	--flow-log "" \
	>"$SB_WORK/noflag.out" 2>&1 || rc=$?
sb_assert_eq "--allow-policy-put without --token-file: refused" 1 "$rc"
sb_assert_match "... saying why" "needs --token-file" \
	"$(cat "$SB_WORK/noflag.out")"

ops_agent
r=$(put "$SB_WORK/gen1.yaml")
sb_assert_eq "off, no token configured: 403" 403 "${r%% *}"
sb_assert_match "403 says how to turn it on" "allow-policy-put" "$r"

sb_agent_stop sockmesh
ops_agent -- --token-file "$SB_WORK/token"
r=$(put "$SB_WORK/gen1.yaml" -H "$(auth "$TOKEN")")
sb_assert_eq "off, with the token: 403" 403 "${r%% *}"
r=$(put "$SB_WORK/gen1.yaml")
sb_assert_eq "off, no token: 401" 401 "${r%% *}"
sb_assert_eq "nothing applied" '{"ok":1}' "$(web_result)"

# --- on ---

sb_agent_stop sockmesh
ops_agent -- --allow-policy-put --token-file "$SB_WORK/token"
g0=$(metric sockmesh_policy_generation)
e0=$(metric sockmesh_policy_reloads_total 'result="error"')

r=$(put "$SB_WORK/gen1.yaml")
sb_assert_eq "no Authorization header: 401" 401 "${r%% *}"
r=$(put "$SB_WORK/gen1.yaml" -H "$(auth "x$TOKEN")")
sb_assert_eq "a wrong token: 401" 401 "${r%% *}"
r=$(put "$SB_WORK/gen1.yaml" -H "Authorization: Basic $TOKEN")
sb_assert_eq "another scheme: 401" 401 "${r%% *}"
sb_assert_eq "401s apply nothing" "$g0" "$(metric sockmesh_policy_generation)"
sb_assert_eq "401s are no reloads" "$e0" \
	"$(metric sockmesh_policy_reloads_total 'result="error"')"

# A bad body: an unknown field on a known line.
sed 's/^  web2:$/  web2:\n    colour: blue/' "$SB_WORK/gen1.yaml" >"$SB_WORK/bad.yaml"
line=$(grep -n colour "$SB_WORK/bad.yaml" | cut -d: -f1)
r=$(put "$SB_WORK/bad.yaml" -H "$(auth "$TOKEN")")
sb_assert_eq "a bad body: 400" 400 "${r%% *}"
sb_assert_json "400: the located error, not applied" \
	".applied == false and .policy_generation == $g0 and
	 (.error | startswith(\"PUT /v1/policy:$line:5: error: unknown field 'colour'\"))" \
	"${r#* }"
sb_assert_eq "the error counted" $((e0 + 1)) \
	"$(metric sockmesh_policy_reloads_total 'result="error"')"
sb_assert_json "/v1/status: the same error" \
	"(.last_error | startswith(\"PUT /v1/policy:$line:5:\")) and
	 .policy_generation == $g0" "$(get /v1/status)"
sb_assert_eq "the previous policy decides: web allowed" '{"ok":1}' \
	"$(web_result)"

# A good body.
r=$(put "$SB_WORK/gen1.yaml" -H "$(auth "$TOKEN")")
sb_assert_eq "a good body: 200" 200 "${r%% *}"
sb_assert_json "200: applied" \
	".applied == true and .policy_generation == $((g0 + 1))" "${r#* }"
sb_assert_eq "in force: web denied" '{"EPERM":1}' "$(web_result)"
sb_assert_json "/v1/status: new generation, no error" \
	".policy_generation == $((g0 + 1)) and .last_error == null" \
	"$(get /v1/status)"
sb_assert_json "GET /v1/policy: the new rules" \
	'[.rules[].to[]] == ["stable", "web2"]' "$(get /v1/policy)"

# The same body again changes nothing.
r=$(put "$SB_WORK/gen1.yaml" -H "$(auth "$TOKEN")")
sb_assert_json "the same body again: 200, same generation" \
	".applied == true and .policy_generation == $((g0 + 1))" "${r#* }"
