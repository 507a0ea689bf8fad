// seccomp-bpf: the filter-install call and the SIGSYS handler, in C because both must be
// exact (a variadic syscall, and a signal handler that may only make async-signal-safe calls).
#ifndef RUND_CLINUX_SECCOMP_H
#define RUND_CLINUX_SECCOMP_H

#include <stdint.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline uint32_t rund_audit_arch_x86_64(void) { return AUDIT_ARCH_X86_64; }

/// PR_SET_NO_NEW_PRIVS, then installs `count` BPF instructions as the calling thread's seccomp
/// filter (stacked on any it has). Returns 0, or -1 with errno.
int rund_seccomp_install_filter(const struct sock_filter *filter, unsigned short count);

/// Installs the process's SIGSYS handler: a thread its filter traps writes {tid, syscall nr}
/// (two int32) to `report_fd`; the call fails with ENOSYS instead of running, and the thread is
/// marked so that it ends at its next check. Returns 0 or -1.
int rund_seccomp_install_trap_handler(int report_fd);

/// Nonzero once the calling thread's filter has trapped one of its calls.
int rund_seccomp_current_thread_trapped(void);

/// For tests of the above: a system call no confined rund thread is allowed (socket(2)).
long rund_seccomp_forbidden_call(void);

/// For tests of filters: any system call by number (syscall(2) is variadic).
static inline long rund_syscall3(long number, long a, long b, long c) { return syscall(number, a, b, c); }

#endif
