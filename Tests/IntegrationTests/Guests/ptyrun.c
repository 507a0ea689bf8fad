// ptyrun: runs a command on a new pseudo-terminal of a given size, optionally resizes it once
// (its foreground process gets SIGWINCH, as from a terminal window) after a delay or once the
// output shows a marker, copies the terminal's output to stdout and exits with the command's
// status. For the rig checks of `ctr run -t` (L1 has no terminal and busybox has no `script`).
//   ptyrun ROWSxCOLS [--resize-after MS ROWSxCOLS | --resize-on TEXT ROWSxCOLS] -- COMMAND [ARGS...]
// Built static by ContainerdInRigTests.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int parse_size(const char *text, struct winsize *size) {
    unsigned rows, cols;
    if (sscanf(text, "%ux%u", &rows, &cols) != 2 || rows == 0 || cols == 0 || rows > 65535 || cols > 65535) return -1;
    memset(size, 0, sizeof *size);
    size->ws_row = (unsigned short)rows;
    size->ws_col = (unsigned short)cols;
    return 0;
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    struct winsize first, second;
    long resize_after = -1;
    const char *resize_on = NULL;
    int index = 1;
    if (argc < 4 || parse_size(argv[index++], &first) != 0) goto usage;
    if (strcmp(argv[index], "--resize-after") == 0 || strcmp(argv[index], "--resize-on") == 0) {
        if (index + 3 > argc) goto usage;
        if (argv[index][9] == 'a') resize_after = atol(argv[index + 1]); else resize_on = argv[index + 1];
        if (parse_size(argv[index + 2], &second) != 0 || (resize_on && (!*resize_on || strlen(resize_on) > 200))) goto usage;
        index += 3;
    }
    if (index >= argc || strcmp(argv[index], "--") != 0 || index + 1 >= argc) goto usage;
    index++;

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) { perror("ptyrun: posix_openpt"); return 125; }
    char *name = ptsname(master);
    if (!name) { perror("ptyrun: ptsname"); return 125; }
    if (ioctl(master, TIOCSWINSZ, &first) != 0) { perror("ptyrun: TIOCSWINSZ"); return 125; }

    pid_t child = fork();
    if (child < 0) { perror("ptyrun: fork"); return 125; }
    if (child == 0) {
        setsid();
        int slave = open(name, O_RDWR);
        if (slave < 0) _exit(126);
        ioctl(slave, TIOCSCTTY, 0);
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        if (slave > 2) close(slave);
        close(master);
        execvp(argv[index], argv + index);
        _exit(127);
    }

    long long started = now_ms();
    int resized = resize_after < 0 && !resize_on;
    char buffer[4096];
    char seen[512];  // The output's tail, for the marker.
    size_t seen_len = 0;
    for (;;) {
        int wait_ms = -1;
        if (!resized && !resize_on) {
            long long left = started + resize_after - now_ms();
            if (left <= 0) {
                ioctl(master, TIOCSWINSZ, &second);  // The kernel sends SIGWINCH to the foreground group.
                resized = 1;
            } else {
                wait_ms = (int)left;
            }
        }
        struct pollfd request = {.fd = master, .events = POLLIN};
        int ready = poll(&request, 1, wait_ms);
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) continue;
        ssize_t count = read(master, buffer, sizeof buffer);
        if (count <= 0) break;  // EIO once the last process on the terminal has gone.
        if (write(1, buffer, (size_t)count) < 0) break;
        if (!resized && resize_on) {
            // Keep the last bytes of output (a marker may straddle two reads).
            size_t add = (size_t)count < sizeof seen ? (size_t)count : sizeof seen;
            if (seen_len + add > sizeof seen) {
                size_t drop = seen_len + add - sizeof seen;
                memmove(seen, seen + drop, seen_len - drop);
                seen_len -= drop;
            }
            memcpy(seen + seen_len, buffer + (size_t)count - add, add);
            seen_len += add;
            if (memmem(seen, seen_len, resize_on, strlen(resize_on))) {
                ioctl(master, TIOCSWINSZ, &second);
                resized = 1;
            }
        }
    }
    int status = 0;
    if (waitpid(child, &status, 0) < 0) return 125;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

usage:
    fprintf(stderr, "usage: ptyrun ROWSxCOLS [--resize-after MS ROWSxCOLS | --resize-on TEXT ROWSxCOLS] -- COMMAND [ARGS...]\n");
    return 125;
}
