// The few Linux APIs Swift cannot reach directly: function-like ioctl macros
// (_IO/_IOR/_IOW are invisible to Swift) and variadic calls.
#ifndef RUND_CLINUX_H
#define RUND_CLINUX_H


#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <linux/kvm.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <linux/random.h>
#include <linux/if_tun.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include "CLinuxSeccomp.h"
int memfd_create(const char *name, unsigned int flags);
// Declared here because _GNU_SOURCE would make Glibc symbols such as environ ambiguous in Swift.
int pipe2(int pipefd[2], int flags);
int pthread_setname_np(pthread_t thread, const char *name);
#include <unistd.h>

// MARK: ioctl numbers, computed from the real headers.
#define RUND_IOCTL(name) static inline unsigned long rund_##name(void) { return name; }

RUND_IOCTL(KVM_GET_API_VERSION)
RUND_IOCTL(KVM_CREATE_VM)
RUND_IOCTL(KVM_CHECK_EXTENSION)
RUND_IOCTL(KVM_GET_VCPU_MMAP_SIZE)
RUND_IOCTL(KVM_GET_SUPPORTED_CPUID)
RUND_IOCTL(KVM_GET_MSR_INDEX_LIST)
RUND_IOCTL(KVM_SET_USER_MEMORY_REGION)
RUND_IOCTL(KVM_CREATE_VCPU)
RUND_IOCTL(KVM_SET_TSS_ADDR)
RUND_IOCTL(KVM_SET_IDENTITY_MAP_ADDR)
RUND_IOCTL(KVM_CREATE_IRQCHIP)
RUND_IOCTL(KVM_CREATE_PIT2)
RUND_IOCTL(KVM_IRQ_LINE)
RUND_IOCTL(KVM_IRQFD)
RUND_IOCTL(KVM_IOEVENTFD)
RUND_IOCTL(KVM_GET_IRQCHIP)
RUND_IOCTL(KVM_SET_IRQCHIP)
RUND_IOCTL(KVM_GET_PIT2)
RUND_IOCTL(KVM_SET_PIT2)
RUND_IOCTL(KVM_GET_CLOCK)
RUND_IOCTL(KVM_SET_CLOCK)
RUND_IOCTL(KVM_RUN)
RUND_IOCTL(KVM_GET_REGS)
RUND_IOCTL(KVM_SET_REGS)
RUND_IOCTL(KVM_GET_SREGS)
RUND_IOCTL(KVM_SET_SREGS)
RUND_IOCTL(KVM_GET_FPU)
RUND_IOCTL(KVM_SET_FPU)
RUND_IOCTL(KVM_SET_CPUID2)
RUND_IOCTL(KVM_GET_CPUID2)
RUND_IOCTL(KVM_GET_MSRS)
RUND_IOCTL(KVM_SET_MSRS)
RUND_IOCTL(KVM_GET_LAPIC)
RUND_IOCTL(KVM_SET_LAPIC)
RUND_IOCTL(KVM_GET_MP_STATE)
RUND_IOCTL(KVM_SET_MP_STATE)
RUND_IOCTL(KVM_GET_VCPU_EVENTS)
RUND_IOCTL(KVM_SET_VCPU_EVENTS)
RUND_IOCTL(KVM_GET_XSAVE)
RUND_IOCTL(KVM_GET_XSAVE2)
RUND_IOCTL(KVM_SET_XSAVE)
RUND_IOCTL(KVM_GET_XCRS)
RUND_IOCTL(KVM_SET_XCRS)
RUND_IOCTL(KVM_GET_DEBUGREGS)
RUND_IOCTL(KVM_SET_DEBUGREGS)
RUND_IOCTL(KVM_KVMCLOCK_CTRL)
RUND_IOCTL(KVM_SET_TSC_KHZ)
RUND_IOCTL(KVM_GET_TSC_KHZ)
RUND_IOCTL(FICLONE)
RUND_IOCTL(BLKGETSIZE64)
RUND_IOCTL(RNDADDENTROPY)
RUND_IOCTL(RNDRESEEDCRNG)

/// renameat2(2): glibc declares it only under _GNU_SOURCE, which Swift does not set.
static inline int rund_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}
static inline unsigned int rund_RENAME_NOREPLACE(void) { return 1; /* RENAME_NOREPLACE, linux/fs.h */ }
RUND_IOCTL(LOOP_CTL_GET_FREE)
RUND_IOCTL(LOOP_SET_FD)
RUND_IOCTL(LOOP_CLR_FD)
RUND_IOCTL(LOOP_SET_STATUS64)
RUND_IOCTL(LOOP_GET_STATUS64)
RUND_IOCTL(LOOP_CONFIGURE)
RUND_IOCTL(TUNSETIFF)
RUND_IOCTL(TUNSETVNETHDRSZ)
RUND_IOCTL(TUNSETOFFLOAD)

#undef RUND_IOCTL

// MARK: tap devices (struct ifreq is a union Swift handles poorly).
/// TUNSETIFF on an open /dev/net/tun: attaches it to the tap `name` (created when absent) with
/// `flags`; the kernel's name for it is copied to `actual` (IFNAMSIZ bytes).
static inline int rund_tun_attach(int fd, const char *name, short flags, char *actual) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = flags;
    if (ioctl(fd, TUNSETIFF, &request) < 0) return -1;
    memcpy(actual, request.ifr_name, IFNAMSIZ);
    return 0;
}
static inline short rund_IFF_TAP(void) { return IFF_TAP; }
static inline short rund_IFF_NO_PI(void) { return IFF_NO_PI; }
static inline short rund_IFF_VNET_HDR(void) { return IFF_VNET_HDR; }
static inline unsigned int rund_TUN_F_CSUM(void) { return TUN_F_CSUM; }
static inline unsigned int rund_TUN_F_TSO4(void) { return TUN_F_TSO4; }
static inline unsigned int rund_TUN_F_TSO6(void) { return TUN_F_TSO6; }
/// A raw packet socket (every EtherType) bound to interface `name` of the calling thread's
/// network namespace; -1 with errno on failure.
static inline int rund_packet_socket(const char *name) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) return -1;
    struct sockaddr_ll address;
    memset(&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = (int)if_nametoindex(name);
    if (address.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}
/// recvfrom(2) on a packet socket; `outgoing` is set when the frame was one the interface sent.
static inline long rund_packet_receive(int fd, void *buffer, unsigned long length, int *outgoing) {
    struct sockaddr_ll from;
    socklen_t size = sizeof from;
    long count = recvfrom(fd, buffer, length, 0, (struct sockaddr *)&from, &size);
    if (count >= 0) *outgoing = from.sll_pkttype == PACKET_OUTGOING;
    return count;
}
/// setns(2) into a network namespace (the calling thread only).
static inline int rund_setns_network(int fd) { return (int)syscall(SYS_setns, fd, 0x40000000 /* CLONE_NEWNET */); }

// MARK: fixed-arity wrappers around variadic calls.
static inline int rund_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
static inline int rund_ioctl_int(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }
static inline int rund_open(const char *path, int flags, unsigned int mode) { return open(path, flags, mode); }
static inline int rund_openat(int dirfd, const char *path, int flags, unsigned int mode) { return openat(dirfd, path, flags, mode); }
static inline int rund_fcntl_int(int fd, int cmd, int arg) { return fcntl(fd, cmd, arg); }
// openat2(2) has no glibc wrapper and struct open_how is only in <linux/openat2.h>.
static inline int rund_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long mode,
                               unsigned long long resolve) {
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}
static inline unsigned long long rund_RESOLVE_BENEATH(void) { return RESOLVE_BENEATH; }
static inline unsigned long long rund_RESOLVE_NO_SYMLINKS(void) { return RESOLVE_NO_SYMLINKS; }
static inline unsigned long long rund_RESOLVE_NO_MAGICLINKS(void) { return RESOLVE_NO_MAGICLINKS; }
static inline unsigned long long rund_RESOLVE_NO_XDEV(void) { return RESOLVE_NO_XDEV; }
static inline int rund_prctl(int option, unsigned long arg2) { return prctl(option, arg2, 0, 0, 0); }
static inline int rund_pthread_setname(pthread_t t, const char *name) { return pthread_setname_np(t, name); }
static inline int rund_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
static inline long rund_gettid(void) { return syscall(SYS_gettid); }
static inline int rund_tgkill(int tgid, int tid, int sig) { return (int)syscall(SYS_tgkill, tgid, tid, sig); }

// MARK: kvm_run exit data lives in an anonymous union: accessors keep pointer math in C.
static inline struct kvm_run *rund_kvm_run(void *p) { return (struct kvm_run *)p; }
static inline uint8_t *rund_kvm_run_io_data(struct kvm_run *run) { return (uint8_t *)run + run->io.data_offset; }
static inline uint8_t rund_kvm_run_io_direction(const struct kvm_run *run) { return run->io.direction; }
static inline uint8_t rund_kvm_run_io_size(const struct kvm_run *run) { return run->io.size; }
static inline uint16_t rund_kvm_run_io_port(const struct kvm_run *run) { return run->io.port; }
static inline uint32_t rund_kvm_run_io_count(const struct kvm_run *run) { return run->io.count; }
static inline uint64_t rund_kvm_run_mmio_address(const struct kvm_run *run) { return run->mmio.phys_addr; }
static inline uint8_t *rund_kvm_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }
static inline uint32_t rund_kvm_run_mmio_length(const struct kvm_run *run) { return run->mmio.len; }
static inline uint8_t rund_kvm_run_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }
static inline uint32_t rund_kvm_run_system_event_type(const struct kvm_run *run) { return run->system_event.type; }
static inline uint64_t rund_kvm_run_fail_entry_reason(const struct kvm_run *run) { return run->fail_entry.hardware_entry_failure_reason; }
static inline uint32_t rund_kvm_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
static inline uint64_t rund_kvm_run_hardware_exit_reason(const struct kvm_run *run) { return run->hw.hardware_exit_reason; }
static inline void rund_kvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value) { __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST); }

// Size of a kvm_cpuid2 with room for n entries.
static inline size_t rund_kvm_cpuid2_size(unsigned n) { return sizeof(struct kvm_cpuid2) + n * sizeof(struct kvm_cpuid_entry2); }
static inline size_t rund_kvm_msrs_size(unsigned n) { return sizeof(struct kvm_msrs) + n * sizeof(struct kvm_msr_entry); }

#endif

// MARK: cgroups (issue 4): extended attributes mark cgroup v2 pool entries (cgroup2 has no rename).
#ifndef RUND_CLINUX_CGROUPS_H
#define RUND_CLINUX_CGROUPS_H
#include <sys/xattr.h>
#endif

// MARK: ttrpc sockets (issue 6): accept4 is _GNU_SOURCE-only in the headers; call the syscall.
#ifndef RUND_CLINUX_SOCKETS_H
#define RUND_CLINUX_SOCKETS_H
#include <sys/socket.h>
static inline int rund_accept4(int fd, int flags) { return (int)syscall(SYS_accept4, fd, NULL, NULL, flags); }
#endif

// MARK: Storage (issue 3): headers for xattrs and statfs, used by HostOS/FileSystem.swift.
#ifndef RUND_CLINUX_STORAGE_H
#define RUND_CLINUX_STORAGE_H
#include <sys/xattr.h>
#include <sys/vfs.h>
#include <sys/file.h>
#include <sys/sysmacros.h>
// O_TMPFILE needs _GNU_SOURCE, which Swift's importer does not define; the value is the kernel ABI.
static inline int rund_O_TMPFILE(void) {
#ifdef O_TMPFILE
    return O_TMPFILE;
#else
    return 020000000 | O_DIRECTORY;
#endif
}
#endif

// MARK: guest agent (issue 6): AF_VSOCK, module loading, power-off, and a fork/exec that runs
// only async-signal-safe calls in the child (the agent is multithreaded when it spawns), into
// the guest root or a container's namespaces and rootfs.
#ifndef RUND_CLINUX_AGENT_H
#define RUND_CLINUX_AGENT_H
#include <linux/vm_sockets.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <linux/sched.h>
#include <termios.h>
#include <sys/stat.h>
static inline int rund_vsock_listen(unsigned int port, int backlog) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_vm address;
    memset(&address, 0, sizeof address);
    address.svm_family = AF_VSOCK;
    address.svm_cid = VMADDR_CID_ANY;
    address.svm_port = port;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0 || listen(fd, backlog) < 0) {
        int saved = errno; close(fd); errno = saved; return -1;
    }
    return fd;
}
// The host side of a vsock stream (a VMM's guest behind vhost-vsock): connect to cid:port,
// giving up after timeout_ms (the transport holds a connect until the guest answers).
static inline int rund_vsock_connect(unsigned int cid, unsigned int port, int timeout_ms) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval limit = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    struct sockaddr_vm address;
    memset(&address, 0, sizeof address);
    address.svm_family = AF_VSOCK;
    address.svm_cid = cid;
    address.svm_port = port;
    if (setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &limit, sizeof limit) < 0
        || connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        int saved = errno; close(fd); errno = saved; return -1;
    }
    return fd;
}
static inline int rund_finit_module(int fd) { return (int)syscall(SYS_finit_module, fd, "", 0); }
static inline int rund_power_off(void) { return reboot(RB_POWER_OFF); }

// One rlimit to apply in the child.
struct rund_rlimit { int resource; unsigned long long soft; unsigned long long hard; };

// Where the process runs. rootfs NULL: the agent's own root. Otherwise, with join_fds[0] < 0, a
// container's main process: new mount/UTS/IPC/PID namespaces, hostname, /proc and /dev inside
// rootfs, chroot; with share_fds = {uts, ipc} of another container's main process, it joins
// those two instead of making its own (a pod's containers). With join_fds = {mnt, uts, ipc, pid}
// of the main process: an exec that joins them (through an intermediate child; the process
// itself is created with CLONE_PARENT, so it is the agent's child and inside the container's
// PID namespace). cgroup_procs_fd >= 0: the process moves itself into that cgroup first.
struct rund_spawn_place { const char *rootfs; const char *hostname; int join_fds[4]; int share_fds[2]; int cgroup_procs_fd; };

// What the child side reports on `report_fd` (close-on-exec): {1, pid, 0} names the process
// (exec via an intermediate), {2, errno, step} a failed step; end of file means it exec'd.
static inline void rund_spawn_report(int fd, int kind, int a, int b) {
    int record[3] = {kind, a, b};
    (void)!write(fd, record, sizeof record);
}

static inline void rund_spawn_exec(const char *path, char *const argv[], char *const envp[], const char *cwd,
                                   int controlling_terminal, int set_identity, unsigned int uid, unsigned int gid, const unsigned int *groups, size_t group_count,
                                   const struct rund_rlimit *limits, size_t limit_count,
                                   int stdin_fd, int stdout_fd, int stderr_fd, int report_fd) {
    int step = 0;
    sigset_t empty;
    sigemptyset(&empty);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    setsid();
    int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
    for (int i = 0; i < 3; i++) {
        if (dup2(fds[i], i) < 0) { step = 1; goto fail; }
    }
    if (controlling_terminal && ioctl(0, TIOCSCTTY, 0) < 0) { step = 16; goto fail; }
    for (size_t i = 0; i < limit_count; i++) {
        struct rlimit limit = { (rlim_t)limits[i].soft, (rlim_t)limits[i].hard };
        if (setrlimit(limits[i].resource, &limit) < 0) { step = 2; goto fail; }
    }
    // Raw syscalls: glibc's wrappers broadcast credential changes to every thread it knows of,
    // and after a raw clone it still lists the parent's threads, so they would wait forever.
    if (set_identity) {
        if (syscall(SYS_setgroups, group_count, groups) < 0) { step = 3; goto fail; }
        if (syscall(SYS_setgid, gid) < 0) { step = 4; goto fail; }
        if (syscall(SYS_setuid, uid) < 0) { step = 5; goto fail; }
    }
    if (chdir(cwd) < 0) { step = 6; goto fail; }
    execve(path, argv, envp);
    step = 7;
fail:
    rund_spawn_report(report_fd, 2, errno, step);
    _exit(127);
}

// Joins the container's mounts and enters its root (steps 8-13); returns 0 or the failed step.
static inline int rund_spawn_enter_rootfs(const struct rund_spawn_place *place, int new_namespaces) {
    char path[4096];
    if (new_namespaces) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return 8;
        if (place->hostname && place->hostname[0] && sethostname(place->hostname, strlen(place->hostname)) < 0) return 9;
        snprintf(path, sizeof path, "%s/proc", place->rootfs);
        mkdir(path, 0555);
        if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return 10;
        snprintf(path, sizeof path, "%s/dev", place->rootfs);
        mkdir(path, 0755);
        if (mount("/dev", path, NULL, MS_BIND | MS_REC, NULL) < 0) return 11;
    }
    if (chroot(place->rootfs) < 0) return 12;
    if (chdir("/") < 0) return 13;
    return 0;
}

// A pseudo-terminal pair (both close-on-exec) from /dev/ptmx, unlocked, with its window size.
static inline int rund_open_pty(int *master_out, int *slave_out, unsigned short rows, unsigned short columns,
                                unsigned short width, unsigned short height) {
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    int unlock = 0;
    unsigned int number = 0;
    char path[64];
    struct winsize size = {rows, columns, width, height};
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &number) < 0) goto fail;
    snprintf(path, sizeof path, "/dev/pts/%u", number);
    int slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) goto fail;
    if (ioctl(master, TIOCSWINSZ, &size) < 0) { close(slave); goto fail; }
    *master_out = master;
    *slave_out = slave;
    return 0;
fail:
    { int saved = errno; close(master); errno = saved; }
    return -1;
}
static inline int rund_set_window_size(int fd, unsigned short rows, unsigned short columns, unsigned short width, unsigned short height) {
    struct winsize size = {rows, columns, width, height};
    return ioctl(fd, TIOCSWINSZ, &size);
}

// fork/clone + exec `path` (see rund_spawn_place and rund_spawn_report). Returns the pid of the
// direct child (for an exec into a container: the intermediate, whose report names the real
// process), or -1 with errno.
static inline int rund_spawn_process(const char *path, char *const argv[], char *const envp[], const char *cwd,
                                     int controlling_terminal, int set_identity, unsigned int uid, unsigned int gid, const unsigned int *groups, size_t group_count,
                                     const struct rund_rlimit *limits, size_t limit_count,
                                     int stdin_fd, int stdout_fd, int stderr_fd, int report_fd,
                                     const struct rund_spawn_place *place) {
    int joins = place && place->rootfs && place->join_fds[0] >= 0;
    int creates = place && place->rootfs && !joins;
    int shares = creates && place->share_fds[0] >= 0;
    long flags = SIGCHLD;
    if (creates) flags |= CLONE_NEWNS | CLONE_NEWPID | (shares ? 0 : CLONE_NEWUTS | CLONE_NEWIPC);
    pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, 0);
    if (pid != 0) return pid;
    if (joins) {
        static const int types[4] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID};
        for (int i = 0; i < 4; i++) {
            if (syscall(SYS_setns, place->join_fds[i], types[i]) < 0) { rund_spawn_report(report_fd, 2, errno, 14); _exit(127); }
        }
        pid_t process = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, 0);
        if (process < 0) { rund_spawn_report(report_fd, 2, errno, 15); _exit(127); }
        if (process > 0) { rund_spawn_report(report_fd, 1, process, 0); _exit(0); }
    }
    if (shares && (syscall(SYS_setns, place->share_fds[0], CLONE_NEWUTS) < 0 || syscall(SYS_setns, place->share_fds[1], CLONE_NEWIPC) < 0)) {
        rund_spawn_report(report_fd, 2, errno, 17); _exit(127);
    }
    // Writing 0 moves the writer: the process is in its container's cgroup before it runs anything.
    if (place && place->cgroup_procs_fd >= 0 && write(place->cgroup_procs_fd, "0", 1) != 1) {
        rund_spawn_report(report_fd, 2, errno, 18); _exit(127);
    }
    if (creates || joins) {
        int step = rund_spawn_enter_rootfs(place, creates);
        if (step) { rund_spawn_report(report_fd, 2, errno, step); _exit(127); }
    }
    rund_spawn_exec(path, argv, envp, cwd, controlling_terminal, set_identity, uid, gid, groups, group_count, limits, limit_count,
                    stdin_fd, stdout_fd, stderr_fd, report_fd);
    return -1;
}

// MARK: a private mount namespace for one thread

// Gives the calling thread (and the children it spawns) a mount namespace of its own whose
// mounts do not propagate back: unshare(CLONE_NEWNS), which also unshares the thread's
// filesystem context, then / made recursively private. 0, or -1 with errno set.
static inline int rund_unshare_private_mounts(void) {
    if (syscall(SYS_unshare, CLONE_NEWNS) < 0) return -1;
    return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

// posix_spawnattr flag: the child starts a new session (glibc's POSIX_SPAWN_SETSID, a GNU
// extension Swift does not see).
static inline short rund_posix_spawn_setsid(void) { return 0x80; }

#endif

// MARK: guest network: the agent sets up its one interface with the classic ioctls (no
// netlink messages to build); struct ifreq and struct rtentry are unions Swift reaches badly.
#ifndef RUND_CLINUX_NETWORK_H
#define RUND_CLINUX_NETWORK_H
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <string.h>

// if_nameindex(3): Swift sees the function and the struct of the same name as one symbol.
static inline struct if_nameindex *rund_interface_list(void) { return if_nameindex(); }

// Only a name that fits (shorter than IFNAMSIZ) is used; a longer one fails with ENAMETOOLONG.
static inline int rund_ifreq_named(struct ifreq *request, const char *name) {
    memset(request, 0, sizeof *request);
    if (strlen(name) >= IFNAMSIZ) { errno = ENAMETOOLONG; return -1; }
    strcpy(request->ifr_name, name);
    return 0;
}

// The interface's hardware address type (ARPHRD_*) and its first six bytes.
static inline int rund_interface_hardware_address(int socket, const char *name, unsigned short *type, unsigned char address[6]) {
    struct ifreq request;
    if (rund_ifreq_named(&request, name) < 0 || ioctl(socket, SIOCGIFHWADDR, &request) < 0) return -1;
    *type = request.ifr_hwaddr.sa_family;
    memcpy(address, request.ifr_hwaddr.sa_data, 6);
    return 0;
}

// SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP added unless it is already set.
static inline int rund_interface_bring_up(int socket, const char *name) {
    struct ifreq request;
    if (rund_ifreq_named(&request, name) < 0 || ioctl(socket, SIOCGIFFLAGS, &request) < 0) return -1;
    if (request.ifr_flags & IFF_UP) return 0;
    request.ifr_flags |= IFF_UP;
    return ioctl(socket, SIOCSIFFLAGS, &request);
}

static inline int rund_interface_set_mtu(int socket, const char *name, int mtu) {
    struct ifreq request;
    if (rund_ifreq_named(&request, name) < 0) return -1;
    request.ifr_mtu = mtu;
    return ioctl(socket, SIOCSIFMTU, &request);
}

// SIOCSIFADDR or SIOCSIFNETMASK with an AF_INET address (network byte order).
static inline int rund_interface_set_ipv4(int socket, const char *name, unsigned long request_number, uint32_t address) {
    struct ifreq request;
    if (rund_ifreq_named(&request, name) < 0) return -1;
    struct sockaddr_in value = { .sin_family = AF_INET, .sin_addr = { .s_addr = address } };
    memcpy(&request.ifr_addr, &value, sizeof value);
    return ioctl(socket, request_number, &request);
}

// SIOCADDRT: destination/netmask through `device`, via `gateway` when has_gateway (network order).
static inline int rund_add_ipv4_route(int socket, const char *device, uint32_t destination, uint32_t netmask, int has_gateway,
                                      uint32_t gateway) {
    struct rtentry route;
    memset(&route, 0, sizeof route);
    struct sockaddr_in value = { .sin_family = AF_INET };
    value.sin_addr.s_addr = destination;
    memcpy(&route.rt_dst, &value, sizeof value);
    value.sin_addr.s_addr = netmask;
    memcpy(&route.rt_genmask, &value, sizeof value);
    value.sin_addr.s_addr = has_gateway ? gateway : 0;
    memcpy(&route.rt_gateway, &value, sizeof value);
    route.rt_flags = RTF_UP | (has_gateway ? RTF_GATEWAY : 0) | (netmask == 0xffffffffu ? RTF_HOST : 0);
    route.rt_dev = (char *)device;
    return ioctl(socket, SIOCADDRT, &route);
}

// unshare(2) is declared only under _GNU_SOURCE: the calling thread gets a network namespace
// of its own (tests build interfaces there without touching the host's).
static inline int rund_unshare_network(void) { return (int)syscall(SYS_unshare, CLONE_NEWNET); }
#endif
