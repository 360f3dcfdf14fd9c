// For the files whose vector code must give its scalar reference's bits (quantize.c, gptq.c, q4a.c's fit): no fused
// multiply-adds, their 8-lane vector types, and no GCC warning about the calling convention of wide vectors,
// which these files only pass between always-inlined helpers (GCC reports it at the end of a file, so it is
// off for all of it).
#ifndef EDGE_KERNELS_EXACT_H
#define EDGE_KERNELS_EXACT_H

#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif
#pragma GCC diagnostic ignored "-Wpsabi"

#include <stdint.h>

/// The 8-lane vectors these files compute in (GCC/clang vector extensions: one AVX register, two SSE or NEON
/// ones, half an AVX-512 one; v8d is one AVX-512 register), and the attribute of the helpers that use them.
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
#define EDGE_INLINE static inline __attribute__((always_inline))

#endif
