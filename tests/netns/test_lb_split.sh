#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Weights exactly as written, on real TCP connections through VIPs:
#   - 90/10 and 70/30/0 over 10,000 connections each: every subset's share
#     within 5 sigma of its weight, the weight-0 subset's server never
#     reached;
#   - 75/25 and 50/50 over 3 endpoints against 1: each subset gets its
#     share, spread evenly over its own endpoints;
#   - 100/0: every connection to one side;
#   - the canary metric and `sockmesh status` (text and --json) count
#     exactly what the clients saw;
#   - all-zero weights: `sockmesh check` and a reload reject the policy,
#     and the split in force stays.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/lb_lib.sh
source "$(dirname "$0")/lb_lib.sh"

sb_need_root
sb_init

N=10000
P=4
ADDRS=()
for i in $(seq 1 15); do ADDRS+=("198.18.1.$i/32"); done
lb_setup "${ADDRS[@]}"
sb_cgroup /client >/dev/null
sb_cgroup /backend >/dev/null

# SPLIT_* are the weights of service "ninety"; ALL_ZERO makes every subset
# of "ninety" weight 0 (a policy error).
policy_body() {
	local w1=$1 w2=$2
	cat <<EOF
services:
  client:
    cgroups: [$SB_CGROOT/client]
  ninety:
    vip: [198.19.1.1:80]
    subsets:
      v1: {weight: $w1, endpoints: [198.18.1.1:80]}
      v2: {weight: $w2, endpoints: [198.18.1.2:80]}
  seventy:
    vip: [198.19.1.2:80]
    subsets:
      v1: {weight: 70, endpoints: [198.18.1.3:80]}
      v2: {weight: 30, endpoints: [198.18.1.4:80]}
      v3: {weight: 0, endpoints: [198.18.1.5:80]}
  uneven:
    vip: [198.19.1.3:80]
    subsets:
      a: {weight: 75, endpoints: [198.18.1.6:80, 198.18.1.7:80, 198.18.1.8:80]}
      b: {weight: 25, endpoints: [198.18.1.9:80]}
  halves:
    vip: [198.19.1.4:80]
    subsets:
      a: {weight: 50, endpoints: [198.18.1.10:80, 198.18.1.11:80, 198.18.1.12:80]}
      b: {weight: 50, endpoints: [198.18.1.13:80]}
  whole:
    vip: [198.19.1.5:80]
    subsets:
      v1: {weight: 100, endpoints: [198.18.1.14:80]}
      v2: {weight: 0, endpoints: [198.18.1.15:80]}
rules:
  - {from: client, to: [ninety, seventy, uneven, halves, whole], ports: [80]}
EOF
}

lb_policy "$(policy_body 90 10)"
lb_agent

# Servers: tag "bN" for 198.18.1.N.
for i in $(seq 1 15); do
	lb_serve /backend "198.18.1.$i:80" "b$i"
done

canary() {
	lb_metric sockmesh_canary_connections_total \
		"service=\"$1\",subset=\"$2\""
}

# N connections from the client to VIP; LB_OUT has the tally.
through() {
	lb_smtest /client connect --to "$1" --count "$N" --parallel "$P" \
		--timeout-ms 20000
	sb_assert_json "$1: $N connections, every one answered" \
		".count == $N and .results == {\"ok\": $N} and
		 ([.tags[]] | add) == $N and .peers == {\"$1\": $N}" "$LB_OUT"
}

tag() {
	sb_json ".tags.b$1 // 0" "$LB_OUT"
}

# --- 90/10 ---
through 198.19.1.1:80
v1=$(tag 1)
v2=$(tag 2)
sb_assert_json "90/10: only the two endpoints answered" \
	'(.tags | keys) - ["b1", "b2"] == []' "$LB_OUT"
lb_binom "90/10: share of v1" "$v1" "$N" 0.9 0.85 0.95 0.5
lb_binom "90/10: share of v2" "$v2" "$N" 0.1 0.05 0.15
sb_assert_eq "90/10: canary metric v1 = what clients saw" "$v1" \
	"$(canary ninety v1)"
sb_assert_eq "90/10: canary metric v2 = what clients saw" "$v2" \
	"$(canary ninety v2)"
SPLIT_90="$v1/$v2"

# --- 70/30/0 ---
through 198.19.1.2:80
v1=$(tag 3)
v2=$(tag 4)
sb_assert_eq "70/30/0: weight 0 got none of $N" 0 "$(tag 5)"
sb_assert_eq "70/30/0: the weight-0 server saw no connection" 0 \
	"$(lb_served b5)"
lb_binom "70/30/0: share of v1" "$v1" "$N" 0.7 0.65 0.75 0.5
lb_binom "70/30/0: share of v2" "$v2" "$N" 0.3 0.25 0.35
sb_assert_eq "70/30/0: canary metric v1" "$v1" "$(canary seventy v1)"
sb_assert_eq "70/30/0: canary metric v2" "$v2" "$(canary seventy v2)"
sb_assert_eq "70/30/0: canary metric v3 (weight 0) has no sample" 0 \
	"$(canary seventy v3)"
SPLIT_70="$v1/$v2/0"

# --- 75/25 over 3 + 1 endpoints: each of a's ~25 %, b's ~25 % ---
through 198.19.1.3:80
a=$(($(tag 6) + $(tag 7) + $(tag 8)))
lb_binom "75/25: share of subset a (3 endpoints)" "$a" "$N" 0.75 0.7 0.8
lb_binom "75/25: share of subset b (1 endpoint)" "$(tag 9)" "$N" 0.25 0.2 0.3
for i in 6 7 8; do
	lb_binom "75/25: a's endpoint b$i gets a third of 75 %" "$(tag "$i")" \
		"$N" 0.25 0.2 0.3
done
sb_assert_eq "75/25: canary metric a" "$a" "$(canary uneven a)"
sb_assert_eq "75/25: canary metric b" "$(tag 9)" "$(canary uneven b)"
SPLIT_75="$(tag 6)+$(tag 7)+$(tag 8)/$(tag 9)"

# --- 50/50 over 3 + 1: a's endpoints ~16.7 % each, b's one 50 %. A pick
# of one endpoint of the four at random (25 % each) fails here. ---
through 198.19.1.4:80
a=$(($(tag 10) + $(tag 11) + $(tag 12)))
lb_binom "50/50: share of subset a (3 endpoints)" "$a" "$N" 0.5 0.75 0.45 0.55
lb_binom "50/50: share of subset b (1 endpoint)" "$(tag 13)" "$N" 0.5 0.25
for i in 10 11 12; do
	lb_binom "50/50: a's endpoint b$i gets a third of 50 %" "$(tag "$i")" \
		"$N" 0.16667 0.25 0.2
done
SPLIT_50="$(tag 10)+$(tag 11)+$(tag 12)/$(tag 13)"

# --- 100/0 ---
lb_smtest /client connect --to 198.19.1.5:80 --count 2000 --parallel "$P" \
	--timeout-ms 20000
sb_assert_json "100/0: every one of 2000 connections to v1" \
	'.results == {"ok": 2000} and .tags == {"b14": 2000}' "$LB_OUT"
sb_assert_eq "100/0: the weight-0 endpoint saw nothing" 0 \
	"$(lb_served b15)"
sb_assert_eq "100/0: canary metric v1" 2000 "$(canary whole v1)"
sb_assert_eq "100/0: canary metric v2 has no sample" 0 "$(canary whole v2)"

# --- the observed split in sockmesh status ---
st=$(lb_cli --json status)
sb_assert_json "status --json: canary split of ninety" \
	".canary.ninety.connections == $N and
	 .canary.ninety.subsets.v1.connections == ${SPLIT_90%/*} and
	 .canary.ninety.subsets.v2.connections == ${SPLIT_90#*/} and
	 (.canary.ninety.subsets.v1.share -
	  ${SPLIT_90%/*} / $N | fabs) < 1e-9" "$st"
sb_assert_json "status --json: weight 0 never appears" \
	'(.canary.seventy.subsets | keys) == ["v1", "v2"] and
	 (.canary.whole.subsets | keys) == ["v1"] and
	 .canary.whole.subsets.v1.share == 1' "$st"
sb_assert_json "status --json: shares of each service add up to 1" \
	'all(.canary[]; ([.subsets[].share] | add - 1 | fabs) < 1e-9)' "$st"
txt=$(lb_cli status)
sb_log "sockmesh status, canary part:"
sed -n '/canary split/,$p' <<<"$txt" | sed 's/^/#   /' >&2
share=$(awk -v k="${SPLIT_90%/*}" -v n="$N" 'BEGIN { printf "%.2f", 100 * k / n }')
sb_assert_match "status: a canary section" "canary split" "$txt"
sb_assert_match "status: ninety's total" $'\n    ninety: '"$N"$'\n' "$txt"
sb_assert_match "status: ninety v1's count and share" \
	$'\n      v1 +'"${SPLIT_90%/*}  +$share%"$'\n' "$txt"

# --- all weights 0: a policy error, nothing changes ---
bad=$SB_WORK/zero.yaml
cp "$LB_POLICY" "$SB_WORK/good.yaml"
lb_policy "$(policy_body 0 0)"
mv "$LB_POLICY" "$bad"
cp "$SB_WORK/good.yaml" "$LB_POLICY"
rc=0
msg=$(lb_cli check "$bad" 2>&1) || rc=$?
sb_assert_eq "check: all-zero weights fail" 1 "$rc"
sb_assert_match "check: the error names the service" \
	"every subset of service 'ninety' has weight 0" "$msg"

errs=$(lb_metric sockmesh_policy_reloads_total 'result="error"')
gen=$(lb_metric sockmesh_policy_generation)
cp "$bad" "$LB_POLICY.tmp"
mv -f "$LB_POLICY.tmp" "$LB_POLICY"
sb_wait_for "the all-zero reload counted as an error" 60 \
	sb_metric_ge sockmesh sockmesh_policy_reloads_total 'result="error"' \
	$((errs + 1))
sb_assert_eq "all-zero: generation unchanged" "$gen" \
	"$(lb_metric sockmesh_policy_generation)"
sb_assert_match "all-zero: the agent log says why" \
	"every subset of service 'ninety' has weight 0" "$(cat "$LB_LOG")"
lb_smtest /client connect --to 198.19.1.1:80 --count 400 --parallel "$P" \
	--timeout-ms 20000
sb_assert_json "all-zero: the 90/10 split stays in force" \
	'.results == {"ok": 400} and .tags.b1 > 300 and .tags.b2 > 0' "$LB_OUT"

sb_log "measured splits over $N connections: 90/10 -> $SPLIT_90;" \
	"70/30/0 -> $SPLIT_70; 75/25 (3+1) -> $SPLIT_75;" \
	"50/50 (3+1) -> $SPLIT_50; 100/0 -> 2000/0"
echo "splits: 90/10=$SPLIT_90 70/30/0=$SPLIT_70 75/25=$SPLIT_75" \
	"50/50=$SPLIT_50 100/0=2000/0"
