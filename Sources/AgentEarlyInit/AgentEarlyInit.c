// rund-agent's first instructions as PID 1. A static Swift executable finds its runtime path
// through /proc/self, and the runtime asks for it before main runs any Swift code; the kernel
// starts init with no /proc. So /proc is mounted here, in a constructor that runs before the
// Swift runtime's own initializers.
#include "AgentEarlyInit.h"
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static int early_proc_mount_error = 0;

__attribute__((constructor(101)))
static void rund_agent_mount_proc_early(void) {
    if (getpid() != 1) return;
    mkdir("/proc", 0755);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0 && errno != EBUSY) {
        early_proc_mount_error = errno;
    }
}

int rund_agent_early_proc_mount_error(void) { return early_proc_mount_error; }
