#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# tools/bench/run.sh: what `make bench` runs. docs/benchmarks.md says what
# each figure means.
#
# Everything runs in a private sandbox (tests/lib/sandbox.sh): one netns,
# cgroups under a fresh subtree, a private bpffs, one agent managing
# <sandbox>/mesh. Nothing is left behind, also on failure or Ctrl-C.
#
# The machine is shared and noisy, so every rate is relative to a
# baseline measured in the same run: baseline windows (client and server
# in cgroups outside the managed subtree: none of our programs run for
# them) alternate with measured windows (A B A C A D ...), and each figure
# is the ratio of the medians, with the spread of the windows.
#
#   phase 1  connect rate: baseline vs endpoint, VIP, quota
#   phase 2  kernel BPF run-time statistics per program (bpf_stats_enabled)
#   phase 3  policy apply time: a 100,000-rule policy via PUT /v1/policy
#
# Variables (environment):
#   BENCH_JSON=FILE        also write every figure as JSON to FILE
#   BENCH_ROUNDS=N         rounds: windows per variant (default 20)
#   BENCH_ROUND_MS=MS      length of one window (default 300)
#   BENCH_PARALLEL=N       connections in flight (default 32)
#   BENCH_STATS_ROUNDS=N   windows per variant with BPF statistics (default 3)
#   BENCH_RULES=N          rules in the big policy (default 100000)
#   BENCH_SERVICES=N       services in the big policy (default 400)
#   BENCH_APPLY_ROUNDS=N   full applies of the big policy (default 3)
#   BENCH_RULE_MAP=N       start the agent with --map-size rule=N
#   BENCH_BUDGET_S=S       stop starting connect rounds after S s (default 75)
#   BENCH_APPLY_BUDGET_S=S stop starting apply rounds after S s (default 45)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/lib/sandbox.sh
source "$BENCH_DIR/../../tests/lib/sandbox.sh"

ROUNDS=${BENCH_ROUNDS:-20}
ROUND_MS=${BENCH_ROUND_MS:-300}
PARALLEL=${BENCH_PARALLEL:-32}
STATS_ROUNDS=${BENCH_STATS_ROUNDS:-3}
RULES=${BENCH_RULES:-100000}
SERVICES=${BENCH_SERVICES:-400}
APPLY_ROUNDS=${BENCH_APPLY_ROUNDS:-3}
BUDGET_S=${BENCH_BUDGET_S:-75}
APPLY_BUDGET_S=${BENCH_APPLY_BUDGET_S:-45}
RULE_MAP=${BENCH_RULE_MAP:-}
JSON_OUT=${BENCH_JSON:-}
[[ -z $JSON_OUT || $JSON_OUT == /* ]] || JSON_OUT=$PWD/$JSON_OUT

CONNBENCH=$SB_BUILD/tools/connbench
CLI=$SB_BUILD/sockmesh

# Addresses (all on lo of one netns) and what each variant dials.
SRV=198.18.0.1:8080	# endpoint of service "server"
V1=198.18.0.2:8080	# endpoint of subset v1 of "canary"
V2=198.18.0.3:8080	# endpoint of subset v2 of "canary"
VIP=198.19.0.1:80	# the VIP of "canary": never a real host
BASE=198.18.0.1:9000	# the baseline server, in no service

VARIANTS=(plain vip quota)
declare -A V_CG=([base]=/base/client [plain]=/mesh/client
	[vip]=/mesh/client [quota]=/mesh/qclient)
declare -A V_TO=([base]=$BASE [plain]=$SRV [vip]=$VIP [quota]=$SRV)
declare -A V_TREE=([base]=base [plain]=mesh [vip]=mesh [quota]=mesh)

note() {
	echo "bench: $*" >&2
}

# --- set-up ---

# Unlike a test, the bench has nothing to skip to: it says what is
# missing and fails.
check_prereqs() {
	local c
	if [[ $EUID -ne 0 ]]; then
		echo "bench: must run as root: sudo make bench" >&2
		exit 1
	fi
	for c in bpftool jq curl awk sysctl; do
		command -v "$c" >/dev/null 2>&1 || {
			echo "bench: needs $c (make deps installs it)" >&2
			exit 1
		}
	done
	sb_need_build "$CONNBENCH" "$CLI" "$SB_BUILD/sockmesh-agent"
	if ((RULES > SERVICES * (SERVICES - 1))); then
		echo "bench: BENCH_RULES=$RULES needs more than $SERVICES services" >&2
		exit 2
	fi
}

# The policy of phases 1 and 2. An argument (a port) adds a rule, which
# changes the compiled maps: phase 3 uses it to tell small policies apart.
small_policy() {
	local extra=""
	[[ -z ${1:-} ]] || extra="  - {from: client, to: server, ports: [$1]}"
	cat <<EOF
apiVersion: sockmesh/v1
node: bench
defaults: {mode: enforce, egress: allow}
services:
  client: {cgroups: [$SB_CGROOT/mesh/client]}
  qclient: {cgroups: [$SB_CGROOT/mesh/qclient]}
  server:
    protocol: tcp
    cgroups: [$SB_CGROOT/mesh/server]
    endpoints: [$SRV]
  canary:
    protocol: tcp
    vip: [$VIP]
    subsets:
      v1: {weight: 90, cgroups: [$SB_CGROOT/mesh/v1], endpoints: [$V1]}
      v2: {weight: 10, cgroups: [$SB_CGROOT/mesh/v2], endpoints: [$V2]}
rules:
  - {from: client, to: server, ports: [8080]}
  - {from: client, to: canary, ports: [80]}
  - {from: qclient, to: server, ports: [8080]}
$extra
quotas:
  - {from: qclient, to: server, connections_per_second: 100000000,
     max_concurrent: 1000000}
EOF
}

# The big policy: SERVICES services (protocol tcp, so no rule compiles to
# UDP entries), RULES rules each naming one distinct (from, to) pair and
# one port. Every rule uses PORT but the last, which uses LAST. Written
# compactly: PUT /v1/policy takes at most 4 MiB.
big_policy() {
	local port=$1 last=$2
	awk -v n="$SERVICES" -v r="$RULES" -v cg="$SB_CGROOT/mesh/p" \
		-v port="$port" -v last="$last" 'BEGIN {
		print "apiVersion: sockmesh/v1"
		print "node: bench"
		print "services:"
		for (i = 0; i < n; i++)
			printf "  s%d: {protocol: tcp, cgroups: [%s/s%d], " \
			       "endpoints: [198.18.%d.%d:8080]}\n",
			       i, cg, i, 4 + int(i / 250), 1 + i % 250
		print "rules:"
		for (k = 0; k < r; k++) {
			f = k % n
			t = (f + 1 + int(k / n)) % n
			printf "- {from: s%d,to: s%d,ports: [%d]}\n",
			       f, t, k == r - 1 ? last : port
		}
	}'
}

setup() {
	local c i tok
	sb_netns b "${SRV%:*}/32" "${V1%:*}/32" "${V2%:*}/32"
	for c in base/client base/server mesh/client mesh/qclient \
		mesh/server mesh/v1 mesh/v2; do
		sb_cgroup "/$c" >/dev/null
	done
	# The big policy's service cgroups exist, as on a real node (the
	# agent re-resolves a policy with missing cgroups every second).
	for ((i = 0; i < SERVICES; i++)); do
		mkdir -p "$SB_CGMOUNT$SB_CGROOT/mesh/p/s$i"
	done

	small_policy >"$SB_WORK/policy.yaml"
	tok=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf '%s\n' "$tok" >"$SB_WORK/token"
	chmod 600 "$SB_WORK/token"
	TOKEN=$tok
	# The flow log rotates at 16 MiB, one kept: the bench writes a lot.
	sb_agent_start sm "$SB_WORK/policy.yaml" --cgroup "$SB_CGROOT/mesh" \
		--timeout 90 \
		-- --allow-policy-put --token-file "$SB_WORK/token" \
		--flow-log-max-bytes 16777216 --flow-log-keep 1 \
		${RULE_MAP:+--map-size "rule=$RULE_MAP"}
	AGENT_URL=$(sb_agent sm url)

	S_BASE=$(sb_run /base/server b "$CONNBENCH" serve --listen "$BASE")
	S_SRV=$(sb_run /mesh/server b "$CONNBENCH" serve --listen "$SRV")
	S_V1=$(sb_run /mesh/v1 b "$CONNBENCH" serve --listen "$V1")
	S_V2=$(sb_run /mesh/v2 b "$CONNBENCH" serve --listen "$V2")
	for c in "$S_BASE" "$S_SRV" "$S_V1" "$S_V2"; do
		sb_wait_ready "$c"
	done
}

api() {
	curl -fsS --max-time 10 -H "Authorization: Bearer $TOKEN" \
		"$AGENT_URL$1"
}

metric() {
	api /metrics | sb_prom_sum "$1" "${2:-}"
}

# --- measuring ---

# CPU time (us) used so far by the processes of a cgroup subtree.
cg_usage() {
	awk '$1 == "usage_usec" { print $2 }' "$SB_CGMOUNT$1/cpu.stat"
}

# Wait (at most 1 s) until the agent is idle: it drains the ring buffer
# after a round, and that work belongs to the round, not the next one.
agent_settle() {
	local a b i
	a=$(cg_usage "$SB_CGROOT-host")
	for ((i = 0; i < 20; i++)); do
		sleep 0.05
		b=$(cg_usage "$SB_CGROOT-host")
		((b - a < 2000)) && return 0
		a=$b
	done
}

# One round of VARIANT for MS milliseconds; appends a JSON line to FILE.
round() {
	local v=$1 ms=$2 file=$3 tree=$SB_CGROOT/${V_TREE[$1]} out u0 u1 a0 a1
	u0=$(cg_usage "$tree")
	a0=$(cg_usage "$SB_CGROOT-host")
	out=$(sb_exec "${V_CG[$v]}" b "$CONNBENCH" connect --to "${V_TO[$v]}" \
		--duration-ms "$ms" --parallel "$PARALLEL") || out=
	[[ -n $out ]] || out='{"rate":0,"conns":0,"total":0,"errors":1,"first_errno":"connbench failed"}'
	agent_settle
	u1=$(cg_usage "$tree")
	a1=$(cg_usage "$SB_CGROOT-host")
	jq -c --arg v "$v" --argjson u $((u1 - u0)) --argjson a $((a1 - a0)) \
		'. + {variant: $v, cpu_us: $u, agent_us: $a}' <<<"$out" >>"$file"
	jq -r '"bpf stats \(.variant): \(.rate | floor) conn/s, \(.total) conns"' \
		<<<"$(tail -n 1 "$file")" >&2
}

# Phase 1: baseline windows between measured ones, A B A C A D, with
# the order of B C D rotated each round. One connbench process does it,
# moving itself between the client cgroups, so adjacent windows are a
# fraction of a second apart and see the same machine.
phase_connect() {
	local cg=$SB_CGMOUNT$SB_CGROOT
	note "phase 1: connect rate, $ROUNDS rounds x ${ROUND_MS} ms per variant, $PARALLEL in flight"
	M0_ALLOWED=$(metric sockmesh_connections_total 'verdict="allowed"')
	M0_TRACE_W=$(metric sockmesh_trace_options_total 'result="written"')
	M0_TRACE_R=$(metric sockmesh_trace_options_total 'result="received"')
	M0_V1=$(metric sockmesh_canary_connections_total 'subset="v1"')
	M0_V2=$(metric sockmesh_canary_connections_total 'subset="v2"')
	M0_LOST=$(metric sockmesh_events_lost_total)
	sb_exec /base/client "" "$CONNBENCH" alternate --netns "$(sb_ns b)" \
		--base "base,$cg${V_CG[base]},${V_TO[base]}" \
		--variant "plain,$cg${V_CG[plain]},${V_TO[plain]}" \
		--variant "vip,$cg${V_CG[vip]},${V_TO[vip]}" \
		--variant "quota,$cg${V_CG[quota]},${V_TO[quota]}" \
		--idle-cgroup "$cg-host" --rounds "$ROUNDS" \
		--slice-ms "$ROUND_MS" --parallel "$PARALLEL" \
		--budget-s "$BUDGET_S" >"$SB_WORK/alternate.jsonl" ||
		sb_fail "connbench alternate failed"
	jq -c 'select(.round >= 0)' "$SB_WORK/alternate.jsonl" \
		>"$SB_WORK/rounds.jsonl"
	jq -r 'select(.round >= 0) | "round \(.round) \(.variant): \(.rate | floor) conn/s, \(.total) conns, \(.errors) errors"' \
		"$SB_WORK/alternate.jsonl" >&2
	jq -n --argjson allowed "$(($(metric sockmesh_connections_total 'verdict="allowed"') - M0_ALLOWED))" \
		--argjson written "$(($(metric sockmesh_trace_options_total 'result="written"') - M0_TRACE_W))" \
		--argjson received "$(($(metric sockmesh_trace_options_total 'result="received"') - M0_TRACE_R))" \
		--argjson v1 "$(($(metric sockmesh_canary_connections_total 'subset="v1"') - M0_V1))" \
		--argjson v2 "$(($(metric sockmesh_canary_connections_total 'subset="v2"') - M0_V2))" \
		--argjson lost "$(($(metric sockmesh_events_lost_total) - M0_LOST))" \
		'{allowed: $allowed, trace_written: $written,
		  trace_received: $received, canary_v1: $v1, canary_v2: $v2,
		  events_lost: $lost}' >"$SB_WORK/metrics.json"
}

# Our programs' ids, from the links the agent pinned.
prog_ids() {
	local f
	for f in "$(sb_agent sm bpffs)"/links/*; do
		bpftool -n link show pinned "$f" --json | jq '.prog_id'
	done | sort -un | paste -sd, -
}

# run_cnt and run_time_ns of each of our programs, as one JSON object.
prog_snapshot() {
	bpftool prog show --json | jq -c --argjson ids "[$PROG_IDS]" \
		'[.[] | select(.id as $i | $ids | index($i))] |
		 map({key: .name, value: {runs: (.run_cnt // 0),
		      ns: (.run_time_ns // 0)}}) | from_entries'
}

# Phase 2: the kernel's run-time statistics, rounds of each variant.
phase_stats() {
	local old r v a b
	note "phase 2: BPF run-time statistics, $STATS_ROUNDS rounds per variant"
	PROG_IDS=$(prog_ids)
	old=$(sysctl -n kernel.bpf_stats_enabled)
	sb_defer sysctl -q "kernel.bpf_stats_enabled=$old"
	sysctl -q kernel.bpf_stats_enabled=1
	for ((r = 0; r < STATS_ROUNDS; r++)); do
		for v in "${VARIANTS[@]}"; do
			a=$(prog_snapshot)
			round "$v" "$ROUND_MS" "$SB_WORK/stats_rounds.jsonl"
			b=$(prog_snapshot)
			jq -c --argjson a "$a" --argjson b "$b" --arg v "$v" \
				'{variant: $v, total: .total, progs:
				  ($b | with_entries(.value = {
				    runs: (.value.runs - ($a[.key].runs // 0)),
				    ns: (.value.ns - ($a[.key].ns // 0))}))}' \
				<<<"$(tail -n 1 "$SB_WORK/stats_rounds.jsonl")" \
				>>"$SB_WORK/progs.jsonl"
		done
	done
	sysctl -q "kernel.bpf_stats_enabled=$old"
}

# PUT FILE to /v1/policy; prints "ms generation" or fails.
put_policy() {
	local file=$1 out code secs
	out=$(curl -sS --max-time 120 -X PUT \
		-H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: application/yaml' \
		--data-binary "@$file" -o "$SB_WORK/put.out" \
		-w '%{http_code} %{time_total}' "$AGENT_URL/v1/policy") ||
		return 1
	read -r code secs <<<"$out"
	if [[ $code != 200 ]]; then
		printf 'PUT %s: HTTP %s: %s\n' "$(basename "$file")" "$code" \
			"$(jq -r '.error // .' "$SB_WORK/put.out" 2>/dev/null |
			head -c 600)" >"$SB_WORK/put.err"
		echo "bench: $(cat "$SB_WORK/put.err")" >&2
		return 1
	fi
	awk -v s="$secs" -v g="$(jq -r .policy_generation "$SB_WORK/put.out")" \
		'BEGIN { printf "%.1f %s\n", s * 1000, g }'
}

# Phase 3: apply time of the big policy, then of one-rule changes to it.
#
# The agent writes the inactive slot with the difference to what that
# slot held, two policies ago. So each round first puts two different
# small policies in force (both slots then hold a small policy): the big
# policy is a full write. Its first one-rule change lands in the slot that
# holds a small policy, so it is a full write too ("first change"); later
# changes differ from their slot by two entries ("change").
phase_policy() {
	local r j t0 t1 ms gen file bytes kind entries start=$SECONDS
	note "phase 3: policy apply, $RULES rules over $SERVICES services, $APPLY_ROUNDS rounds"
	: >"$SB_WORK/policy.jsonl"
	big_policy 8080 8080 >"$SB_WORK/big.yaml"
	bytes=$(stat -c %s "$SB_WORK/big.yaml")
	t0=$EPOCHREALTIME
	if ! "$CLI" check "$SB_WORK/big.yaml" >"$SB_WORK/check.out" 2>&1; then
		{
			echo "sockmesh check rejects the generated policy:"
			head -n 20 "$SB_WORK/check.out"
		} >"$SB_WORK/put.err"
		sed 's/^/bench: /' "$SB_WORK/put.err" >&2
		POLICY_FAILED=1
		return 0
	fi
	t1=$EPOCHREALTIME
	jq -nc --argjson ms "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')" \
		--argjson bytes "$bytes" \
		'{kind: "check", ms: $ms, bytes: $bytes}' >>"$SB_WORK/policy.jsonl"

	for ((r = 0; r < APPLY_ROUNDS; r++)); do
		if ((r >= 1 && SECONDS - start > APPLY_BUDGET_S)); then
			note "time budget of ${APPLY_BUDGET_S}s used up after $r rounds"
			break
		fi
		small_policy $((20000 + 2 * r)) >"$SB_WORK/small_a.yaml"
		small_policy $((20001 + 2 * r)) >"$SB_WORK/small_b.yaml"
		for j in 0 1 2 3; do
			big_policy $((10000 + r)) $((30000 + j)) >"$SB_WORK/big$j.yaml"
		done
		if ! put_policy "$SB_WORK/small_a.yaml" >/dev/null ||
			! put_policy "$SB_WORK/small_b.yaml" >/dev/null; then
			POLICY_FAILED=1
			return 0
		fi
		for j in 0 1 2 3; do
			file=$SB_WORK/big$j.yaml
			read -r ms gen < <(put_policy "$file") || {
				POLICY_FAILED=1
				return 0
			}
			case $j in
			0) kind=full ;;
			1) kind=first_change ;;
			*) kind=change ;;
			esac
			# The sm_rule entries the agent reports in force.
			entries=$(metric sockmesh_map_entries 'map="sm_rule"')
			jq -nc --arg k "$kind" --argjson ms "$ms" --argjson g "$gen" \
				--argjson e "$entries" \
				'{kind: $k, ms: $ms, generation: $g, rule_entries: $e}' \
				>>"$SB_WORK/policy.jsonl"
			note "PUT ${kind/_/ }: $ms ms (generation $gen)"
		done
	done
}

# --- reporting ---

# Every figure as one JSON document, from the files the phases wrote.
figures() {
	jq -n --slurpfile rounds "$SB_WORK/rounds.jsonl" \
		--slurpfile progs <(cat "$SB_WORK/progs.jsonl" 2>/dev/null) \
		--slurpfile pol <(cat "$SB_WORK/policy.jsonl" 2>/dev/null) \
		--slurpfile m "$SB_WORK/metrics.json" \
		--arg kernel "$(uname -r)" --argjson cpus "$(nproc)" \
		--arg load0 "$LOAD0" --arg load1 "$LOAD1" \
		--argjson round_ms "$ROUND_MS" --argjson parallel "$PARALLEL" \
		--argjson rules "$RULES" --argjson services "$SERVICES" \
		--argjson policy_failed "${POLICY_FAILED:-0}" \
		--arg policy_error "$(cat "$SB_WORK/put.err" 2>/dev/null)" '
	def median: sort | length as $n |
		if $n == 0 then null
		elif $n % 2 == 1 then .[($n - 1) / 2]
		else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;
	def quantile($q): sort | if length == 0 then null
		else .[((length - 1) * $q) | floor] end;
	def summary: {median: median, min: min, max: max,
		p25: quantile(0.25), p75: quantile(0.75), n: length,
		samples: .};
	def r2: . * 100 | round / 100;
	def r3: . * 1000 | round / 1000;

	# The rate of the baseline round run just before each measured one.
	def paired($v): [range(1; $rounds | length) as $i |
		select($rounds[$i].variant == $v and
		       $rounds[$i - 1].variant == "base") |
		$rounds[$i].rate / $rounds[$i - 1].rate];
	def variant($v): [$rounds[] | select(.variant == $v)] as $r |
		($r | map(.rate) | summary) + {
			errors: ($r | map(.errors) | add),
			first_errno: ([$r[] | select(.errors > 0) | .first_errno][0] // "none"),
			cpu_us_per_conn: ($r | map(.cpu_us / ([.total, 1] | max)) | median),
			agent_us_per_conn: ($r | map(.agent_us / ([.total, 1] | max)) | median)};

	variant("base") as $base |
	# cpu_ratio: the rate ratio a CPU-bound machine would show, from
	# the CPU time per connection (client, server and agent).
	def measured($v): variant($v) as $x | $x + {
		ratio: ($x.median / $base.median),
		paired_ratio: (paired($v) | summary | del(.samples)),
		cpu_ratio: ($base.cpu_us_per_conn /
			($x.cpu_us_per_conn + $x.agent_us_per_conn))};

	# Per program and round: ns/run, runs and ns per connection (the
	# run_cnt and run_time_ns deltas of the round over the connections it
	# made); each figure is the median over the rounds of a variant, so
	# one slow round on a busy machine moves it little.
	def programs($v): [$progs[] | select(.variant == $v)] as $p |
		[$p[] | .total as $t | .progs | to_entries[] |
		 select(.value.runs > 0) |
		 {key, ns_per_run: (.value.ns / .value.runs),
		  runs_per_conn: (.value.runs / $t),
		  ns_per_conn: (.value.ns / $t)}] |
		group_by(.key) |
		map({key: .[0].key, value: (
			(map(.ns_per_run) | summary) as $per | {
			ns_per_run: $per.median, ns_per_run_min: $per.min,
			ns_per_run_max: $per.max,
			runs_per_conn: (map(.runs_per_conn) | median),
			ns_per_conn: (map(.ns_per_conn) | median),
			rounds: length})}) |
		from_entries |
		{connections: ($p | map(.total) | add), programs: .,
		 ns_per_conn: ([.[].ns_per_conn] | add)};

	def pol($k): [$pol[] | select(.kind == $k) | .ms] | summary;

	# What a reader should know before trusting the figures.
	def notes: . as $f | [
		(if $f.connect.baseline.p75 > 1.5 * $f.connect.baseline.p25 then
		  "the machine was busy: baseline windows ranged from \($f.connect.baseline.min | round) to \($f.connect.baseline.max | round) conn/s\n(quartiles \($f.connect.baseline.p25 | round)-\($f.connect.baseline.p75 | round)); the rate ratios carry that noise, the cpu ratios much less"
		 else empty end),
		($f.connect | to_entries[] | select(.value.ratio > 1) |
		  "\(.key): a ratio above 1 is noise, not a speed-up (cpu ratio \(.value.cpu_ratio * 100 | round / 100))"),
		($f.connect | to_entries[] | select(.value.errors > 0) |
		  "\(.key): \(.value.errors) connections failed (first: \(.value.first_errno))"),
		(if $f.checks.events_lost > 0 then
		  "\($f.checks.events_lost) flow events were lost: the agent fell behind the ring buffer"
		 else empty end),
		(if $f.checks.trace_written != $f.checks.allowed or
		    $f.checks.trace_received != $f.checks.trace_written then
		  "trace options: \($f.checks.trace_written) written and \($f.checks.trace_received) received for \($f.checks.allowed) connections"
		 else empty end),
		(($f.checks.canary_v1 + $f.checks.canary_v2) as $n |
		 if $n > 0 and (($f.checks.canary_v1 / $n) < 0.85 or ($f.checks.canary_v1 / $n) > 0.95) then
		  "canary: v1 got \($f.checks.canary_v1 * 100 / $n | round) % of the VIP connections, not about 90 %"
		 else empty end)];

	{
	  machine: {kernel: $kernel, cpus: $cpus,
		    loadavg_start: $load0, loadavg_end: $load1},
	  params: {round_ms: $round_ms, parallel: $parallel,
		   rounds: ([$rounds[] | select(.variant == "plain")] | length)},
	  connect: {baseline: $base, endpoint: measured("plain"),
		    vip: measured("vip"), quota: measured("quota")},
	  checks: $m[0],
	  tracing: (programs("plain") as $pp | {
		ratio: measured("plain").ratio,
		sockops_runs_per_conn: $pp.programs.sm_sockops.runs_per_conn,
		sockops_ns_per_conn: $pp.programs.sm_sockops.ns_per_conn,
		trace_written: $m[0].trace_written,
		trace_received: $m[0].trace_received}),
	  bpf: {endpoint: programs("plain"), vip: programs("vip"),
		quota: programs("quota")},
	  policy: (if $policy_failed == 1 then {services: $services,
		rules: $rules, failed: true, error: $policy_error} else
		(pol("full").median) as $full | (pol("change").median) as $chg | {
		services: $services, rules: $rules,
		bytes: ([$pol[] | select(.kind == "check") | .bytes][0]),
		rule_entries: ([$pol[] | select(.kind == "full") | .rule_entries] | min),
		check_ms: ([$pol[] | select(.kind == "check") | .ms][0]),
		full_apply_ms: pol("full"),
		first_change_ms: pol("first_change"),
		change_ms: pol("change"),
		change_ratio: (if $full and $chg then $chg / $full else null end)}
		end)
	} | . + {notes: notes}'
}

# The table at the end, from the figures.
table() {
	jq -r '
	def f0: if . == null then "-" else (. | round | tostring) end;
	def f1: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
	def f2: if . == null then "-" else (. * 100 | round / 100 | tostring) end;
	def pad($n): tostring | . + (" " * ([$n - length, 0] | max));
	def lpad($n): tostring | (" " * ([$n - length, 0] | max)) + .;
	def range0($x): "\($x.min | f0)-\($x.max | f0)";
	def range2($x): "\($x.p25 | f2)-\($x.p75 | f2)";
	def rate_row($name; $x):
		"  \($name | pad(23)) \($x.median | f0 | lpad(7))  \(range0($x) | pad(12))" +
		(if $x.ratio then " \($x.ratio | f2 | lpad(5))  \("\($x.paired_ratio.median | f2) (\(range2($x.paired_ratio)))" | pad(16))"
		 else " \("" | pad(5))  \("" | pad(16))" end) +
		" \($x.cpu_us_per_conn | f1 | lpad(6)) \($x.agent_us_per_conn | f1 | lpad(6))" +
		(if $x.cpu_ratio then " \($x.cpu_ratio | f2 | lpad(6))" else "" end) +
		(if $x.errors > 0 then "  errors: \($x.errors) (\($x.first_errno))" else "" end);
	def prog_cell($x): if $x == null then "-" | pad(20) else
		"\($x.ns_per_run | f0 | lpad(5)) (\(range0({min: $x.ns_per_run_min, max: $x.ns_per_run_max})))" | pad(20) end;

	"sockmesh bench: kernel \(.machine.kernel), \(.machine.cpus) CPUs, load average \(.machine.loadavg_start) at the start, \(.machine.loadavg_end) at the end",
	"\(.params.rounds) rounds x \(.params.round_ms) ms per variant, \(.params.parallel) connections in flight",
	"",
	"Connect rate: TCP connect + close on loopback, one netns, client and server in service cgroups",
	"  \("" | pad(23)) \("conn/s" | lpad(7))  \("min-max" | pad(12)) \("ratio" | lpad(5))  \("paired" | pad(16)) \("cpu us" | lpad(6)) \("agent" | lpad(6)) \("cpu ra" | lpad(6))",
	rate_row("baseline (no programs)"; .connect.baseline),
	rate_row("endpoint (programs on)"; .connect.endpoint),
	rate_row("VIP (rewrite, canary)"; .connect.vip),
	rate_row("quota (never limits)"; .connect.quota),
	"  ratio: median / baseline median; paired: median (quartiles) of each window / the",
	"  baseline window just before it; cpu us: client+server CPU per connection; agent:",
	"  agent CPU per connection; cpu ra(tio): baseline cpu / (cpu + agent), the ratio if",
	"  CPU-bound",
	"  checks: \(.checks.allowed) connections allowed, trace options \(.checks.trace_written) written and \(.checks.trace_received) received,",
	"  canary v1/v2 \(.checks.canary_v1)/\(.checks.canary_v2), \(.checks.events_lost) events lost",
	(.notes[] | split("\n") | "  note: \(.[0])", (.[1:][] | "        \(.)")),
	"",
	"Tracing (always on, the normal path): connect-rate ratio \(.tracing.ratio | f2);",
	"  sm_sockops \(.tracing.sockops_runs_per_conn | f1) callbacks, \(.tracing.sockops_ns_per_conn | f0) ns per connection (both ends)",
	"",
	"BPF run time per program: median ns/run over the rounds (min-max); runs per",
	"connection count both ends",
	"  \("program" | pad(16)) \("runs" | lpad(5))  \("endpoint ns/run" | pad(20)) \("VIP ns/run" | pad(20)) \("quota ns/run" | pad(20))",
	(.bpf as $b | ([$b[].programs | keys[]] | unique)[] as $p |
		"  \($p | pad(16)) \($b.endpoint.programs[$p].runs_per_conn | f1 | lpad(5))  \(prog_cell($b.endpoint.programs[$p])) \(prog_cell($b.vip.programs[$p])) \(prog_cell($b.quota.programs[$p]))"),
	"  \("ns per connection" | pad(23))  \(.bpf.endpoint.ns_per_conn | f0 | pad(20)) \(.bpf.vip.ns_per_conn | f0 | pad(20)) \(.bpf.quota.ns_per_conn | f0 | pad(20))",
	"",
	(if .policy.failed then "Policy apply (\(.policy.rules) rules, \(.policy.services) services): not measured:",
		(.policy.error | split("\n")[] | "  \(.)") else
	"Policy apply via PUT /v1/policy: \(.policy.rules) rules, \(.policy.services) services, \(.policy.bytes) bytes;",
	"  \(.policy.rule_entries) sm_rule entries in force after a full apply (\(.policy.rule_entries / .policy.rules | f2) per rule)",
	"  sockmesh check         \(.policy.check_ms | f0 | lpad(6)) ms",
	"  full apply             \(.policy.full_apply_ms.median | f0 | lpad(6)) ms  (\(range0(.policy.full_apply_ms)), n=\(.policy.full_apply_ms.n))",
	"  one-rule change        \(.policy.change_ms.median | f0 | lpad(6)) ms  (\(range0(.policy.change_ms)), n=\(.policy.change_ms.n)), \(.policy.change_ratio | f2) of a full apply",
	"  first change after it  \(.policy.first_change_ms.median | f0 | lpad(6)) ms  (\(range0(.policy.first_change_ms))): its slot still held an older policy" end)
	' "$1"
}

main() {
	local t0=$SECONDS
	check_prereqs
	LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
	SB_TAG=bench sb_init
	setup
	phase_connect
	phase_stats
	POLICY_FAILED=0
	phase_policy
	LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
	figures >"$SB_WORK/figures.json"
	[[ -z $JSON_OUT ]] || cp "$SB_WORK/figures.json" "$JSON_OUT"
	echo
	table "$SB_WORK/figures.json" | sed 's/[[:space:]]*$//'
	note "done in $((SECONDS - t0)) s${JSON_OUT:+; figures in $JSON_OUT}"
	((POLICY_FAILED == 0))
}

main "$@"
