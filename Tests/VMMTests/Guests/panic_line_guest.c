// A freestanding guest that prints a kernel panic line laced with terminal escape sequences (and
// a byte that is not UTF-8) on COM1, then resets through the i8042 as Linux's panic=-1 does. The
// VMM reports the VM's end as a panic quoting that line: escaped, never raw.
#include "guest_io.h"

__attribute__((section(".text._start"))) void _start(void) {
    puts_("[    1.000000] Kernel panic - not syncing: \x1b]0;pwned\x07\x1b[2J\b\b\xe2\x80\xae\xff done\r\n");
    outb(0x64, 0xfe);
    for (;;) __asm__ volatile("hlt");
}
