// Element conversions: IEEE half to float, exact (subnormals, infinities and NaN payloads included), with F16C on
// the x86 levels (every one of them requires it), and float to half, rounding to nearest even.
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

uint16_t edge_float_to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    int exp = (int)((bits >> 23) & 0xFF);
    uint32_t man = bits & 0x7FFFFF;
    if (exp == 0xFF) return sign | 0x7C00 | (man ? 0x200 : 0);
    int e = exp - 127 + 15;
    if (e >= 31) return sign | 0x7C00;
    if (e <= 0) {
        if (e < -10) return sign;
        uint32_t m = man | 0x800000, shift = (uint32_t)(14 - e), half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return sign | (uint16_t)half;
}
