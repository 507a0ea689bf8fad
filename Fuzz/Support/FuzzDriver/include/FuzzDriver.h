#ifndef RUND_FUZZ_DRIVER_H
#define RUND_FUZZ_DRIVER_H

#include <stddef.h>
#include <stdint.h>

// libFuzzer's entry point for programs that keep their own main (compiler-rt FuzzerInterface.h).
// SwiftPM links every executable with a Swift main (`--defsym main=<Target>_main`), which wins
// over libFuzzer's; so each target's main calls this with its LLVMFuzzerTestOneInput (which it
// still defines under that name: the linker pulls in libFuzzer's main object, which refers to it).
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
