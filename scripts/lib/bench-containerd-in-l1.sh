#!/bin/sh
# Inside L1 with containerd running (scripts/bench-containerd through rig-containerd):
# end-to-end `ctr run --rm IMAGE true` for io.containerd.rund.v2 and io.containerd.runc.v2,
# alternately, RUNS times each; then the rund shim's own memory with one sandbox running.
# Prints machine-readable lines: SAMPLE runtime ms / SHIM-RSS ... / FAIL ...
#   bench-containerd-in-l1.sh ARCHIVE RUNS
archive=$1 runs=$2
image=docker.io/rundtest/busybox:1
ctr image import "$archive" >/dev/null || { echo "FAIL import"; exit 1; }

# L1's root is the initramfs, where pivot_root is refused: runc needs --no-pivot there (it
# then chroots; the cost is the same). rund's guest does its own root.
flags() { [ "$1" = io.containerd.runc.v2 ] && echo --no-pivot; }

# Centiseconds since boot (busybox date has no %N; /proc/uptime is 10 ms resolution).
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }

# One warm-up each: the first rund run builds the layer-chain EROFS, the writable template and
# the guest initramfs; the first runc run unpacks nothing new but loads runc from disk.
for runtime in io.containerd.rund.v2 io.containerd.runc.v2; do
    ctr run --rm $(flags $runtime) --runtime $runtime $image warm-${runtime%%.v2} true >/dev/null 2>"/tmp/warm.err" \
        || echo "FAIL warm-up $runtime $(tr '\n' '|' </tmp/warm.err | cut -c1-300)"
done
i=0
while [ "$i" -lt "$runs" ]; do
    for runtime in io.containerd.rund.v2 io.containerd.runc.v2; do
        start=$(now_cs)
        if ctr run --rm $(flags $runtime) --runtime $runtime $image bench-$i true >/dev/null 2>&1; then
            echo "SAMPLE $runtime $(( ($(now_cs) - start) * 10 ))"
        else
            echo "FAIL run $runtime $i"
        fi
    done
    i=$((i + 1))
done

# The shim's own memory: RSS minus the guest's RAM mapping (anonymous, the VM's size), with one
# sandbox running its process; runc's shim beside it for scale.
ctr run -d --runtime io.containerd.rund.v2 $image mem-rund sleep 600 >/dev/null 2>&1
ctr run -d --no-pivot --runtime io.containerd.runc.v2 $image mem-runc sleep 600 >/dev/null 2>&1
sleep 5
for cmdline in /proc/[0-9]*/cmdline; do
    args=$(tr '\0' ' ' 2>/dev/null <"$cmdline") || continue
    pid=${cmdline%/cmdline}; pid=${pid#/proc/}
    case $args in
        *containerd-shim-rund-v2\ *-id\ mem-rund\ *)
            awk -v guest_kb=$((256 * 1024)) '
                /^[0-9a-f]+-[0-9a-f]+ / { anon = (NF < 6) }
                /^Size:/ { size = $2 }
                /^Rss:/ { if (anon && size == guest_kb) guest += $2; else own += $2; total += $2 }
                END { printf "SHIM-RSS rund total-kib=%d guest-kib=%d own-kib=%d\n", total, guest, own }
            ' "/proc/$pid/smaps" ;;
        *containerd-shim-runc-v2\ *-id\ mem-runc\ *)
            awk '/^VmRSS:/ { printf "SHIM-RSS runc total-kib=%d guest-kib=0 own-kib=%d\n", $2, $2 }' "/proc/$pid/status" ;;
    esac
done
for id in mem-rund mem-runc; do
    ctr task kill -s SIGKILL $id >/dev/null 2>&1
    sleep 2
    ctr task delete $id >/dev/null 2>&1
    ctr container delete $id >/dev/null 2>&1
done
exit 0
