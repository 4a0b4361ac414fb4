#!/bin/bash
# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# Deployment: `make install` into a DESTDIR puts every file where the
# systemd unit expects it (PREFIX=/usr/local, and another PREFIX), the
# unit passes systemd-analyze verify, `make uninstall` removes what
# install put there; the agent tells systemd READY=1 only once it
# enforces, and STOPPING=1 on SIGTERM (what Type=notify relies on); the
# DaemonSet mounts its ConfigMap where --policy points, and the policy in
# the ConfigMap passes `sockmesh check`.
#
# Installs with `make -o all`: the build is already there (other tests
# use it), and a rebuild here could race another make in the same tree.
set -euo pipefail
# shellcheck source=tests/lib/sandbox.sh
source "$(dirname "$0")/../lib/sandbox.sh"

sb_need_root
sb_need_cmd make python3 curl
sb_need_agent
sb_need_build "$SB_BUILD/sockmesh"
sb_init

UNIT=etc/systemd/system/sockmesh-agent.service

# make install with PREFIX into DESTDIR DIR.
install_to() {
	make -s -C "$SB_ROOT" -o all OUTPUT="$SB_BUILD" PREFIX="$1" \
		DESTDIR="$2" install >"$SB_WORK/make.log" 2>&1 ||
		sb_fail "make install: $(cat "$SB_WORK/make.log")"
}

# The command path of unit key KEY (ExecStart, ...), its prefix stripped.
exec_path() {
	awk -F= -v k="$1" '$1 == k { sub(/^[-@:+!]+/, "", $2); split($2, w, " ");
		print w[1] }' "$2"
}

# Print "PATH MODE" of every file under DIR, relative to it.
tree_of() {
	(cd "$1" && find . -type f -printf '%P %m\n' | sort)
}

# --- PREFIX=/usr/local ---

D=$SB_WORK/dest
install_to /usr/local "$D"
sb_assert_eq "make install: the files and their modes" \
"etc/sockmesh/policy.yaml.example 644
$UNIT 644
usr/local/bin/sockmesh 755
usr/local/include/sockmesh/sockmesh.h 644
usr/local/sbin/sockmesh-agent 755" "$(tree_of "$D")"

u=$D/$UNIT
sb_assert_eq "ExecStart is the installed agent" /usr/local/sbin/sockmesh-agent \
	"$(exec_path ExecStart "$u")"
sb_assert_eq "ExecStartPre is the installed CLI" /usr/local/bin/sockmesh \
	"$(exec_path ExecStartPre "$u")"
for k in ExecStart ExecStartPre ExecReload; do
	p=$(exec_path "$k" "$u")
	if [[ $p == /usr/local/* ]]; then
		[[ -x $D$p ]] || sb_fail "$k: $p is not installed"
	else
		[[ -x $p ]] || sb_fail "$k: $p does not exist on this system"
	fi
done
echo "ok: every command of the unit is there"
grep -qx 'Type=notify' "$u" || sb_fail "the unit does not wait for READY=1"
grep -qx 'Restart=on-failure' "$u" || sb_fail "the unit does not restart"
# shellcheck disable=SC2016 # $MAINPID is systemd's, not ours
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$u" ||
	sb_fail "the unit's reload is not SIGHUP"
policy=$(awk -F= '$1 == "ExecStart" { print $2 }' "$u" |
	sed -n 's/.*--policy \([^ ]*\).*/\1/p')
sb_assert_eq "the unit's policy sits beside the installed example" \
	/etc/sockmesh/policy.yaml.example "$policy.example"
if command -v systemd-analyze >/dev/null; then
	# With the paths moved into DESTDIR, so that the commands exist.
	sed "s|/usr/local/|$D/usr/local/|g" "$u" >"$SB_WORK/sockmesh-agent.service"
	systemd-analyze verify "$SB_WORK/sockmesh-agent.service" \
		>"$SB_WORK/verify.log" 2>&1 ||
		sb_fail "systemd-analyze verify: $(cat "$SB_WORK/verify.log")"
	echo "ok: systemd-analyze verify"
fi
"$D/usr/local/bin/sockmesh" check "$D/etc/sockmesh/policy.yaml.example" \
	>/dev/null || sb_fail "the installed example does not pass check"
echo "ok: the installed CLI checks the installed example"

make -s -C "$SB_ROOT" -o all OUTPUT="$SB_BUILD" PREFIX=/usr/local \
	DESTDIR="$D" uninstall >/dev/null
sb_assert_eq "make uninstall: no file left" "" "$(tree_of "$D")"

# --- another PREFIX ---

D2=$SB_WORK/dest2
install_to /opt/sockmesh "$D2"
sb_assert_eq "PREFIX=/opt/sockmesh: ExecStart follows" \
	/opt/sockmesh/sbin/sockmesh-agent "$(exec_path ExecStart "$D2/$UNIT")"
sb_assert_eq "PREFIX=/opt/sockmesh: ExecStartPre follows" \
	/opt/sockmesh/bin/sockmesh "$(exec_path ExecStartPre "$D2/$UNIT")"
[[ -x $D2/opt/sockmesh/sbin/sockmesh-agent ]] ||
	sb_fail "the agent is not under the other PREFIX"

# --- readiness for Type=notify ---

# A stand-in for systemd's notify socket: every datagram, one a line.
cat >"$SB_WORK/notify.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
print("ready", flush=True)
end = time.time() + float(sys.argv[2])
with open(sys.argv[3], "a") as out:
    while time.time() < end:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            continue
        out.write(msg.replace("\n", " ").strip() + "\n")
        out.flush()
EOF
sb_run "" "" python3 "$SB_WORK/notify.py" "$SB_WORK/notify.sock" 120 \
	"$SB_WORK/notify.log" >/dev/null
sb_wait_ready "$SB_PID" 10
printf 'apiVersion: sockmesh/v1\nservices: {}\nrules: []\n' \
	>"$SB_WORK/policy.yaml"
NOTIFY_SOCKET=$SB_WORK/notify.sock sb_agent_start sockmesh \
	"$SB_WORK/policy.yaml" --no-wait
sb_wait_for "READY=1" 120 grep -q 'READY=1' "$SB_WORK/notify.log"
sb_assert_eq "at READY=1 /readyz is 200" 200 "$(curl -sS -o /dev/null \
	-w '%{http_code}' "$(sb_agent sockmesh url)/readyz")"
sb_agent_stop sockmesh
sb_wait_for "STOPPING=1" 10 grep -q 'STOPPING=1' "$SB_WORK/notify.log"
echo "ok: STOPPING=1 on SIGTERM"

# --- Kubernetes ---

if python3 -c 'import yaml' 2>/dev/null; then
	python3 - "$SB_ROOT/deploy/daemonset.yaml" "$SB_WORK/cm-policy.yaml" \
		>"$SB_WORK/k8s.log" 2>&1 <<'EOF' || sb_fail "daemonset.yaml: $(cat "$SB_WORK/k8s.log")"
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
cm, ds = docs["ConfigMap"], docs["DaemonSet"]
pod = ds["spec"]["template"]["spec"]
c = pod["containers"][0]
args = dict(a.lstrip("-").split("=", 1) for a in c["args"])
policy = args["policy"]
mounts = {m["name"]: m for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
# --policy is a key of the ConfigMap, in the directory it is mounted on
# (the agent watches that directory for the kubelet's ..data swap).
cmvol = [n for n, v in vols.items()
         if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
assert cmvol, "no volume of the ConfigMap"
d, key = policy.rsplit("/", 1)
assert mounts[cmvol[0]]["mountPath"] == d, "--policy is not in the ConfigMap mount"
assert key in cm["data"], "--policy names no key of the ConfigMap"
assert "subPath" not in mounts[cmvol[0]], "a subPath mount is never updated"
open(sys.argv[2], "w").write(cm["data"][key])
# The pins outlive the pod: bpffs from the host, mounts propagated.
bpf = [n for n, v in vols.items() if v.get("hostPath", {}).get("path") == "/sys/fs/bpf"]
assert bpf and mounts[bpf[0]]["mountPath"] == "/sys/fs/bpf"
assert mounts[bpf[0]].get("mountPropagation") == "Bidirectional"
cg = [n for n, v in vols.items() if v.get("hostPath", {}).get("path") == "/sys/fs/cgroup"]
assert cg and mounts[cg[0]]["mountPath"] == "/sys/fs/cgroup"
assert c["securityContext"]["privileged"] is True
port = int(args["listen"].rsplit(":", 1)[1])
assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
assert pod["hostPID"] is True
EOF
	"$SB_BUILD/sockmesh" check "$SB_WORK/cm-policy.yaml" >/dev/null ||
		sb_fail "the ConfigMap's policy does not pass check"
	echo "ok: the DaemonSet mounts its ConfigMap where --policy points;" \
		"the policy passes check"
else
	echo "note: no python3 yaml module; DaemonSet checks left out"
fi
if ! grep -q '^ENTRYPOINT \["/usr/local/sbin/sockmesh-agent"\]' \
	"$SB_ROOT/deploy/Dockerfile" ||
	! grep -q 'build/sockmesh-agent /usr/local/sbin/' \
		"$SB_ROOT/deploy/Dockerfile"; then
	sb_fail "the image's entrypoint is not where it copies the agent"
fi
echo "ok: the image's entrypoint is the agent it copies"
