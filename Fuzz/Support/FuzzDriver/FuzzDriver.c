// Only a declaration lives here (FuzzDriver.h); libFuzzer itself is linked by -sanitize=fuzzer.
#include "FuzzDriver.h"
