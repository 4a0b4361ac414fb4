#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Audit mode, as the default and per service. Connections to a service in
# audit mode that no rule allows proceed (the application gets its reply),
# the flow log has an audit record with source, destination and port, and
# sockmesh_connections_total{verdict="audit"} counts them; a service in
# enforce mode still denies. Then the one-liner docs/enforcement.md shows
# turns the audit records into rules, the rules go into the policy, and
# the connections it audited are allowed by those rules.
#
#   phase 1: defaults.mode audit; legacy says nothing (audit), strict
#            says enforce
#   phase 2: defaults.mode enforce; legacy says audit, strict says
#            nothing (enforce); the rules written from phase 1's records
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"

sb_need_root
sb_need_cmd jq ip curl
sb_need_build "$SB_SMTEST"
sb_need_agent
sb_init

SM=$SB_SMTEST
LEGACY=198.18.80.1
STRICT=198.18.80.2

sb_netns n "$LEGACY/32" "$STRICT/32"
for cg in /legacy /strict /client /partner /intruder /nobody; do
	sb_cgroup "$cg" >/dev/null
done

policy=$SB_WORK/policy.yaml
# write_policy DEFAULT_MODE LEGACY_MODE STRICT_MODE [RULE LINES]
write_policy() {
	cat >"$policy.new" <<EOF
apiVersion: sockmesh/v1
node: node-audit
defaults:
  mode: $1
services:
  legacy:
    cgroups: [$SB_CGROOT/legacy]
    protocol: both
    endpoints: [$LEGACY:8080, $LEGACY:5353]
    ${2:+mode: $2}
  strict:
    cgroups: [$SB_CGROOT/strict]
    endpoints: [$STRICT:8080]
    ${3:+mode: $3}
  client:
    cgroups: [$SB_CGROOT/client]
  partner:
    cgroups: [$SB_CGROOT/partner]
  intruder:
    cgroups: [$SB_CGROOT/intruder]
rules:
  - {from: [partner], to: [legacy], ports: [8080]}
${4:-}
EOF
	mv "$policy.new" "$policy"
}
write_policy audit "" enforce
sb_agent_start sockmesh "$policy" --timeout 120
FLOWS=$(sb_agent sockmesh flows)

for srv in "$LEGACY:8080 legacy" "$STRICT:8080 strict"; do
	pid=$(sb_run /"${srv#* }" n "$SM" serve --listen "${srv% *}" \
		--tag "${srv#* }" --timeout 280)
	sb_wait_ready "$pid" 30
done
pid=$(sb_run /legacy n "$SM" serve --udp --listen "$LEGACY:5353" \
	--tag legacy-udp --timeout 280)
sb_wait_ready "$pid" 30

conns() {
	sb_metric sockmesh sockmesh_connections_total \
		"src=\"$1\",dst=\"$2\",verdict=\"$3\""
}

# The flow log records of pid PID with event EVENT, as a JSON array.
records() {
	jq -sc --argjson pid "$1" --arg ev "$2" \
		'map(select(.pid == $pid and .event == $ev))' "$FLOWS"
}

records_ge() {
	[[ -s $FLOWS ]] && (($(records "$1" "$2" | jq length) >= $3))
}

# Run smtest connect ARGS... from cgroup CG; prints its pid.
run() {
	local cg=$1 p
	shift
	p=$(sb_run "$cg" n "$SM" connect "$@")
	sb_wait "$p" 30 || sb_fail "smtest connect $* failed"
	echo "$p"
}

# audited NAME CG SRC DST TAG PROTO ARGS...: 2 connections no rule allows
# proceed, each recorded as audit and counted, none denied.
audited() {
	local name=$1 cg=$2 src=$3 dst=$4 tag=$5 proto=$6 p d0 u0 to
	shift 6
	u0=$(conns "$src" "$dst" audit)
	d0=$(conns "$src" "$dst" denied)
	p=$(run "$cg" --count 2 "$@")
	to=$(sed -n 's/.*--to \([^ ]*\).*/\1/p' <<<"$*")
	sb_assert_json "$name: proceeds, the reply arrives" \
		".results == {\"ok\": 2} and .tags == {\"$tag\": 2}" \
		"$(tail -n 1 "$(sb_out "$p")")"
	sb_assert_eq "$name: 2 audits counted" "$((u0 + 2))" \
		"$(conns "$src" "$dst" audit)"
	sb_assert_eq "$name: no denies counted" "$d0" \
		"$(conns "$src" "$dst" denied)"
	sb_wait_for "$name: audit records" 20 records_ge "$p" audit 2
	sb_assert_json "$name: audit records: source, destination, port" \
		"length == 2 and all(.[]; .src == \"$src\" and
		  .dst == \"$dst\" and .orig_dst == \"$to\" and
		  .proto == \"$proto\" and .verdict == \"audit\" and
		  .reason == \"no_rule\" and .rule == null and
		  .comm == \"smtest\" and .cgroup == \"$SB_CGROOT$cg\")" \
		"$(records "$p" audit)"
	sb_assert_eq "$name: no deny records" 0 \
		"$(records "$p" deny | jq length)"
}

# denied NAME CG SRC DST ARGS...: EPERM, recorded and counted.
denied() {
	local name=$1 cg=$2 src=$3 dst=$4 p d0
	shift 4
	d0=$(conns "$src" "$dst" denied)
	p=$(run "$cg" "$@")
	sb_assert_json "$name: EPERM" '.results == {"EPERM": 1}' \
		"$(tail -n 1 "$(sb_out "$p")")"
	sb_assert_eq "$name: denied counted" "$((d0 + 1))" \
		"$(conns "$src" "$dst" denied)"
	sb_wait_for "$name: deny record" 20 records_ge "$p" deny 1
	sb_assert_json "$name: deny record" \
		"all(.[]; .src == \"$src\" and .dst == \"$dst\" and
		  .reason == \"no_rule\")" "$(records "$p" deny)"
}

# allowed NAME CG SRC DST TAG RULE ARGS...: a rule lets it through.
allowed() {
	local name=$1 cg=$2 src=$3 dst=$4 tag=$5 rule=$6 p a0
	shift 6
	a0=$(conns "$src" "$dst" allowed)
	p=$(run "$cg" "$@")
	sb_assert_json "$name: passes" \
		".results == {\"ok\": 1} and .tags == {\"$tag\": 1}" \
		"$(tail -n 1 "$(sb_out "$p")")"
	sb_assert_eq "$name: allowed counted" "$((a0 + 1))" \
		"$(conns "$src" "$dst" allowed)"
	sb_wait_for "$name: connect record" 20 records_ge "$p" connect 1
	sb_assert_json "$name: allowed by rule $rule, not audited" \
		"all(.[]; .verdict == \"allowed\" and .reason == \"rule\" and
		  .rule == $rule)" "$(records "$p" connect)"
	sb_assert_eq "$name: no audit records" 0 \
		"$(records "$p" audit | jq length)"
}

# The one-liner of docs/enforcement.md, on flow records from stdin: a
# rule line per (from, to, protocol) that audit records name, with every
# port they dialled.
rules_from_audit() {
	jq -rs 'map(select(.event == "audit")) | group_by([.src, .dst, .proto])[]
	  | "  - {from: \(.[0].src), to: \(.[0].dst), ports: \(map(.orig_dst
	  | sub(".*:"; "") | tonumber) | unique), protocol: \(.[0].proto)}"'
}

test_default_audit() {
	audited "client -> legacy tcp (default audit)" /client client legacy \
		legacy tcp --to "$LEGACY:8080"
	audited "client -> legacy udp (default audit)" /client client legacy \
		legacy-udp udp --udp --unconnected --to "$LEGACY:5353"
	audited "no service -> legacy tcp (default audit)" /nobody world \
		legacy legacy tcp --to "$LEGACY:8080"
	denied "client -> strict (mode: enforce)" /client client strict \
		--to "$STRICT:8080"
	allowed "partner -> legacy (rule in audit mode)" /partner partner \
		legacy legacy 0 --to "$LEGACY:8080"
}

test_rules_from_records() {
	local rules gen
	rules=$(rules_from_audit <"$FLOWS")
	sb_assert_eq "rules written from the audit records" \
"  - {from: client, to: legacy, ports: [8080], protocol: tcp}
  - {from: client, to: legacy, ports: [5353], protocol: udp}
  - {from: world, to: legacy, ports: [8080], protocol: tcp}" "$rules"
	sb_assert_eq "the same from the CLI (sockmesh flows --verdict audit)" \
		"$rules" "$("$SB_BUILD/sockmesh" --flow-log "$FLOWS" --json flows \
			--verdict audit | rules_from_audit)"

	# Phase 2: those rules in force; audit only where a service says so.
	gen=$(sb_metric sockmesh sockmesh_policy_generation)
	write_policy enforce audit "" "$rules"
	sb_wait_for "policy reloaded" 20 sb_metric_ge sockmesh \
		sockmesh_policy_generation "" "$((gen + 1))"
	allowed "client -> legacy tcp, now by rule" /client client legacy \
		legacy 1 --to "$LEGACY:8080"
	allowed "no service -> legacy tcp, now by rule" /nobody world legacy \
		legacy 3 --to "$LEGACY:8080"
	audited "intruder -> legacy (mode: audit)" /intruder intruder legacy \
		legacy tcp --to "$LEGACY:8080"
	denied "client -> strict (default enforce)" /client client strict \
		--to "$STRICT:8080"
}

test_default_audit
test_rules_from_records
