#ifndef RUND_AGENT_EARLY_INIT_H
#define RUND_AGENT_EARLY_INIT_H

// 0 when the constructor mounted /proc (or it was not PID 1 / already mounted), else the errno
// of the failed mount(2), for rund-agent to report once it can log.
int rund_agent_early_proc_mount_error(void);

#endif
