// Element conversions used when reading checkpoints: IEEE half to float, exact (subnormals, infinities
// and NaN payloads included), with F16C on x86-64 CPUs that have it.
#include "internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("avx,f16c")))
static void edge_f16_to_f32_f16c(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = edge_half_to_float(src[i]);
}

static int edge_has_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    // F16C, AVX and OSXSAVE, and the OS saving YMM state.
    if (!((c >> 29) & 1) || !((c >> 28) & 1) || !((c >> 27) & 1)) return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}
#endif

void edge_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
#if defined(__x86_64__)
    // CPUID traps to the hypervisor in a VM: ask once (a race only asks twice, with the same answer).
    static int f16c = -1;
    int has = __atomic_load_n(&f16c, __ATOMIC_RELAXED);
    if (has < 0) __atomic_store_n(&f16c, has = edge_has_f16c(), __ATOMIC_RELAXED);
    if (has) { edge_f16_to_f32_f16c(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = edge_half_to_float(src[i]);
}
