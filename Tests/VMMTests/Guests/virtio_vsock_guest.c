// A freestanding 64-bit test guest for rund's virtio-vsock device, run on the host's KVM.
// Like virtio_blk_guest.c it maps the MMIO gap itself; it drives the vsock device at slot 0 by
// polling its used rings (no interrupts), the way Linux's virtio_transport lays packets out:
// connect to host port 1024, send a greeting, print the host's answer, shut down, wait for RST.
#include "guest_io.h"

#define QUEUE_SIZE 8
#define RX_BUFFERS 4
#define RX_BUFFER_SIZE 4140                    // header + 4 KiB, as Linux posts them

enum { RX = 0, TX = 1, EVENT = 2 };
enum { REQUEST = 1, RESPONSE = 2, RST = 3, SHUTDOWN = 4, RW = 5 };

struct __attribute__((packed)) hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

// Per queue q: descriptor table, available ring, used ring, one page each from 0x200000 + q*0x3000.
#define QUEUE_PAGE(q, n) (0x200000ull + (uint64_t)(q) * 0x3000 + (uint64_t)(n) * 0x1000)
#define DESC(q) ((volatile struct desc *)QUEUE_PAGE(q, 0))
#define AVAIL(q) ((volatile uint16_t *)QUEUE_PAGE(q, 1))
#define USED(q) ((volatile uint16_t *)QUEUE_PAGE(q, 2))
#define RX_AREA 0x220000ull
#define TX_HDR ((volatile struct hdr *)0x230000)
#define TX_DATA ((volatile uint8_t *)0x231000)

static void barrier(void) { __asm__ volatile("mfence" : : : "memory"); }

static uint64_t guest_cid;
static uint16_t avail_idx[3], used_seen, tx_next;

static int setup_device(void) {
    if (*reg(0x000) != 0x74726976 || *reg(0x004) != 2 || *reg(0x008) != 19) { puts_("no virtio-vsock\n"); return 0; }
    *reg(0x070) = 0;
    *reg(0x070) = 1 | 2;
    *reg(0x024) = 1; *reg(0x020) = 1;          // VERSION_1
    *reg(0x024) = 0; *reg(0x020) = 1;          // VIRTIO_VSOCK_F_STREAM
    *reg(0x070) = 1 | 2 | 8;
    if (!(*reg(0x070) & 8)) { puts_("features refused\n"); return 0; }
    guest_cid = *reg(0x100) | (uint64_t)*reg(0x104) << 32;
    for (uint32_t q = 0; q < 3; q++) {
        *reg(0x030) = q;
        *reg(0x038) = QUEUE_SIZE;
        uint64_t d = QUEUE_PAGE(q, 0), a = QUEUE_PAGE(q, 1), u = QUEUE_PAGE(q, 2);
        *reg(0x080) = (uint32_t)d; *reg(0x084) = (uint32_t)(d >> 32);
        *reg(0x090) = (uint32_t)a; *reg(0x094) = (uint32_t)(a >> 32);
        *reg(0x0a0) = (uint32_t)u; *reg(0x0a4) = (uint32_t)(u >> 32);
        *reg(0x044) = 1;
    }
    *reg(0x070) = 1 | 2 | 8 | 4;
    return 1;
}

static void publish(int q, uint16_t head) {
    AVAIL(q)[2 + avail_idx[q] % QUEUE_SIZE] = head;
    barrier();
    AVAIL(q)[1] = ++avail_idx[q];
    barrier();
}

static void post_rx(uint16_t i) {
    DESC(RX)[i] = (struct desc){ RX_AREA + (uint64_t)i * RX_BUFFER_SIZE, RX_BUFFER_SIZE, 2, 0 };
    publish(RX, i);
}

static void send(uint16_t op, uint32_t flags, const char *data) {
    uint32_t len = 0;
    while (data && data[len]) { TX_DATA[len] = (uint8_t)data[len]; len++; }
    *TX_HDR = (struct hdr){ guest_cid, 2, 5000, 1024, len, 1, op, flags, 65536, 0 };
    uint16_t head = tx_next;
    DESC(TX)[head] = (struct desc){ (uint64_t)TX_HDR, 44, (uint16_t)(len ? 1 : 0), (uint16_t)(head + 1) };
    if (len) DESC(TX)[head + 1] = (struct desc){ (uint64_t)TX_DATA, len, 0, 0 };
    tx_next = (uint16_t)((tx_next + 2) % QUEUE_SIZE);
    publish(TX, head);
    *reg(0x050) = TX;
}

// Waits for the next received packet (the host may deliver from its own thread at any time).
static volatile struct hdr *receive(void) {
    for (uint64_t spins = 0; spins < 2000000000ull; spins++) {
        if (USED(RX)[1] != used_seen) {
            barrier();
            uint32_t id = *(volatile uint32_t *)(QUEUE_PAGE(RX, 2) + 4 + 8 * (used_seen % QUEUE_SIZE));
            used_seen++;
            post_rx((uint16_t)id);
            *reg(0x050) = RX;
            return (volatile struct hdr *)(RX_AREA + (uint64_t)id * RX_BUFFER_SIZE);
        }
        __asm__ volatile("pause");
    }
    puts_("timed out waiting for a packet\n");
    poweroff();
    return 0;
}

__attribute__((section(".text._start"))) void _start(void) {
    map_mmio_gap();
    if (!setup_device()) poweroff();
    puts_("cid="); putu(guest_cid); puts_("\n");
    for (uint16_t i = 0; i < RX_BUFFERS; i++) post_rx(i);
    *reg(0x050) = RX;

    send(REQUEST, 0, 0);
    volatile struct hdr *h = receive();
    puts_("op="); putu(h->op); puts_(" buf_alloc="); putu(h->buf_alloc); puts_("\n");
    if (h->op != RESPONSE) poweroff();

    send(RW, 0, "hello from the guest");
    h = receive();
    puts_("op="); putu(h->op); puts_(" data=");
    volatile uint8_t *p = (volatile uint8_t *)(h + 1);
    for (uint32_t i = 0; i < h->len && i < 64; i++) putc_((char)p[i]);
    puts_("\n");

    send(SHUTDOWN, 3, 0);
    h = receive();
    puts_("op="); putu(h->op); puts_(" device_status="); putu(*reg(0x070)); puts_("\n");
    poweroff();
}
