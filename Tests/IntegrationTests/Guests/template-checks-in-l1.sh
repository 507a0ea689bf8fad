#!/bin/sh
# TemplateInRigTests' checks of microVM templates, all in one L1 boot (scripts/rig-run --script
# sets RUND, RUND_ROOT and RUND_AGENT). Prints one line per check:
#   CHECK <name> <PASS|FAIL> <details on one line>
# Usage: template-checks-in-l1.sh IMAGE
IMAGE=$1
work=/tmp/template-checks
mkdir -p "$work"
templates=$RUND_ROOT/templates

uptime_now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_now)" 'BEGIN { printf "%.1f", b - a }'; }
oneline() { tr '\n' '|' | tr -c ' -~|' '?' | cut -c1-600; }
report() {
    echo "CHECK $1 $2 $3"
    echo "template-checks: $1 $2" >&2
}
begin() { echo "template-checks: $1 (at $(uptime_now)s)" >&2; }
pass_if() { if [ "$2" = yes ]; then report "$1" PASS "$3"; else report "$1" FAIL "$3"; fi; }
# Every sandbox has a stall watchdog and a time limit (see run-checks-in-l1.sh).
RUN="timeout -k 30 240 $RUND run --stall-timeout 60 --image $IMAGE"
# A clone's drives had no medium in its template, so its kernel logged their capacity change:
# the sign that a sandbox was cloned rather than booted.
CLONE_MARK='dmesg | grep -c "detected capacity change from 0" || true'

(while sleep 60; do echo "template-checks: still running at $(uptime_now)s" >&2; done) &
ticker=$!

# Create: the guest boots to its agent's readiness and is saved.
begin template-create
start=$(uptime_now)
"$RUND" template create --name t1 --json >"$work/create.json" 2>"$work/create.err"; status=$?
"$RUND" template ls --json >"$work/ls.json" 2>>"$work/create.err"
memory_file=$templates/t1/memory
memory_kib=$(du -k "$memory_file" 2>/dev/null | cut -f1)
ok=no
grep -q '"name":"t1"' "$work/create.json" && grep -q '"usable":true' "$work/ls.json" && [ $status = 0 ] \
    && [ -f "$templates/t1/machine.state" ] && ok=yes
pass_if template-create $ok "status=$status took=$(since "$start")s memory-file-kib-allocated=$memory_kib ls=$(oneline <"$work/ls.json") stderr=$(oneline <"$work/create.err")"

# Two clones at once: each runs, writes its own file in its writable layer and a value in its
# memory (a shell variable), reads 32 bytes of /dev/urandom and the time; SIGTERM (once both have
# written) makes each read them back. L1's clock brackets the runs.
begin clones
start=$(uptime_now)
clone='trap "cat /data/mine; echo \"\$mine\"; ls /data | tr \"\\n\" \" \"; echo; exit 0" TERM
echo "$1" >/data/mine; mine="$1"; touch "/data/only-$1"
echo "random=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n")"
echo "time=$(date +%s)"
echo "cloned=$(dmesg | grep -c "detected capacity change from 0")"
echo wrote
i=0; while [ $i -lt 150 ]; do sleep 1; i=$((i + 1)); done; echo "no signal came"'
before=$(date +%s)
$RUN --template t1 -- sh -c "$clone" sh first >"$work/first" 2>"$work/first.err" & first=$!
$RUN --template t1 -- sh -c "$clone" sh second >"$work/second" 2>"$work/second.err" & second=$!
i=0
while [ $i -lt 600 ] && ! { grep -qx wrote "$work/first" && grep -qx wrote "$work/second"; }; do sleep 0.2; i=$((i + 1)); done
after=$(date +%s)
kill -TERM $first $second 2>/dev/null
wait $first; first_status=$?
wait $second; second_status=$?
field() { sed -n "s/^$1=//p" "$2" | head -n 1; }
random_first=$(field random "$work/first") random_second=$(field random "$work/second")
time_first=$(field time "$work/first") time_second=$(field time "$work/second")
tail_first=$(sed -n '/^wrote$/,$p' "$work/first" | oneline) tail_second=$(sed -n '/^wrote$/,$p' "$work/second" | oneline)
ok=no
[ $first_status = 0 ] && [ $second_status = 0 ] \
    && [ "$tail_first" = "wrote|first|first|mine only-first |" ] && [ "$tail_second" = "wrote|second|second|mine only-second |" ] \
    && [ "$(field cloned "$work/first")" -ge 1 ] && [ "$(field cloned "$work/second")" -ge 1 ] && ok=yes
pass_if clones-run-with-their-own-writes $ok "first=[$first_status: $(oneline <"$work/first")] second=[$second_status: $(oneline <"$work/second")] took=$(since "$start")s stderr=$(cat "$work/first.err" "$work/second.err" | oneline)"

ok=no
[ ${#random_first} = 64 ] && [ ${#random_second} = 64 ] && [ "$random_first" != "$random_second" ] && ok=yes
pass_if clones-draw-different-random-bytes $ok "first=$random_first second=$random_second"

# The clock: stepped to L1's, so within a second of L1's time around the runs (the template
# itself was made minutes of emulated time earlier).
ok=no
for t in "$time_first" "$time_second"; do
    [ -n "$t" ] && [ "$t" -ge $((before - 1)) ] && [ "$t" -le $((after + 1)) ] || { ok=no; break; }
    ok=yes
done
pass_if clones-have-the-hosts-time $ok "l1-before=$before l1-after=$after first=$time_first second=$time_second"

# Without the identity the agent sends, a clone keeps the template's clock (stopped while it was
# saved, so minutes behind): the step above is the agent's doing. Its random bytes are only
# recorded: without the reseed two clones may or may not draw the same bytes (one CI run saw
# them equal), which is why the agent reseeds.
begin without-identity
start_time=$(date +%s)
for n in a b; do
    $RUN --template t1 --test-hook skip-guest-identity -- \
        sh -c 'echo "time=$(date +%s)"; echo "random=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n")"' \
        >"$work/same-$n" 2>"$work/same-$n.err"
done
stale_a=$(field time "$work/same-a") stale_b=$(field time "$work/same-b")
random_a=$(field random "$work/same-a") random_b=$(field random "$work/same-b")
distinct=$(printf '%s\n' "$random_first" "$random_second" "$random_a" "$random_b" | sort -u | wc -l | tr -d ' ')
ok=no
[ -n "$stale_a" ] && [ -n "$stale_b" ] && [ "$stale_a" -lt $((start_time - 5)) ] && [ "$stale_b" -lt $((start_time - 5)) ] \
    && ok=yes
pass_if without-identity-a-clone-keeps-the-templates-clock $ok "l1=$start_time a=[time=$stale_a random=$random_a] b=[time=$stale_b random=$random_b] distinct-random=$distinct/4 stderr=$(cat "$work/same-a.err" "$work/same-b.err" | oneline)"

# A sandbox of the template's size uses it without being asked; --no-template boots.
begin automatic
auto=$($RUN -- sh -c "$CLONE_MARK" 2>"$work/auto.err"); auto_status=$?
cold=$($RUN --no-template -- sh -c "$CLONE_MARK" 2>"$work/cold.err"); cold_status=$?
other=$($RUN --memory 192 -- sh -c "$CLONE_MARK" 2>"$work/other.err"); other_status=$?
ok=no
[ $auto_status = 0 ] && [ "$auto" -ge 1 ] && [ $cold_status = 0 ] && [ "$cold" = 0 ] && [ $other_status = 0 ] && [ "$other" = 0 ] && ok=yes
pass_if a-fitting-template-is-used-and-no-template-boots $ok "auto=[$auto_status: $auto] no-template=[$cold_status: $cold] 192MiB=[$other_status: $other] stderr=$(cat "$work/auto.err" "$work/cold.err" "$work/other.err" | oneline)"

# Ten clones started at once all run to completion.
begin ten-clones
start=$(uptime_now)
pids=""
for n in 0 1 2 3 4 5 6 7 8 9; do
    $RUN --template t1 -- sh -c "echo clone-$n" >"$work/ten-$n" 2>"$work/ten-$n.err" &
    pids="$pids $!"
done
failed=0 n=0
for pid in $pids; do
    wait "$pid" || failed=$((failed + 1))
    [ "$(cat "$work/ten-$n")" = "clone-$n" ] || failed=$((failed + 1))
    n=$((n + 1))
done
ok=no
[ $failed = 0 ] && ok=yes
pass_if ten-clones-at-once $ok "failed=$failed took=$(since "$start")s stderr=$(cat "$work"/ten-*.err | oneline)"

# A clone gives memory back as a cold boot does (the template's VM has a balloon, free page
# reporting on): it writes 40 MiB to its writable layer (kept as page cache) and goes quiet;
# with --reclaim-idle 3 --reclaim-idle-by balloon (the default method, dropping the page cache,
# is the density check's) its balloon inflates and its rund's RSS falls at least 20 MiB below
# its peak (taken from the start: on a loaded host the write alone can be quiet for 3 s, and
# the balloon then inflates before the line). Its next output takes the balloon down, and it
# then allocates 100 MiB and goes on.
begin clone-reclaim
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
# The rund process: busybox's timeout execs its command in place; another timeout forks it.
rund_of() {
    [ "$(readlink "/proc/$1/exe")" = "$(readlink -f "$RUND")" ] && { echo "$1"; return; }
    for stat in /proc/[0-9]*/stat; do
        read -r pid _ _ ppid _ <"$stat" 2>/dev/null && [ "$ppid" = "$1" ] && echo "$pid"
    done | head -n 1
}
writer="trap 'exit 0' TERM; $CLONE_MARK; dd if=/dev/zero of=/cached bs=1M count=40 2>/dev/null; sync; echo written; sleep 30; echo awake; dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null && echo allocated; sleep 40 & wait"
$RUN --template t1 --reclaim-idle 3 --reclaim-idle-by balloon -- sh -c "$writer" >"$work/reclaim" 2>"$work/reclaim.err" & pid=$!
rund="" peak=0 i=0
while [ $i -lt 1000 ] && ! grep -qx written "$work/reclaim"; do
    sleep 0.2; i=$((i + 1))
    [ -n "$rund" ] || rund=$(rund_of $pid)
    now=$(rss_kib "$rund"); [ -n "$now" ] && [ "$now" -gt "$peak" ] && peak=$now
done
grep -qx written "$work/reclaim" || rund=""
written=$(rss_kib "$rund") low=$(rss_kib "$rund") waited=0
while [ -n "$rund" ] && [ $waited -lt 25 ] && ! grep -qx awake "$work/reclaim"; do
    sleep 1; waited=$((waited + 1))
    now=$(rss_kib "$rund"); [ -n "$now" ] && [ "$now" -lt "$low" ] && low=$now
done
i=0
while [ $i -lt 300 ] && ! grep -qx allocated "$work/reclaim"; do sleep 0.2; i=$((i + 1)); done
kill -TERM $pid 2>/dev/null; wait $pid
marks=$(head -n 1 "$work/reclaim")
ok=no
[ -n "$written" ] && [ "$low" -le $((peak - 20480)) ] && [ "${marks:-0}" -ge 1 ] && grep -qx allocated "$work/reclaim" && ok=yes
pass_if a-clone-gives-idle-memory-back $ok "clone-marks=$marks rss-KiB: peak=$peak written=$written lowest=$low watched=${waited}s out=$(oneline <"$work/reclaim") stderr=$(oneline <"$work/reclaim.err")"

# Refusals, each in one line and with nothing run: a template made for another kernel, and one
# with a flipped byte in its state or its memory.
refused() {  # NAME: runs `rund run --template t1`, which must fail with one line.
    out=$($RUN --template t1 -- echo ran 2>"$work/$1.err"); status=$?
    lines=$(wc -l <"$work/$1.err" | tr -d ' ')
    if [ $status = 125 ] && [ "$lines" = 1 ] && [ -z "$out" ] && grep -q 'template t1' "$work/$1.err"; then
        report "$1" PASS "status=$status stderr=$(oneline <"$work/$1.err")"
    else
        report "$1" FAIL "status=$status lines=$lines stdout=$(printf %s "$out" | oneline) stderr=$(oneline <"$work/$1.err")"
    fi
}
begin refusals
manifest=$templates/t1/manifest.json
cp "$manifest" "$work/manifest.saved"
sed -i 's/"kernelVersion" : "[^"]*"/"kernelVersion" : "0.0.0-another-kernel"/' "$manifest"
refused refuse-another-kernel
cp "$work/manifest.saved" "$manifest"

state=$templates/t1/machine.state
flip() {  # FILE OFFSET: inverts one byte in place.
    byte=$(dd if="$1" bs=1 skip="$2" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    printf "$(printf '\\%03o' $((255 - byte)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
size=$(wc -c <"$state")
flip "$state" $((size / 2))
refused refuse-flipped-state-byte
flip "$state" $((size / 2))
flip "$memory_file" 1048576
refused refuse-flipped-memory-byte

# Removal, and nothing left: no template files, processes, held cgroups or mounts of clones.
begin no-leaks
"$RUND" template rm t1 >"$work/rm.out" 2>&1; rm_status=$?
left=$(ls -A "$templates" 2>/dev/null | tr '\n' ' ')
# rund processes by name: busybox timeout's watcher child keeps the command line ("timeout ...
# rund run ...") for up to a second after rund has ended (CI run 18 counted one).
procs=$(ps -o comm,args | awk '$1 == "rund" && $3 == "run"' | wc -l | tr -d ' ')
gc=$("$RUND" gc --root "$RUND_ROOT" --dry-run 2>&1)
ok=no
[ $rm_status = 0 ] && [ -z "$left" ] && [ "$procs" = 0 ] && echo "$gc" | grep -q 'cgroups: would return 0, in use 0' \
    && echo "$gc" | grep -q 'templates: would remove 0' && ok=yes
pass_if template-rm-and-no-leaks $ok "rm=[$rm_status: $(oneline <"$work/rm.out")] left=[$left] rund-processes=$procs gc=$(printf %s "$gc" | oneline)"

kill $ticker 2>/dev/null
exit 0
