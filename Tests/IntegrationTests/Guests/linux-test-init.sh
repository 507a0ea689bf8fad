#!/bin/sh
# /init of the Linux test guest: the test picks a mode with rundtest=MODE on the kernel command line.
/bin/busybox --install -s
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
devmem 0xd1000000 8 1
load-modules
mode=$(sed -n 's/.*rundtest=\([a-z0-9-]*\).*/\1/p' /proc/cmdline)
echo "guest: mode=$mode nproc=$(nproc)"
case $mode in
write)
    mount -t ext4 /dev/vda /mnt && echo "hello from L2" >/mnt/guest-file && sync && umount /mnt && echo "guest: wrote file"
    ;;
readonly)
    echo "guest: ro=$(cat /sys/block/vda/ro)"
    mount -t ext4 /dev/vda /mnt 2>/dev/null
    if touch /mnt/guest-file 2>/dev/null; then echo "guest: write allowed"; else echo "guest: write refused"; fi
    umount /mnt 2>/dev/null
    ;;
panic)
    echo "guest: init exiting"
    exit 1
    ;;
soak-short)
    echo "guest: soak done"
    ;;
soak-busy)
    # Forks (page-table churn), computing and console output, as a busy function would.
    i=0
    while [ $i -lt 200 ]; do echo $i | md5sum >/dev/null; i=$((i + 1)); done
    head -c 8000000 /dev/urandom | md5sum >/dev/null
    seq 1 3000
    echo "guest: soak done"
    ;;
esac
poweroff -f
