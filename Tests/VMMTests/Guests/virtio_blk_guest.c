// A freestanding 64-bit test guest for rund's VMM, run on the host's KVM.
// Entered in long mode at its load address with rund's boot page tables (first 1 GiB mapped);
// it maps the MMIO gap itself, drives the virtio-blk device at slot 0 through its virtqueue,
// reports on COM1 and powers off through the ACPI sleep control port.
// SCENARIO selects what the guest does (see VirtioBlockGuestTests.swift).
#include "guest_io.h"

#define QUEUE_SIZE 8

enum { READ_SECTOR0 = 1, WRITE_SECTOR1 = 2, DESC_OUTSIDE_MEMORY = 3, DESC_LOOP = 4,
       HUGE_LENGTH = 5, WRONG_DIRECTION = 6, AVAIL_IDX_JUMP = 7, RING_OUTSIDE_MEMORY = 8, SPIN = 9,
       RING_MISALIGNED = 10 };

struct blk_req { uint32_t type, reserved; uint64_t sector; };

// Fixed guest-physical buffers below the 1 GiB identity map (RAM is 64 MiB).
#define DESC_TABLE ((volatile struct desc *)0x200000)
#define AVAIL ((volatile uint16_t *)0x201000)
#define USED ((volatile uint16_t *)0x202000)
#define REQ ((volatile struct blk_req *)0x203000)
#define DATA ((volatile uint8_t *)0x204000)
#define STATUS ((volatile uint8_t *)0x205000)

static int setup_device(uint16_t queue_size, uint64_t desc, uint64_t avail, uint64_t used) {
    if (*reg(0x000) != 0x74726976 || *reg(0x004) != 2 || *reg(0x008) != 2) { puts_("no virtio-blk\n"); return 0; }
    *reg(0x070) = 0;
    *reg(0x070) = 1 | 2;                       // ACKNOWLEDGE | DRIVER
    *reg(0x014) = 1;
    uint32_t high = *reg(0x010);
    if (!(high & 1)) { puts_("no VERSION_1\n"); return 0; }
    *reg(0x024) = 1; *reg(0x020) = 1;          // accept VERSION_1 only
    *reg(0x024) = 0; *reg(0x020) = 0;
    *reg(0x070) = 1 | 2 | 8;                   // FEATURES_OK
    if (!(*reg(0x070) & 8)) { puts_("features refused\n"); return 0; }
    *reg(0x030) = 0;
    if (*reg(0x034) < QUEUE_SIZE) { puts_("queue too small\n"); return 0; }
    *reg(0x038) = queue_size;
    *reg(0x080) = (uint32_t)desc; *reg(0x084) = (uint32_t)(desc >> 32);
    *reg(0x090) = (uint32_t)avail; *reg(0x094) = (uint32_t)(avail >> 32);
    *reg(0x0a0) = (uint32_t)used; *reg(0x0a4) = (uint32_t)(used >> 32);
    *reg(0x044) = 1;
    *reg(0x070) = 1 | 2 | 8 | 4;               // DRIVER_OK
    return 1;
}

static void submit(uint16_t head, uint16_t new_idx) {
    AVAIL[2] = head;                           // ring[0]
    __asm__ volatile("" : : : "memory");
    AVAIL[1] = new_idx;                        // idx
    __asm__ volatile("mfence" : : : "memory");
    *reg(0x050) = 0;                           // QueueNotify
}

static void report(void) {
    // With RING_MISALIGNED the device's used index would be at USED + 4: report that one.
    puts_("used_idx="); putu(USED[SCENARIO == RING_MISALIGNED ? 2 : 1]);
    puts_(" status="); putu(*STATUS);
    puts_(" device_status="); putu(*reg(0x070));
    puts_("\n");
}

__attribute__((section(".text._start"))) void _start(void) {
    if (SCENARIO == SPIN) { puts_("spinning\n"); for (;;) __asm__ volatile("pause"); }
    map_mmio_gap();
    uint64_t desc = (uint64_t)DESC_TABLE, avail = (uint64_t)AVAIL, used = (uint64_t)USED;
    uint16_t queue_size = QUEUE_SIZE;
    if (SCENARIO == RING_OUTSIDE_MEMORY) desc = 0x7ffff000000ull;
    if (SCENARIO == RING_MISALIGNED) used += 2;  // the used ring must be 4-byte aligned
    if (!setup_device(queue_size, desc, avail, used)) poweroff();
    *STATUS = 0xff;

    volatile struct desc *d = DESC_TABLE;
    REQ->type = SCENARIO == WRITE_SECTOR1 ? 1 : 0;
    REQ->reserved = 0;
    REQ->sector = SCENARIO == WRITE_SECTOR1 ? 1 : 0;
    if (SCENARIO == WRITE_SECTOR1) { const char *m = "written by the guest"; for (int i = 0; m[i]; i++) DATA[i] = (uint8_t)m[i]; }
    d[0] = (struct desc){ (uint64_t)REQ, 16, 1, 1 };
    d[1] = (struct desc){ (uint64_t)DATA, 512, (uint16_t)(SCENARIO == WRITE_SECTOR1 ? 1 : 1 | 2), 2 };
    d[2] = (struct desc){ (uint64_t)STATUS, 1, 2, 0 };
    uint16_t new_idx = 1;
    switch (SCENARIO) {
    case DESC_OUTSIDE_MEMORY: d[1].addr = 0x7fff00000000ull; break;
    case DESC_LOOP: d[2].flags = 1 | 2; d[2].next = 0; break;
    case HUGE_LENGTH: d[1].len = 0xfffffff0u; break;
    case WRONG_DIRECTION: d[2].flags = 0; break;
    case AVAIL_IDX_JUMP: new_idx = 1000; break;
    }
    submit(0, new_idx);
    if (SCENARIO == READ_SECTOR0) {
        puts_("sector0=");
        for (int i = 0; i < 32 && DATA[i] >= 0x20 && DATA[i] < 0x7f; i++) putc_((char)DATA[i]);
        puts_("\n");
    }
    report();
    poweroff();
}
