// The q4 fit's error sums (quantize.c's q4_sums_vec) in AVX and AVX-512 registers: every lane sums its weights in
// order with no fused multiply-add (exact.h), so the results are the scalar reference's bit for bit.
#if defined(__x86_64__)
#include "../internal.h"
#include "../exact.h"
#include <immintrin.h>

/// q4_sums_vec with two 8-lane AVX vectors. `vroundps` rounds to nearest even as the reference's
/// magic-number addition does (it keeps the sign of a zero, which adds nothing to either sum); the body is
/// inlined into a copy for the common unweighted, rounding case and one for the rest.
__attribute__((target("avx"), always_inline))
static inline void q4_sums_avx_body(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq) {
    const __m256 lo = _mm256_set1_ps(-8), hi = _mm256_set1_ps(7);
    __m256 inverse[2], sxq[2], sqq[2];
    for (int v = 0; v < 2; v++) {
        inverse[v] = _mm256_div_ps(_mm256_set1_ps(1), _mm256_loadu_ps(scales + 8 * v));
        sxq[v] = sqq[v] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < n; i++) {
        // Unweighted (w NULL): w * x * q = x * q and w * q * q = q * q exactly, so one multiply less.
        const __m256 xi = _mm256_set1_ps(x[i]), wx = w ? _mm256_set1_ps(w[i] * x[i]) : xi, wi = _mm256_set1_ps(w ? w[i] : 1.0f);
        for (int v = 0; v < 2; v++) {
            __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(xi, inverse[v]), lo), hi);
            q = truncate ? _mm256_cvtepi32_ps(_mm256_cvttps_epi32(q)) : _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            sxq[v] = _mm256_add_ps(sxq[v], _mm256_mul_ps(wx, q));
            sqq[v] = _mm256_add_ps(sqq[v], _mm256_mul_ps(w ? _mm256_mul_ps(wi, q) : q, q));
        }
    }
    for (int v = 0; v < 2; v++) {
        _mm256_storeu_ps(xq + 8 * v, sxq[v]);
        _mm256_storeu_ps(qq + 8 * v, sqq[v]);
    }
}

__attribute__((target("avx")))
void edge_avx2_q4_sums(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq) {
    if (!w && !truncate) q4_sums_avx_body(x, NULL, n, scales, 0, xq, qq);
    else q4_sums_avx_body(x, w, n, scales, truncate, xq, qq);
}

/// q4_sums_vec with one 16-lane AVX-512 vector; rounding and the two copies as in q4_sums_avx.
__attribute__((target("avx512f"), always_inline))
static inline void q4_sums_avx512_body(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq) {
    const __m512 lo = _mm512_set1_ps(-8), hi = _mm512_set1_ps(7);
    const __m512 inverse = _mm512_div_ps(_mm512_set1_ps(1), _mm512_loadu_ps(scales));
    __m512 sxq = _mm512_setzero_ps(), sqq = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        const __m512 xi = _mm512_set1_ps(x[i]), wx = w ? _mm512_set1_ps(w[i] * x[i]) : xi;
        __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(xi, inverse), lo), hi);
        q = truncate ? _mm512_cvtepi32_ps(_mm512_cvttps_epi32(q)) : _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        sxq = _mm512_add_ps(sxq, _mm512_mul_ps(wx, q));
        sqq = _mm512_add_ps(sqq, _mm512_mul_ps(w ? _mm512_mul_ps(_mm512_set1_ps(w[i]), q) : q, q));
    }
    _mm512_storeu_ps(xq, sxq);
    _mm512_storeu_ps(qq, sqq);
}

__attribute__((target("avx512f")))
void edge_avx512_q4_sums(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq) {
    if (!w && !truncate) q4_sums_avx512_body(x, NULL, n, scales, 0, xq, qq);
    else q4_sums_avx512_body(x, w, n, scales, truncate, xq, qq);
}
#endif
