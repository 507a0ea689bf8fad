// Accesses to guest memory that the guest's vCPUs may change while the VMM reads it
// (virtqueue rings and descriptors). Swift has no volatile: these are single atomic loads
// and stores, so the compiler can neither split, merge, repeat nor drop them, and the
// acquire/release forms order the accesses around them as the virtio rings require. On x86
// each compiles to one plain mov. Callers (GuestMemory) check bounds and natural alignment.
#ifndef RUND_CGUESTMEMORY_H
#define RUND_CGUESTMEMORY_H

#include <stdint.h>

#define RUND_GUEST_ACCESS(bits)                                                              \
    static inline uint##bits##_t rund_guest_load_relaxed_##bits(const void *p) {             \
        return __atomic_load_n((const uint##bits##_t *)p, __ATOMIC_RELAXED);                 \
    }                                                                                        \
    static inline uint##bits##_t rund_guest_load_acquire_##bits(const void *p) {             \
        return __atomic_load_n((const uint##bits##_t *)p, __ATOMIC_ACQUIRE);                 \
    }                                                                                        \
    static inline void rund_guest_store_relaxed_##bits(void *p, uint##bits##_t value) {      \
        __atomic_store_n((uint##bits##_t *)p, value, __ATOMIC_RELAXED);                      \
    }                                                                                        \
    static inline void rund_guest_store_release_##bits(void *p, uint##bits##_t value) {      \
        __atomic_store_n((uint##bits##_t *)p, value, __ATOMIC_RELEASE);                      \
    }

RUND_GUEST_ACCESS(8)
RUND_GUEST_ACCESS(16)
RUND_GUEST_ACCESS(32)
RUND_GUEST_ACCESS(64)

#undef RUND_GUEST_ACCESS

#endif
