// A freestanding guest that floods rund's 8250 UART with its own output in loopback (MCR LOOP:
// every byte written to THR lands in the receive queue) and reads little or nothing back. The
// host's receive queue must stay the same size however long this goes on. Reports on COM1 once
// out of loopback, then powers off. SCENARIO selects the pattern (see UARTFloodGuestTests.swift);
// ROUNDS how long it goes on. After the first rounds it writes the boot marker, so the host
// measures its memory from a warmed-up VM (vCPU thread running, every path taken once).
#include "guest_io.h"

enum { NEVER_READ = 1, ONE_PENDING = 2, ONE_PENDING_BYTEWISE = 3 };

#define MCR (COM1 + 4)
#define LSR (COM1 + 5)
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_OE 0x02
#define CHUNK 4096

static uint8_t chunk[CHUNK];
static uint8_t received[CHUNK];

static inline uint8_t inb(uint16_t port) {
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

// String I/O: KVM hands the VMM up to a page of bytes per exit.
static void outsb(uint16_t port, const uint8_t *from, uint64_t count) {
    __asm__ volatile("cld; rep outsb" : "+S"(from), "+c"(count) : "d"(port) : "memory");
}
static void insb(uint16_t port, uint8_t *to, uint64_t count) {
    __asm__ volatile("cld; rep insb" : "+D"(to), "+c"(count) : "d"(port) : "memory");
}

static void report(const char *name, uint64_t value) { puts_(" "); puts_(name); puts_("="); putu(value); }

static void mark_warm(uint64_t round, uint64_t warm_rounds) {
    if (round == warm_rounds) *(volatile uint8_t *)0xd1000000ull = 1;  // VMMAddresses.bootMarker
}

__attribute__((section(".text._start"))) void _start(void) {
    for (int i = 0; i < CHUNK; i++) chunk[i] = (uint8_t)(i * 7 + 1);
    uint64_t sent = 0, received_count = 0, mismatches = 0, overruns = 0;
    map_mmio_gap();
    outb(MCR, MCR_OUT2 | MCR_LOOP);
    switch (SCENARIO) {
    case NEVER_READ:
        // The receiver keeps the first CHUNK bytes (a full queue); everything after is dropped.
        for (uint64_t round = 0; round < ROUNDS; round++) { mark_warm(round, 4); outsb(COM1, chunk, CHUNK); sent += CHUNK; }
        if (inb(LSR) & LSR_OE) overruns++;
        while (inb(LSR) & LSR_DR) {
            uint8_t byte = inb(COM1);
            if (received_count < CHUNK && byte != chunk[received_count]) mismatches++;
            received_count++;
        }
        break;
    case ONE_PENDING: {
        // One byte always waits: write a queue's worth, read back all but one.
        outb(COM1, 0xa5);
        uint8_t pending = 0xa5;
        sent = 1;
        for (uint64_t round = 0; round < ROUNDS; round++) {
            mark_warm(round, 4);
            outsb(COM1, chunk, CHUNK);
            sent += CHUNK;
            if (inb(LSR) & LSR_OE) overruns++;  // the queue held 1 + CHUNK - 1: the last byte is dropped
            insb(COM1, received, CHUNK - 1);
            received_count += CHUNK - 1;
            if (received[0] != pending) mismatches++;
            for (int i = 1; i < CHUNK - 1; i++) if (received[i] != chunk[i - 1]) mismatches++;
            pending = chunk[CHUNK - 2];
        }
        break;
    }
    case ONE_PENDING_BYTEWISE: {
        // The classic pattern: write a byte, read the one before it.
        uint8_t previous = 0;
        outb(COM1, previous);
        sent = 1;
        for (uint64_t round = 0; round < ROUNDS; round++) {
            mark_warm(round, 4 * CHUNK);
            uint8_t next = (uint8_t)(round * 13 + 1);
            outb(COM1, next);
            sent++;
            if (inb(COM1) != previous) mismatches++;
            received_count++;
            previous = next;
        }
        if (inb(LSR) & LSR_OE) overruns++;
        break;
    }
    }
    uint8_t lsr = inb(LSR);
    outb(MCR, MCR_OUT2);
    puts_("uart-flood:");
    report("sent", sent);
    report("received", received_count);
    report("mismatches", mismatches);
    report("overruns", overruns);
    report("pending", lsr & LSR_DR);
    puts_("\n");
    poweroff();
}
