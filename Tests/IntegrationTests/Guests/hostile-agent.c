/*
 * A hostile guest agent for `rund run --agent`: the guest's /init (PID 1) that loads the vsock
 * modules from /etc/modules.order, as rund-agent does, listens on vsock port 1024 and answers
 * rund's first request with one malformed ttrpc frame, then holds the connection open and says
 * nothing more, so rund must notice on its own (MODE_MUTE_AFTER_START instead plays along until
 * the process "runs", then never answers again). Built static, once per mode:
 *   gcc -static -O2 -DHOSTILE_MODE=MODE_... -o hostile-agent hostile-agent.c
 * After HOLD_SECONDS it powers the guest off (a PID 1 that exits would panic the guest).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/reboot.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MODE_BAD_HEADER 1     /* a header of unknown type and flags, then silence */
#define MODE_OVERSIZED 2      /* a response announcing 5 MiB (limit 4 MiB), then silence */
#define MODE_GARBAGE_PROTO 3  /* a response on the right stream whose payload is not protobuf */
#define MODE_UNKNOWN_STREAM 4 /* a well-formed response for a stream rund never opened */
#define MODE_MUTE_AFTER_START 5 /* answers CreateContainer and StartProcess, then nothing ever
                                   (SignalProcess, WaitProcess, output reads): a wedged agent */

#ifndef HOSTILE_MODE
#error "build with -DHOSTILE_MODE=MODE_..."
#endif
#define HOLD_SECONDS 90
#define AGENT_PORT 1024

static void say(const char *text) {
    int console = open("/dev/console", O_WRONLY | O_NOCTTY);
    if (console >= 0) {
        (void)!write(console, text, strlen(text));
        close(console);
    }
}

static void power_off(void) {
    sync();
    reboot(LINUX_REBOOT_CMD_POWER_OFF);
    for (;;) pause();
}

static void load_modules(void) {
    static char list[16384];
    int order = open("/etc/modules.order", O_RDONLY);
    if (order < 0) return;
    ssize_t n = read(order, list, sizeof list - 1);
    close(order);
    if (n <= 0) return;
    list[n] = 0;
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        char path[512];
        snprintf(path, sizeof path, "/lib/modules/%s", line);
        int module = open(path, O_RDONLY | O_CLOEXEC);
        if (module < 0) continue;
        syscall(SYS_finit_module, module, "", 0);
        close(module);
    }
}

static int read_fully(int fd, uint8_t *buffer, size_t count) {
    size_t got = 0;
    while (got < count) {
        ssize_t n = read(fd, buffer + got, count - got);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

static void put32(uint8_t *at, uint32_t value) {
    at[0] = value >> 24; at[1] = value >> 16; at[2] = value >> 8; at[3] = value;
}

static void send_frame(int fd, uint32_t length, uint32_t stream, uint8_t type, uint8_t flags,
                       const uint8_t *payload, size_t payload_length) {
    uint8_t header[10];
    put32(header, length);
    put32(header + 4, stream);
    header[8] = type;
    header[9] = flags;
    (void)!write(fd, header, sizeof header);
    if (payload_length) (void)!write(fd, payload, payload_length);
}

/* A protobuf varint at *at (below end); 0 past the end. */
static uint64_t varint(const uint8_t **at, const uint8_t *end) {
    uint64_t value = 0;
    for (int shift = 0; *at < end && shift < 64; shift += 7) {
        uint8_t byte = *(*at)++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) break;
    }
    return value;
}

/* True when the ttrpc Request in `request` calls `method` (field 2, a string). */
static int calls(const uint8_t *request, size_t length, const char *method) {
    const uint8_t *at = request, *end = request + length;
    while (at < end) {
        uint64_t key = varint(&at, end);
        if ((key & 7) == 0) { varint(&at, end); continue; }
        if ((key & 7) != 2) return 0;
        uint64_t size = varint(&at, end);
        if (size > (uint64_t)(end - at)) return 0;
        if (key >> 3 == 2) return size == strlen(method) && memcmp(at, method, size) == 0;
        at += size;
    }
    return 0;
}

/* Plays a working agent up to the process's start, then goes silent on the open connection. */
static void mute_after_start(int peer) {
    static uint8_t request[1 << 16];
    uint8_t header[10];
    for (;;) {
        if (read_fully(peer, header, sizeof header) < 0) power_off();
        uint32_t length = (uint32_t)header[0] << 24 | header[1] << 16 | header[2] << 8 | header[3];
        uint32_t stream = (uint32_t)header[4] << 24 | header[5] << 16 | header[6] << 8 | header[7];
        if (length > sizeof request || read_fully(peer, request, length) < 0) power_off();
        /* An empty Response payload decodes as success with an empty (default) answer. */
        if (calls(request, length, "CreateContainer")) {
            send_frame(peer, 0, stream, 0x02, 0, NULL, 0);
        } else if (calls(request, length, "StartProcess")) {
            send_frame(peer, 0, stream, 0x02, 0, NULL, 0);
            say("hostile-agent: started, now mute\n");
        } else if (calls(request, length, "SignalProcess")) {
            say("hostile-agent: got a signal, not answering\n");
        }
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    load_modules();
    int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_port = AGENT_PORT, .svm_cid = VMADDR_CID_ANY};
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 1) < 0) {
        say("hostile-agent: cannot listen on vsock port 1024\n");
        power_off();
    }
    int peer = accept(listener, NULL, NULL);
    if (HOSTILE_MODE == MODE_MUTE_AFTER_START) {
        if (peer < 0) power_off();
        mute_after_start(peer);
    }
    uint8_t header[10];
    static uint8_t request[1 << 16];
    if (peer < 0 || read_fully(peer, header, sizeof header) < 0) power_off();
    uint32_t length = (uint32_t)header[0] << 24 | header[1] << 16 | header[2] << 8 | header[3];
    uint32_t stream = (uint32_t)header[4] << 24 | header[5] << 16 | header[6] << 8 | header[7];
    if (length > sizeof request || read_fully(peer, request, length) < 0) power_off();

    /* Not protobuf: field 0 is invalid, and 0xff... is an unterminated varint. */
    static const uint8_t garbage[] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07, 0x1a};
    switch (HOSTILE_MODE) {
    case MODE_BAD_HEADER:
        send_frame(peer, sizeof garbage, 0, 0x7f, 0xff, garbage, sizeof garbage);
        break;
    case MODE_OVERSIZED:
        /* Announces 5 MiB and sends only a little: the reader must not allocate or wait for it all. */
        send_frame(peer, 5u << 20, stream, 0x02, 0, garbage, sizeof garbage);
        break;
    case MODE_GARBAGE_PROTO:
        send_frame(peer, sizeof garbage, stream, 0x02, 0, garbage, sizeof garbage);
        break;
    case MODE_UNKNOWN_STREAM:
        /* An empty Response message is valid protobuf: only the stream id is wrong. */
        send_frame(peer, 0, stream + 1000, 0x02, 0, NULL, 0);
        break;
    }
    say("hostile-agent: sent the malformed frame\n");
    sleep(HOLD_SECONDS);
    say("hostile-agent: gave up holding the connection\n");
    power_off();
}
