// A freestanding guest for snapshots and clones (MachineSnapshotTests.swift). It sets up the
// virtio-blk driver for slot 0 (a drive with no medium when the snapshot is taken), writes the
// boot marker, then steps a 64-bit LCG CHUNKS * CHUNK_STEPS times, keeping the state in a register and its
// progress (chunks done) at PROGRESS. (No FPU or SSE: on PVM a freestanding guest's first x87 or
// SSE instruction ends in an emulation failure; KVMTests round-trip the XSAVE area instead.) The host snapshots it
// mid-computation. When done it waits for the drive's medium (a clone's own disk, announced by
// a config-change interrupt), reads sector 0 into SECTOR and copies it to MARK, and reports:
// "result=<hex> capacity=<n> generation=<n> isr=<n> sector0=<text>", then powers off.
#include "guest_io.h"

#define QUEUE_SIZE 8
#define CHUNKS 2048
#define CHUNK_STEPS (1u << 10)
#define LCG_A 6364136223846793005ull
#define LCG_C 1442695040888963407ull
#define SEED 0x2545f4914f6cdd1dull

#define PROGRESS ((volatile uint64_t *)0x400000)
#define DESC_TABLE ((volatile struct desc *)0x200000)
#define AVAIL ((volatile uint16_t *)0x201000)
#define USED ((volatile uint16_t *)0x202000)
#define REQ ((volatile struct blk_req *)0x203000)
#define SECTOR ((volatile uint8_t *)0x204000)
#define STATUS ((volatile uint8_t *)0x205000)
#define MARK ((volatile uint8_t *)0x600000)

struct blk_req { uint32_t type, reserved; uint64_t sector; };

// The MMIO base through a register: a constant address compiles to `mov moffs64`, which KVM's
// instruction emulator (PVM's included) does not decode for MMIO.
static volatile uint32_t *vreg(uint32_t offset) {
    uint64_t base = VIRTIO_BASE;
    __asm__ volatile("" : "+r"(base));
    return (volatile uint32_t *)(base + offset);
}
#define reg vreg

static void puthex(uint64_t v) {
    for (int shift = 60; shift >= 0; shift -= 4) putc_("0123456789abcdef"[(v >> shift) & 0xf]);
}

static int setup_disk(void) {
    if (*reg(0x000) != 0x74726976 || *reg(0x008) != 2) { puts_("no virtio-blk\n"); return 0; }
    *reg(0x070) = 0;
    *reg(0x070) = 1 | 2;
    *reg(0x014) = 1;
    if (!(*reg(0x010) & 1)) { puts_("no VERSION_1\n"); return 0; }
    *reg(0x024) = 1; *reg(0x020) = 1;
    *reg(0x024) = 0; *reg(0x020) = 0;
    *reg(0x070) = 1 | 2 | 8;
    if (!(*reg(0x070) & 8)) { puts_("features refused\n"); return 0; }
    *reg(0x030) = 0;
    *reg(0x038) = QUEUE_SIZE;
    uint64_t desc = (uint64_t)DESC_TABLE, avail = (uint64_t)AVAIL, used = (uint64_t)USED;
    *reg(0x080) = (uint32_t)desc; *reg(0x084) = (uint32_t)(desc >> 32);
    *reg(0x090) = (uint32_t)avail; *reg(0x094) = (uint32_t)(avail >> 32);
    *reg(0x0a0) = (uint32_t)used; *reg(0x0a4) = (uint32_t)(used >> 32);
    *reg(0x044) = 1;
    *reg(0x070) = 1 | 2 | 8 | 4;
    return 1;
}

static uint64_t capacity(void) { return (uint64_t)*reg(0x100) | ((uint64_t)*reg(0x104) << 32); }

static void read_sector0(void) {
    *STATUS = 0xff;
    REQ->type = 0; REQ->reserved = 0; REQ->sector = 0;
    volatile struct desc *d = DESC_TABLE;
    d[0] = (struct desc){ (uint64_t)REQ, 16, 1, 1 };
    d[1] = (struct desc){ (uint64_t)SECTOR, 512, 1 | 2, 2 };
    d[2] = (struct desc){ (uint64_t)STATUS, 1, 2, 0 };
    uint16_t next = AVAIL[1];
    AVAIL[2 + next % QUEUE_SIZE] = 0;
    __asm__ volatile("" : : : "memory");
    AVAIL[1] = (uint16_t)(next + 1);
    __asm__ volatile("mfence" : : : "memory");
    *reg(0x050) = 0;
}

__attribute__((section(".text._start"))) void _start(void) {
    map_mmio_gap();
    if (!setup_disk()) poweroff();
    *PROGRESS = 0;
    puts_("computing\n");
    uint64_t marker = 0xd1000000ull;
    __asm__ volatile("" : "+r"(marker));
    *(volatile uint8_t *)marker = 1;

    uint64_t x = SEED;
    for (uint64_t chunk = 0; chunk < CHUNKS; chunk++) {
        for (uint32_t step = 0; step < CHUNK_STEPS; step++) {
            x = x * LCG_A + LCG_C;
            __asm__ volatile("" : "+r"(x));
        }
        *PROGRESS = chunk + 1;
    }

    uint64_t sectors = 0;
    for (uint64_t tries = 0; tries < 100000000ull && (sectors = capacity()) == 0; tries++) __asm__ volatile("pause");
    uint32_t generation = *reg(0x0fc), isr = *reg(0x060);
    if (sectors) {
        read_sector0();  // Served synchronously by the QueueNotify exit.
        for (int i = 0; i < 512; i++) MARK[i] = SECTOR[i];
    }
    puts_("result="); puthex(x);
    puts_(" capacity="); putu(sectors);
    puts_(" generation="); putu(generation);
    puts_(" isr="); putu(isr);
    puts_(" status="); putu(*STATUS);
    puts_(" sector0=");
    for (int i = 0; i < 32 && MARK[i] >= 0x20 && MARK[i] < 0x7f; i++) putc_((char)MARK[i]);
    puts_("\n");
    poweroff();
}
