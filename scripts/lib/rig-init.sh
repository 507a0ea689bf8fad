#!/bin/sh
# /init of the rig's L1 (busybox ash, PID 1). Channels (set up by scripts/rig):
#   ttyS0 = kernel console and this script's diagnostics, ttyS1 = COMMAND's stdout,
#   ttyS2 = COMMAND's stderr, ttyS3 = COMMAND's exit status (decimal, then newline).
# When anything here fails, L1 reboots without writing a status: the host reports "L1 failed".
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

fail() {
    echo "rig-init: $*" >/dev/console
    reboot -f
    sleep 60
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"

# Rootfs is already a tmpfs. When the payload put files under /tmp, keep that directory: a tmpfs
# mounted over it would hide them, and moving them onto one costs a full copy under emulation.
if [ -n "$(ls -A /tmp 2>/dev/null)" ]; then
    chmod 1777 /tmp
else
    mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount /tmp"
fi

# Modules: the base list (kvm), then any the payload adds; each file lists paths in load order.
for list in /rig/modules.base /rig/modules.extra; do
    [ -f "$list" ] || continue
    while read -r module; do
        [ -n "$module" ] || continue
        name=$(basename "$module" .ko | tr - _)
        [ -d "/sys/module/$name" ] && continue
        insmod "/lib/modules/$(uname -r)/$module" || fail "insmod $module failed"
    done <"$list"
done

for port in 1 2 3; do
    stty -F "/dev/ttyS$port" raw -echo || fail "stty ttyS$port"
done

hostname rig-l1
ip link set lo up || fail "bringing up lo"
cd / || fail "cd /"
echo "rig-init: running command" >/dev/console
sh /rig/command </dev/null >/dev/ttyS1 2>/dev/ttyS2
status=$?

# Wait until the UARTs have sent everything (stty sets the mode with TCSADRAIN).
stty -F /dev/ttyS1 raw
stty -F /dev/ttyS2 raw
echo "$status" >/dev/ttyS3
stty -F /dev/ttyS3 raw
reboot -f
sleep 60
