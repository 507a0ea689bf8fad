// Everything is static inline in the header; SwiftPM wants one source file per C target.
#include "CGuestMemory.h"
