#!/bin/sh
# containerd with the rund shim, inside the rig's L1 (busybox sh), run by ContainerdInRigTests
# through scripts/rig-containerd (containerd is running; ctr talks to it). Prints one line per
# check: CHECK <name> PASS|FAIL <details>.
#   containerd-checks-in-l1.sh IMAGE_ARCHIVE PTYRUN
archive=$1 ptyrun=$2
image=docker.io/rundtest/busybox:1
rund=io.containerd.rund.v2
work=/tmp/checks
mkdir -p "$work"

# Where the script is, on stderr with L1's uptime: a hang shows in the rig's stderr tail.
step() { echo "checks: $(cut -d' ' -f1 /proc/uptime)s $*" >&2; }

check() { # name status details...
    name=$1 ok=$2
    shift 2
    if [ "$ok" = 0 ]; then echo "CHECK $name PASS $*"; else echo "CHECK $name FAIL $*"; fi
}
oneline() { tr '\n' '|' <"$1" | tr -d '\r' | cut -c1-600; }

# Shim processes still running (busybox has no pgrep).
shims() {
    for cmdline in /proc/[0-9]*/cmdline; do
        { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -q '^[^ ]*containerd-shim-rund-v2 ' && { p=${cmdline%/cmdline}; echo "${p#/proc/}"; }
    done
}
shim_of() { # container id
    for cmdline in /proc/[0-9]*/cmdline; do
        { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -q "^[^ ]*containerd-shim-rund-v2 .*-id $1 " && { p=${cmdline%/cmdline}; echo "${p#/proc/}"; }
    done
}
task_status() { timeout 30 ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }
wait_status() { # id status seconds
    i=0
    while [ "$i" -lt "$3" ]; do
        [ "$(task_status "$1")" = "$2" ] && return 0
        sleep 1
        i=$((i + 1))
    done
    return 1
}
pool_used() { df -k /var/lib/rund-l1/writable 2>/dev/null | awk 'NR == 2 { print $3 }'; }

# --- import -------------------------------------------------------------------------------------
step "import"
ctr image import "$archive" >"$work/import" 2>&1
check import $? "$(oneline "$work/import")"

# --- ctr run --rm: output and exit status ---------------------------------------------------------
step "ctr run --rm"
timeout 300 ctr run --rm --runtime $rund $image t1 sh -c 'echo hi; exit 3' >"$work/t1" 2>&1
status=$?
[ "$status" = 3 ] && [ "$(cat "$work/t1")" = hi ]
check run-exit $? "status=$status output=$(oneline "$work/t1")"
pool_baseline=$(pool_used)

# --- a long-running task: exec, ps, metrics, pause/resume, SIGTERM to a trap, delete -----------
step "a long-running task"
timeout 300 ctr run -d --runtime $rund --log-uri file://$work/long.log $image long \
    sh -c 'trap "echo got-term; exit 0" TERM; echo started; while :; do sleep 1; done' >"$work/long-run" 2>&1
status=$?
wait_status long RUNNING 60
check long-running $? "run -d status=$status $(oneline "$work/long-run") task=$(task_status long)"

timeout 120 ctr task exec --exec-id e1 long sh -c 'echo from-exec; exit 7' >"$work/exec" 2>&1
status=$?
[ "$status" = 7 ] && [ "$(cat "$work/exec")" = from-exec ]
check exec $? "status=$status output=$(oneline "$work/exec")"

timeout 60 ctr task ps long >"$work/ps" 2>&1
status=$?
[ "$status" = 0 ] && awk 'NR > 1 && $1 ~ /^[0-9]+$/ { found = 1 } END { exit !found }' "$work/ps"
check ps $? "status=$status $(oneline "$work/ps")"

timeout 60 ctr task metrics long >"$work/metrics" 2>&1
status=$?
[ "$status" = 0 ] && grep -qi 'memory' "$work/metrics"
check metrics $? "status=$status $(oneline "$work/metrics")"

timeout 60 ctr task pause long >"$work/pause" 2>&1
paused=$(task_status long)
timeout 60 ctr task resume long >>"$work/pause" 2>&1
resumed=$(task_status long)
timeout 120 ctr task exec --exec-id e2 long echo after-resume >"$work/after" 2>&1
[ "$paused" = PAUSED ] && [ "$resumed" = RUNNING ] && [ "$(cat "$work/after")" = after-resume ]
check pause-resume $? "paused=$paused resumed=$resumed exec=$(oneline "$work/after") $(oneline "$work/pause")"

timeout 60 ctr task kill -s SIGTERM long >"$work/kill" 2>&1
wait_status long STOPPED 60
stopped=$?
grep -q got-term "$work/long.log"
check sigterm-trap $((stopped + $?)) "task=$(task_status long) log=$(oneline "$work/long.log") $(oneline "$work/kill")"

timeout 60 ctr task delete long >"$work/delete" 2>&1 && timeout 60 ctr container delete long >>"$work/delete" 2>&1
status=$?
[ "$status" = 0 ] && [ -z "$(shim_of long)" ]
check delete $? "status=$status $(oneline "$work/delete")"

# --- ctr run -t: a terminal, its size and a resize ------------------------------------------------
step "ctr run -t"
# ctr sends the terminal's size with ResizePty once the task has started (on Linux it puts no
# consoleSize in config.json), so the process may start at the default 24x80 and get 30x100 a
# moment later: it waits for it. The resize comes once the process shows it runs (READY-2: the
# command text only has READY-$((1+1)), so an echo of it cannot trigger it).
timeout 300 "$ptyrun" 30x100 --resize-on READY-2 40x120 -- \
    ctr run -t --rm --runtime $rund $image tty1 sh -c 'i=0; while [ "$(stty size)" = "24 80" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; stty size; tty; echo READY-$((1+1)); i=0; while [ $i -lt 600 ]; do s=$(stty size); [ "$s" != "30 100" ] && break; sleep 0.1; i=$((i+1)); done; stty size' \
    >"$work/tty" 2>&1
status=$?
tr -d '\r' <"$work/tty" >"$work/tty.clean"
[ "$status" = 0 ] && [ "$(sed -n 1p "$work/tty.clean")" = "30 100" ] && [ "$(tail -n 1 "$work/tty.clean")" = "40 120" ] && grep -q '^/dev/pts/' "$work/tty.clean"
check tty $? "status=$status output=$(oneline "$work/tty.clean")"

# --- two sandboxes at once, isolated ---------------------------------------------------------------
step "two sandboxes"
for name in iso-a iso-b; do
    timeout 300 ctr run -d --runtime $rund $image $name sh -c "echo $name > /data/who; while :; do sleep 1; done" >"$work/$name" 2>&1 &
done
wait
wait_status iso-a RUNNING 120 && wait_status iso-b RUNNING 120
running=$?
a=$(timeout 120 ctr task exec --exec-id r1 iso-a sh -c 'cat /data/who; cat /proc/sys/kernel/random/boot_id' 2>&1 | tr '\n' ' ')
b=$(timeout 120 ctr task exec --exec-id r1 iso-b sh -c 'cat /data/who; cat /proc/sys/kernel/random/boot_id' 2>&1 | tr '\n' ' ')
# Each sees only its own write, and each runs its own kernel (a different boot id).
[ "$running" = 0 ] && [ "${a%% *}" = iso-a ] && [ "${b%% *}" = iso-b ] && [ "${a#* }" != "${b#* }" ] && [ "$(shim_of iso-a)" != "$(shim_of iso-b)" ]
check two-sandboxes $? "a=[$a] b=[$b] shims=$(shim_of iso-a),$(shim_of iso-b) run-a=[$(oneline "$work/iso-a")] run-b=[$(oneline "$work/iso-b")]"
for name in iso-a iso-b; do
    step "removing $name"
    timeout 60 ctr task kill -s SIGKILL $name >/dev/null 2>&1
    wait_status $name STOPPED 60
    timeout 120 ctr task delete $name >/dev/null 2>&1 || step "ctr task delete $name failed or timed out"
    timeout 60 ctr container delete $name >/dev/null 2>&1
done

# --- the shim killed with SIGKILL mid-run, then ctr task delete ------------------------------------
step "the shim killed"
timeout 300 ctr run -d --runtime $rund $image crash sleep 1000 >"$work/crash" 2>&1
wait_status crash RUNNING 60
pid=$(shim_of crash)
step "SIGKILL to shim $pid"
if [ -n "$pid" ]; then kill -9 "$pid"; fi
sleep 3
timeout 60 ctr task delete crash >>"$work/crash" 2>&1
timeout 60 ctr container delete crash >>"$work/crash" 2>&1
sleep 1
[ -n "$pid" ] && [ -z "$(shim_of crash)" ] && ! ctr task ls 2>/dev/null | grep -q crash
check sigkill-shim $? "shim=$pid $(oneline "$work/crash")"

# --- after all of it: nothing left ---------------------------------------------------------------
step "after all of it"
sleep 2
left_shims=$(shims | tr '\n' ' ')
"${RUND:-rund}" gc --dry-run --json >"$work/gc" 2>&1
in_use=$(tr -d ' \n' <"$work/gc" | sed -n 's/.*"inUse":\[\([^]]*\)\].*/\1/p')
returned=$(tr -d ' \n' <"$work/gc" | sed -n 's/.*"returned":\[\([^]]*\)\].*/\1/p')
sockets=$(ls /run/containerd/s 2>/dev/null | tr '\n' ' ')
mounts=$(grep -E ' (overlay|erofs) | /run/containerd-l1/state/' /proc/mounts | tr '\n' '|')
used=$(pool_used)
[ -z "$left_shims" ] && [ -z "$in_use" ] && [ -z "$returned" ] && [ -z "$sockets" ] && [ -z "$mounts" ] \
    && [ -n "$used" ] && [ -n "$pool_baseline" ] && [ "$used" -le $((pool_baseline + 2048)) ]
check no-leaks $? "shims=[$left_shims] cgroups-in-use=[$in_use] dead-held=[$returned] sockets=[$sockets] mounts=[$mounts] pool-kib=$pool_baseline->$used gc=$(oneline "$work/gc")"

# A guest the emulator crashed or stalled, as the shim logged it: a failed check may show only its
# consequence ("task not found"), and this tells the harness that boot may be the emulator's fault.
grep -E 'triple fault on vCPU|guest made no progress' /var/log/containerd.log | cut -c1-300 | sed 's/^/EMULATOR-FAULT containerd.log: /'
echo "--- containerd log tail"
tail -25 /var/log/containerd.log
exit 0
