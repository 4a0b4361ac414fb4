#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# What the sockmesh CLI says when its input is not what it expects, with
# no agent needed: every error is one "Error: " line on stderr (or an
# error object with --json) that names what was typed, and the exit
# status is 1.
#   - flows: lines of the flow log that are JSON but no flow record are
#     skipped and counted on stderr; fields a record lacks print as "-";
#     a --flow-log that is a directory is an error naming it.
#   - explain: PID and FD are digits only and in range; errors quote them.
#   - options: unknown options and missing values are errors of ours (not
#     getopt's, which name the binary by its path).
set -euo pipefail
source "$(dirname "$0")/../lib/sandbox.sh"

sb_need_root
sb_init
sb_need_build "$SB_BUILD/sockmesh"

# Run the CLI with ARGS: sets RC, OUT and ERR.
cli() {
	RC=0
	"$SB_BUILD/sockmesh" "$@" >"$SB_WORK/cli.out" 2>"$SB_WORK/cli.err" || RC=$?
	OUT=$(cat "$SB_WORK/cli.out")
	ERR=$(cat "$SB_WORK/cli.err")
}

# Assert the last cli call failed with exactly one error line, ERROR.
assert_error() {
	local label=$1 error=$2
	sb_assert_eq "$label: exit status" 1 "$RC"
	sb_assert_eq "$label: the error" "Error: $error" "$ERR"
	sb_assert_eq "$label: nothing on stdout" "" "$OUT"
}

# --- flows ---

log=$SB_WORK/flows.jsonl
cat >"$log" <<'JSONL'
{"ts":1}
[]
"text"
this is not JSON
{"ts":"2024-01-01T00:00:00Z","event":"deny","side":"client","src":"a","dst":"b","verdict":"denied","orig_dst":"198.18.0.1:80","dst_addr":"198.18.0.1:80","trace_id":null}
JSONL
cli --flow-log "$log" flows
sb_assert_eq "flows: exit status" 0 "$RC"
sb_assert_eq "flows: missing fields print as -, non-records skipped" \
	"1 -       -      - -> - - - -> - -
2024-01-01T00:00:00Z deny    client a -> b denied 198.18.0.1:80 -> 198.18.0.1:80 -" \
	"$OUT"
sb_assert_eq "flows: the skipped lines are counted" \
	"Warning: $log: skipped 3 lines that are not flow records" "$ERR"
if grep -q "(null)" <<<"$OUT"; then
	sb_fail "flows: (null) printed: $OUT"
fi

cli --json --flow-log "$log" flows --verdict denied
sb_assert_eq "flows --json --verdict: the one record" 1 "$(grep -c . <<<"$OUT")"
sb_assert_json "flows --json --verdict: it is the deny" '.event == "deny"' "$OUT"
sb_assert_eq "flows --json: the skipped lines are counted on stderr" \
	"Warning: $log: skipped 3 lines that are not flow records" "$ERR"

mkdir "$SB_WORK/logdir"
cli --flow-log "$SB_WORK/logdir" flows
assert_error "flows: --flow-log a directory" \
	"flow log $SB_WORK/logdir: is a directory, not a file (see --flow-log)"
cli --flow-log "$SB_WORK/missing.jsonl" flows
assert_error "flows: --flow-log missing" \
	"flow log $SB_WORK/missing.jsonl: No such file or directory (see --flow-log)"

# --- explain: PID and FD as typed ---

max=2147483647
for bad in 99999999999999999999 0 +5 " 5" 5x "" 0x10; do
	cli explain "$bad" 1
	assert_error "explain PID '$bad'" \
		"PID '$bad' is not a process id (a number from 1 to $max)"
done
for bad in 99999999999 2147483648 +1 1.0 ""; do
	cli explain 1 "$bad"
	assert_error "explain FD '$bad'" \
		"FD '$bad' is not a file descriptor number (0 to $max)"
done
cli --json explain 99999999999999999999 1
sb_assert_eq "explain --json: exit status" 1 "$RC"
sb_assert_json "explain --json: an error object naming the PID as typed" \
	'.error | test("^PID .99999999999999999999. is not")' "$OUT"
# A PID no process has (above any pid_max the kernel allows, 2^22).
cli explain 4194305 0
assert_error "explain: no such process" "process 4194305: No such process"

# --- options: our own messages, the program named "sockmesh" ---

cli --bogus status
assert_error "unknown long option" \
	"option '--bogus' is unknown, ambiguous or takes no value (try 'sockmesh help')"
cli --json=1 status
assert_error "a value for a flag" \
	"option '--json=1' is unknown, ambiguous or takes no value (try 'sockmesh help')"
cli -jx status
sb_assert_json "-jx: the error object of --json" \
	'.error == "unknown option '"'-x'"' (try '"'sockmesh help'"'; '"'--'"' ends options)"' \
	"$OUT"
cli status --bpffs
assert_error "an option without its value" "option '--bpffs' needs a value"
cli explain -- -1 0
assert_error "explain -- -1 0: a bad PID" \
	"PID '-1' is not a process id (a number from 1 to 2147483647)"

# --- flows --follow across a rotation ---

# Records r1.. as the agent writes them (what they say does not matter).
rec() {
	local i
	for i in "$@"; do
		printf '{"ts":"t%d","event":"connect","side":"client","src":"a","dst":"b","verdict":"allowed"}\n' "$i"
	done
}
flog=$SB_WORK/follow.jsonl
rec 1 2 >"$flog"
pid=$(sb_run "" "" "$SB_BUILD/sockmesh" --flow-log "$flog" --json flows --follow)
sb_wait_for "follow: the first records" 10 bash -c \
	"[[ \$(grep -c . '$(sb_out "$pid")') -ge 2 ]]"
# The agent rotates: the file is renamed, a record still lands in it
# (written just before the rename), then the new file starts.
rec 3 >>"$flog"
mv "$flog" "$flog.1"
rec 4 >>"$flog.1"
rec 5 6 >"$flog"
sb_wait_for "follow: every record across the rotation" 10 bash -c \
	"[[ \$(grep -c . '$(sb_out "$pid")') -ge 6 ]]"
sleep 0.5
sb_assert_eq "follow: each record once, in order" "t1 t2 t3 t4 t5 t6" \
	"$(jq -r .ts "$(sb_out "$pid")" | xargs)"
sb_stop "$pid"
