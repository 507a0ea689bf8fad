#define _GNU_SOURCE  // REG_RAX in ucontext_t (this file only; Swift never sees it)
#include "CLinux.h"
#include "CLinuxSeccomp.h"
#include <errno.h>
#include <signal.h>
#include <ucontext.h>
#include <sys/socket.h>

int rund_seccomp_install_filter(const struct sock_filter *filter, unsigned short count) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    struct sock_fprog program = {.len = count, .filter = (struct sock_filter *)filter};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program);
}

static int rund_seccomp_report_fd = -1;
static __thread int rund_seccomp_trapped_here;

// Only async-signal-safe calls, and only ones every rund filter allows (gettid, write). The
// forbidden call does not run: it returns ENOSYS, so the thread unwinds out of whatever it was
// doing (releasing the locks it holds) and ends at its next check of
// rund_seccomp_current_thread_trapped().
static void rund_seccomp_trapped(int signal, siginfo_t *info, void *context) {
    (void)signal;
    int32_t record[2] = {(int32_t)syscall(SYS_gettid), info->si_syscall};
    (void)!write(rund_seccomp_report_fd, record, sizeof record);
    ((ucontext_t *)context)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
    rund_seccomp_trapped_here = 1;
}

int rund_seccomp_current_thread_trapped(void) { return rund_seccomp_trapped_here; }

int rund_seccomp_install_trap_handler(int report_fd) {
    rund_seccomp_report_fd = report_fd;
    struct sigaction action = {0};
    action.sa_sigaction = rund_seccomp_trapped;
    action.sa_flags = SA_SIGINFO;
    sigfillset(&action.sa_mask);
    return sigaction(SIGSYS, &action, NULL);
}

long rund_seccomp_forbidden_call(void) {
    return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}
