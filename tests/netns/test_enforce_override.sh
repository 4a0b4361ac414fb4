#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Nobody overrides us. Someone else attaches programs deeper in the cgroup
# tree (tests/helpers/bpf/allow_all.bpf.c: connect4, connect6 and sendmsg4
# programs that clear the error and allow), with each attach flag: none,
# override and multi. Our deny must still reach the application as EPERM
# and be recorded and counted, while allowed traffic still passes. Then
# our agent restarts (stopped, and killed) and is uninstalled: their
# programs stay attached as they were, every time.
#
# The kernel runs a cgroup's own programs first, then those of ancestors
# attached with multi (our links always are), and a program's allow
# cannot clear an error set after it ran: that is why we always win.
set -euo pipefail
# shellcheck source=tests/netns/enforce_lib.sh
source "$(dirname "$0")/enforce_lib.sh"

sb_need_root
sb_need_cmd bpftool clang
enf_need
sb_init

SRV4=198.18.70.1
SRV6=fd00:70::1

sb_netns n "$SRV4/32" "$SRV6/128"
enf_cgroups /server /apps/client /apps/intruder
APPS=$SB_CGMOUNT$SB_CGROOT/apps
INTRUDER=$APPS/intruder

enf_policy <<EOF
apiVersion: sockmesh/v1
node: node-override
services:
  server:
    cgroups: [$SB_CGROOT/server]
    protocol: both
    endpoints: [$SRV4:8080, "[$SRV6]:8080", $SRV4:5353]
  client:
    cgroups: [$SB_CGROOT/apps/client]
  intruder:
    cgroups: [$SB_CGROOT/apps/intruder]
rules:
  - {from: [client], to: [server], ports: [8080, 5353]}
EOF
enf_agent

enf_serve /server n '[::]:8080' tcp
enf_serve /server n "$SRV4:5353" udp --udp

# Their programs: built here, loaded and pinned in the sandbox's bpffs.
FOREIGN=$SB_WORK/bpffs/foreign
multiarch=$(cc -print-multiarch 2>/dev/null || true)
clang -g -O2 --target=bpf -Wall -Werror \
	-idirafter "/usr/include/${multiarch:-$(uname -m)-linux-gnu}" \
	-c "$SB_ROOT/tests/helpers/bpf/allow_all.bpf.c" \
	-o "$SB_WORK/allow_all.bpf.o" || sb_fail "cannot build allow_all.bpf.c"
mkdir -p "$FOREIGN"
bpftool prog loadall "$SB_WORK/allow_all.bpf.o" "$FOREIGN" \
	pinmaps "$FOREIGN/maps" || sb_fail "cannot load allow_all.bpf.o"
BSS=$(echo "$FOREIGN"/maps/*bss)
[[ -e $BSS ]] || sb_fail "no .bss map of allow_all.bpf.o in $FOREIGN/maps"

HOOKS=(connect4:allow_conn4 connect6:allow_conn6 sendmsg4:allow_send4)

# attach CG FLAG|"" / detach CG: their three programs.
attach() {
	local h
	for h in "${HOOKS[@]}"; do
		# shellcheck disable=SC2086
		bpftool cgroup attach "$1" "${h%%:*}" pinned "$FOREIGN/${h#*:}" \
			$2 || sb_fail "attach ${h#*:} to $1 (${2:-no flag})"
	done
}

detach() {
	local h
	for h in "${HOOKS[@]}"; do
		bpftool cgroup detach "$1" "${h%%:*}" pinned "$FOREIGN/${h#*:}" ||
			sb_fail "detach ${h#*:} from $1"
	done
}

# The cleanup path: whatever is still attached, never failing.
detach_quietly() {
	local cg h
	for cg in "$INTRUDER" "$APPS"; do
		for h in "${HOOKS[@]}"; do
			bpftool cgroup detach "$cg" "${h%%:*}" pinned \
				"$FOREIGN/${h#*:}" 2>/dev/null || true
		done
	done
}
sb_defer detach_quietly

# Their programs attached to CG itself: "type:name:flags" lines, sorted.
theirs() {
	bpftool -j cgroup show "$1" | jq -r \
		'.[] | select(.name | startswith("allow_")) |
		 "\(.attach_type):\(.name):\(.attach_flags)"' | sort
}

# How many times their programs ran so far.
runs() {
	bpftool -j map dump pinned "$BSS" |
		jq '.[0].formatted.value[".bss"][] | select(has("runs")) | .runs'
}

# Our verdicts, with their programs in the way: the intruder's TCP over
# IPv4 and IPv6 and its UDP are denied, the client still gets through.
# RUNS: how often their programs must have run meanwhile: each of the
# intruder's 3 calls and the client's 1 runs every program of theirs
# on the way up from its cgroup.
verdicts_hold() {
	local what=$1 runs_expected=$2 r0 d0 a0 p out args
	r0=$(runs)
	d0=$(enf_conns intruder server denied)
	a0=$(enf_conns client server allowed)
	for args in "--to $SRV4:8080" "--to [$SRV6]:8080" \
		"--udp --unconnected --to $SRV4:5353"; do
		# shellcheck disable=SC2086
		p=$(enf_connect /apps/intruder $args)
		out=$(enf_result "$p")
		sb_assert_json "$what: intruder $args: EPERM" \
			'.results == {"EPERM": 1} and .tags == {}' "$out"
		sb_wait_for "$what: deny recorded" 20 enf_records_ge "$p" deny 1
		sb_assert_json "$what: intruder $args: deny by no_rule" \
			'length == 1 and all(.[]; .src == "intruder" and
			 .dst == "server" and .reason == "no_rule")' \
			"$(enf_records "$p" deny)"
	done
	p=$(enf_connect /apps/client --to "$SRV4:8080")
	sb_assert_json "$what: client still gets through" \
		'.results == {"ok": 1} and .tags == {"tcp": 1}' \
		"$(enf_result "$p")"
	sb_assert_eq "$what: 3 denies counted" "$((d0 + 3))" \
		"$(enf_conns intruder server denied)"
	sb_assert_eq "$what: 1 allowed counted" "$((a0 + 1))" \
		"$(enf_conns client server allowed)"
	# Proof their programs were in the path (or not): one run per call.
	sb_assert_eq "$what: their programs ran $runs_expected times" \
		"$((r0 + runs_expected))" "$(runs)"
}

test_each_flag() {
	local flag label
	verdicts_hold "no foreign programs" 0
	for flag in "" override multi; do
		label="theirs attached with ${flag:-no flag}"
		attach "$APPS" "$flag"
		sb_assert_eq "$label: attached" 3 "$(theirs "$APPS" | wc -l)"
		sb_assert_match "$label: effective on intruder, before ours" \
			'allow_conn4.*sm_connect4' \
			"$(bpftool -j cgroup show "$INTRUDER" effective |
				jq -r '.[] | select(.attach_type == "cgroup_inet4_connect") |
					.name' | tr '\n' ' ')"
		verdicts_hold "$label" 4
		detach "$APPS"
	done
}

# Their programs on two levels (multi on /apps, override on
# /apps/intruder); each restart of ours must leave them exactly so.
test_restarts() {
	local before
	attach "$APPS" multi
	attach "$INTRUDER" override
	before="$(theirs "$APPS") $(theirs "$INTRUDER")"
	sb_assert_match "theirs on both levels" \
		'inet4_connect:allow_conn4:multi.*inet4_connect:allow_conn4:override' \
		"${before//$'\n'/ }"
	verdicts_hold "theirs on two levels" 7

	sb_agent_stop sockmesh
	enf_agent
	sb_assert_eq "agent restarted: theirs untouched" "$before" \
		"$(theirs "$APPS") $(theirs "$INTRUDER")"
	verdicts_hold "after our restart" 7

	sb_agent_kill sockmesh
	enf_agent
	sb_assert_eq "agent killed and started: theirs untouched" "$before" \
		"$(theirs "$APPS") $(theirs "$INTRUDER")"
	verdicts_hold "after our crash and start" 7

	# Uninstalling ours takes ours away and leaves theirs.
	sb_agent_stop sockmesh
	"$SB_BUILD/sockmesh" uninstall --bpffs "$(sb_agent sockmesh bpffs)" \
		--cgroup "$SB_CGROOT" >/dev/null ||
		sb_fail "sockmesh uninstall failed"
	sb_assert_eq "uninstalled: theirs untouched" "$before" \
		"$(theirs "$APPS") $(theirs "$INTRUDER")"
	sb_assert_eq "uninstalled: none of ours effective" "" \
		"$(bpftool -j cgroup show "$INTRUDER" effective |
			jq -r '.[] | select(.name | startswith("sm_")) | .name')"
}

test_each_flag
test_restarts
