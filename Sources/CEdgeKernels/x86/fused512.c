// q4o (4-bit codes n, an f16 scale d and offset m per group: w = d n + m) for a few tokens at the AVX-512 VNNI level
// (decode, the residual pair, token-wise batches), its scales and offsets applied inside the product: per row and
// token Σ_b xs_b (d_b Σ n x + m_b Σ x_b), two blocks per 512-bit `vpdpbusd`. The activations are reordered once per
// call to the nibbles' order, so a weight pair is two masks and no permute, and Σ x is taken once per call. The
// offset path of q4a.c (the q4 kernel, then Σ (m + 8 d) xs Σ x row by row) spent a third of SmolLM2's q4o decode
// decoding scale words; here they are one load per block pair. (The same structure for q4, its offset -8 d, measured
// 5-10% slower than the q4 kernel: q4 keeps its own.) A row's codes and terms serve up to four tokens at once
// (token-wise batches: a 9-token verification of SmolLM2's q4o file 19.9-22.4 -> 17.5-18.5 ms).
#if defined(__x86_64__)
#include "../internal.h"
#include <immintrin.h>

#define EDGE_FUSED512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/// Pair p's (d, m) terms [d_b, m_b, d_b1, m_b1]. `single`: each block has its own pair (else pair p's blocks share
/// group `g`'s).
EDGE_FUSED512 static inline __attribute__((always_inline)) __m128 pair_terms(int single, const uint16_t *pairs, int64_t p, int64_t g, int tail) {
    if (single && !tail) return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(pairs + 4 * p)));
    int32_t word;
    memcpy(&word, pairs + 2 * (single ? 2 * p : g), sizeof word);
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(word));
    return _mm_movelh_ps(dm, dm);
}

/// Row r against tokens [t, t + T) of the prepared activations xr and sums sx: each block pair's codes and terms
/// once for the T tokens, each (row, token) summed as it is alone (the first group prefetches the row).
EDGE_FUSED512 static inline __attribute__((always_inline)) void fused_row(int single, const int T, const uint8_t *w, const uint16_t *ws,
                                                                         int64_t nblocks, int64_t gblocks, int64_t r, int64_t t,
                                                                         const int8_t *xr, const float *sx, float *out, int64_t ors,
                                                                         int64_t ots) {
    const int64_t npairs = (nblocks + 1) / 2, ngroups = (nblocks + gblocks - 1) / gblocks, full = nblocks / 2;
    // Lanes 0-3 and 8-11 of a pair's dot products are block b's, 4-7 and 12-15 block b1's: the products
    // [d xs, m xs Σx, d1 xs1, m1 xs1 Σx1] spread by this index; lanes 1 and 3 are the offsets' terms.
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2);
    const __m256i low = _mm256_set1_epi8(0x0F);
    const uint8_t *row = w + r * nblocks * 16;
    const uint16_t *pairs = ws + 2 * r * ngroups;
    __m512 acc[4];
    __m128 offsets[4];
    for (int k = 0; k < T; k++) {
        acc[k] = _mm512_setzero_ps();
        offsets[k] = _mm_setzero_ps();
    }
    for (int64_t p = 0; p < npairs; p++) {
        const int tail = p == full;
        __m256i packed;
        if (!tail) {
            packed = _mm256_loadu_si256((const __m256i *)(row + p * 32));
            if (t == 0) _mm_prefetch((const char *)(row + p * 32) + 4096, _MM_HINT_T0);
        } else {
            packed = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(row + p * 32)));
        }
        const __m128 terms = pair_terms(single, pairs, p, single ? 0 : 2 * p / gblocks, tail);
        const __m512i codes = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(packed, low)),
                                                 _mm256_and_si256(_mm256_srli_epi16(packed, 4), low), 1);
        for (int k = 0; k < T; k++) {
            const int8_t *xt = xr + (t + k) * npairs * 64;
            const float *st = sx + (t + k) * npairs * 4;
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, _mm512_loadu_si512(xt + p * 64));
            const __m128 scaled = _mm_mul_ps(terms, _mm_loadu_ps(st + p * 4));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(scaled)), acc[k]);
            offsets[k] = _mm_mask_add_ps(offsets[k], 0xA, offsets[k], scaled);
        }
    }
    for (int k = 0; k < T; k++) {
        const __m128 high = _mm_movehl_ps(offsets[k], offsets[k]);
        out[r * ors + (t + k) * ots] =
            _mm512_reduce_add_ps(acc[k]) + _mm_cvtss_f32(_mm_add_ss(_mm_movehdup_ps(offsets[k]), _mm_movehdup_ps(high)));
    }
}

/// Rows [r0, r1) times `ntok` tokens (see the file's comment). Each (row, token) is summed in the same order whatever
/// `ntok`, so the product is token-wise. `gblocks`: 1, even, or the whole row (`edge_fused_groups`).
EDGE_FUSED512 static inline __attribute__((always_inline)) void fused(int single, EDGE_MATMUL_ARGS(uint8_t)) {
    const int64_t npairs = (nblocks + 1) / 2;
    // xr [ntok, npairs, 64]: each pair's activations as [b 0-15 | b1 0-15 | b 16-31 | b1 16-31] (a missing b1 as zeros);
    // sx [ntok, npairs, 4]: (xs_b, xs_b Σ x_b, the same for b1) (zeros for a missing b1).
    int8_t *xr = edge_scratch(0, (size_t)(ntok * npairs * 64));
    float *sx = edge_scratch(1, (size_t)(ntok * npairs * 4) * sizeof *sx);
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t b = 0; b < npairs * 2; b++) {
            int8_t *to = xr + (t * npairs + b / 2) * 64 + (b & 1) * 16;
            float *s = sx + (t * npairs + b / 2) * 4 + (b & 1) * 2;
            if (b >= nblocks) {
                memset(to, 0, 16);
                memset(to + 32, 0, 16);
                s[0] = s[1] = 0;
                continue;
            }
            const int8_t *from = x + (t * nblocks + b) * 32;
            memcpy(to, from, 16);
            memcpy(to + 32, from + 16, 16);
            int32_t sum = 0;
            for (int i = 0; i < 32; i++) sum += from[i];
            s[0] = xs[t * nblocks + b];
            s[1] = s[0] * (float)sum;
        }
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < ntok; t += 4) {
            const int64_t T = ntok - t < 4 ? ntok - t : 4;
            switch (T) {
            case 4: fused_row(single, 4, w, ws, nblocks, gblocks, r, t, xr, sx, out, ors, ots); break;
            case 3: fused_row(single, 3, w, ws, nblocks, gblocks, r, t, xr, sx, out, ors, ots); break;
            case 2: fused_row(single, 2, w, ws, nblocks, gblocks, r, t, xr, sx, out, ors, ots); break;
            default: fused_row(single, 1, w, ws, nblocks, gblocks, r, t, xr, sx, out, ors, ots); break;
            }
        }
}

EDGE_FUSED512 void edge_avx512_fused_q4o(EDGE_MATMUL_ARGS(uint8_t)) {
    if (gblocks == 1) return fused(1, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    fused(0, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}
#endif
