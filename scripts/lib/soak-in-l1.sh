#!/bin/sh
# Inside L1 (scripts/soak through scripts/rig-run --script): RUNS sandboxes, AT_ONCE at a time,
# alternating a short and a busy guest, each watched for stalls. Prints one line per run and a
# summary; for a stalled run also L1's kvm_exit trace at that moment and the guest's console.
#   soak-in-l1.sh run  RUNS AT_ONCE IMAGE [OPTION...]  rund run (agent, vsock, disks), with extra
#                                                      `rund run` options (e.g. --rootfs-device blk)
#   soak-in-l1.sh vm   RUNS AT_ONCE INITRD KERNEL      rund vm boot of a busybox guest (no agent)
#   soak-in-l1.sh qemu RUNS AT_ONCE INITRD KERNEL      QEMU microvm booting that same guest
KIND=$1 RUNS=$2 AT_ONCE=$3 ARG=$4 KERNEL="" RUN_OPTIONS=""
shift 4
if [ "$KIND" = run ]; then RUN_OPTIONS="$*"; else KERNEL=${1:-}; fi
uptime_now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_now)" 'BEGIN { printf "%.1f", b - a }'; }
oneline() { tr -d '\r' | tr '\n' '|' | cut -c1-600; }
tracing=/sys/kernel/tracing
mount -t tracefs nodev "$tracing" 2>/dev/null
# rund's own default command line, so the QEMU guest boots exactly as rund's does.
cmdline_base="console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd 8250.nr_uarts=1 cryptomgr.notests init_on_alloc=0 pci=off quiet"

# What L1's KVM does for the stuck guest: a second of kvm_exit/kvm_entry events.
trace_kvm() {
    [ -d "$tracing/events/kvm" ] || { echo "  (no kvm tracepoints in L1)"; return; }
    echo >"$tracing/trace"
    echo 1 >"$tracing/events/kvm/kvm_exit/enable"
    echo 1 >"$tracing/events/kvm/kvm_inj_virq/enable" 2>/dev/null
    echo 1 >"$tracing/events/kvm/kvm_page_fault/enable" 2>/dev/null
    sleep 1
    echo 0 >"$tracing/events/kvm/kvm_exit/enable"
    echo 0 >"$tracing/events/kvm/kvm_inj_virq/enable" 2>/dev/null
    echo 0 >"$tracing/events/kvm/kvm_page_fault/enable" 2>/dev/null
    echo "  trace: $(grep -vc '^#' "$tracing/trace") events in 1 s; exit reasons:"
    grep -o 'reason [A-Za-z_]*\|kvm_page_fault\|kvm_inj_virq' "$tracing/trace" | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /'
    grep -v '^#' "$tracing/trace" | tail -n 8 | sed 's/^ */    /'
}

# One guest, run I, in its own directory: writes its verdict line and, when it went wrong, what
# it left (stderr, console, trace) to $dir/report.
one_run() {
    i=$1 dir=/tmp/soak/$1
    mkdir -p "$dir"
    if [ $((i % 2)) = 0 ]; then load=busy; else load=short; fi
    start=$(uptime_now)
    case $KIND in
    run)
        if [ $load = busy ]; then
            set -- sh -c 'seq 1 300000; i=0; while [ $i -lt 100 ]; do echo $i | sha256sum >/dev/null; i=$((i+1)); done; echo done'
        else
            set -- echo done
        fi
        # shellcheck disable=SC2086 # RUN_OPTIONS is a list of plain words
        timeout -k 10 240 "$RUND" run --stall-timeout 60 --no-template $RUN_OPTIONS --image "$ARG" --console "$dir/console" -- "$@" \
            >"$dir/out" 2>"$dir/err" &
        ;;
    vm)
        timeout -k 10 240 "$RUND" vm boot --stall-timeout 60 --kernel "$KERNEL" --initrd "$ARG" --memory 256 \
            --cmdline "quiet rundtest=soak-$load" --console "$dir/console" >"$dir/out" 2>"$dir/err" &
        ;;
    qemu)
        # No watchdog of its own: a run still going after 150 s counts as stalled.
        timeout -k 10 150 qemu-system-x86_64 -M microvm,accel=kvm -cpu host -m 256 -smp 1 -nodefaults \
            -no-user-config -display none -no-reboot -serial "file:$dir/console" \
            -kernel "$KERNEL" -initrd "$ARG" -append "$cmdline_base rundtest=soak-$load" >"$dir/out" 2>"$dir/err" &
        ;;
    esac
    pid=$!
    traced=no
    beat=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        # A heartbeat for the rig's idle watchdog (a silent L1 is a wedged one).
        beat=$((beat + 1))
        [ $((beat % 30)) = 0 ] && echo "soak: run $i still going after ${beat}s" >&2
        # Healthy runs take well under 45 s: catch L1's view while a stuck one still is.
        if [ $traced = no ] && [ "$(since "$start" | cut -d. -f1)" -ge 45 ]; then
            trace_kvm >"$dir/trace"
            traced=yes
        fi
    done
    wait "$pid"; status=$?
    took=$(since "$start")
    verdict=failed
    case $KIND in
    run) if [ $status = 0 ] && grep -qx done "$dir/out"; then verdict=ok
         elif [ $status = 125 ] && grep -q 'made no progress' "$dir/err"; then verdict=stalled; fi ;;
    vm)  if [ $status = 0 ] && grep -q 'guest: soak done' "$dir/console"; then verdict=ok
         elif [ $status = 5 ]; then verdict=stalled; fi ;;
    qemu) if grep -q 'guest: soak done' "$dir/console" && [ $status = 0 ]; then verdict=ok
          elif [ $status = 124 ] || [ $status = 137 ]; then verdict=stalled; fi ;;
    esac
    {
        echo "SOAK $i $load $verdict status=$status took=${took}s"
        if [ $verdict != ok ]; then
            echo "  stderr: $(oneline <"$dir/err")"
            echo "  console ends: $(tail -n 12 "$dir/console" 2>/dev/null | oneline)"
            [ -f "$dir/trace" ] && cat "$dir/trace"
        fi
    } >"$dir/report"
}

# Which guest kernel `rund run` boots: rund's own when the rig carried it (docs/kernel.md).
kernel=stock
if [ "$KIND" = run ] && [ -f "$RUND_ROOT/kernel/guest/vmlinuz" ]; then kernel="rund ($(cat "$RUND_ROOT/kernel/guest/version"))"; fi
case " $RUN_OPTIONS " in *" --kernel=stock "*) kernel=stock ;; esac
echo "soak: guest kernel $kernel" >&2
ok=0 stalled=0 failed=0 i=1
while [ "$i" -le "$RUNS" ]; do
    # A round: AT_ONCE guests started together (CI's checks start two, four or ten at once).
    first=$i pids=""
    while [ "$i" -le "$RUNS" ] && [ $((i - first)) -lt "$AT_ONCE" ]; do
        one_run "$i" &
        pids="$pids $!"
        i=$((i + 1))
    done
    wait $pids
    n=$first
    while [ "$n" -lt "$i" ]; do
        cat "/tmp/soak/$n/report"
        case $(head -n 1 "/tmp/soak/$n/report" | cut -d' ' -f4) in
        ok) ok=$((ok + 1)) ;; stalled) stalled=$((stalled + 1)) ;; *) failed=$((failed + 1)) ;;
        esac
        rm -rf "/tmp/soak/$n"
        n=$((n + 1))
    done
done
echo "SOAK-SUMMARY kind=$KIND kernel=${kernel%% *} runs=$RUNS at-once=$AT_ONCE ok=$ok stalled=$stalled failed=$failed"
