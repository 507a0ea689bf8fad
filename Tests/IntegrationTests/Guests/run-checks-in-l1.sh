#!/bin/sh
# RunInRigTests' checks of `rund run`, all in one L1 boot (scripts/rig-run --script sets RUND,
# RUND_ROOT and RUND_AGENT). Prints one line per check:
#   CHECK <name> <PASS|FAIL> <details on one line>
# Usage: run-checks-in-l1.sh IMAGE HOSTILE_AGENT_DIR TEST_BUNDLE
IMAGE=$1 HOSTILE=$2 BUNDLE=$3
work=/tmp/run-checks
mkdir -p "$work"

uptime_now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_now)" 'BEGIN { printf "%.1f", b - a }'; }
oneline() { tr '\n' '|' | cut -c1-400; }
report() {
    echo "CHECK $1 $2 $3"
    echo "run-checks: $1 $2" >&2
}
begin() { echo "run-checks: $1 (at $(uptime_now)s)" >&2; }
# `timeout` execs the program in its own process, so `$RUN ... &` leaves rund's pid in $! (a
# function run in the background would leave a subshell's). Every sandbox gets a stall watchdog:
# a guest that makes no progress for 60 s ends its run with 125 and what its vCPUs were doing,
# instead of holding the check until its limit. `timeout` sends SIGTERM at the limit (rund then
# stops the VM within its 10 s grace) and SIGKILL 30 s later.
RUN="timeout -k 30 240 $RUND run --stall-timeout 60 --image $IMAGE"
rund_run() { $RUN "$@"; }
# No cgroup left held and no staging left behind, as `rund gc` sees it.
gc_clean() {
    gc=$("$RUND" gc --root "$RUND_ROOT" --dry-run 2>&1)
    echo "$gc" | grep -q 'cgroups: would return 0, in use 0' && echo "$gc" | grep -q 'images: would remove 0'
}
# Waits until FILE contains TEXT (a line; a guest console's CR before the newline is ignored), up
# to SECONDS.
wait_for_line() {
    i=0
    while [ $i -lt $(($3 * 5)) ]; do
        [ -f "$1" ] && tr -d '\r' <"$1" | grep -qx "$2" && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
# What rund may leave behind: mounts, pool cgroups, loop devices, pool space, processes.
snapshot() {
    sort /proc/mounts >"$work/mounts.$1"
    ls /sys/fs/cgroup/rund 2>/dev/null | grep -E '^(pool|sb)-' | sort >"$work/cgroups.$1"
    losetup -a 2>/dev/null | sort >"$work/loops.$1"
    sync
    df -k "$RUND_ROOT/writable" 2>/dev/null | awk 'NR == 2 { print $3 }' >"$work/pool.$1"
}
rund_processes() { ps -o pid,args | grep -v grep | grep "$RUND run" | grep -v "timeout" ; }
# Bytes in FILE other than printable ASCII, newlines and the "…" (e2 80 a6) of a shortened message.
unprintable_bytes() { tr -d '\n\342\200\246' <"$1" | tr -d ' -~' | wc -c | tr -d ' '; }
# A file on one line with anything unprintable shown as '?', so a failing check cannot carry
# escape sequences to whoever reads its details.
visible() { tr '\n' '|' <"$1" | tr -c ' -~|' '?' | cut -c1-400; }

# A hang shows where rund's threads wait (kernel wait channels), once a minute.
watchdog() {
    while sleep 60; do
        echo "run-checks: still running at $(uptime_now)s" >&2
        for pid in $(pidof rund); do
            echo "  rund $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-160)"
            for task in /proc/"$pid"/task/*; do
                echo "    ${task##*/} $(cat "$task/comm") $(cat "$task/wchan" 2>/dev/null) $(cut -d' ' -f3 "$task/stat")"
            done
        done >&2
    done
}
watchdog &
watchdog_pid=$!

# Output and exit status.
begin exit-status
start=$(uptime_now)
out=$(rund_run -- sh -c 'echo hi; exit 3' 2>"$work/basic.err"); status=$?
details="status=$status stdout=$(printf %s "$out" | oneline) took=$(since "$start")s stderr=$(oneline <"$work/basic.err")"
if [ "$out" = hi ] && [ $status = 3 ]; then report exit-status PASS "$details"; else report exit-status FAIL "$details"; fi
# The first run mounted the writable-layer pool and made the cgroup pool's parent: leaks are
# counted from here.
snapshot before

# Environment, working directory and user.
begin env-workdir-user
start=$(uptime_now)
out=$(rund_run --env K=V --env GREETING='hello world' --workdir /tmp --user 1000:1000 -- \
    sh -c 'echo "K=$K"; echo "GREETING=$GREETING"; pwd; id -u; id -g' 2>"$work/env.err"); status=$?
expected=$(printf 'K=V\nGREETING=hello world\n/tmp\n1000\n1000')
details="status=$status stdout=$(printf %s "$out" | oneline) took=$(since "$start")s stderr=$(oneline <"$work/env.err")"
if [ "$out" = "$expected" ] && [ $status = 0 ]; then report env-workdir-user PASS "$details"; else report env-workdir-user FAIL "$details"; fi

# Both guest kernels: the default is rund's own when it is built (the rig carries kernel/guest
# when the host has it), and --kernel stock boots Debian's, loading its modules (pmem included).
begin guest-kernels
start=$(uptime_now)
stock_version=$(cat "$RUND_ROOT/kernel/current/version")
if [ -f "$RUND_ROOT/kernel/guest/vmlinuz" ]; then default_kernel=rund; else default_kernel=stock; fi
default_out=$(rund_run -- sh -c 'uname -r' 2>"$work/kernel-default.err"); default_status=$?
stock_out=$(rund_run --kernel stock -- sh -c 'uname -r; echo ok' 2>"$work/kernel-stock.err"); stock_status=$?
default_release=$(printf '%s\n' "$default_out" | head -n 1) stock_release=$(printf '%s\n' "$stock_out" | head -n 1)
details="default=$default_kernel [$default_status: $(printf %s "$default_out" | oneline)] stock=[$stock_status: $(printf %s "$stock_out" | oneline)] stock-version=$stock_version took=$(since "$start")s stderr=$(cat "$work/kernel-default.err" "$work/kernel-stock.err" | oneline)"
case $default_kernel in
rund) default_ok=$(case $default_release in *-rund) echo yes ;; *) echo no ;; esac) ;;
*) default_ok=$([ "$default_release" = "$stock_version" ] && echo yes || echo no) ;;
esac
if [ $default_status = 0 ] && [ $stock_status = 0 ] && [ "$default_ok" = yes ] && [ "$stock_release" = "$stock_version" ] \
    && [ "$(printf '%s\n' "$stock_out" | tail -n 1)" = ok ]; then
    report guest-kernels PASS "$details"
else
    report guest-kernels FAIL "$details"
fi

# Isolation: two sandboxes of one image at once, each writing the same path; SIGTERM (sent once
# both have written) makes each read back. A third, later run must see the image unchanged.
erofs=$(find "$RUND_ROOT/images" -name rootfs.erofs | head -n 1)
image_sum=$(sha256sum "$erofs" | cut -c1-64)
begin isolation
start=$(uptime_now)
writer='trap "cat /data/mine; ls /data | tr \"\\n\" \" \"; echo; exit 0" TERM
echo "$1" >/data/mine; touch "/data/only-$1"; echo wrote
i=0; while [ $i -lt 150 ]; do sleep 1; i=$((i + 1)); done; echo "no signal came"'
$RUN -- sh -c "$writer" sh first >"$work/iso.first" 2>"$work/iso.first.err" & first=$!
$RUN -- sh -c "$writer" sh second >"$work/iso.second" 2>"$work/iso.second.err" & second=$!
overlap=no
if wait_for_line "$work/iso.first" wrote 200 && wait_for_line "$work/iso.second" wrote 200; then overlap=yes; fi
kill -TERM $first $second 2>/dev/null
wait $first; first_status=$?
wait $second; second_status=$?
third=$(rund_run -- sh -c 'ls /data | tr "\n" " "; echo; if [ -e /data/mine ]; then cat /data/mine; else echo absent; fi' 2>"$work/iso.third.err"); third_status=$?
image_sum_after=$(sha256sum "$erofs" | cut -c1-64)
first_out=$(oneline <"$work/iso.first") second_out=$(oneline <"$work/iso.second")
details="overlap=$overlap first=[$first_status: $first_out] second=[$second_status: $second_out] third=[$third_status: $(printf %s "$third" | oneline)] image-sha-unchanged=$([ "$image_sum" = "$image_sum_after" ] && echo yes || echo no) took=$(since "$start")s stderr=$(cat "$work/iso.first.err" "$work/iso.second.err" "$work/iso.third.err" | oneline)"
if [ $overlap = yes ] && [ "$first_out" = "wrote|first|mine only-first |" ] && [ "$second_out" = "wrote|second|mine only-second |" ] \
    && [ "$third" = "$(printf '\nabsent')" ] && [ $first_status = 0 ] && [ $second_status = 0 ] && [ $third_status = 0 ] \
    && [ "$image_sum" = "$image_sum_after" ]; then
    report isolation PASS "$details"
else
    report isolation FAIL "$details"
fi

# 10 MB of output, intact.
begin large-output
start=$(uptime_now)
# ~30 s when it works; the output has been seen to stall for good (1 run in 4-6), so a shorter limit.
timeout -k 30 120 "$RUND" run --stall-timeout 60 --image "$IMAGE" --console "$work/seq.console" -- seq 1 1400000 \
    >"$work/seq.out" 2>"$work/seq.err"
status=$?
got="$(wc -c <"$work/seq.out" | tr -d ' ') $(sha256sum "$work/seq.out" | cut -c1-64)"
want="$(seq 1 1400000 | wc -c | tr -d ' ') $(seq 1 1400000 | sha256sum | cut -c1-64)"
rm -f "$work/seq.out"
details="status=$status got=[$got] want=[$want] took=$(since "$start")s stderr=$(oneline <"$work/seq.err")"
if [ "$got" = "$want" ] && [ $status = 0 ]; then
    report large-output PASS "$details"
else
    report large-output FAIL "$details"
    echo "run-checks: large-output: the guest's console ends:" >&2
    tail -n 30 "$work/seq.console" >&2
fi

# SIGTERM to rund reaches the process.
begin sigterm
start=$(uptime_now)
$RUN -- sh -c 'trap "echo trapped; exit 7" TERM; echo ready; i=0; while [ $i -lt 150 ]; do sleep 1; i=$((i + 1)); done' \
    >"$work/term.out" 2>"$work/term.err" & pid=$!
ready=no
wait_for_line "$work/term.out" ready 200 && ready=yes
signalled=$(since "$start")
kill -TERM $pid
wait $pid; status=$?
details="status=$status ready=$ready stdout=$(oneline <"$work/term.out") signalled-at=${signalled}s took=$(since "$start")s stderr=$(oneline <"$work/term.err")"
if [ $ready = yes ] && [ $status = 7 ] && grep -qx trapped "$work/term.out"; then report sigterm PASS "$details"; else report sigterm FAIL "$details"; fi

# A hostile agent: each malformed answer must end rund with 125 and one line that is rund's own
# finding (a deadline or a broken connection: with --agent-timeout 48 rund allows each call 12 s),
# not the VM's end when the agent gives up holding the connection 300 s after its frame. All four
# run at once.
begin hostile
start=$(uptime_now)
# A hostile agent's guest that never got as far as its agent listening (rund could not connect,
# or its stall watchdog ended a guest that made no progress, the emulator's L2 stall; CI runs 49
# and 50 met one each) tested nothing of rund's answer handling: said in the check's details, and
# that mode run once more, alone. If the agent was listening, whatever rund said is its verdict.
never_listened() {
    grep -qE 'vsock connect to guest port 1024 timed out|guest made no progress' "$1.err" \
        && ! grep -q 'hostile-agent: listening' "$1.console" 2>/dev/null
}
first_attempt() {
    echo "first-attempt=[$(oneline <"$1.err") console-ends=$(tail -n 3 "$1.console" 2>/dev/null | tr -d '\r' | oneline)] "
}
hostile_run() {
    begun=$(uptime_now)
    timeout -k 30 240 "$RUND" run --agent-timeout 48 --stall-timeout 30 --agent "$HOSTILE/hostile-agent-$1" \
        --image "$IMAGE" --console "$work/hostile.$1.console" -- true >"$work/hostile.$1.out" 2>"$work/hostile.$1.err"
    echo "$? $(since "$begun")" >"$work/hostile.$1.status"
}
runs=""
for mode in bad-header oversized garbage-proto unknown-stream; do
    hostile_run $mode &
    runs="$runs $!"
done
# Not a bare `wait`: the watchdog is a child too.
wait $runs
for mode in bad-header oversized garbage-proto unknown-stream; do
    first=""
    if never_listened "$work/hostile.$mode"; then
        first=$(first_attempt "$work/hostile.$mode")
        hostile_run $mode
    fi
    read -r status took <"$work/hostile.$mode.status"
    # rund's log lines (timestamped, e.g. the cgroup v2 warning) are not its error message.
    lines=$(grep -v ' warning rund\.' "$work/hostile.$mode.err" | grep -c .)
    details="${first}status=$status took=${took}s error-lines=$lines stderr=$(oneline <"$work/hostile.$mode.err")"
    if [ "$status" = 125 ] && [ "$lines" = 1 ] && [ "${took%.*}" -lt 240 ] \
        && grep -qE 'did not answer in time|connection to the guest agent broke' "$work/hostile.$mode.err"; then
        report "hostile-$mode" PASS "$details"
    else
        report "hostile-$mode" FAIL "$details"
    fi
done
left=$(rund_processes | oneline)
# L1 is still fine: the next sandbox runs.
out=$(rund_run -- echo still-fine 2>"$work/after.err"); status=$?
details="status=$status stdout=$out rund-left-after-hostile=[$left] took=$(since "$start")s stderr=$(oneline <"$work/after.err")"
if [ "$out" = still-fine ] && [ $status = 0 ] && [ -z "$left" ]; then report after-hostile PASS "$details"; else report after-hostile FAIL "$details"; fi

# Stop means stop: a process that ignores SIGTERM is stopped after the grace period (10 s).
begin stop-grace
start=$(uptime_now)
$RUN -- sh -c 'trap "" TERM; echo ready; sleep 600' >"$work/grace.out" 2>"$work/grace.err" & pid=$!
ready=no
wait_for_line "$work/grace.out" ready 200 && ready=yes
signalled=$(uptime_now)
kill -TERM $pid
wait $pid; status=$?
took=$(since "$signalled")
clean=no; gc_clean && clean=yes
lines=$(grep -v ' warning rund\.' "$work/grace.err" | grep -c .)
details="status=$status ready=$ready stopped-after=${took}s error-lines=$lines gc-clean=$clean stderr=$(oneline <"$work/grace.err") gc=[$(echo "$gc" | oneline)]"
if [ $ready = yes ] && [ $status = 143 ] && [ "${took%.*}" -ge 9 ] && [ "${took%.*}" -lt 30 ] && [ "$lines" = 1 ] \
    && grep -q 'did not stop within 10 s of SIGTERM' "$work/grace.err" && [ $clean = yes ]; then
    report stop-grace PASS "$details"
else
    report stop-grace FAIL "$details"
fi

# A second signal stops it at once.
begin stop-second-signal
$RUN -- sh -c 'trap "" INT TERM; echo ready; sleep 600' >"$work/second.out" 2>"$work/second.err" & pid=$!
ready=no
wait_for_line "$work/second.out" ready 200 && ready=yes
kill -INT $pid
sleep 1
signalled=$(uptime_now)
kill -INT $pid
wait $pid; status=$?
took=$(since "$signalled")
clean=no; gc_clean && clean=yes
lines=$(grep -v ' warning rund\.' "$work/second.err" | grep -c .)
details="status=$status ready=$ready stopped-after=${took}s error-lines=$lines gc-clean=$clean stderr=$(oneline <"$work/second.err") gc=[$(echo "$gc" | oneline)]"
if [ $ready = yes ] && [ $status = 130 ] && [ "${took%.*}" -lt 8 ] && [ "$lines" = 1 ] \
    && grep -q 'stopped at once on SIGINT' "$work/second.err" && [ $clean = yes ]; then
    report stop-second-signal PASS "$details"
else
    report stop-second-signal FAIL "$details"
fi

# An agent that takes the signal call and never answers anything again: stopped all the same.
begin stop-mute-agent
timeout -k 30 240 "$RUND" run --agent "$HOSTILE/hostile-agent-mute-after-start" --image "$IMAGE" \
    --console "$work/mute.console" -- sleep 600 >"$work/mute.out" 2>"$work/mute.err" & pid=$!
ready=no
wait_for_line "$work/mute.console" "hostile-agent: started, now mute" 200 && ready=yes
signalled=$(uptime_now)
kill -TERM $pid
wait $pid; status=$?
took=$(since "$signalled")
clean=no; gc_clean && clean=yes
lines=$(grep -v ' warning rund\.' "$work/mute.err" | grep -c .)
details="status=$status ready=$ready stopped-after=${took}s error-lines=$lines gc-clean=$clean stderr=$(oneline <"$work/mute.err") console=[$(tail -n 3 "$work/mute.console" | tr -d '\r' | oneline)]"
if [ $ready = yes ] && [ $status = 143 ] && [ "${took%.*}" -ge 9 ] && [ "${took%.*}" -lt 30 ] && [ "$lines" = 1 ] \
    && grep -q 'did not stop within 10 s of SIGTERM' "$work/mute.err" && [ $clean = yes ]; then
    report stop-mute-agent PASS "$details"
else
    report stop-mute-agent FAIL "$details"
fi

# Confinement: while a sandbox runs, its vCPU and agent-connection threads are under their seccomp
# filters, and the cgroup rund joined holds the guest's memory and carries the CPU and task limits.
begin confinement
# dd reads 120 MiB of zeros into one buffer: the guest touches that much of its memory.
$RUN --memory 256 -- sh -c 'trap "exit 0" TERM; dd if=/dev/zero of=/dev/null bs=125829120 count=1 2>/dev/null && echo touched; sleep 100 & wait' \
    >"$work/conf.out" 2>"$work/conf.err" & pid=$!
touched=no
wait_for_line "$work/conf.out" touched 200 && touched=yes
filters=$(for task in /proc/"$pid"/task/*; do
    comm=$(cat "$task/comm" 2>/dev/null)
    # Not ttrpc-cli-c: the client's completion thread resumes Swift tasks, which may start
    # runtime threads, and a thread inherits its creator's filter (docs/security.md).
    case $comm in vcpu*|ttrpc-cli-r|ttrpc-cli-w) echo "$comm:$(awk '/^Seccomp:/ { print $2 }' "$task/status")" ;; esac
done | sort | tr '\n' ' ')
cgroup=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' /proc/"$pid"/cgroup)
current=$(cat "$cgroup/memory.current" 2>/dev/null) memory_max=$(cat "$cgroup/memory.max" 2>/dev/null)
cpu_max=$(cat "$cgroup/cpu.max" 2>/dev/null) pids_max=$(cat "$cgroup/pids.max" 2>/dev/null)
kill -TERM $pid
wait $pid; status=$?
details="touched=$touched filters=[$filters] cgroup=$cgroup memory.current=$current memory.max=$memory_max cpu.max=[$cpu_max] pids.max=$pids_max status=$status stderr=$(oneline <"$work/conf.err")"
if [ $touched = yes ] && echo "$filters" | grep -q 'vcpu0:2' && echo "$filters" | grep -q 'ttrpc-cli-r:2' \
    && echo "$filters" | grep -q 'ttrpc-cli-w:2' && ! echo "$filters" | grep -q ':[01] ' \
    && [ "${current:-0}" -ge 120000000 ] && [ "$memory_max" = $(((256 + 64 + 64) << 20)) ] \
    && [ "$cpu_max" = "125000 100000" ] && [ "$pids_max" = 256 ]; then
    report confinement PASS "$details"
else
    report confinement FAIL "$details"
fi

# Fail fast: a guest that makes no progress (here a silent busy loop: no VM exit) ends its run
# with 125 and what its vCPUs were doing, once --stall-timeout has passed.
begin stall-watchdog
start=$(uptime_now)
timeout -k 30 240 "$RUND" run --stall-timeout 10 --image "$IMAGE" -- sh -c 'echo spinning; while :; do :; done' \
    >"$work/stall.out" 2>"$work/stall.err"; status=$?
took=$(since "$start")
lines=$(grep -v ' warning rund\.' "$work/stall.err" | grep -c .)
details="status=$status took=${took}s error-lines=$lines stdout=$(oneline <"$work/stall.out") stderr=$(oneline <"$work/stall.err")"
if [ $status = 125 ] && [ "$lines" = 1 ] && grep -q 'made no progress (no VM exit for 10' "$work/stall.err" \
    && grep -q 'vCPU 0 runnable rip=0x' "$work/stall.err" && grep -qx spinning "$work/stall.out"; then
    report stall-watchdog PASS "$details"
else
    report stall-watchdog FAIL "$details"
fi

# A guest that stops in the middle of a call (its agent spins on CreateContainer, no VM exit) is
# named as stalled, not as a mute agent: the call's deadline (2 s with --agent-timeout 8) waits
# for the watchdog's verdict. CI once met the emulator losing a guest just so.
begin stall-during-call
start=$(uptime_now)
timeout -k 30 240 "$RUND" run --agent-timeout 8 --stall-timeout 10 --agent "$HOSTILE/hostile-agent-spin-on-create" \
    --image "$IMAGE" -- true >"$work/spin.out" 2>"$work/spin.err"; status=$?
took=$(since "$start")
lines=$(grep -v ' warning rund\.' "$work/spin.err" | grep -c .)
details="status=$status took=${took}s error-lines=$lines stderr=$(oneline <"$work/spin.err")"
if [ $status = 125 ] && [ "$lines" = 1 ] && grep -q 'made no progress (no VM exit for 10' "$work/spin.err" \
    && ! grep -q 'did not answer' "$work/spin.err"; then
    report stall-during-call PASS "$details"
else
    report stall-during-call FAIL "$details"
fi

# A vCPU thread that makes a forbidden system call (a test hook) ends the sandbox, clearly.
begin seccomp-violation
start=$(uptime_now)
rund_run --test-hook forbidden-syscall -- echo never >"$work/violation.out" 2>"$work/violation.err"; status=$?
clean=no; gc_clean && clean=yes
lines=$(grep -v ' warning rund\.' "$work/violation.err" | grep -c .)
details="status=$status took=$(since "$start")s error-lines=$lines gc-clean=$clean stdout=$(oneline <"$work/violation.out") stderr=$(oneline <"$work/violation.err")"
if [ $status = 125 ] && [ "$lines" = 1 ] && grep -q 'vCPU thread made a system call its seccomp filter forbids (socket' "$work/violation.err" \
    && ! grep -q never "$work/violation.out" && [ $clean = yes ]; then
    report seccomp-violation PASS "$details"
else
    report seccomp-violation FAIL "$details"
fi

# A lying agent: well-formed answers with impossible values (exit codes, signals, a pid) or
# error messages full of terminal escape sequences, one of them 3 MiB long. rund must not trap
# and must print nothing unprintable: a huge pid changes nothing (the "process" exits 7); an
# error message ends rund with 125 and one short line; an impossible exit code or signal ends
# it with 125, or a clamped status 1-255, and one line. Three at a time.
begin hostile-answers
start=$(uptime_now)
answer_run() {
    begun=$(uptime_now)
    timeout -s KILL 240 "$RUND" run --stall-timeout 60 --agent "$HOSTILE/hostile-agent-$1" --image "$IMAGE" \
        --console "$work/answer.$1.console" -- true >"$work/answer.$1.out" 2>"$work/answer.$1.err" &
    pid=$!
    wait $pid
    echo "$? $(since "$begun") $pid" >"$work/answer.$1.status"
}
for batch in "exit-huge exit-256 signal-negative" "signal-huge signal-max huge-pid" \
    "escape-message huge-message deadline-message"; do
    runs=""
    for mode in $batch; do
        answer_run $mode &
        runs="$runs $!"
    done
    wait $runs
done
# As for the malformed answers above (never_listened): a guest that never reached its agent, once more.
for mode in exit-huge exit-256 signal-negative signal-huge signal-max huge-pid escape-message huge-message deadline-message; do
    : >"$work/answer.$mode.first"
    if never_listened "$work/answer.$mode"; then
        first_attempt "$work/answer.$mode" >"$work/answer.$mode.first"
        answer_run $mode
    fi
done
# A sandbox's cgroup that rund did not give back (it died, say) is one `rund gc` would reclaim;
# gc names it by the sandbox, run-<pid of rund>-<random>.
abandoned=$("$RUND" gc --dry-run 2>&1 | grep '^cgroups:')
left=$(rund_processes | oneline)
for mode in exit-huge exit-256 signal-negative signal-huge signal-max huge-pid escape-message huge-message deadline-message; do
    read -r status took pid <"$work/answer.$mode.status"
    err=$work/answer.$mode.err
    lines=$(grep -v ' warning rund\.' "$err" | grep -c .)
    bad=$(unprintable_bytes "$err")
    longest=$(awk '{ if (length($0) > n) n = length($0) } END { print n + 0 }' "$err")
    released=yes
    case $abandoned in *"run-$pid-"*) released=no ;; esac
    details="$(cat "$work/answer.$mode.first")status=$status took=${took}s error-lines=$lines unprintable-bytes=$bad longest-line=$longest cgroup-released=$released gc=[$abandoned] rund-left=[$left] stderr=$(visible "$err")"
    case $mode in
    huge-pid) [ "$status" = 7 ] && [ "$lines" = 0 ]; sane=$? ;;
    *-message) [ "$status" = 125 ] && [ "$lines" = 1 ]; sane=$? ;;
    # Not 0 (a failure shown as success), and not rund dying of a signal (a trap: SIGILL,
    # SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV; or the timeout's SIGKILL).
    *) case $status in 0 | 132 | 133 | 134 | 135 | 136 | 137 | 139) sane=1 ;; *) [ "$lines" = 1 ]; sane=$? ;; esac ;;
    esac
    if [ $sane = 0 ] && [ "$bad" = 0 ] && [ "$longest" -le 1024 ] && [ $released = yes ] && [ -z "$left" ] \
        && [ "${took%.*}" -lt 200 ]; then
        report "hostile-answer-$mode" PASS "$details"
    else
        report "hostile-answer-$mode" FAIL "$details"
    fi
done

# stdin through -i.
begin stdin
start=$(uptime_now)
out=$(printf 'a\nb\n' | rund_run -i -- cat 2>"$work/stdin.err"); status=$?
details="status=$status stdout=$(printf %s "$out" | oneline) took=$(since "$start")s stderr=$(oneline <"$work/stdin.err")"
if [ "$out" = "$(printf 'a\nb')" ] && [ $status = 0 ]; then report stdin PASS "$details"; else report stdin FAIL "$details"; fi

# Memory exhaustion: the process is killed (137) and rund says why.
begin oom
start=$(uptime_now)
# A string doubled until memory runs out: linear in the memory it takes (a shell variable grown
# by command substitution is quadratic, and with rund's leaner kernel it outlasted the stall
# watchdog's 60 s before it filled the guest).
out=$(rund_run --memory 128 -- sh -c 'exec awk "BEGIN { s = \"0123456789abcdef\"; while (1) s = s s }"' 2>"$work/oom.err"); status=$?
details="status=$status stdout=$(printf %s "$out" | oneline) took=$(since "$start")s stderr=$(oneline <"$work/oom.err")"
if [ $status = 137 ] && grep -q "out of memory" "$work/oom.err"; then report oom PASS "$details"; else report oom FAIL "$details"; fi

# Guest kernel panic: 125, promptly, naming it.
begin guest-panic
start=$(uptime_now)
rund_run -- sh -c 'echo c >/proc/sysrq-trigger; sleep 150' >"$work/panic.out" 2>"$work/panic.err"; status=$?
took=$(since "$start")
left=$(rund_processes | oneline)
details="status=$status took=${took}s rund-left=[$left] stderr=$(oneline <"$work/panic.err")"
if [ $status = 125 ] && grep -q panicked "$work/panic.err" && [ "${took%.*}" -lt 90 ] && [ -z "$left" ]; then
    report guest-panic PASS "$details"
else
    report guest-panic FAIL "$details"
fi

# Descriptors and threads over many sandboxes in one process (a Swift test in the bundle).
begin fd-threads
start=$(uptime_now)
RUND_SANDBOX_TEST_ROOT=$RUND_ROOT RUND_SANDBOX_TEST_AGENT=$RUND_AGENT RUND_SANDBOX_TEST_IMAGE=$IMAGE \
    RUND_SANDBOX_TEST_RUNS=${RUND_SANDBOX_TEST_RUNS:-10} \
    timeout -s KILL 900 "$BUNDLE" --testing-library swift-testing --filter SandboxInsideL1Tests >"$work/fd.out" 2>"$work/fd.err"
status=$?
summary=$(grep '^sandbox-l1:' "$work/fd.out" | oneline)
failures=$(grep -E 'recorded an issue|failed|skipped' "$work/fd.err" | cut -c1-300 | oneline)
details="status=$status $summary took=$(since "$start")s issues=$failures"
if [ $status = 0 ] && [ -n "$summary" ] && ! grep -q skipped "$work/fd.err"; then report fd-threads PASS "$details"; else report fd-threads FAIL "$details"; fi

# Nothing left behind by all of the above.
begin no-leaks
sleep 1
snapshot after
mounts=$(diff "$work/mounts.before" "$work/mounts.after" | grep '^[-+][^-+]' | oneline)
cgroups_added=$(grep -vxF -f "$work/cgroups.before" "$work/cgroups.after" | grep -c .)
held=$(for entry in $(cat "$work/cgroups.after"); do
    case $entry in sb-*) echo "$entry" ;; esac
    # cgroupfs files have size 0, so read them rather than test -s.
    [ -n "$(cat "/sys/fs/cgroup/rund/$entry/cgroup.procs" 2>/dev/null)" ] && echo "$entry:procs"
done | oneline)
loops=$(diff "$work/loops.before" "$work/loops.after" | grep '^[-+][^-+]' | oneline)
pool_before=$(cat "$work/pool.before") pool_after=$(cat "$work/pool.after")
left=$(rund_processes | oneline)
details="mounts-changed=[$mounts] cgroups=$(grep -c . "$work/cgroups.before")->$(grep -c . "$work/cgroups.after") held=[$held] loops-changed=[$loops] pool-used-KiB=$pool_before->$pool_after rund-left=[$left]"
if [ -z "$mounts" ] && [ -z "$held" ] && [ -z "$loops" ] && [ -z "$left" ] && [ -n "$pool_after" ] \
    && [ "$pool_after" -le $((pool_before + 256)) ] && [ "$cgroups_added" -le 8 ]; then
    report no-leaks PASS "$details"
else
    report no-leaks FAIL "$details"
fi
kill $watchdog_pid
exit 0
