# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# shellcheck shell=bash
#
# sandbox.sh: a private kernel sandbox for one sockmesh test.
#
# Tests run as root on a shared machine, so everything a test makes lives in
# a sandbox of its own and goes away when the test ends, also when it fails
# or is interrupted:
#
#   <cgroup2 mount>/<id>/...     the managed subtree (the agent's --cgroup)
#   <cgroup2 mount>/<id>-host    unmanaged helpers: agents, and sb_run/sb_exec
#                                with no cgroup ("world" to the agent)
#   netns <id>-NAME              network namespaces, no default route
#   /tmp/<id>/                   work dir: logs, flow logs, process output
#   /tmp/<id>/bpffs              a private bpffs mount; pin dirs live under it
#
# Usage, from tests/<tier>/test_x.sh:
#
#   set -euo pipefail
#   source "$(dirname "$0")/../lib/sandbox.sh"
#   sb_need_root
#   sb_init
#   sb_netns a 198.18.1.1/32
#   srv=$(sb_run /backend a "$SB_SMTEST" serve --listen 198.18.1.1:80)
#   sb_wait_ready "$srv"
#   out=$(sb_exec /frontend a "$SB_SMTEST" connect --to 198.18.1.1:80)
#   sb_assert_json "all ok" '.results.ok == 1' "$out"
#
# Exit codes: 0 pass, 1 fail, 249 skip. Set SB_KEEP=1 to keep the work
# dir's files (logs, outputs) of a failed test under /tmp/sockmesh-keep-<id>.
#
# Only IPv4 addresses from 198.18.0.0/15 and IPv6 addresses from fc00::/7 or
# 2001:2::/48 are accepted, and no default route is ever added.

[[ -n ${_SB_LOADED:-} ]] && return 0
_SB_LOADED=1

SB_SKIP=249
SB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The build dir: $SB_BUILD, else make's OUTPUT (relative to the repo root).
SB_BUILD=${SB_BUILD:-${OUTPUT:-build}}
[[ $SB_BUILD == /* ]] || SB_BUILD=$SB_ROOT/$SB_BUILD
SB_SMTEST=$SB_BUILD/tests/smtest
export SB_ROOT SB_BUILD SB_SMTEST

# --- messages, skips and failures ---

# Print a progress note (stderr, so command substitutions stay clean).
sb_log() {
	echo "# $*" >&2
}

# Where the calling test line is: "test_x.sh:42".
_sb_where() {
	local i
	for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
		if [[ ${BASH_SOURCE[i]} != "${BASH_SOURCE[0]}" ]]; then
			echo "${BASH_SOURCE[i]##*/}:${BASH_LINENO[i - 1]}"
			return
		fi
	done
	echo "?"
}

# Fail the test: print the message and where, then exit 1.
sb_fail() {
	echo "FAIL: $* ($(_sb_where))" >&2
	exit 1
}

# Skip the test with a reason; the runner shows it.
sb_skip() {
	echo "skip: $*"
	exit "$SB_SKIP"
}

# Skip unless running as root.
sb_need_root() {
	[[ $EUID -eq 0 ]] || sb_skip "needs root"
}

# Skip unless every named command is installed.
sb_need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || sb_skip "needs $c"
	done
}

# Fail unless every named build output exists (hint: the make target).
sb_need_build() {
	local f
	for f in "$@"; do
		[[ -e $f ]] || sb_fail "not built: $f (run: make ${f#"$SB_ROOT"/})"
	done
}

# Skip unless build/sockmesh-agent exists (it is optional while developing).
sb_need_agent() {
	[[ -x $SB_BUILD/sockmesh-agent ]] ||
		sb_skip "agent not built: $SB_BUILD/sockmesh-agent"
}

# --- assertions: quiet "ok: LABEL" on success, details only on failure ---

_sb_ok() {
	echo "ok: $1"
}

_sb_is_num() {
	[[ $1 =~ ^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]]
}

# Assert ACTUAL equals EXPECTED (as strings).
sb_assert_eq() {
	local label=$1 expected=$2 actual=$3
	[[ $expected == "$actual" ]] ||
		sb_fail "$label: expected '$expected', got '$actual'"
	_sb_ok "$label"
}

# Assert ACTUAL >= MIN (numbers, decimals allowed).
sb_assert_ge() {
	local label=$1 actual=$2 min=$3
	_sb_is_num "$actual" || sb_fail "$label: '$actual' is not a number"
	awk -v a="$actual" -v b="$min" 'BEGIN { exit !(a + 0 >= b + 0) }' ||
		sb_fail "$label: expected >= $min, got $actual"
	_sb_ok "$label"
}

# Assert ACTUAL <= MAX (numbers, decimals allowed).
sb_assert_le() {
	local label=$1 actual=$2 max=$3
	_sb_is_num "$actual" || sb_fail "$label: '$actual' is not a number"
	awk -v a="$actual" -v b="$max" 'BEGIN { exit !(a + 0 <= b + 0) }' ||
		sb_fail "$label: expected <= $max, got $actual"
	_sb_ok "$label"
}

# Assert STRING matches the extended REGEX.
sb_assert_match() {
	local label=$1 re=$2 s=$3
	[[ $s =~ $re ]] || sb_fail "$label: '$s' does not match /$re/"
	_sb_ok "$label"
}

# Feed JSON to jq: SRC is a file, or JSON text if it starts with { or [.
_sb_jq() {
	local src=$1
	shift
	if [[ $src =~ ^[[:space:]]*[\{\[] ]]; then
		jq "$@" <<<"$src"
	else
		[[ -r $src ]] || sb_fail "no such JSON file: $src"
		jq "$@" "$src"
	fi
}

# Print jq -r EXPR of SRC (a JSON file, or JSON text).
sb_json() {
	_sb_jq "$2" -r "$1"
}

# Assert jq EXPR is true for SRC (a JSON file, or JSON text).
sb_assert_json() {
	local label=$1 expr=$2 src=$3 got
	got=$(_sb_jq "$src" -c "$expr" 2>&1) || got="jq error: $got"
	if [[ $got != true ]]; then
		echo "  json: $(_sb_jq "$src" -c . 2>/dev/null | head -c 2000)" >&2
		sb_fail "$label: '$expr' is $got"
	fi
	_sb_ok "$label"
}

# --- time and polling ---

_sb_now_ms() {
	local t=${EPOCHREALTIME//[.,]/}
	echo $((t / 1000))
}

_sb_secs_to_ms() {
	awk -v s="$1" 'BEGIN { printf "%d\n", s * 1000 }'
}

# Poll CMD (run in a subshell) until it succeeds; fail after TIMEOUT_S.
sb_wait_for() {
	local label=$1 timeout=$2 deadline out delay=0.02
	shift 2
	deadline=$(($(_sb_now_ms) + $(_sb_secs_to_ms "$timeout")))
	while :; do
		out=$( ("$@") 2>&1) && return 0
		if (($(_sb_now_ms) > deadline)); then
			[[ -n $out ]] && echo "  last output: ${out:0:2000}" >&2
			sb_fail "timed out after ${timeout}s waiting for: $label"
		fi
		sleep "$delay"
		[[ $delay == 0.2 ]] || delay=$(awk -v d="$delay" \
			'BEGIN { d *= 2; print (d > 0.2) ? 0.2 : d }')
	done
}

# --- set-up ---

# The cgroup2 mount point, from /proc/self/mountinfo.
sb_cgroup2_mount() {
	awk '{
		for (i = 7; i <= NF; i++)
			if ($i == "-") {
				if ($(i + 1) == "cgroup2") { print $5; exit }
				break
			}
	}' /proc/self/mountinfo
}

# Make the sandbox: id, work dir, cgroups, private bpffs, cleanup trap.
sb_init() {
	local i
	sb_need_root
	[[ ${_SB_OWNER:-} != "$BASHPID" ]] || sb_fail "sb_init called twice"

	SB_CGMOUNT=$(sb_cgroup2_mount)
	[[ -n $SB_CGMOUNT ]] || sb_skip "no cgroup2 mount"
	[[ -e $SB_CGMOUNT/cgroup.procs ]] ||
		sb_skip "cgroup2 at $SB_CGMOUNT unusable"

	# An id nothing on the machine uses yet.
	SB_ID=
	for ((i = 0; i < 10; i++)); do
		SB_ID=smt-${SB_TAG:+$SB_TAG-}$BASHPID-$RANDOM
		sb_leaks "$SB_ID" >/dev/null && break
		SB_ID=
	done
	[[ -n $SB_ID ]] || sb_fail "no unused sandbox id"
	SB_WORK=/tmp/$SB_ID
	SB_CGROOT=/$SB_ID
	SB_BPFFS=$SB_WORK/bpffs/sockmesh
	_SB_OWNER=$BASHPID
	_SB_CLEANED=
	_SB_ORIG_CG=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)

	# From here on everything made is removed at exit, whatever happens.
	mkdir -m 0700 "$SB_WORK" || sb_fail "cannot make $SB_WORK"
	trap _sb_on_exit EXIT
	trap '_sb_on_signal 129' HUP
	trap '_sb_on_signal 130' INT
	trap '_sb_on_signal 143' TERM
	: >"$SB_WORK/netns"
	: >"$SB_WORK/agents"
	: >"$SB_WORK/procs"
	: >"$SB_WORK/ports"
	mkdir "$SB_CGMOUNT$SB_CGROOT" "$SB_CGMOUNT$SB_CGROOT-host" ||
		sb_fail "cannot make cgroups under $SB_CGMOUNT"
	mkdir "$SB_WORK/bpffs"
	mount -t bpf bpf "$SB_WORK/bpffs" || sb_skip "cannot mount bpffs"
	mkdir "$SB_BPFFS"
	export SB_ID SB_WORK SB_CGMOUNT SB_CGROOT SB_BPFFS
	sb_log "sandbox $SB_ID: work $SB_WORK, cgroup $SB_CGMOUNT$SB_CGROOT"
}

_sb_require_init() {
	[[ ${_SB_OWNER:-} == "$BASHPID" || -n ${SB_WORK:-} ]] ||
		sb_fail "call sb_init first"
}

# Reject names that could escape the sandbox ("..", "/", spaces).
_sb_check_name() {
	[[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] ||
		sb_fail "bad name '$1' (letters, digits, _ . - only)"
}

# A cgroup PATH relative to the test root, cleaned: "/a/b" or "" (root).
_sb_cg_rel() {
	local p=$1 part
	local -a parts
	# Also take "$SB_CGROOT/x" (policy form) and the full cgroupfs path.
	p=${p#"$SB_CGMOUNT"}
	[[ $p != "$SB_CGROOT" && $p != "$SB_CGROOT"/* ]] || p=${p#"$SB_CGROOT"}
	p=/${p#/}
	p=${p%/}
	IFS=/ read -ra parts <<<"${p#/}"
	for part in "${parts[@]}"; do
		[[ -z $part ]] || _sb_check_name "$part"
	done
	echo "$p"
}

# Make cgroup <test root>/PATH (e.g. /frontend, or $SB_CGROOT/frontend as
# a policy names it) and print its full path.
sb_cgroup() {
	local rel
	_sb_require_init
	rel=$(_sb_cg_rel "$1") || exit 1
	mkdir -p "$SB_CGMOUNT$SB_CGROOT$rel" || sb_fail "mkdir cgroup $rel"
	echo "$SB_CGMOUNT$SB_CGROOT$rel"
}

# The cgroup dir a process goes to: PATH under the test root, or the
# sandbox's unmanaged host cgroup for "".
_sb_cg_target() {
	if [[ -z $1 ]]; then
		echo "$SB_CGMOUNT$SB_CGROOT-host"
	else
		sb_cgroup "$1"
	fi
}

# Print the full netns name of NAME ("<id>-NAME").
sb_ns() {
	_sb_check_name "$1"
	echo "$SB_ID-$1"
}

# The netns to run in: "" for the root netns, else one of ours.
_sb_ns_target() {
	local ns
	[[ -n $1 ]] || return 0
	ns=$1
	[[ $ns == "$SB_ID"-* ]] || ns=$(sb_ns "$1") || exit 1
	[[ -e /run/netns/$ns ]] || sb_fail "no netns '$1' in this sandbox"
	echo "$ns"
}

# Refuse addresses outside the test ranges.
_sb_check_addr() {
	local a=${1%/*}
	if [[ $a == *:* ]]; then
		[[ $a =~ ^[fF][cCdD][0-9a-fA-F]{0,2}: || $a =~ ^2001:0*2:0*: ]] ||
			sb_fail "IPv6 test address '$1' outside fc00::/7, 2001:2::/48"
	else
		[[ $a =~ ^198\.1[89]\.[0-9]+\.[0-9]+$ ]] ||
			sb_fail "IPv4 test address '$1' outside 198.18.0.0/15"
	fi
}

# Add ADDR (v4, or v6 without DAD) to DEV in netns NS.
_sb_addr_add() {
	local ns=$1 dev=$2 a=$3
	_sb_check_addr "$a"
	if [[ $a == *:* ]]; then
		ip -n "$ns" -6 addr add "$a" dev "$dev" nodad
	else
		ip -n "$ns" addr add "$a" dev "$dev"
	fi || sb_fail "add $a to $dev in $ns"
}

# Make netns <id>-NAME with lo up and each ADDR (a/32, b::1/128) on lo.
sb_netns() {
	local name=$1 ns a
	shift
	_sb_require_init
	ns=$(sb_ns "$name") || exit 1
	ip netns add "$ns" || sb_fail "ip netns add $ns"
	echo "$ns" >>"$SB_WORK/netns"
	ip -n "$ns" link set lo up
	for a in "$@"; do
		_sb_addr_add "$ns" lo "$a"
	done
}

# An interface name for the link that leads to netns NAME: sb-NAME, <= 15.
_sb_ifname() {
	local n="sb-$1"
	echo "${n:0:15}"
}

# Wait (bounded) until DEV in NS is operationally up.
_sb_link_wait_up() {
	local ns=$1 dev=$2 i
	for ((i = 0; i < 100; i++)); do
		[[ $(ip -n "$ns" -o link show dev "$dev") == *"state UP"* ]] &&
			return 0
		sleep 0.02
	done
	sb_fail "link $dev in $ns did not come up"
}

# A veth pair NS1 <-> NS2; ADDRs are on-link (/24, /64), comma-separated
# for several. The device in NS1 is sb-NS2 and the one in NS2 is sb-NS1.
sb_veth() {
	local n1 n2 if1 if2 a
	_sb_require_init
	n1=$(_sb_ns_target "$1") || exit 1
	n2=$(_sb_ns_target "$3") || exit 1
	if1=$(_sb_ifname "$3")
	if2=$(_sb_ifname "$1")
	ip -n "$n1" link add "$if1" type veth peer name "$if2" netns "$n2" ||
		sb_fail "veth $1 <-> $3"
	for a in ${2//,/ }; do _sb_addr_add "$n1" "$if1" "$a"; done
	for a in ${4//,/ }; do _sb_addr_add "$n2" "$if2" "$a"; done
	ip -n "$n1" link set "$if1" up
	ip -n "$n2" link set "$if2" up
	_sb_link_wait_up "$n1" "$if1"
	_sb_link_wait_up "$n2" "$if2"
}

# Route DEST (never a default route) via gateway VIA inside netns NS.
sb_route() {
	local ns dest=$2 via=$3
	ns=$(_sb_ns_target "$1") || exit 1
	case $dest in
	default | 0.0.0.0/0 | ::/0) sb_fail "no default routes in tests" ;;
	esac
	_sb_check_addr "$dest"
	ip -n "$ns" route add "$dest" via "$via" || sb_fail "route $dest in $ns"
}

# --- processes ---

# True if PID exists and is not a zombie.
_sb_alive() {
	local st
	{ read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
	st=${st##*) }
	[[ ${st:0:1} != [ZX] ]]
}

# In a subshell about to exec: close every fd above 2, so a background
# process holds no pipe or FIFO end of the test's (stdin EOF must work).
_sb_close_fds() {
	local f n
	for f in /proc/"$BASHPID"/fd/*; do
		n=${f##*/}
		((n > 2)) && eval "exec $n>&-" 2>/dev/null
	done
	return 0
}

# Run CMD in the background in CGROUP ("" = host cgroup) and NETNS ("" =
# root netns). Prints the pid and sets SB_PID; stdout and stderr go to
# $(sb_out PID) and $(sb_err PID); stdin is /dev/null unless --stdin FILE.
sb_run() {
	local stdin=/dev/null cgdir ns
	_sb_require_init
	if [[ ${1:-} == --stdin ]]; then
		stdin=$2
		shift 2
	fi
	(($# >= 3)) || sb_fail "usage: sb_run [--stdin F] CGROUP NETNS CMD..."
	cgdir=$(_sb_cg_target "$1") || exit 1
	ns=$(_sb_ns_target "$2") || exit 1
	shift 2
	# ip netns exec remounts /sys (hiding cgroupfs), so join the cgroup
	# first; what we exec afterwards inherits it.
	(
		echo "$BASHPID" >"$cgdir/cgroup.procs" || exit 126
		exec <"$stdin" >"$SB_WORK/proc.$BASHPID.out" \
			2>"$SB_WORK/proc.$BASHPID.err"
		_sb_close_fds
		[[ -z $ns ]] || exec ip netns exec "$ns" "$@"
		exec "$@"
	) &
	SB_PID=$!
	echo "$SB_PID ${cgdir#"$SB_CGMOUNT"} ${ns:--} $*" >>"$SB_WORK/procs"
	echo "$SB_PID"
}

# Run CMD in the foreground in CGROUP and NETNS like sb_run; passes its
# stdout and stderr through and returns its exit status.
sb_exec() {
	local cgdir ns
	_sb_require_init
	(($# >= 3)) || sb_fail "usage: sb_exec CGROUP NETNS CMD..."
	cgdir=$(_sb_cg_target "$1") || exit 1
	ns=$(_sb_ns_target "$2") || exit 1
	shift 2
	(
		echo "$BASHPID" >"$cgdir/cgroup.procs" || exit 126
		[[ -z $ns ]] || exec ip netns exec "$ns" "$@"
		exec "$@"
	)
}

# Print the stdout file of a process started by sb_run.
sb_out() {
	echo "$SB_WORK/proc.$1.out"
}

# Print the stderr file of a process started by sb_run.
sb_err() {
	echo "$SB_WORK/proc.$1.err"
}

# Wait until process PID prints the line WORD (default "ready"), bounded
# by TIMEOUT_S (default 10); fail with its stderr if it exits first.
sb_wait_ready() {
	local pid=$1 timeout=${2:-10} word=${3:-ready} deadline
	deadline=$(($(_sb_now_ms) + $(_sb_secs_to_ms "$timeout")))
	while ! grep -qx -- "$word" "$(sb_out "$pid")" 2>/dev/null; do
		if ! _sb_alive "$pid"; then
			sed 's/^/  | /' "$(sb_err "$pid")" >&2 2>/dev/null || true
			sb_fail "process $pid exited before printing '$word'"
		fi
		(($(_sb_now_ms) <= deadline)) ||
			sb_fail "process $pid not '$word' after ${timeout}s"
		sleep 0.02
	done
}

# Run CMD in CGROUP and NETNS like sb_run, wait for it (bounded by
# TIMEOUT_S) and take its last output line, a JSON object: sets SB_PID and
# SB_OUT. Fails with the program's stderr if it exits non-zero or prints
# no JSON object last.
sb_run_json() {
	local timeout=$1 cg=$2 ns=$3 rc=0
	shift 3
	sb_run "$cg" "$ns" "$@" >/dev/null
	sb_wait "$SB_PID" "$timeout" || rc=$?
	SB_OUT=$(tail -n 1 "$(sb_out "$SB_PID")")
	if ((rc != 0)) || [[ $SB_OUT != \{* ]]; then
		sed 's/^/  | /' "$(sb_err "$SB_PID")" >&2 || true
		sb_fail "${1##*/} ${*:2} in ${cg:-host}/${ns:-root}: exit" \
			"status $rc, output '${SB_OUT:0:300}'"
	fi
}

# Wait (bounded) until PID is gone; returns its exit status when it is a
# child of this shell (sb_run called directly, not inside $(...)), else 0.
sb_wait() {
	local pid=$1 timeout=${2:-30} deadline rc=0
	deadline=$(($(_sb_now_ms) + $(_sb_secs_to_ms "$timeout")))
	while _sb_alive "$pid"; do
		(($(_sb_now_ms) <= deadline)) ||
			sb_fail "process $pid still running after ${timeout}s"
		sleep 0.02
	done
	wait "$pid" 2>/dev/null || rc=$?
	((rc != 127)) || rc=0
	return "$rc"
}

# Send SIG to PID, wait up to TIMEOUT_S, then SIGKILL; never fails.
_sb_terminate() {
	local pid=$1 sig=$2 timeout=$3 deadline
	kill "-$sig" "$pid" 2>/dev/null || true
	deadline=$(($(_sb_now_ms) + $(_sb_secs_to_ms "$timeout")))
	while _sb_alive "$pid" && (($(_sb_now_ms) < deadline)); do
		sleep 0.02
	done
	if _sb_alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null || true
		deadline=$(($(_sb_now_ms) + 2000))
		while _sb_alive "$pid" && (($(_sb_now_ms) < deadline)); do
			sleep 0.02
		done
	fi
	wait "$pid" 2>/dev/null || true
}

# Stop a process: SIGTERM, then SIGKILL after TIMEOUT_S (default 5).
sb_stop() {
	_sb_terminate "$1" TERM "${2:-5}"
}

# Print a free TCP port on 127.0.0.1, below the ephemeral port range.
sb_port() {
	local lo hi base span p i
	_sb_require_init
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
	if ((lo > 11000)); then
		base=10000 span=$((lo - 10000))
	else
		base=$((hi + 1)) span=$((65535 - hi))
	fi
	for ((i = 0; i < 200; i++)); do
		p=$((base + (RANDOM * 32768 + RANDOM) % span))
		grep -qx "$p" "$SB_WORK/ports" && continue
		[[ -z $(ss -Htan "( sport = :$p )") ]] || continue
		echo "$p" >>"$SB_WORK/ports"
		echo "$p"
		return 0
	done
	sb_fail "no free port found"
}

# --- agents ---

# NAME as a variable-name part: node-a -> NODE_A.
_sb_var() {
	local v=${1^^}
	echo "${v//[^A-Z0-9_]/_}"
}

# Print FIELD (pid url port log flows bpffs cgroup policy) of agent NAME.
sb_agent() {
	local name=$1 field=$2 line _n pid port bpffs cgroup policy
	line=$(awk -v n="$name" '$1 == n { l = $0 } END { print l }' \
		"$SB_WORK/agents")
	[[ -n $line ]] || sb_fail "no agent '$name' was started"
	read -r _n pid port bpffs cgroup policy <<<"$line"
	case $field in
	pid) echo "$pid" ;;
	port) echo "$port" ;;
	url) echo "http://127.0.0.1:$port" ;;
	log) echo "$SB_WORK/$name.log" ;;
	flows) echo "$SB_WORK/$name.flows.jsonl" ;;
	bpffs) echo "$bpffs" ;;
	cgroup) echo "$cgroup" ;;
	policy) echo "$policy" ;;
	*) sb_fail "sb_agent: unknown field '$field'" ;;
	esac
}

_sb_agent_show_log() {
	echo "  --- agent $1 log ($2) ---" >&2
	tail -n 60 "$2" 2>/dev/null | sed 's/^/  | /' >&2 || true
}

# Start build/sockmesh-agent as NAME and wait for /readyz:
#   sb_agent_start NAME POLICY [--cgroup REL] [--bpffs DIR] [--timeout S]
#                  [--no-wait] [--] [extra agent args...]
# --cgroup defaults to $SB_CGROOT (a sub-subtree like $SB_CGROOT/node-a
# for two-node tests), --bpffs to $SB_WORK/bpffs/NAME (so an agent named
# "sockmesh" pins under $SB_BPFFS). A restart under the same NAME keeps
# its cgroup and bpffs. Sets SB_AGENT_<NAME>_{PID,URL,PORT,LOG,FLOWS,
# BPFFS,CGROUP}; sb_agent NAME FIELD reads the same from any subshell.
sb_agent_start() {
	local name=$1 policy=$2 cg="" bpffs="" timeout=15 wait=1
	local bin=$SB_BUILD/sockmesh-agent port log flows url pid v deadline
	_sb_require_init
	_sb_check_name "$name"
	shift 2
	while (($#)); do
		case $1 in
		--cgroup) cg=$2; shift 2 ;;
		--bpffs) bpffs=$2; shift 2 ;;
		--timeout) timeout=$2; shift 2 ;;
		--no-wait) wait=0; shift ;;
		--) shift; break ;;
		*) break ;;
		esac
	done
	[[ -x $bin ]] || sb_fail "agent not built: $bin (run: make)"
	[[ -r $policy ]] || sb_fail "no policy file '$policy'"
	policy=$(realpath "$policy")

	# A restart keeps what the earlier start of NAME used.
	if grep -q "^$name " "$SB_WORK/agents"; then
		[[ -n $cg ]] || cg=$(sb_agent "$name" cgroup) || exit 1
		[[ -n $bpffs ]] || bpffs=$(sb_agent "$name" bpffs) || exit 1
	fi
	cg=${cg:-$SB_CGROOT}
	bpffs=${bpffs:-$SB_WORK/bpffs/$name}
	[[ $cg == "$SB_CGROOT" || $cg == "$SB_CGROOT"/* ]] ||
		sb_fail "agent cgroup '$cg' is outside $SB_CGROOT"
	[[ $bpffs == "$SB_WORK/bpffs/"* ]] ||
		sb_fail "agent bpffs '$bpffs' is outside $SB_WORK/bpffs"
	sb_cgroup "${cg#"$SB_CGROOT"}" >/dev/null
	mkdir -p "$bpffs"

	port=$(sb_port) || exit 1
	log=$SB_WORK/$name.log
	flows=$SB_WORK/$name.flows.jsonl
	url=http://127.0.0.1:$port
	(
		echo "$BASHPID" >"$SB_CGMOUNT$SB_CGROOT-host/cgroup.procs" ||
			exit 126
		_sb_close_fds
		exec "$bin" --policy "$policy" --cgroup "$cg" --bpffs "$bpffs" \
			--listen "127.0.0.1:$port" --flow-log "$flows" "$@" \
			</dev/null >>"$log" 2>&1
	) &
	pid=$!
	echo "$name $pid $port $bpffs $cg $policy" >>"$SB_WORK/agents"
	v=$(_sb_var "$name")
	export "SB_AGENT_${v}_PID=$pid" "SB_AGENT_${v}_URL=$url" \
		"SB_AGENT_${v}_PORT=$port" "SB_AGENT_${v}_LOG=$log" \
		"SB_AGENT_${v}_FLOWS=$flows" "SB_AGENT_${v}_BPFFS=$bpffs" \
		"SB_AGENT_${v}_CGROUP=$cg"
	sb_log "agent $name: pid $pid, $url, cgroup $cg, bpffs $bpffs"
	((wait)) || return 0

	deadline=$(($(_sb_now_ms) + $(_sb_secs_to_ms "$timeout")))
	until curl -fsS --max-time 1 -o /dev/null "$url/readyz" 2>/dev/null; do
		if ! _sb_alive "$pid"; then
			local rc=0
			wait "$pid" 2>/dev/null || rc=$?
			_sb_agent_show_log "$name" "$log"
			sb_fail "agent $name exited (status $rc) before it was ready"
		fi
		if (($(_sb_now_ms) > deadline)); then
			_sb_agent_show_log "$name" "$log"
			echo "  readyz: $(curl -sS --max-time 1 "$url/readyz" 2>&1)" >&2
			sb_fail "agent $name not ready after ${timeout}s"
		fi
		sleep 0.05
	done
}

# Stop agent NAME: SIGTERM, SIGKILL after TIMEOUT_S (default 10).
sb_agent_stop() {
	local pid
	pid=$(sb_agent "$1" pid) || exit 1
	_sb_terminate "$pid" TERM "${2:-10}"
}

# Kill agent NAME with SIGKILL (what a crash looks like to the kernel).
sb_agent_kill() {
	local pid
	pid=$(sb_agent "$1" pid) || exit 1
	_sb_terminate "$pid" KILL 5
}

# --- metrics ---

# Sum the samples of metric NAME whose label text ("a=\"x\",b=\"y\"")
# matches the extended regex LABELS (all if empty), reading Prometheus
# text on stdin; prints 0 if there is none.
sb_prom_sum() {
	LC_ALL=C awk -v n="$1" -v re="${2:-}" '
		/^#/ || substr($0, 1, length(n)) != n { next }
		{
			rest = substr($0, length(n) + 1)
			c = substr(rest, 1, 1)
			if (c == "{") {
				if (!match(rest, /}[ \t]/))
					next
				labels = substr(rest, 2, RSTART - 2)
				v = substr(rest, RSTART + 2)
			} else if (c == " " || c == "\t") {
				labels = ""
				v = rest
			} else {
				next
			}
			if (re != "" && labels !~ re)
				next
			split(v, f, " ")
			sum += f[1]
		}
		END { printf "%.15g\n", sum + 0 }'
}

# Print the value of metric NAME from SRC (an agent name, its base URL or
# a /metrics URL), summed over the samples whose labels match LABELS (an
# extended regex, e.g. 'src="frontend".*verdict="denied"'); 0 if absent.
sb_metric() {
	local src=$1 name=$2 re=${3:-} url body
	if [[ $src == http://* || $src == https://* ]]; then
		url=$src
	else
		url=$(sb_agent "$src" url) || exit 1
	fi
	[[ $url == */metrics ]] || url=$url/metrics
	body=$(curl -fsS --max-time 5 "$url") || sb_fail "GET $url failed"
	sb_prom_sum "$name" "$re" <<<"$body"
}

# True if metric NAME{LABELS} of SRC is >= MIN (for sb_wait_for).
sb_metric_ge() {
	local v
	v=$(sb_metric "$1" "$2" "$3") || return 1
	awk -v a="$v" -v b="$4" 'BEGIN { exit !(a + 0 >= b + 0) }'
}

# --- cleanup ---

_SB_DEFER=()

# Run CMD... first thing at cleanup, newest first (tests must not set
# their own EXIT trap: it would replace the sandbox's).
sb_defer() {
	local q
	printf -v q '%q ' "$@"
	_SB_DEFER+=("$q")
}

# SIGKILL every process in cgroup DIR and below, wait until it is empty.
_sb_cgroup_kill() {
	local dir=$1 procs p deadline
	[[ -d $dir ]] || return 0
	if [[ -e $dir/cgroup.kill ]]; then
		echo 1 >"$dir/cgroup.kill" 2>/dev/null || true
	else
		while IFS= read -r procs; do
			while read -r p; do
				kill -KILL "$p" 2>/dev/null || true
			done <"$procs"
		done < <(find "$dir" -name cgroup.procs)
	fi
	deadline=$(($(_sb_now_ms) + 10000))
	while grep -q '^populated 1' "$dir/cgroup.events" 2>/dev/null; do
		if (($(_sb_now_ms) > deadline)); then
			echo "sandbox: processes left in $dir" >&2
			return 0
		fi
		sleep 0.02
	done
}

# rmdir cgroup DIR and everything below it, deepest first (bounded retry).
_sb_cgroup_rmtree() {
	local dir=$1 d i
	[[ -d $dir ]] || return 0
	for ((i = 0; i < 50; i++)); do
		while IFS= read -r d; do
			rmdir "$d" 2>/dev/null || true
		done < <(find "$dir" -depth -type d 2>/dev/null)
		[[ -d $dir ]] || return 0
		sleep 0.05
	done
	echo "sandbox: cannot remove cgroup $dir" >&2
}

# Detach bpf links pinned under DIR (a bpffs), then unpin everything.
_sb_bpffs_unpin() {
	local dir=$1 f
	[[ -d $dir ]] || return 0
	if command -v bpftool >/dev/null 2>&1; then
		while IFS= read -r -d '' f; do
			bpftool -n link show pinned "$f" >/dev/null 2>&1 &&
				bpftool -n link detach pinned "$f" >/dev/null 2>&1
		done < <(find "$dir" -type f -print0 2>/dev/null)
	fi
	find "$dir" -mindepth 1 -delete 2>/dev/null || true
}

# True if DIR is a mount point (per /proc/self/mountinfo).
_sb_is_mount() {
	awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' \
		/proc/self/mountinfo
}

# Kill what runs in netns NS, then delete it.
_sb_netns_del() {
	local ns=$1 p
	[[ -e /run/netns/$ns ]] || return 0
	for p in $(ip netns pids "$ns" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null || true
	done
	ip netns del "$ns" 2>/dev/null ||
		echo "sandbox: cannot delete netns $ns" >&2
}

# Copy the work dir's files (not the bpffs) to /tmp/sockmesh-keep-<id>.
_sb_keep() {
	local dest=/tmp/sockmesh-keep-$SB_ID
	mkdir -p "$dest" || return 0
	find "$SB_WORK" -mindepth 1 -maxdepth 1 ! -name bpffs \
		-exec cp -a {} "$dest"/ \; 2>/dev/null || true
	find "$SB_WORK/bpffs" >"$dest/bpffs.list" 2>/dev/null || true
	echo "sandbox: SB_KEEP=1: artefacts of $SB_ID kept in $dest" >&2
}

# Remove everything the sandbox made; idempotent and never fails. RC is
# the test's exit status (artefacts are kept only when it is non-zero).
sb_cleanup() {
	local rc=${1:-0} name pid _p bpffs cg _pol ns me i
	[[ -n ${SB_ID:-} && -z ${_SB_CLEANED:-} ]] || return 0
	[[ ${_SB_OWNER:-} == "$BASHPID" ]] || return 0
	_SB_CLEANED=1
	trap '' HUP INT TERM
	for ((i = ${#_SB_DEFER[@]} - 1; i >= 0; i--)); do
		eval "${_SB_DEFER[i]}" || true
	done

	if [[ -n ${SB_CGMOUNT:-} && -d $SB_WORK ]]; then
		# Agents first, while their pins are still there to uninstall.
		while read -r name pid _p bpffs cg _pol; do
			[[ -n $pid ]] || continue
			grep -qx "0::$SB_CGROOT-host" "/proc/$pid/cgroup" \
				2>/dev/null && _sb_terminate "$pid" TERM 10
		done <"$SB_WORK/agents"
		if [[ -x $SB_BUILD/sockmesh ]]; then
			while read -r name pid _p bpffs cg _pol; do
				[[ -d $bpffs ]] || continue
				timeout 20 "$SB_BUILD/sockmesh" uninstall \
					--bpffs "$bpffs" --cgroup "$cg" \
					>>"$SB_WORK/cleanup.log" 2>&1 || true
			done < <(sort -u -k4,4 "$SB_WORK/agents")
		fi
		# Background jobs of this shell are the test's too.
		for pid in $(jobs -p); do
			kill -TERM "$pid" 2>/dev/null || true
		done
		[[ ${SB_KEEP:-0} != 1 || $rc == 0 ]] || _sb_keep
		_sb_is_mount "$SB_WORK/bpffs" && _sb_bpffs_unpin "$SB_WORK/bpffs"

		# Leave the sandbox's cgroups if the test moved this shell there.
		me=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
		if [[ $me == "$SB_CGROOT" || $me == "$SB_CGROOT"[-/]* ]]; then
			echo "$BASHPID" >"$SB_CGMOUNT${_SB_ORIG_CG:-}/cgroup.procs" \
				2>/dev/null || true
		fi
		_sb_cgroup_kill "$SB_CGMOUNT$SB_CGROOT"
		_sb_cgroup_kill "$SB_CGMOUNT$SB_CGROOT-host"
	fi

	for ns in $( (cat "$SB_WORK/netns" 2>/dev/null
		ip netns list 2>/dev/null | awk '{ print $1 }' |
			grep -F "$SB_ID-") | sort -u); do
		[[ $ns == "$SB_ID"-* ]] && _sb_netns_del "$ns"
	done

	if [[ -n ${SB_CGMOUNT:-} ]]; then
		_sb_cgroup_rmtree "$SB_CGMOUNT$SB_CGROOT"
		_sb_cgroup_rmtree "$SB_CGMOUNT$SB_CGROOT-host"
	fi
	if _sb_is_mount "$SB_WORK/bpffs"; then
		umount "$SB_WORK/bpffs" 2>/dev/null ||
			umount -l "$SB_WORK/bpffs" 2>/dev/null ||
			echo "sandbox: cannot unmount $SB_WORK/bpffs" >&2
	fi
	rm -rf --one-file-system "$SB_WORK" 2>/dev/null || true
	sb_leaks "$SB_ID" >&2 || echo "sandbox: $SB_ID left the above" >&2
	return 0
}

_sb_on_exit() {
	local rc=$?
	if [[ ${_SB_OWNER:-} == "$BASHPID" ]]; then
		sb_cleanup "$rc" || true
	fi
	exit "$rc"
}

_sb_on_signal() {
	echo "sandbox: interrupted, cleaning up" >&2
	exit "$1"
}

# --- leak checks (also used by tests/run) ---

# Print what is left of sandboxes named PREFIX (an id, or "smt-<tag>"):
# netns, cgroups, mounts and work dirs; returns 1 if anything is.
sb_leaks() {
	local p=$1 cgm found=0 x
	cgm=$(sb_cgroup2_mount)
	for x in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
		[[ $x == "$p" || $x == "$p"-* ]] || continue
		echo "leak: netns $x"
		found=1
	done
	if [[ -n $cgm ]]; then
		for x in "$cgm/$p" "$cgm/$p"-*; do
			[[ -d $x ]] || continue
			echo "leak: cgroup $x"
			found=1
		done
	fi
	while read -r x; do
		[[ $x == "/tmp/$p"/* || $x == "/tmp/$p"-*/* ]] || continue
		echo "leak: mount $x"
		found=1
	done < <(awk '{ print $5 }' /proc/self/mountinfo)
	for x in "/tmp/$p" "/tmp/$p"-*; do
		[[ -e $x ]] || continue
		echo "leak: dir $x"
		found=1
	done
	return $((found))
}

# Remove whatever sb_leaks PREFIX reports: the last resort after a test
# was killed (SIGKILL skips its own cleanup).
sb_reap() {
	local p=$1 cgm x
	cgm=$(sb_cgroup2_mount)
	if [[ -n $cgm ]]; then
		for x in "$cgm/$p" "$cgm/$p"-*; do
			[[ -d $x ]] && _sb_cgroup_kill "$x"
		done
	fi
	while read -r x; do
		[[ $x == "/tmp/$p"/* || $x == "/tmp/$p"-*/* ]] || continue
		_sb_bpffs_unpin "$x"
		umount "$x" 2>/dev/null || umount -l "$x" 2>/dev/null || true
	done < <(awk '{ print $5 }' /proc/self/mountinfo | sort -r)
	for x in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
		[[ $x == "$p" || $x == "$p"-* ]] && _sb_netns_del "$x"
	done
	if [[ -n $cgm ]]; then
		for x in "$cgm/$p" "$cgm/$p"-*; do
			_sb_cgroup_rmtree "$x"
		done
	fi
	for x in "/tmp/$p" "/tmp/$p"-*; do
		[[ -e $x ]] && rm -rf --one-file-system "$x"
	done
	return 0
}
