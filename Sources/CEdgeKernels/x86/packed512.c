// The AVX-512 kernel of rows packed sixteen at a time (packed.c has the layout): per block and token, eight
// `vpdpbusd` advance all sixteen rows, then one convert, multiply and FMA apply the block's scales (and for q4o a
// second FMA its offsets); the codes of a block are loaded once for up to four tokens. Each (row, token) sums its
// blocks in order exactly as edge_generic_packed does, whatever the tile, so a batch gives each token's
// single-token result bit for bit.
#if defined(__x86_64__)
#include "../internal.h"
#include <immintrin.h>

#define PACKED_ATTR __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/// A group's 16 results for one token: rows ors apart.
PACKED_ATTR static inline void edge_packed_store(__m512 v, float *o, int64_t ors) {
    if (ors == 1) {
        _mm512_storeu_ps(o, v);
        return;
    }
    float lanes[16];
    _mm512_storeu_ps(lanes, v);
    for (int i = 0; i < 16; i++) o[i * ors] = lanes[i];
}

/// Group g's rows against tokens [t, t + T): acc[k] holds the 16 rows of token t + k.
PACKED_ATTR static inline __attribute__((always_inline)) void packed_group(const int kind, const int T, const uint8_t *codes,
                                                                           const uint16_t *scales, const uint16_t *offsets,
                                                                           int64_t nblocks, const int8_t *x, const float *xs,
                                                                           const int32_t *sums, int64_t t, __m512 *acc) {
    const int vectors = edge_packed_vectors(kind);
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < T; k++) acc[k] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8_t *v = codes + b * vectors * 64;
        __m512i wv[8];
        if (kind == EDGE_PACKED_Q8) {
            for (int j = 0; j < 8; j++) wv[j] = _mm512_loadu_si512((const void *)(v + 64 * j));
        } else {
            for (int j = 0; j < 4; j++) {
                const __m512i both = _mm512_loadu_si512((const void *)(v + 64 * j));
                wv[j] = _mm512_and_si512(both, low);
                wv[4 + j] = _mm512_and_si512(_mm512_srli_epi16(both, 4), low);
            }
        }
        const __m512 wscale = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + b * 16)));
        const __m512 woffset =
            kind == EDGE_PACKED_Q4O ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(offsets + b * 16))) : _mm512_setzero_ps();
        for (int k = 0; k < T; k++) {
            const int64_t tb = (t + k) * nblocks + b;
            const int32_t *xw = (const int32_t *)(x + tb * 32);
            // wv[j] holds elements 4j..4j+3 of every row, wv[4 + j] elements 16+4j..16+4j+3 (q4: the low and high
            // nibbles of vector j; q8: vectors j and 4 + j).
            __m512i lo = _mm512_set1_epi32(edge_packed_start(kind, sums[tb])), hi = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++) {
                lo = _mm512_dpbusd_epi32(lo, wv[j], _mm512_set1_epi32(xw[j]));
                hi = _mm512_dpbusd_epi32(hi, wv[4 + j], _mm512_set1_epi32(xw[4 + j]));
            }
            const __m512 scale = _mm512_mul_ps(wscale, _mm512_set1_ps(xs[tb]));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), scale, acc[k]);
            if (kind == EDGE_PACKED_Q4O) acc[k] = _mm512_fmadd_ps(woffset, _mm512_set1_ps(xs[tb] * (float)sums[tb]), acc[k]);
        }
    }
}

/// Groups [r0 / 16, r1 / 16) against tokens in tiles of four, then one by one.
PACKED_ATTR static inline __attribute__((always_inline)) void packed_rows(const int kind, const uint8_t *p, int64_t nrows,
                                                                          int64_t nblocks, int64_t r0, int64_t r1,
                                                                          const int8_t *x, const float *xs, const int32_t *sums,
                                                                          int64_t ntok, float *out, int64_t ors, int64_t ots) {
    const int64_t vectors = edge_packed_vectors(kind);
    const uint16_t *scales = edge_packed_scales(p, kind, nrows, nblocks), *offsets = edge_packed_offsets(p, kind, nrows, nblocks);
    for (int64_t g = r0 / 16; g < r1 / 16; g++) {
        const uint8_t *codes = p + g * nblocks * vectors * 64;
        const uint16_t *gs = scales + g * nblocks * 16, *go = offsets + g * nblocks * 16;
        float *o = out + 16 * g * ors;
        int64_t t = 0;
        __m512 acc[4];
        for (; t + 4 <= ntok; t += 4) {
            packed_group(kind, 4, codes, gs, go, nblocks, x, xs, sums, t, acc);
            for (int k = 0; k < 4; k++) edge_packed_store(acc[k], o + (t + k) * ots, ors);
        }
        for (; t < ntok; t++) {
            packed_group(kind, 1, codes, gs, go, nblocks, x, xs, sums, t, acc);
            edge_packed_store(acc[0], o + t * ots, ors);
        }
    }
}

PACKED_ATTR void edge_avx512_packed(int kind, const uint8_t *p, int64_t nrows, int64_t nblocks, int64_t r0, int64_t r1,
                                    const int8_t *x, const float *xs, const int32_t *sums, int64_t ntok, float *out, int64_t ors,
                                    int64_t ots) {
    if (kind == EDGE_PACKED_Q8) packed_rows(EDGE_PACKED_Q8, p, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
    else if (kind == EDGE_PACKED_Q4) packed_rows(EDGE_PACKED_Q4, p, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
    else packed_rows(EDGE_PACKED_Q4O, p, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
}
#endif
