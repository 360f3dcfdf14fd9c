// Element conversions used when reading checkpoints: IEEE half to float, exact (subnormals, infinities
// and NaN payloads included), with F16C on the x86 levels (every one of them requires it).
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx,f16c")))
void edge_avx2_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = edge_half_to_float(src[i]);
}
#endif

void edge_generic_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = edge_half_to_float(src[i]);
}
