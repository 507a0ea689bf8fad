// Shared by the freestanding test guests: COM1 output, ACPI poweroff, virtio-mmio registers,
// and mapping the MMIO gap (rund's boot page tables map only the first 1 GiB).
#include <stdint.h>

#define COM1 0x3f8
#define SLEEP_CONTROL 0x600
#ifndef VIRTIO_BASE
#define VIRTIO_BASE 0xd0000000ull  // a guest whose device is not in the first slot defines its own
#endif
#define PD_HIGH ((volatile uint64_t *)0x300000)
#define PDPT ((volatile uint64_t *)0xa000)

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static void putc_(char c) { outb(COM1, (uint8_t)c); }
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void putu(uint64_t v) {
    char buf[21]; int i = 20; buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts_(&buf[i]);
}
static volatile uint32_t *reg(uint32_t offset) { return (volatile uint32_t *)(VIRTIO_BASE + offset); }
static void poweroff(void) { outb(SLEEP_CONTROL, (5 << 2) | (1 << 5)); for (;;) __asm__ volatile("hlt"); }

static void map_mmio_gap(void) {
    // PDPT[3] covers [3 GiB, 4 GiB): 2 MiB pages, uncached.
    for (uint64_t i = 0; i < 512; i++) PD_HIGH[i] = (0xc0000000ull + (i << 21)) | 0x9b;
    PDPT[3] = 0x300000 | 0x3;
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
}
