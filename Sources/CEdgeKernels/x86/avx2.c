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
#define P256_VNNI 0
#include "packed256.h"
#include <math.h>

K256_ATTR void edge_avx2_quantize(const float *x, int64_t nblocks, int8_t *q, float *s) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < nblocks; b++) {
        const float *xb = x + b * 32;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        float amax = hmax256(m);
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

// Attention over q8/f16 caches. f16: values in chunks of 64 dimensions kept in eight accumulators
// across every position; scores eight dimensions per `vcvtph2ps` + `vfmadd`, with a scalar tail.

// Values: a tile of QN queries x DN groups of 8 dimensions at a time, its accumulators in registers; each
// position's codes are widened and scaled once per group (`vpmovsxbd`, `vcvtdq2ps`, one multiply by the row's block
// scale) and added to every query's accumulator with one FMA by its probability. A query's sums run over the
// positions in order whatever the tile, so a query's result does not depend on the queries beside it.
K256_INLINE void values_q8_tile(const int QN, const int DN, const float *p, int64_t pstride, const int8_t *v,
                                const float *scale, int64_t jn, int64_t hd, int64_t d, float *out, int64_t ostride) {
    __m256 acc[4][4];
    for (int i = 0; i < QN; i++)
        for (int c = 0; c < DN; c++) acc[i][c] = _mm256_loadu_ps(out + i * ostride + d + 8 * c);
    for (int64_t j = 0; j < jn; j++) {
        __m256 row[4];
        const __m256 s = _mm256_set1_ps(scale[j]);
        for (int c = 0; c < DN; c++)
            row[c] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(v + j * hd + d + 8 * c)))), s);
        for (int i = 0; i < QN; i++) {
            const __m256 w = _mm256_broadcast_ss(p + i * pstride + j);
            for (int c = 0; c < DN; c++) acc[i][c] = _mm256_fmadd_ps(row[c], w, acc[i][c]);
        }
    }
    for (int i = 0; i < QN; i++)
        for (int c = 0; c < DN; c++) _mm256_storeu_ps(out + i * ostride + d + 8 * c, acc[i][c]);
}

K256_ATTR void edge_avx2_attn_values_q8(const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales,
                                        int64_t npos, int64_t hd, float *out, int64_t ostride) {
    int64_t nb = hd / 32;
    float scale[128];
    for (int64_t j0 = 0; j0 < npos; j0 += 128) {
        int64_t jn = npos - j0 < 128 ? npos - j0 : 128;
        const int8_t *vj = v + j0 * hd;
        for (int64_t b = 0; b < nb; b++) {
            for (int64_t j = 0; j < jn; j++) scale[j] = _cvtsh_ss(vscales[(j0 + j) * nb + b]);
            // Up to four queries over 16 dimensions, or one or two over the block's 32: at most 8 accumulators.
            for (int64_t q = 0; q < nq;) {
                const float *pq = p + q * pstride + j0;
                float *oq = out + q * ostride;
                switch (nq - q) {
                case 1: values_q8_tile(1, 4, pq, pstride, vj, scale, jn, hd, b * 32, oq, ostride); q += 1; break;
                case 2: values_q8_tile(2, 4, pq, pstride, vj, scale, jn, hd, b * 32, oq, ostride); q += 2; break;
                case 3:
                    for (int64_t d = b * 32; d < b * 32 + 32; d += 16) values_q8_tile(3, 2, pq, pstride, vj, scale, jn, hd, d, oq, ostride);
                    q += 3;
                    break;
                default:
                    for (int64_t d = b * 32; d < b * 32 + 32; d += 16) values_q8_tile(4, 2, pq, pstride, vj, scale, jn, hd, d, oq, ostride);
                    q += 4;
                }
            }
        }
    }
}

K256_ATTR void edge_avx2_attn_scores_f16(const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out) {
    int64_t vec = hd & ~(int64_t)7;
    for (int64_t j = 0; j < npos; j++) {
        const uint16_t *row = k + j * hd;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t d = 0; d < vec; d += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + d))), acc);
        float total = hsum256(acc);
        for (int64_t d = vec; d < hd; d++) total += q[d] * _cvtsh_ss(row[d]);
        out[j] = total;
    }
}

K256_ATTR void edge_avx2_attn_values_f16(const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out) {
    int64_t vec = hd & ~(int64_t)7;
    for (int64_t d0 = 0; d0 < vec; d0 += 64) {
        int n = (int)((vec - d0 < 64 ? vec - d0 : 64) / 8);
        __m256 acc[8];
        for (int i = 0; i < n; i++) acc[i] = _mm256_loadu_ps(out + d0 + 8 * i);
        for (int64_t j = 0; j < npos; j++) {
            __m256 w = _mm256_set1_ps(p[j]);
            for (int i = 0; i < n; i++)
                acc[i] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + j * hd + d0 + 8 * i))), w, acc[i]);
        }
        for (int i = 0; i < n; i++) _mm256_storeu_ps(out + d0 + 8 * i, acc[i]);
    }
    for (int64_t j = 0; j < npos; j++)
        for (int64_t d = vec; d < hd; d++) out[d] += p[j] * _cvtsh_ss(v[j * hd + d]);
}

K256_ATTR float edge_avx2_scale_max(float *row, int64_t n, float scale) {
    const __m256 s = _mm256_set1_ps(scale);
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(row + j), s);
        _mm256_storeu_ps(row + j, v);
        m = _mm256_max_ps(m, v);
    }
    float max = hmax256(m);
    for (; j < n; j++) {
        row[j] *= scale;
        max = row[j] > max ? row[j] : max;
    }
    return max;
}

/// e^x in eight lanes (EdgeKernels.h, `edge_exp_sum`): x = k ln 2 + r with |r| <= ln 2 / 2, e^r from
/// Cephes' polynomial, 2^k added into the exponent bits.
K256_INLINE __m256 avx2_exp(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654475f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(lo, x));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

/// g / (1 + e^a) * u in eight lanes: SwiGLU with a = -g, GeGLU (tanh GELU) with a = -2 sqrt(2 / pi) (g + 0.044715 g^3).
K256_INLINE __m256 avx2_gated8(int gelu, __m256 g, __m256 u) {
    __m256 a = _mm256_sub_ps(_mm256_setzero_ps(), g);
    if (gelu) a = _mm256_mul_ps(_mm256_fmadd_ps(_mm256_mul_ps(g, g), _mm256_set1_ps(0.044715f), _mm256_set1_ps(1.0f)),
                                _mm256_mul_ps(g, _mm256_set1_ps(-1.5957691216057308f)));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), avx2_exp(a))), u);
}

K256_INLINE void avx2_gated(int gelu, float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(gate + i, avx2_gated8(gelu, _mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        // The tail from zero-padded copies.
        float g[8], u[8];
        for (int k = 0; k < 8; k++) g[k] = i + k < n ? gate[i + k] : 0.0f, u[k] = i + k < n ? up[i + k] : 0.0f;
        _mm256_storeu_ps(g, avx2_gated8(gelu, _mm256_loadu_ps(g), _mm256_loadu_ps(u)));
        for (int k = 0; i + k < n; k++) gate[i + k] = g[k];
    }
}

K256_ATTR void edge_avx2_swiglu(float *gate, const float *up, int64_t n) { avx2_gated(0, gate, up, n); }

K256_ATTR void edge_avx2_geglu(float *gate, const float *up, int64_t n) { avx2_gated(1, gate, up, n); }

K256_ATTR float edge_avx2_exp_sum(float *row, int64_t n, float max) {
    const __m256 m = _mm256_set1_ps(max);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(row + j), m));
        _mm256_storeu_ps(row + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (j < n) {
        // The tail through the same exp, from a padded copy (the padding's exp is 0).
        float tail[8];
        for (int i = 0; i < 8; i++) tail[i] = j + i < n ? row[j + i] : -INFINITY;
        __m256 e = avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(tail), m));
        _mm256_storeu_ps(tail, e);
        acc = _mm256_add_ps(acc, e);
        for (int i = 0; j + i < n; i++) row[j + i] = tail[i];
    }
    return hsum256(acc);
}
#endif
