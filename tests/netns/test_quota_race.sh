#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# max_concurrent is exact under concurrency, on both CPUs at once.
#
# Races: two processes, one pinned to each CPU with four threads each,
# are let go at once and hold what they get, 1200 tries each for 1000
# units (max_concurrent: 1000): together they win exactly 1000, the server has
# exactly that many established, every other attempt got EDQUOT, and
# closing everything brings the gauge back to 0.
#
# Churn: processes on both CPUs connect and close flat out for a few
# seconds, to the server and to endpoints where connections never
# establish (refused, SYN lost and given up after 20 ms, no route), all
# against the same quota. sockmesh_quota_active, sampled all along, never
# shows more than max_concurrent; once every socket is closed it is 0, and
# the limit still lets exactly max_concurrent through.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"
# shellcheck source=tests/netns/quota_lib.sh
source "$(dirname "$0")/quota_lib.sh"

sb_need_root
sb_need_cmd taskset ss
sb_init
N=8
ROUNDS=3
q_start "  - {from: client, to: server, max_concurrent: $N}"

# The first two CPUs this test may run on ("0-3,6" -> 0 1).
read -r cpu0 cpu1 < <(taskset -cp $$ | sed 's/.*: *//' | tr ',' '\n' |
	awk -F- '{ for (c = $1; c <= ($2 == "" ? $1 : $2); c++) print c }' |
	head -n 2 | xargs)
if [[ -z ${cpu1:-} ]]; then
	sb_log "one CPU only: both processes share it"
	cpu1=$cpu0
fi

# Connections the server has established on port 8080 (its side only).
server_established() {
	ip netns exec "$Q_NS" ss -Htn state established '( sport = :8080 )' |
		wc -l
}

# True if the server has N established (for sb_wait_for).
server_established_is() {
	local n
	n=$(server_established)
	[[ $n -eq $1 ]] || { echo "the server has $n established"; return 1; }
}

# --- races for the units ---

# True once process PID waits on FIFO (its stdin is the FIFO).
waits_on() {
	[[ $(readlink "/proc/$1/fd/0" 2>/dev/null) == "$2" ]]
}

# Each round: two racers, one per CPU with four threads each, are let go
# together and each tries for more than half of the R units, holding what
# it wins. Filling R takes long enough that both are connecting when
# the last units go.
R=1000
RACE_COUNT=1200
# shellcheck disable=SC2016 # expanded by the racer's sh
GATE_SH='read -r go <"$1"; shift; exec "$@"'
q_reload "  - {from: client, to: server, max_concurrent: $R}"
for ((r = 1; r <= ROUNDS; r++)); do
	gate=$SB_WORK/gate.$r
	mkfifo "$gate"
	# Held open here, so the racers' open() does not wait for a writer
	# and the lines written stay in the pipe for whoever reads them.
	exec {gfd}<>"$gate"
	racers=()
	for cpu in "$cpu0" "$cpu1"; do
		sb_run /client node sh -c "$GATE_SH" sh "$gate" \
			taskset -c "$cpu" "$SB_SMTEST" connect --to "$Q_SRV" \
			--count "$RACE_COUNT" --parallel 4 --hold --hold-max 600 \
			--timeout-ms 10000 >/dev/null
		racers+=("$SB_PID")
	done
	sb_wait_for "round $r: racer 0 at the gate" 30 \
		waits_on "${racers[0]}" "$gate"
	sb_wait_for "round $r: racer 1 at the gate" 30 \
		waits_on "${racers[1]}" "$gate"
	printf 'go\ngo\n' >&"$gfd"
	exec {gfd}>&-

	sb_wait_for "round $r: racer 0 done" 120 _q_held_line "${racers[0]}"
	sb_wait_for "round $r: racer 1 done" 120 _q_held_line "${racers[1]}"
	h0=$(awk '/^held / { print $2 }' "$(sb_out "${racers[0]}")")
	h1=$(awk '/^held / { print $2 }' "$(sb_out "${racers[1]}")")
	sb_log "round $r: CPU $cpu0 won $h0, CPU $cpu1 won $h1"
	sb_assert_eq "round $r: exactly $R won between the two CPUs" "$R" \
		$((h0 + h1))
	q_assert_active "round $r" client server "$R"
	sb_wait_for "round $r: the server has $R established" 20 \
		server_established_is "$R"
	q_release "${racers[0]}"
	o0=$Q_OUT
	q_release "${racers[1]}"
	sb_assert_json "round $r: every other attempt got EDQUOT" \
		"[.[].results.EDQUOT // 0] | add == 2 * $RACE_COUNT - $R" \
		"[$o0, $Q_OUT]"
	q_assert_active "round $r: all closed" client server 0
done
q_reload "  - {from: client, to: server, max_concurrent: $N}"

# --- churn ---

# Processes: target, CPU, count, threads, extra smtest options.
churn=(
	"$Q_SRV $cpu0 6000 4 --timeout-ms 20000"
	"$Q_SRV $cpu1 6000 4 --timeout-ms 20000"
	"$Q_REFUSED $cpu0 6000 2"
	"$Q_LOST $cpu1 300 2 --timeout-ms 20"
	"$Q_NOROUTE $cpu0 6000 2"
)
pids=()
for c in "${churn[@]}"; do
	read -r to cpu count par extra <<<"$c"
	# shellcheck disable=SC2086 # extra is a list of options
	sb_run /client node taskset -c "$cpu" "$SB_SMTEST" connect --to "$to" \
		--count "$count" --parallel "$par" ${extra:-} >/dev/null
	pids+=("$SB_PID")
done

# Sample the gauge until every churner is done (bounded).
samples=0
max=0
deadline=$(($(_sb_now_ms) + 120000))
while :; do
	alive=0
	for p in "${pids[@]}"; do
		_sb_alive "$p" && alive=1
	done
	((alive)) || break
	(($(_sb_now_ms) < deadline)) || sb_fail "churn still running after 120 s"
	v=$(q_active client server)
	samples=$((samples + 1))
	((v > max)) && max=$v
	((v <= N)) || sb_fail "sockmesh_quota_active is $v, above $N"
done
sb_log "churn: $samples samples of the gauge, highest $max"
sb_assert_ge "the gauge was sampled during the churn" "$samples" 5
sb_assert_le "the gauge never showed more than $N" "$max" "$N"

# What each churner saw: only what its target can give, or EDQUOT. The
# lost-SYN churner is done in a few milliseconds when the others hold
# every unit all that time, so it need not have got one (the unit of a
# connect given up on is test_quota_unestablished's).
expect=("ok" "ok" "ECONNREFUSED" "ETIMEDOUT" "ENETUNREACH")
least=(1 1 1 0 1)
for i in "${!pids[@]}"; do
	sb_wait "${pids[i]}" 60 || sb_fail "churner ${pids[i]} failed"
	out=$(tail -n 1 "$(sb_out "${pids[i]}")")
	sb_log "churner $i (${churn[i]%% *}): $(jq -c .results <<<"$out")"
	sb_assert_json "churner $i: only ${expect[i]} and EDQUOT" \
		"(.results | keys - [\"${expect[i]}\", \"EDQUOT\"]) == [] and
		 (.results.\"${expect[i]}\" // 0) >= ${least[i]}" "$out"
done
q_assert_active "churn over, every socket closed" client server 0
sb_assert_eq "the server has nothing established" 0 "$(server_established)"
q_assert_exact_limit "after the churn" /client "$Q_SRV" "$N" client server
