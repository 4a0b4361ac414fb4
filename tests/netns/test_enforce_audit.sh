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
# shellcheck source=tests/netns/enforce_lib.sh
source "$(dirname "$0")/enforce_lib.sh"

sb_need_root
enf_need
sb_init

LEGACY=198.18.80.1
STRICT=198.18.80.2

sb_netns n "$LEGACY/32" "$STRICT/32"
enf_cgroups /legacy /strict /client /partner /intruder /nobody

# write_policy DEFAULT_MODE LEGACY_MODE STRICT_MODE [RULE LINES]
write_policy() {
	enf_policy <<EOF
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
}
write_policy audit "" enforce
enf_agent

enf_serve /legacy n "$LEGACY:8080" legacy
enf_serve /strict n "$STRICT:8080" strict
enf_serve /legacy n "$LEGACY:5353" legacy-udp --udp

# audited NAME CG SRC DST TAG PROTO ARGS...: 2 connections no rule allows
# proceed, each recorded as audit and counted, none denied.
audited() {
	local name=$1 cg=$2 src=$3 dst=$4 tag=$5 proto=$6 p d0 u0 to
	shift 6
	u0=$(enf_conns "$src" "$dst" audit)
	d0=$(enf_conns "$src" "$dst" denied)
	p=$(enf_connect "$cg" --count 2 "$@")
	to=$(sed -n 's/.*--to \([^ ]*\).*/\1/p' <<<"$*")
	sb_assert_json "$name: proceeds, the reply arrives" \
		".results == {\"ok\": 2} and .tags == {\"$tag\": 2}" \
		"$(enf_result "$p")"
	sb_assert_eq "$name: 2 audits counted" "$((u0 + 2))" \
		"$(enf_conns "$src" "$dst" audit)"
	sb_assert_eq "$name: no denies counted" "$d0" \
		"$(enf_conns "$src" "$dst" denied)"
	sb_wait_for "$name: audit records" 20 enf_records_ge "$p" audit 2
	sb_assert_json "$name: audit records: source, destination, port" \
		"length == 2 and all(.[]; .src == \"$src\" and
		  .dst == \"$dst\" and .orig_dst == \"$to\" and
		  .proto == \"$proto\" and .verdict == \"audit\" and
		  .reason == \"no_rule\" and .rule == null and
		  .comm == \"smtest\" and .cgroup == \"$SB_CGROOT$cg\")" \
		"$(enf_records "$p" audit)"
	sb_assert_eq "$name: no deny records" 0 \
		"$(enf_records "$p" deny | jq length)"
}

# denied NAME CG SRC DST ARGS...: EPERM, recorded and counted.
denied() {
	local name=$1 cg=$2 src=$3 dst=$4 p d0
	shift 4
	d0=$(enf_conns "$src" "$dst" denied)
	p=$(enf_connect "$cg" "$@")
	sb_assert_json "$name: EPERM" '.results == {"EPERM": 1}' \
		"$(enf_result "$p")"
	sb_assert_eq "$name: denied counted" "$((d0 + 1))" \
		"$(enf_conns "$src" "$dst" denied)"
	sb_wait_for "$name: deny record" 20 enf_records_ge "$p" deny 1
	sb_assert_json "$name: deny record" \
		"all(.[]; .src == \"$src\" and .dst == \"$dst\" and
		  .reason == \"no_rule\")" "$(enf_records "$p" deny)"
}

# allowed NAME CG SRC DST TAG RULE ARGS...: a rule lets it through.
allowed() {
	local name=$1 cg=$2 src=$3 dst=$4 tag=$5 rule=$6 p a0
	shift 6
	a0=$(enf_conns "$src" "$dst" allowed)
	p=$(enf_connect "$cg" "$@")
	sb_assert_json "$name: passes" \
		".results == {\"ok\": 1} and .tags == {\"$tag\": 1}" \
		"$(enf_result "$p")"
	sb_assert_eq "$name: allowed counted" "$((a0 + 1))" \
		"$(enf_conns "$src" "$dst" allowed)"
	sb_wait_for "$name: connect record" 20 enf_records_ge "$p" connect 1
	sb_assert_json "$name: allowed by rule $rule, not audited" \
		"all(.[]; .verdict == \"allowed\" and .reason == \"rule\" and
		  .rule == $rule)" "$(enf_records "$p" connect)"
	sb_assert_eq "$name: no audit records" 0 \
		"$(enf_records "$p" audit | jq length)"
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
	local rules
	rules=$(rules_from_audit <"$ENF_FLOWS")
	sb_assert_eq "rules written from the audit records" \
"  - {from: client, to: legacy, ports: [8080], protocol: tcp}
  - {from: client, to: legacy, ports: [5353], protocol: udp}
  - {from: world, to: legacy, ports: [8080], protocol: tcp}" "$rules"
	sb_assert_eq "the same from the CLI (sockmesh flows --verdict audit)" \
		"$rules" "$("$SB_BUILD/sockmesh" --flow-log "$ENF_FLOWS" --json \
			flows --verdict audit | rules_from_audit)"

	# Phase 2: those rules in force; audit only where a service says so.
	enf_reload write_policy enforce audit "" "$rules"
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
