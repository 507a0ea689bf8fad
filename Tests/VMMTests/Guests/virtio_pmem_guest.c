// A freestanding 64-bit test guest for rund's virtio-pmem (see VirtioPmemGuestTests.swift).
// It finds the device in virtio-mmio slot 0, reads where its range lies from the config space,
// maps that range itself, reads it, tries to write it (the slot is read-only: the write must
// change nothing), then sends a flush, a request of an unknown type and a malformed one, and
// reports each on COM1 before powering off.
#include "guest_io.h"

#define QUEUE_SIZE 8
#define DESC_TABLE ((volatile struct desc *)0x200000)
#define AVAIL ((volatile uint16_t *)0x201000)
#define USED ((volatile uint16_t *)0x202000)
#define USED_LEN(i) (*(volatile uint32_t *)(0x202000 + 4 + 8 * (i) + 4))
#define REQ ((volatile uint32_t *)0x203000)
#define RESP ((volatile uint32_t *)0x204000)
// One page directory of 2 MiB pages for the 1 GiB the pmem range starts in.
#define PD_PMEM ((volatile uint64_t *)0x302000)

static void puthex(uint64_t v) {
    puts_("0x");
    for (int shift = 60; shift >= 0; shift -= 4) putc_("0123456789abcdef"[(v >> shift) & 0xf]);
}

static uint64_t config64(uint32_t offset) {
    return (uint64_t)*reg(0x100 + offset) | (uint64_t)*reg(0x104 + offset) << 32;
}

static int setup_queue(void) {
    *reg(0x070) = 0;
    *reg(0x070) = 1 | 2;
    *reg(0x014) = 1;
    if (!(*reg(0x010) & 1)) { puts_("no VERSION_1\n"); return 0; }
    *reg(0x024) = 1; *reg(0x020) = 1;
    *reg(0x024) = 0; *reg(0x020) = 0;
    *reg(0x070) = 1 | 2 | 8;
    if (!(*reg(0x070) & 8)) { puts_("features refused\n"); return 0; }
    *reg(0x030) = 0;
    if (*reg(0x034) < QUEUE_SIZE) { puts_("queue too small\n"); return 0; }
    *reg(0x038) = QUEUE_SIZE;
    *reg(0x080) = (uint32_t)(uint64_t)DESC_TABLE; *reg(0x084) = 0;
    *reg(0x090) = (uint32_t)(uint64_t)AVAIL; *reg(0x094) = 0;
    *reg(0x0a0) = (uint32_t)(uint64_t)USED; *reg(0x0a4) = 0;
    *reg(0x044) = 1;
    *reg(0x070) = 1 | 2 | 8 | 4;
    return 1;
}

// Puts chain `head` in avail slot `n` and notifies; the device answers synchronously.
static void submit(uint16_t n, uint16_t head) {
    AVAIL[2 + n] = head;
    __asm__ volatile("" : : : "memory");
    AVAIL[1] = (uint16_t)(n + 1);
    __asm__ volatile("mfence" : : : "memory");
    *reg(0x050) = 0;
}

static void request(const char *name, uint16_t n, uint32_t type, int with_response) {
    volatile struct desc *d = DESC_TABLE;
    REQ[0] = type;
    RESP[0] = 0xdeadbeef;
    d[2 * n] = (struct desc){ (uint64_t)REQ, 4, (uint16_t)(with_response ? 1 : 0), (uint16_t)(2 * n + 1) };
    d[2 * n + 1] = (struct desc){ (uint64_t)RESP, 4, 2, 0 };
    submit(n, (uint16_t)(2 * n));
    puts_(name); puts_(": used_idx="); putu(USED[1]);
    puts_(" used_len="); putu(USED_LEN(n));
    puts_(" ret="); puthex(RESP[0]);
    puts_(" device_status="); putu(*reg(0x070));
    puts_("\n");
}

__attribute__((section(".text._start"))) void _start(void) {
    map_mmio_gap();
    if (*reg(0x000) != 0x74726976 || *reg(0x004) != 2 || *reg(0x008) != 27) { puts_("no virtio-pmem\n"); poweroff(); }
    uint64_t start = config64(0), size = config64(8);
    puts_("start="); puthex(start); puts_(" size="); putu(size); puts_("\n");
    if (start & ((1ull << 30) - 1) || size == 0 || size > (1ull << 30)) { puts_("range not mappable by this guest\n"); poweroff(); }
    for (uint64_t i = 0; i < 512; i++) PD_PMEM[i] = (start + (i << 21)) | 0x83;
    PDPT[start >> 30] = 0x302000 | 0x3;
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");

    volatile uint8_t *pmem = (volatile uint8_t *)start;
    puts_("text=");
    for (int i = 0; i < 64 && pmem[i] >= 0x20 && pmem[i] < 0x7f; i++) putc_((char)pmem[i]);
    puts_("\n");
    // FNV-1a over the file's HASHED bytes; then one byte of each page of the padding up to
    // 2 MiB and its last byte, which must be zero. (Not every padding byte: a read-only zero page
    // may fault on every access, slowly, on some hosts.)
    uint64_t hash = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < HASHED; i++) { hash ^= pmem[i]; hash *= 0x100000001b3ull; }
    uint64_t nonzero = pmem[size - 1] != 0;
    for (uint64_t i = HASHED; i < size; i += 4096) nonzero += pmem[i + (i >> 12) % 4096] != 0;
    puts_("fnv="); puthex(hash); puts_(" padding_nonzero="); putu(nonzero); puts_("\n");
    uint8_t before = pmem[0];
    pmem[0] = (uint8_t)(before ^ 0xff);
    pmem[size - 1] = 0x55;
    puts_("after_write: first_changed="); putu(pmem[0] != before);
    puts_(" last="); putu(pmem[size - 1]); puts_("\n");

    if (!setup_queue()) poweroff();
    request("flush", 0, 0, 1);
    request("unknown", 1, 7, 1);
    request("malformed", 2, 0, 0);
    poweroff();
}
