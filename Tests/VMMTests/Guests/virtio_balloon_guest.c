// A freestanding 64-bit test guest for rund's virtio-balloon (see VirtioBalloonGuestTests.swift).
// It negotiates free page reporting, fills memory with a pattern, reports one 8 MiB run as free
// and inflates the balloon with a few pages, then reads both back (given-back pages read zero;
// a page it kept keeps its pattern), and last reports a run that crosses the end of RAM (the
// device must need a reset, and the VMM carry on). It reports on COM1 and powers off.
// With PMEM_BASE defined (a pmem image there, the balloon in the second slot), the balloon is
// also given the image's first page, and the last report is of the image's first pages.
#ifdef PMEM_BASE
#define VIRTIO_BASE 0xd0001000ull
#endif
#include "guest_io.h"

#define QUEUE_SIZE 8
#define RAM_END (64ull << 20)
#define REPORTED ((volatile uint8_t *)(32ull << 20))
#define REPORTED_SIZE (8ull << 20)
#define INFLATED ((volatile uint8_t *)(48ull << 20))
#define PFNS ((volatile uint32_t *)0x210000)

static volatile struct desc *desc_table(int q) { return (volatile struct desc *)(0x200000 + 0x3000 * (uint64_t)q); }
static volatile uint16_t *avail(int q) { return (volatile uint16_t *)(0x201000 + 0x3000 * (uint64_t)q); }
static volatile uint16_t *used(int q) { return (volatile uint16_t *)(0x202000 + 0x3000 * (uint64_t)q); }

static int setup(void) {
    if (*reg(0x000) != 0x74726976 || *reg(0x004) != 2 || *reg(0x008) != 5) { puts_("no virtio-balloon\n"); return 0; }
    *reg(0x070) = 0;
    *reg(0x070) = 1 | 2;
    *reg(0x014) = 0;
    uint32_t low = *reg(0x010);
    *reg(0x014) = 1;
    if (!(*reg(0x010) & 1) || !(low & (1u << 5))) { puts_("no VERSION_1 or PAGE_REPORTING\n"); return 0; }
    *reg(0x024) = 0; *reg(0x020) = 1u << 5;   // PAGE_REPORTING
    *reg(0x024) = 1; *reg(0x020) = 1;         // VERSION_1
    *reg(0x070) = 1 | 2 | 8;
    if (!(*reg(0x070) & 8)) { puts_("features refused\n"); return 0; }
    for (int q = 0; q < 3; q++) {
        *reg(0x030) = (uint32_t)q;
        if (*reg(0x034) < QUEUE_SIZE) { puts_("queue too small\n"); return 0; }
        *reg(0x038) = QUEUE_SIZE;
        *reg(0x080) = (uint32_t)(uint64_t)desc_table(q); *reg(0x084) = 0;
        *reg(0x090) = (uint32_t)(uint64_t)avail(q); *reg(0x094) = 0;
        *reg(0x0a0) = (uint32_t)(uint64_t)used(q); *reg(0x0a4) = 0;
        *reg(0x044) = 1;
    }
    *reg(0x070) = 1 | 2 | 8 | 4;
    return 1;
}

// One-descriptor chain on queue q, published as its n-th request.
static void one(int q, uint16_t n, uint64_t addr, uint32_t len, uint16_t flags) {
    desc_table(q)[n] = (struct desc){ addr, len, flags, 0 };
    avail(q)[2 + n] = n;
    __asm__ volatile("" : : : "memory");
    avail(q)[1] = (uint16_t)(n + 1);
    __asm__ volatile("mfence" : : : "memory");
    *reg(0x050) = (uint32_t)q;
}

static uint64_t count_nonzero(volatile uint8_t *p, uint64_t size, uint64_t step) {
    uint64_t n = 0;
    for (uint64_t i = 0; i < size; i += step) n += p[i] != 0;
    return n;
}

__attribute__((section(".text._start"))) void _start(void) {
    map_mmio_gap();
    if (!setup()) poweroff();
    for (uint64_t i = 0; i < REPORTED_SIZE; i += 64) REPORTED[i] = 0xaa;
    for (uint64_t i = 0; i < 5 * 4096; i++) INFLATED[i] = 0xbb;
    puts_("filled: reported_nonzero="); putu(count_nonzero(REPORTED, REPORTED_SIZE, 64)); puts_("\n");

    // Free page reporting: one device-writable run of 8 MiB.
    one(2, 0, (uint64_t)REPORTED, (uint32_t)REPORTED_SIZE, 2);
    puts_("reported: used_idx="); putu(used(2)[1]);
    puts_(" reported_nonzero="); putu(count_nonzero(REPORTED, REPORTED_SIZE, 64)); puts_("\n");

    // Inflate: pages 0-3 of INFLATED (page 4 kept), page 1 twice, and a page far outside RAM.
    uint32_t first = (uint32_t)((uint64_t)INFLATED >> 12);
    PFNS[0] = first + 3; PFNS[1] = first; PFNS[2] = first + 1; PFNS[3] = first + 2; PFNS[4] = first + 1;
    PFNS[5] = 0x7fffffff;
#ifdef PMEM_BASE
    PFNS[6] = (uint32_t)(PMEM_BASE >> 12);
    one(0, 0, (uint64_t)PFNS, 7 * 4, 0);
#else
    one(0, 0, (uint64_t)PFNS, 6 * 4, 0);
#endif
    puts_("inflated: used_idx="); putu(used(0)[1]);
    puts_(" given_nonzero="); putu(count_nonzero(INFLATED, 4 * 4096, 1));
    puts_(" kept_nonzero="); putu(count_nonzero(INFLATED + 4 * 4096, 4096, 1)); puts_("\n");

    // The guest says how many pages it gave (config `actual`, offset 4).
    *reg(0x100 + 4) = 4;

#ifdef PMEM_BASE
    // A reported run over the image: not RAM, a malformed chain.
    one(2, 1, PMEM_BASE, 8192, 2);
#else
    // A reported run that crosses the end of RAM: a malformed chain.
    one(2, 1, RAM_END - 4096, 8192, 2);
#endif
    puts_("hostile: used_idx="); putu(used(2)[1]);
    puts_(" device_status="); putu(*reg(0x070)); puts_("\n");
    poweroff();
}
