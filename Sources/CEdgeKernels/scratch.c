// Per-thread scratch buffers of the composite kernels (q4a, q4o, q5o, q4n, q6) and the AVX-512 row decode, 64-byte
// aligned and kept between calls: a matrix product's decoded rows and offsets would otherwise be allocated on every
// call, and blocks above malloc's mmap threshold (128 KiB) come back as fresh zero pages each time.
#include "internal.h"
#include <stdlib.h>

enum { EDGE_SCRATCH_SLOTS = 7 };

static _Thread_local struct { void *data; size_t bytes; } scratch[EDGE_SCRATCH_SLOTS];

void *edge_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= EDGE_SCRATCH_SLOTS) abort();
    if (scratch[slot].bytes < bytes) {
        free(scratch[slot].data);
        // Rounded up to 64 KiB so that slowly growing requests do not reallocate every time.
        const size_t rounded = (bytes + 0xFFFF) & ~(size_t)0xFFFF;
        if (posix_memalign(&scratch[slot].data, 64, rounded) != 0) abort();
        scratch[slot].bytes = rounded;
    }
    return scratch[slot].data;
}
