/*
 * A hostile guest agent for `rund run --agent`: the guest's /init (PID 1) that loads the vsock
 * modules from /etc/modules.order, as rund-agent does, and listens on vsock port 1024. Built
 * static, once per mode:
 *   gcc -static -O2 -Wall -Werror -DHOSTILE_MODE=MODE_... -o hostile-agent hostile-agent.c
 * Malformed-frame modes answer rund's first request with one malformed ttrpc frame, then hold
 * the connection open and say nothing more, so rund must notice on its own; after HOLD_SECONDS
 * the agent powers the guest off (a PID 1 that exits would panic the guest).
 * Lying modes speak well-formed ttrpc but answer with values no real agent would send: exit
 * codes and signals out of range, a huge pid, error messages full of terminal escape sequences
 * (and megabytes of them). They answer every call at once and power off on Shutdown.
 * MODE_MUTE_AFTER_START plays a working agent until the process "runs", then never answers
 * anything again, SignalProcess included: a wedged agent rund must stop on its own.
 * MODE_SPIN_ON_CREATE answers nothing and spins on CreateContainer: a guest that stops making
 * progress in the middle of a call (as when the rig's emulator loses one) and must be named so.
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
/* Lying modes: well-formed ttrpc, impossible values or hostile text (see serve_lies). */
#define MODE_EXIT_HUGE 5        /* exit_code 0x7fffffff */
#define MODE_EXIT_256 6         /* exit_code 256: 0 once truncated to 8 bits */
#define MODE_SIGNAL_NEGATIVE 7  /* signal -1 */
#define MODE_SIGNAL_HUGE 8      /* signal 1 << 30 */
#define MODE_SIGNAL_MAX 9       /* signal 0x7fffffff: 128 + it overflows an int32 */
#define MODE_HUGE_PID 10        /* StartProcess answers pid 0xffffffff; the process "exits" 7 */
#define MODE_ESCAPE_MESSAGE 11  /* CreateContainer fails with escape sequences in the message */
#define MODE_HUGE_MESSAGE 12    /* ... with 3 MiB of them */
#define MODE_DEADLINE_MESSAGE 13 /* ... as DEADLINE_EXCEEDED, which rund quotes differently */
#define MODE_MUTE_AFTER_START 14 /* answers CreateContainer and StartProcess, then nothing, ever */
#define MODE_SPIN_ON_CREATE 15   /* receives CreateContainer, then loops without a VM exit */

#ifndef HOSTILE_MODE
#error "build with -DHOSTILE_MODE=MODE_..."
#endif
#define HOLD_SECONDS 300
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

static void write_fully(int fd, const uint8_t *bytes, size_t count) {
    while (count > 0) {
        ssize_t n = write(fd, bytes, count);
        if (n <= 0) return;
        bytes += n;
        count -= (size_t)n;
    }
}

static void send_frame(int fd, uint32_t length, uint32_t stream, uint8_t type, uint8_t flags,
                       const uint8_t *payload, size_t payload_length) {
    uint8_t header[10];
    put32(header, length);
    put32(header + 4, stream);
    header[8] = type;
    header[9] = flags;
    write_fully(fd, header, sizeof header);
    if (payload_length) write_fully(fd, payload, payload_length);
}

/* ---- Just enough protobuf for the lying modes ---- */

/* A message being built: appends never run past `capacity` (the rest is dropped). */
struct buffer { uint8_t *bytes; size_t length, capacity; };

static void put_byte(struct buffer *b, uint8_t byte) {
    if (b->length < b->capacity) b->bytes[b->length++] = byte;
}

static void put_varint(struct buffer *b, uint64_t value) {
    while (value >= 0x80) { put_byte(b, (uint8_t)(value | 0x80)); value >>= 7; }
    put_byte(b, (uint8_t)value);
}

/* int32 fields are varints of the value sign-extended to 64 bits (10 bytes when negative). */
static void put_int32_field(struct buffer *b, unsigned field, int32_t value) {
    put_varint(b, (uint64_t)field << 3);
    put_varint(b, (uint64_t)(int64_t)value);
}

static void put_bytes_field(struct buffer *b, unsigned field, const uint8_t *bytes, size_t count) {
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, count);
    for (size_t i = 0; i < count; i++) put_byte(b, bytes[i]);
}

/* The method name of a ttrpc Request (field 2), or "" when absent or malformed. */
static void request_method(const uint8_t *bytes, size_t length, char *method, size_t method_size) {
    size_t at = 0;
    method[0] = 0;
    while (at < length) {
        uint64_t key = 0, value = 0;
        for (int shift = 0; at < length && shift < 64; shift += 7) {
            key |= (uint64_t)(bytes[at] & 0x7f) << shift;
            if (!(bytes[at++] & 0x80)) break;
        }
        for (int shift = 0; at < length && shift < 64; shift += 7) {
            value |= (uint64_t)(bytes[at] & 0x7f) << shift;
            if (!(bytes[at++] & 0x80)) break;
        }
        if ((key & 7) == 0) continue;          /* a varint field: value read */
        if ((key & 7) != 2 || value > length - at) return;
        if (key >> 3 == 2 && value < method_size) {
            memcpy(method, bytes + at, value);
            method[value] = 0;
        }
        at += value;
    }
}

/* Text that tries to retitle, clear and overwrite the operator's terminal, forge a line of
 * rund's own and reverse what follows (U+202E). */
static const char hostile_text[] =
    "\x1b]0;pwned\x07\x1b[2J\x1b[H\rrund: all good\n\b\b\t\xe2\x80\xae\x1b[31mred";

/* Answers one request: an error status (code, message) or an OK payload. */
static void answer(int fd, uint32_t stream, int32_t code, const uint8_t *message, size_t message_length,
                   const uint8_t *payload, size_t payload_length) {
    static uint8_t response_bytes[4 << 20];
    static uint8_t status_bytes[4 << 20];
    struct buffer response = {response_bytes, 0, sizeof response_bytes};
    if (code != 0) {
        struct buffer status = {status_bytes, 0, sizeof status_bytes};
        put_int32_field(&status, 1, code);
        put_bytes_field(&status, 2, message, message_length);
        put_bytes_field(&response, 1, status.bytes, status.length);
    } else if (payload_length) {
        put_bytes_field(&response, 2, payload, payload_length);
    }
    send_frame(fd, (uint32_t)response.length, stream, 0x02, 0, response.bytes, response.length);
}

/* Reads frames until a request (type 1) and names its method; -1 when the connection ends or a
 * frame is larger than any request rund sends. */
static int next_request(int peer, uint32_t *stream, char *method, size_t method_size) {
    static uint8_t request[1 << 16];
    for (;;) {
        uint8_t header[10];
        if (read_fully(peer, header, sizeof header) < 0) return -1;
        uint32_t length = (uint32_t)header[0] << 24 | header[1] << 16 | header[2] << 8 | header[3];
        *stream = (uint32_t)header[4] << 24 | header[5] << 16 | header[6] << 8 | header[7];
        if (length > sizeof request || read_fully(peer, request, length) < 0) return -1;
        if (header[8] != 0x01) continue;
        request_method(request, length, method, method_size);
        return 0;
    }
}

/* Serves calls until rund asks for Shutdown or goes away, lying as HOSTILE_MODE says. */
static void serve_lies(int peer) {
    static uint8_t huge[3 << 20];
    for (;;) {
        uint32_t stream;
        char method[64];
        if (next_request(peer, &stream, method, sizeof method) < 0) return;

        uint8_t payload_bytes[64];
        struct buffer payload = {payload_bytes, 0, sizeof payload_bytes};
        if (!strcmp(method, "CreateContainer")) {
            if (HOSTILE_MODE == MODE_ESCAPE_MESSAGE) {
                answer(peer, stream, 13, (const uint8_t *)hostile_text, sizeof hostile_text - 1, NULL, 0);
                continue;
            }
            if (HOSTILE_MODE == MODE_DEADLINE_MESSAGE) {
                answer(peer, stream, 4, (const uint8_t *)hostile_text, sizeof hostile_text - 1, NULL, 0);
                continue;
            }
            if (HOSTILE_MODE == MODE_HUGE_MESSAGE) {
                /* Whole copies only: a cut UTF-8 sequence would make it invalid protobuf. */
                size_t text = sizeof hostile_text - 1, total = sizeof huge / text * text;
                for (size_t i = 0; i < total; i++) huge[i] = (uint8_t)hostile_text[i % text];
                answer(peer, stream, 13, huge, total, NULL, 0);
                continue;
            }
        } else if (!strcmp(method, "StartProcess")) {
            put_varint(&payload, 1 << 3);
            put_varint(&payload, HOSTILE_MODE == MODE_HUGE_PID ? 0xffffffffu : 42);
        } else if (!strcmp(method, "ReadStdout") || !strcmp(method, "ReadStderr")) {
            put_varint(&payload, 2 << 3);
            put_varint(&payload, 1);  /* eof */
        } else if (!strcmp(method, "WaitProcess")) {
            int32_t exit_code = 0, signal_number = 0;
            switch (HOSTILE_MODE) {
            case MODE_EXIT_HUGE: exit_code = 0x7fffffff; break;
            case MODE_EXIT_256: exit_code = 256; break;
            case MODE_SIGNAL_NEGATIVE: signal_number = -1; break;
            case MODE_SIGNAL_HUGE: signal_number = 1 << 30; break;
            case MODE_SIGNAL_MAX: signal_number = 0x7fffffff; break;
            default: exit_code = 7; break;
            }
            if (exit_code) put_int32_field(&payload, 1, exit_code);
            if (signal_number) put_int32_field(&payload, 2, signal_number);
        }
        answer(peer, stream, 0, NULL, 0, payload.bytes, payload.length);
        if (!strcmp(method, "Shutdown")) return;
    }
}

/* Plays a working agent up to the process's start, then goes silent on the open connection. */
static void mute_after_start(int peer) {
    for (;;) {
        uint32_t stream;
        char method[64];
        if (next_request(peer, &stream, method, sizeof method) < 0) return;
        /* An empty Response payload decodes as success with an empty (default) answer. */
        if (!strcmp(method, "CreateContainer")) {
            send_frame(peer, 0, stream, 0x02, 0, NULL, 0);
        } else if (!strcmp(method, "StartProcess")) {
            send_frame(peer, 0, stream, 0x02, 0, NULL, 0);
            say("hostile-agent: started, now mute\n");
        } else if (!strcmp(method, "SignalProcess")) {
            say("hostile-agent: got a signal, not answering\n");
        }
    }
}

/* Reads requests until CreateContainer, then spins: no system call, no VM exit, ever. */
static void spin_on_create(int peer) {
    for (;;) {
        uint32_t stream;
        char method[64];
        if (next_request(peer, &stream, method, sizeof method) < 0) return;
        if (!strcmp(method, "CreateContainer")) {
            say("hostile-agent: spinning\n");
            for (;;) __asm__ volatile("" ::: "memory");
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
    say("hostile-agent: listening\n");
    int peer = accept(listener, NULL, NULL);
    if (peer < 0) power_off();
    if (HOSTILE_MODE == MODE_SPIN_ON_CREATE) {
        spin_on_create(peer);
        power_off();
    }
    if (HOSTILE_MODE == MODE_MUTE_AFTER_START) {
        mute_after_start(peer);
        power_off();
    }
    if (HOSTILE_MODE >= MODE_EXIT_HUGE) {
        serve_lies(peer);
        say("hostile-agent: done lying\n");
        power_off();
    }
    uint32_t stream;
    char method[64];
    if (next_request(peer, &stream, method, sizeof method) < 0) power_off();

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
