#ifndef PRESENCELOG_PREFETCH_H
#define PRESENCELOG_PREFETCH_H

/// Asks the CPU to start loading the cache line at `address` (for reading, keep in all cache levels).
/// A hint only: it never faults, whatever the address.
static inline void presencelog_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
