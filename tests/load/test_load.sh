#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Load tier: load every program of build/sockmesh.bpf.o on the running
# kernel without attaching anything, so the verifier checks each one. The
# programs are pinned in the sandbox's private bpffs and go away with it.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"

# The hooks the datapath must provide (DESIGN.md, "The datapath").
EXPECTED=(sm_sock_create sm_sock_release sm_connect4 sm_connect6
	sm_sendmsg4 sm_sendmsg6 sm_recvmsg4 sm_recvmsg6 sm_getpeer4
	sm_getpeer6 sm_sockops sm_getsockopt)

# The programs OBJ defines: global functions outside .text (which holds
# subprograms only).
object_programs() {
	local obj=$1
	declare -A sec
	local idx name
	while read -r idx name; do
		sec[$idx]=$name
	done < <(readelf -SW "$obj" 2>/dev/null |
		sed -n 's/^ *\[ *\([0-9]*\)\] \([^ ]*\) .*/\1 \2/p')
	readelf -sW "$obj" 2>/dev/null | awk '$4 == "FUNC" && $5 == "GLOBAL" &&
		$7 ~ /^[0-9]+$/ { print $7, $8 }' |
		while read -r idx name; do
			[[ ${sec[$idx]:-} != .text ]] && echo "$name"
		done
}

sb_need_root
sb_need_cmd bpftool readelf jq
obj=$SB_BUILD/sockmesh.bpf.o
sb_need_build "$obj"
sb_init

mapfile -t progs < <(object_programs "$obj" | sort)
sb_log "object defines ${#progs[@]} programs: ${progs[*]}"
for p in "${EXPECTED[@]}"; do
	[[ " ${progs[*]} " == *" $p "* ]] ||
		sb_fail "$obj has no program $p"
done
sb_assert_ge "object defines every expected program" "${#progs[@]}" \
	"${#EXPECTED[@]}"

# -n: never let bpftool mount anything; the pin dir is on our bpffs.
pindir=$SB_WORK/bpffs/progs
if ! bpftool -n prog loadall "$obj" "$pindir" >"$SB_WORK/load.log" 2>&1; then
	echo "--- bpftool prog loadall (last 120 lines) ---" >&2
	tail -n 120 "$SB_WORK/load.log" >&2
	sb_fail "the kernel $(uname -r) refused $obj"
fi

# verified_insns is shown when bpftool reports it (bpftool >= 7.2).
printf '%-16s %-18s %8s %8s %s\n' program type insns jited_B verified
total=0
for p in "${progs[@]}"; do
	[[ -e $pindir/$p ]] || sb_fail "program $p was not loaded"
	info=$(bpftool -n -j prog show pinned "$pindir/$p") ||
		sb_fail "bpftool prog show $p"
	# The kernel keeps 15 characters of a name (STYLE.md, naming).
	sb_assert_eq "$p: kernel name is the whole name" "$p" \
		"$(jq -r .name <<<"$info")"
	insns=$(($(jq -r .bytes_xlated <<<"$info") / 8))
	total=$((total + insns))
	printf '%-16s %-18s %8s %8s %s\n' "$p" \
		"$(jq -r .type <<<"$info")" "$insns" \
		"$(jq -r '.bytes_jited // 0' <<<"$info")" \
		"$(jq -r '.verified_insns // "-"' <<<"$info")"
done
echo "total xlated instructions: $total"
sb_assert_eq "every program loaded" "${#progs[@]}" \
	"$(find "$pindir" -mindepth 1 -maxdepth 1 | wc -l)"
