// A freestanding guest for the VMM's own behaviour (stall watchdog, confinement, memory
// accounting), loaded at 1 MiB and entered in long mode. SCENARIO selects what it does (see
// MachineWatchdogTests.swift and MachineConfinementTests.swift).
#include "guest_io.h"

#define BOOT_MARKER 1   // writes the boot marker, then says so and powers off
#define SILENT_SPIN 2   // says "spinning", then loops without a single VM exit
#define IDLE 3          // says "idle", then halts with interrupts off: halted forever
#define TOUCH_MEMORY 4  // writes every page of [16 MiB, 16 MiB + TOUCH_MIB), says "touched", then idles

#ifndef TOUCH_MIB
#define TOUCH_MIB 64
#endif

__attribute__((section(".text._start"))) void _start(void) {
    if (SCENARIO == BOOT_MARKER) {
        map_mmio_gap();
        *(volatile uint8_t *)0xd1000000ull = 1;
        puts_("after the marker\n");
        poweroff();
    }
    if (SCENARIO == SILENT_SPIN) {
        puts_("spinning\n");
        for (;;) __asm__ volatile("" ::: "memory");
    }
    if (SCENARIO == TOUCH_MEMORY) {
        for (uint64_t page = 16ull << 20; page < (16ull + TOUCH_MIB) << 20; page += 4096) *(volatile uint8_t *)page = 1;
        puts_("touched\n");
    }
    if (SCENARIO == IDLE) puts_("idle\n");
    for (;;) __asm__ volatile("cli; hlt");
}
