#!/bin/sh
# DensityInRigTests' checks of the image on virtio-pmem (EROFS mounted dax), all in one L1 boot
# (scripts/rig-run --script sets RUND, RUND_ROOT and RUND_AGENT). Prints one line per check:
#   CHECK <name> <PASS|FAIL> <details on one line>
# Usage: density-checks-in-l1.sh IMAGE (made with make-test-image --filler-mib: /opt/filler)
IMAGE=$1
work=/tmp/density-checks
mkdir -p "$work"

uptime_now() { cut -d' ' -f1 /proc/uptime; }
oneline() { tr '\n' '|' | tr -c ' -~|' '?' | cut -c1-600; }
report() {
    echo "CHECK $1 $2 $3"
    echo "density-checks: $1 $2" >&2
}
begin() { echo "density-checks: $1 (at $(uptime_now)s)" >&2; }
pass_if() { if [ "$2" = yes ]; then report "$1" PASS "$3"; else report "$1" FAIL "$3"; fi; }
RUN="timeout -k 30 240 $RUND run --stall-timeout 60 --no-template --image $IMAGE"
# The image file every sandbox of IMAGE maps (or reads): the store's EROFS of it.
erofs=$(ls "$RUND_ROOT"/images/*/rootfs.erofs | head -n 1)
image_sum() { sha256sum "$erofs" | cut -d' ' -f1; }
# KiB of the image file in process PID's memory map: "Rss Pss" (empty when it is not mapped).
image_mapping() {
    awk -v file="$erofs" '/^[0-9a-f]+-[0-9a-f]+ / { m = $6 } m == file && /^Rss:/ { r += $2 } m == file && /^Pss:/ { p += $2 }
        END { if (r != "") print r, p }' "/proc/$1/smaps"
}
# Waits up to 200 s for a line LINE in FILE.
wait_for_line() {
    i=0
    while [ $i -lt 1000 ]; do grep -qx "$2" "$1" 2>/dev/null && return 0; sleep 0.2; i=$((i + 1)); done
    return 1
}

# The rund process: busybox's timeout execs its command in place; another timeout forks it.
rund_of() {
    [ "$(readlink "/proc/$1/exe")" = "$(readlink -f "$RUND")" ] && { echo "$1"; return; }
    for stat in /proc/[0-9]*/stat; do
        read -r pid _ _ ppid _ <"$stat" 2>/dev/null && [ "$ppid" = "$1" ] && echo "$pid"
    done | head -n 1
}
(while sleep 60; do echo "density-checks: still running at $(uptime_now)s" >&2; done) &
ticker=$!
image_before=$(image_sum)

# Every file of the image reads the same through virtio-pmem (DAX) as through virtio-blk.
begin same-files
sums='find / -xdev -type f | sort | xargs sha256sum | sha256sum | cut -d" " -f1'
pmem=$($RUN --rootfs-device pmem -- sh -c "$sums" 2>"$work/same-pmem.err"); pmem_status=$?
blk=$($RUN --rootfs-device blk -- sh -c "$sums" 2>"$work/same-blk.err"); blk_status=$?
ok=no
[ $pmem_status = 0 ] && [ $blk_status = 0 ] && [ ${#pmem} = 64 ] && [ "$pmem" = "$blk" ] && ok=yes
pass_if pmem-reads-every-file-as-blk-does $ok "pmem=[$pmem_status: $pmem] blk=[$blk_status: $blk] stderr=$(cat "$work"/same-*.err | oneline)"

# DAX: reading the image through pmem puts nothing in the guest's page cache (the files' pages
# are mapped, not copied), while through blk they are cached. Cached in /proc/meminfo (not
# namespaced: the guest kernel's) before and after reading the image's filler files once
# (nothing else touched them; busybox itself is cached by the time the shell runs).
begin dax
cached_growth='before=$(awk "/^Cached:/ { print \$2 }" /proc/meminfo); cat /opt/filler/* >/dev/null
after=$(awk "/^Cached:/ { print \$2 }" /proc/meminfo); echo $((after - before))'
pmem=$($RUN --rootfs-device pmem -- sh -c "$cached_growth" 2>"$work/dax-pmem.err"); pmem_status=$?
blk=$($RUN --rootfs-device blk -- sh -c "$cached_growth" 2>"$work/dax-blk.err"); blk_status=$?
files_kib=$($RUN --rootfs-device blk -- sh -c 'cat /opt/filler/* | wc -c' 2>"$work/dax-size.err")
files_kib=$((${files_kib:-0} / 1024))
ok=no
[ $pmem_status = 0 ] && [ $blk_status = 0 ] && [ "$files_kib" -gt 1024 ] && [ "$pmem" -lt 256 ] \
    && [ "$blk" -ge $((files_kib / 2)) ] && ok=yes
pass_if dax-reads-bypass-the-guests-page-cache $ok "files=${files_kib}KiB cached-growth-KiB: pmem=[$pmem_status: $pmem] blk=[$blk_status: $blk] stderr=$(cat "$work"/dax-*.err | oneline)"

# Writes to the container's root land in its writable layer; the image stays as it was.
begin writes
out=$($RUN --rootfs-device pmem -- sh -c 'echo new >/new-file && cat /new-file && cp /bin/busybox /bin/copy && echo >>/bin/copy && ls /bin/copy' 2>"$work/writes.err"); status=$?
ok=no
[ $status = 0 ] && [ "$out" = "new
/bin/copy" ] && [ "$(image_sum)" = "$image_before" ] && ok=yes
pass_if writes-land-in-the-writable-layer $ok "status=$status out=$(printf %s "$out" | oneline) image-unchanged=$([ "$(image_sum)" = "$image_before" ] && echo yes || echo no) stderr=$(oneline <"$work/writes.err")"

# Two sandboxes of one image at once, each having read every file: each rund maps the image
# (its pages in the process's Rss) and pays half of them (Pss): the host holds them once.
# With virtio-blk nothing of the image is mapped (the guests read it into their own memory);
# without --rootfs-device the default is pmem.
begin shared
reader='trap "exit 0" TERM; cat $(find / -xdev -type f) >/dev/null; echo ready; i=0; while [ $i -lt 100 ]; do sleep 1; i=$((i + 1)); done'
$RUN --rootfs-device pmem -- sh -c "$reader" >"$work/a" 2>"$work/a.err" & a=$!
$RUN -- sh -c "$reader" >"$work/b" 2>"$work/b.err" & b=$!
$RUN --rootfs-device blk -- sh -c "$reader" >"$work/c" 2>"$work/c.err" & c=$!
ready=no
wait_for_line "$work/a" ready && wait_for_line "$work/b" ready && wait_for_line "$work/c" ready && ready=yes
map_a=$(image_mapping "$(rund_of $a)") map_b=$(image_mapping "$(rund_of $b)") map_c=$(image_mapping "$(rund_of $c)")
kill -TERM $a $b $c 2>/dev/null
wait $a $b $c
image_kib=$(($(stat -c %s "$erofs") / 1024))
ok=no
set -- $map_a; rss_a=${1:-0} pss_a=${2:-0}
set -- $map_b; rss_b=${1:-0} pss_b=${2:-0}
# Every page of a file read through DAX is mapped; each process pays half (KiB rounding aside).
[ $ready = yes ] && [ "$rss_a" -ge $((image_kib / 2)) ] && [ "$rss_b" -ge $((image_kib / 2)) ] \
    && [ $((pss_a * 2)) -le $((rss_a + 4)) ] && [ $((pss_b * 2)) -le $((rss_b + 4)) ] && [ -z "$map_c" ] && ok=yes
pass_if two-sandboxes-share-the-image-pages $ok "ready=$ready image=${image_kib}KiB pmem=[rss pss: $map_a] default=[$map_b] blk=[${map_c:-not mapped}] stderr=$(cat "$work"/a.err "$work"/b.err "$work"/c.err | oneline)"

# Memory the guest frees goes back to the host: a 512 MiB guest's process takes 200 MiB and
# exits; rund's RSS rises by about that, then falls back within seconds (free page reporting
# through virtio-balloon) although nothing in the guest asks for it.
begin page-reporting
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
$RUN --memory 512 -- sh -c 'trap "exit 0" TERM; echo booted; sleep 3; dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; echo freed; sleep 40 & wait' \
    >"$work/report.out" 2>"$work/report.err" & pid=$!
rund=""
wait_for_line "$work/report.out" booted && rund=$(rund_of $pid)
base=$(rss_kib "$rund")
wait_for_line "$work/report.out" freed
peak=$(rss_kib "$rund") low=$peak waited=0
while [ $waited -lt 30 ]; do
    sleep 1; waited=$((waited + 1))
    now=$(rss_kib "$rund"); [ -n "$now" ] && [ "$now" -lt "$low" ] && low=$now
    [ -n "$low" ] && [ -n "$base" ] && [ "$low" -le $((base + 40960)) ] && break
done
kill -TERM $pid 2>/dev/null; wait $pid
ok=no
[ -n "$base" ] && [ -n "$peak" ] && [ "$peak" -ge $((base + 153600)) ] && [ "$low" -le $((base + 40960)) ] && ok=yes
pass_if freed-guest-memory-goes-back-to-the-host $ok "rss-KiB: booted=$base after-200MiB=$peak lowest=$low within=${waited}s stderr=$(oneline <"$work/report.err")"

# The agent has the guest report free runs of 128 KiB and up (order 5), not only 2 MiB ones
# (the kernel's default, order 9): the container mounts its own view of sysfs to read it.
begin reporting-order
order=$($RUN -- sh -c 'mkdir -p /tmp/sys && mount -t sysfs sysfs /tmp/sys && cat /tmp/sys/module/page_reporting/parameters/page_reporting_order' 2>"$work/order.err"); status=$?
ok=no
[ $status = 0 ] && [ "$order" = 5 ] && ok=yes
pass_if free-page-reporting-takes-runs-of-128-KiB $ok "status=$status order=$order stderr=$(oneline <"$work/order.err")"

# An idle sandbox gives back its guest's page cache when asked (`--reclaim-idle`, by the
# default method: the agent drops the cache, free page reporting returns it): two sandboxes
# each write 40 MiB to their writable layer (the guest keeps it as page cache, which free page
# reporting alone never gives back) and go quiet. The one with --reclaim-idle 3 has its rund's
# RSS fall from its peak by at least half of it; the other's barely moves from its own. (The
# write and sync print nothing: under emulation they may outlast the 3 s, and the drop then
# comes before "written", hence the peak.) Woken, the process then allocates 100 MiB and goes
# on. (The balloon method: TemplateInRigTests `a-clone-gives-idle-memory-back`.)
begin idle-reclaim
writer='trap "exit 0" TERM; dd if=/dev/zero of=/cached bs=1M count=40 2>/dev/null; sync; echo written; sleep 30; echo awake; dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null && echo allocated; sleep 40 & wait'
$RUN --rootfs-device pmem --reclaim-idle 3 -- sh -c "$writer" >"$work/idle-a" 2>"$work/idle-a.err" & a=$!
$RUN --rootfs-device pmem -- sh -c "$writer" >"$work/idle-b" 2>"$work/idle-b.err" & b=$!
rund_a="" rund_b="" peak_a=0 i=0
while [ $i -lt 1000 ] && ! { grep -qx written "$work/idle-a" && grep -qx written "$work/idle-b"; }; do
    sleep 0.2; i=$((i + 1))
    [ -n "$rund_a" ] || rund_a=$(rund_of $a)
    [ -n "$rund_b" ] || rund_b=$(rund_of $b)
    now=$(rss_kib "$rund_a"); [ -n "$now" ] && [ "$now" -gt "$peak_a" ] && peak_a=$now
done
grep -qx written "$work/idle-a" || rund_a=""
grep -qx written "$work/idle-b" || rund_b=""
written_a=$(rss_kib "$rund_a") written_b=$(rss_kib "$rund_b")
low_a=${written_a:-0} low_b=${written_b:-0} waited=0
while [ $waited -lt 25 ] && ! grep -qx awake "$work/idle-a"; do
    sleep 1; waited=$((waited + 1))
    now=$(rss_kib "$rund_a"); [ -n "$now" ] && [ "$now" -lt "$low_a" ] && low_a=$now
    now=$(rss_kib "$rund_b"); [ -n "$now" ] && [ "$now" -lt "$low_b" ] && low_b=$now
done
allocated=no
wait_for_line "$work/idle-a" allocated && allocated=yes
kill -TERM $a $b 2>/dev/null
wait $a $b
ok=no
[ -n "$written_a" ] && [ -n "$written_b" ] && [ "$low_a" -le $((peak_a - 20480)) ] \
    && [ "$low_b" -gt $((written_b - 10240)) ] && [ $allocated = yes ] && ok=yes
pass_if idle-memory-goes-back-to-the-host $ok "rss-KiB: reclaim=[peak=$peak_a written=$written_a lowest=$low_a] without=[written=$written_b lowest=$low_b] watched=${waited}s allocated-after=$allocated out=$(oneline <"$work/idle-a") stderr=$(cat "$work"/idle-a.err "$work"/idle-b.err | oneline)"

# Nothing of the sandboxes is left: no rund process, and no cgroup of rund's holding a process
# or named for a sandbox (sb-*: given back to the pool when a sandbox ends).
begin no-leaks
sleep 1
left=$(for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null | grep -q '^[^ ]*rund run' && echo "$f"; done | oneline)
held=$(for entry in $(ls /sys/fs/cgroup/rund 2>/dev/null); do
    case $entry in sb-*) echo "$entry" ;; esac
    [ -n "$(cat "/sys/fs/cgroup/rund/$entry/cgroup.procs" 2>/dev/null)" ] && echo "$entry:procs"
done | oneline)
ok=no
[ -z "$left" ] && [ -z "$held" ] && ok=yes
pass_if no-leaks $ok "rund-left=[$left] cgroups-held=[$held]"

kill $ticker 2>/dev/null
