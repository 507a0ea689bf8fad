// The two ends of `rund bench net`: TCP throughput both ways and round-trip latency between a
// guest and L1. Built static (gcc -static) by scripts/bench-net; the same binary runs as the
// server in the guest and as the client in L1.
//   netbench serve PORT [ADDRESS/PREFIX]      serve connections one at a time, forever; with an
//                                             address, first give it to eth0 and bring eth0 up
//                                             (a guest with no agent: QEMU's, booted with
//                                             rdinit=/netbench)
//   netbench client HOST PORT SECONDS ROUNDS  measure, print one line of key=value results
// A connection starts with one command byte: 'U' the client sends until it closes (the server
// answers the byte count), 'D' + 4-byte milliseconds the server sends for that long, 'R' the
// server echoes each byte (one-byte requests: round trips).
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char buffer[1 << 17];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int full(int fd, void *data, size_t length, int writing) {
    size_t done = 0;
    while (done < length) {
        ssize_t n = writing ? write(fd, (char *)data + done, length - done) : read(fd, (char *)data + done, length - done);
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

static void serve_one(int fd) {
    unsigned char command;
    if (full(fd, &command, 1, 0) != 0) return;
    if (command == 'U') {
        uint64_t total = 0;
        ssize_t n;
        while ((n = read(fd, buffer, sizeof buffer)) > 0) total += (uint64_t)n;
        full(fd, &total, sizeof total, 1);
    } else if (command == 'D') {
        uint32_t milliseconds;
        if (full(fd, &milliseconds, 4, 0) != 0) return;
        double end = now() + milliseconds / 1000.0;
        while (now() < end)
            if (write(fd, buffer, sizeof buffer) <= 0) return;
    } else if (command == 'R') {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        unsigned char byte;
        while (read(fd, &byte, 1) == 1)
            if (write(fd, &byte, 1) != 1) return;
    }
}

// eth0 gets ADDRESS/PREFIX and comes up (lo too): the classic ioctls, enough for one link.
static int configure(const char *cidr) {
    char address[32];
    int prefix = 32;
    snprintf(address, sizeof address, "%s", cidr);
    char *slash = strchr(address, '/');
    if (slash) { *slash = 0; prefix = atoi(slash + 1); }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq request;
    const char *names[] = {"lo", "eth0"};
    for (int i = 0; i < 2; i++) {
        memset(&request, 0, sizeof request);
        snprintf(request.ifr_name, IFNAMSIZ, "%s", names[i]);
        if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) { perror(names[i]); return -1; }
        request.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &request) != 0) { perror("SIOCSIFFLAGS"); return -1; }
    }
    struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
    memset(&request, 0, sizeof request);
    snprintf(request.ifr_name, IFNAMSIZ, "eth0");
    in->sin_family = AF_INET;
    if (inet_pton(AF_INET, address, &in->sin_addr) != 1 || ioctl(fd, SIOCSIFADDR, &request) != 0) { perror("SIOCSIFADDR"); return -1; }
    in->sin_addr.s_addr = htonl(prefix == 0 ? 0 : 0xffffffffu << (32 - prefix));
    if (ioctl(fd, SIOCSIFNETMASK, &request) != 0) { perror("SIOCSIFNETMASK"); return -1; }
    close(fd);
    return 0;
}

// The first IPv4 address that is not loopback, for the line that says where to connect.
static void own_address(char *text, size_t length) {
    struct ifaddrs *all, *each;
    snprintf(text, length, "unknown");
    if (getifaddrs(&all) != 0) return;
    for (each = all; each; each = each->ifa_next) {
        if (!each->ifa_addr || each->ifa_addr->sa_family != AF_INET || (each->ifa_flags & IFF_LOOPBACK)) continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)each->ifa_addr)->sin_addr, text, (socklen_t)length);
        break;
    }
    freeifaddrs(all);
}

static int serve(int port) {
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 8) != 0) {
        perror("netbench: listen");
        return 1;
    }
    char own[64];
    own_address(own, sizeof own);
    printf("netbench: serving at %s port %d\n", own, port);
    fflush(stdout);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        serve_one(fd);
        close(fd);
    }
}

static int dial(const char *host, int port) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) return -1;
    for (int attempt = 0; attempt < 300; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0) return fd;
        close(fd);
        usleep(100000);
    }
    return -1;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int client(const char *host, int port, double seconds, int rounds) {
    // Upload: L1 to guest.
    int fd = dial(host, port);
    if (fd < 0) { fprintf(stderr, "netbench: cannot connect to %s:%d\n", host, port); return 1; }
    full(fd, "U", 1, 1);
    double start = now(), end = start + seconds;
    uint64_t sent = 0, counted = 0;
    while (now() < end) {
        if (full(fd, buffer, sizeof buffer, 1) != 0) { fprintf(stderr, "netbench: upload failed\n"); return 1; }
        sent += sizeof buffer;
    }
    shutdown(fd, SHUT_WR);
    if (full(fd, &counted, sizeof counted, 0) != 0 || counted != sent) { fprintf(stderr, "netbench: upload count mismatch\n"); return 1; }
    double upload = (double)sent * 8 / (now() - start) / 1e6;
    close(fd);
    // Download: guest to L1.
    fd = dial(host, port);
    uint32_t milliseconds = (uint32_t)(seconds * 1000);
    full(fd, "D", 1, 1);
    full(fd, &milliseconds, 4, 1);
    start = now();
    uint64_t received = 0;
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0) received += (uint64_t)n;
    double download = (double)received * 8 / (now() - start) / 1e6;
    close(fd);
    // Round trips of one byte.
    fd = dial(host, port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    full(fd, "R", 1, 1);
    double *samples = calloc((size_t)rounds, sizeof *samples);
    for (int i = 0; i < rounds; i++) {
        unsigned char byte = (unsigned char)i;
        double before = now();
        if (full(fd, &byte, 1, 1) != 0 || full(fd, &byte, 1, 0) != 0) { fprintf(stderr, "netbench: round trip failed\n"); return 1; }
        samples[i] = (now() - before) * 1e6;
    }
    close(fd);
    qsort(samples, (size_t)rounds, sizeof *samples, compare);
    printf("upload_mbps=%.1f download_mbps=%.1f rtt_p50_us=%.1f rtt_p99_us=%.1f\n", upload, download, samples[rounds / 2],
           samples[(rounds * 99) / 100 < rounds ? (rounds * 99) / 100 : rounds - 1]);
    return 0;
}

int main(int argc, char **argv) {
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "serve") == 0) {
        if (argc == 4 && configure(argv[3]) != 0) return 1;
        return serve(atoi(argv[2]));
    }
    if (argc == 6 && strcmp(argv[1], "client") == 0) {
        int rounds = atoi(argv[5]);
        if (rounds < 1) rounds = 1;
        return client(argv[2], atoi(argv[3]), atof(argv[4]), rounds);
    }
    fprintf(stderr, "usage: netbench serve PORT [ADDRESS/PREFIX] | netbench client HOST PORT SECONDS ROUNDS\n");
    return 2;
}
