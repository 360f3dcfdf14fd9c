// The AVX2 level (+FMA, F16C): signed int8 products through `vpmaddubsw` (unsigned x signed) and
// `vpmaddwd`. q8 moves w's sign onto x (`vpsignb`), exact because codes stay in [-127, 127]:
// |w| * x pairs sum to at most 2 * 127 * 127 = 32258 < 32767, so `vpmaddubsw` never saturates. q4
// multiplies the unsigned nibbles n = code + 8 (pairs at most 2 * 15 * 127) and subtracts 8 * x pairs.
// Also the activation quantizer of every x86 level.
#if defined(__x86_64__)
#define K256_ATTR __attribute__((target("avx2,fma,f16c")))
#define K256_NAME(x) edge_avx2_##x
#define K256_Q8_DOT(a, w, x) _mm256_madd_epi16(_mm256_maddubs_epi16((a), _mm256_sign_epi8((x), (w))), _mm256_set1_epi16(1))
#define K256_Q4_CORR(x) _mm256_maddubs_epi16(_mm256_set1_epi8(8), (x))
// A q4 part is int16 x16, each lane a pair of (code * x) products: |lane| <= 2 * 8 * 127 = 2032, so two
// blocks' parts add pairwise (`vphaddw`) before one `vpmaddwd` widens both.
#define K256_Q4_PART(n, x, c) _mm256_sub_epi16(_mm256_maddubs_epi16((n), (x)), (c))
#define K256_Q4_WIDEN(p) _mm256_madd_epi16((p), _mm256_set1_epi16(1))
#define K256_Q4_PAIR(p0, p1) _mm256_madd_epi16(_mm256_hadd_epi16((p0), (p1)), _mm256_set1_epi16(1))
#include "kernels256.h"

K256_ATTR void edge_avx2_quantize(const float *x, int64_t nblocks, int8_t *q, float *s) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < nblocks; b++) {
        const float *xb = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        // Undo the lane interleaving of the two pack steps.
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * 32), p);
        s[b] = d;
    }
}
#endif
