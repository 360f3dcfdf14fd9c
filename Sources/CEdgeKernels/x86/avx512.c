// The AVX-512 VNNI level (F, BW, VL, VNNI): 512-bit `vpdpbusd` over pairs of blocks. Its activation
// quantizer is the AVX2 one.
#if defined(__x86_64__)
#include "../internal.h"
#include <immintrin.h>

#define EDGE_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define GEMM_ATTR EDGE_VNNI
#include "gemm.h"

// 512-bit VNNI kernels: two blocks per instruction. Lanes 0-7 of a dot product belong to the first block,
// lanes 8-15 to the second; the scale vector repeats each block's scale over its eight lanes.

// A weight block pair prepared once and applied to several tokens. A row with an odd number of blocks
// ends with a half pair: its loads are masked to the first block, the second reads as zeros.
#define EDGE_FULL_PAIR (~0ULL)
#define EDGE_HALF_PAIR 0xFFFFFFFFULL

// q8: |w| (unsigned) and w's sign mask, applied to x by negating x where w < 0.
typedef struct { __m512i magnitude; __mmask64 negative; } q8_pair;

EDGE_VNNI static inline q8_pair prep_pair_q8(const int8_t *w, __mmask64 blocks) {
    __m512i wv = _mm512_maskz_loadu_epi8(blocks, (const void *)w);
    q8_pair p = { _mm512_abs_epi8(wv), _mm512_movepi8_mask(wv) };
    return p;
}

/// A token's activation pair, loaded once per tile step and shared by the tile's rows; for q4 also the
/// -8 * sum(x) correction every row's dot starts from (unused for q8).
typedef struct { __m512i x, base; } x_pair;

EDGE_VNNI static inline x_pair load_x_q8(const int8_t *x, __mmask64 blocks) {
    x_pair p = { _mm512_maskz_loadu_epi8(blocks, (const void *)x), _mm512_setzero_si512() };
    return p;
}

EDGE_VNNI static inline __m512i dot_pair_q8(q8_pair w, x_pair x) {
    __m512i sx = _mm512_mask_sub_epi8(x.x, w.negative, _mm512_setzero_si512(), x.x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.magnitude, sx);
}

// q4: nibbles n = code + 8 are unsigned, so dot = dpbusd(n, x) - 8 * sum(x); the correction is a dpbusd
// of the constant 8 with x, negated and used as the accumulator's starting value.
typedef struct { __m512i nibbles; } q4_pair;

EDGE_VNNI static inline q4_pair prep_pair_q4(const uint8_t *w, __mmask64 blocks) {
    // [b.bytes 16 | b1.bytes 16]; a half pair reads only b's 16 bytes.
    __m256i packed = _mm256_maskz_loadu_epi8(blocks == EDGE_FULL_PAIR ? 0xFFFFFFFFu : 0xFFFFu, (const void *)w);
    __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(packed), _mm256_srli_epi16(packed, 4), 1);
    both = _mm512_and_si512(both, _mm512_set1_epi8(0x0F));  // [b.lo | b1.lo | b.hi | b1.hi] in 128-bit lanes
    // [b.lo b.hi | b1.lo b1.hi]; for a half pair the b1 half must be zero, not the nibble 0.
    __m512i n = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7), both);
    q4_pair p = { _mm512_maskz_mov_epi8(blocks, n) };
    return p;
}

EDGE_VNNI static inline x_pair load_x_q4(const int8_t *x, __mmask64 blocks) {
    __m512i xv = _mm512_maskz_loadu_epi8(blocks, (const void *)x);
    __m512i correction = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), xv);
    x_pair p = { xv, _mm512_sub_epi32(_mm512_setzero_si512(), correction) };
    return p;
}

EDGE_VNNI static inline __m512i dot_pair_q4(q4_pair w, x_pair x) { return _mm512_dpbusd_epi32(x.base, w.nibbles, x.x); }

// Scales of blocks b, b+1 over lanes 0-7 and 8-15.
EDGE_VNNI static inline __m512 pair_scales(__m128 two) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), _mm512_castps128_ps512(two));
}

// The weight-scale pair of blocks b, b+1 (1 for per-channel rows, applied once at the end).
EDGE_VNNI static inline __m128 weight_scales(const uint16_t *wsr, int64_t b, int64_t gblocks, int single, int per_channel, int half) {
    if (single) return _mm_cvtph_ps(half ? _mm_cvtsi32_si128(wsr[b]) : _mm_cvtsi32_si128(*(const int32_t *)(wsr + b)));
    if (!per_channel) return _mm_set1_ps(_cvtsh_ss(wsr[b / gblocks]));
    return _mm_set1_ps(1.0f);
}

// One block pair (or, with HALF, the last single block) of R rows against TILE tokens: each row's
// weights are prepared once and used for every token, each token's activations (and q4 correction) once
// and used for every row. Full pairs use plain loads: masked loads kept the hardware prefetcher from
// streaming weights (decode ran 3x slower from DRAM).
#define EDGE_AVX512_PAIR_STEP(R, TILE, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES, HALF)                          \
    {                                                                                                     \
        const __mmask64 blocks = HALF ? EDGE_HALF_PAIR : EDGE_FULL_PAIR;                                  \
        __m128 wsc[R];                                                                                    \
        PAIR wp[R];                                                                                       \
        for (int i = 0; i < R; i++) {                                                                     \
            wsc[i] = weight_scales(wsr + i * ngroups, b, gblocks, single, per_channel, HALF);             \
            const WTYPE *wb = wr + i * nblocks * BLOCKBYTES + b * BLOCKBYTES;                             \
            /* Prefetch 4 KiB ahead in the weight stream (+8-10% decode from DRAM, measured A/B). */      \
            if (!HALF) _mm_prefetch((const char *)wb + 4096, _MM_HINT_T0);                                \
            wp[i] = PREP(wb, blocks);                                                                     \
        }                                                                                                 \
        for (int k = 0; k < TILE; k++) {                                                                  \
            const float *sx = xs + (t + k) * nblocks + b;                                                 \
            __m128 s = HALF ? _mm_load_ss(sx) : _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)sx));   \
            x_pair xv = XLOAD(x + (t + k) * nblocks * 32 + b * 32, blocks);                               \
            /* Rows with one scale take the token's alone (times 1, as wsc holds): one permute for all R. */ \
            const __m512 token_scales = per_channel ? pair_scales(s) : _mm512_setzero_ps();               \
            for (int i = 0; i < R; i++) {                                                                 \
                __m512 scales = per_channel ? token_scales : pair_scales(_mm_mul_ps(s, wsc[i]));          \
                acc[i][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(PAIR_DOT(wp[i], xv)), scales, acc[i][k]);  \
            }                                                                                             \
        }                                                                                                 \
    }

// Rows [r, r + R) against TILE tokens.
#define EDGE_AVX512_ROW_TILE(R, TILE, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES)                                \
    {                                                                                                     \
        __m512 acc[R][TILE];                                                                              \
        for (int i = 0; i < R; i++)                                                                       \
            for (int k = 0; k < TILE; k++) acc[i][k] = _mm512_setzero_ps();                               \
        int64_t b = 0;                                                                                    \
        for (; b + 2 <= nblocks; b += 2) EDGE_AVX512_PAIR_STEP(R, TILE, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES, 0) \
        if (b < nblocks) EDGE_AVX512_PAIR_STEP(R, TILE, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES, 1)                 \
        for (int i = 0; i < R; i++)                                                                       \
            for (int k = 0; k < TILE; k++) {                                                              \
                float total = _mm512_reduce_add_ps(acc[i][k]);                                            \
                out[(r + i) * ors + (t + k) * ots] = per_channel ? total * _cvtsh_ss(wsr[i * ngroups]) : total; \
            }                                                                                             \
    }

// Rows [r, r + R) against every token: tiles of 8, 4, then 1.
#define EDGE_AVX512_ROWS(R, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES)                                        \
    {                                                                                                     \
        const WTYPE *wr = w + r * nblocks * BLOCKBYTES;                                                   \
        const uint16_t *wsr = ws + r * ngroups;                                                           \
        int64_t t = 0;                                                                                    \
        for (; t + 8 <= ntok; t += 8) EDGE_AVX512_ROW_TILE(R, 8, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES) \
        for (; t + 4 <= ntok; t += 4) EDGE_AVX512_ROW_TILE(R, 4, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES) \
        for (; t < ntok; t++) EDGE_AVX512_ROW_TILE(R, 1, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES)         \
    }

// Decode (one token) of rows with one scale per block or per row goes to x86/decode512.c (token-wise q4 batches
// too, each token there as in its decode step); other decode takes rows one at a time, the weight stream's best
// pattern when rows are long, and in row pairs when they are short (EDGE_SHORT_ROW_BLOCKS blocks or fewer). Batches
// take row pairs, sharing each activation load (and q4 correction) between the two rows. Each (row, token) of q8
// sums in the same order every way.
#define EDGE_SHORT_ROW_BLOCKS 32
#define EDGE_AVX512_MATMUL(NAME, FALLBACK, DECODE, TOKENWISE, WTYPE_, BLOCKBYTES, PAIR, PREP, XLOAD, PAIR_DOT)     \
    EDGE_VNNI void NAME(EDGE_MATMUL_ARGS(WTYPE_)) {                                                      \
        typedef WTYPE_ WTYPE;                                                                            \
        int per_channel = gblocks >= nblocks, single = gblocks == 1 && !per_channel;                     \
        if (!per_channel && !single && (gblocks & 1)) {                                                  \
            FALLBACK(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);                       \
            return;                                                                                      \
        }                                                                                                \
        if ((single || per_channel) && nblocks <= EDGE_DECODE_MAX_BLOCKS && (ntok == 1 || TOKENWISE)) {   \
            DECODE((const uint8_t *)w, ws, nblocks, per_channel, r0, r1, x, xs, ntok, out, ors, ots);     \
            return;                                                                                      \
        }                                                                                                \
        int64_t ngroups = (nblocks + gblocks - 1) / gblocks, r = r0;                                     \
        if (ntok > 1 || nblocks <= EDGE_SHORT_ROW_BLOCKS)                                                \
            for (; r + 2 <= r1; r += 2) EDGE_AVX512_ROWS(2, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES)    \
        for (; r < r1; r++) EDGE_AVX512_ROWS(1, PAIR, PREP, XLOAD, PAIR_DOT, BLOCKBYTES)                \
    }

static EDGE_AVX512_MATMUL(edge_avx512_rows_q8, edge_vnni256_matmul_q8, edge_avx512_decode_q8, 0, int8_t, 32, q8_pair, prep_pair_q8, load_x_q8, dot_pair_q8)
static EDGE_AVX512_MATMUL(edge_avx512_rows_q4, edge_vnni256_matmul_q4, edge_avx512_decode_q4, 0, uint8_t, 16, q4_pair, prep_pair_q4, load_x_q4, dot_pair_q4)
// Token-wise entries (the q8 and q4 edge_matmul_tokenwise): the row-major kernels alone, whose result for each row and token
// does not depend on the tile it was computed in, so a batch gives each token's decode result bit for bit.
EDGE_AVX512_MATMUL(edge_avx512_tokenwise_q8, edge_vnni256_tokenwise_q8, edge_avx512_decode_q8, 0, int8_t, 32, q8_pair, prep_pair_q8, load_x_q8, dot_pair_q8)
EDGE_AVX512_MATMUL(edge_avx512_tokenwise_q4, edge_vnni256_tokenwise_q4, edge_avx512_decode_q4, 1, uint8_t, 16, q4_pair, prep_pair_q4, load_x_q4, dot_pair_q4)

// Prompt batches: the 16-row GEMM tiles of x86/gemm.h, one row per 32-bit lane of a zmm register.

/// Dwords [4h, 4h + 4) of block b of rows [0, 16) (rows row_bytes apart), transposed: d[j] holds
/// dword 4h + j of every row. Prefetches the next tile's rows, a cache line each per four q4 blocks
/// (two q8 blocks); 4 KiB ahead in the row would fall inside this tile, rows being only 1-6 KiB.
EDGE_VNNI static inline void load16(const uint8_t *p, int64_t row_bytes, int prefetch, __m512i *d) {
    __m512i a[4];
    for (int k = 0; k < 4; k++) {
        // a[k]: rows k, 4 + k, 8 + k, 12 + k in its four 128-bit lanes.
        const uint8_t *q = p + k * row_bytes;
        if (prefetch)
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(q + (16 + 4 * l) * row_bytes), _MM_HINT_T0);
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + 4 * row_bytes)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + 8 * row_bytes)), 2);
        a[k] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + 12 * row_bytes)), 3);
    }
    // 4 x 4 dword transposes in each lane.
    __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    d[0] = _mm512_unpacklo_epi64(t0, t2);
    d[1] = _mm512_unpackhi_epi64(t0, t2);
    d[2] = _mm512_unpacklo_epi64(t1, t3);
    d[3] = _mm512_unpackhi_epi64(t1, t3);
}

/// Rows [r, r + 16) times tokens [t, t + nt) (x86/gemm.h). q4: the nibbles times x, from -8 * sum(x).
/// q8: x + 128 (unsigned, biased by edge_gemm) times the codes, from -128 * sum(w), computed once per block for all tokens.
EDGE_VNNI static inline __attribute__((always_inline)) void gemm16(const int q4, EDGE_GEMM_TILE_ARGS) {
    const int64_t block_bytes = q4 ? 16 : 32, row_bytes = nblocks * block_bytes;
    const uint8_t *rows = w + r * row_bytes;
    const __m512i low = _mm512_set1_epi8(0x0F), bias = _mm512_set1_epi8((char)0x80);
    for (int64_t k = 0; k < nt; k++) _mm512_storeu_ps(acc + k * 16, _mm512_setzero_ps());
    uint16_t table[256];
    __m512 wscale = _mm512_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++) {
        if (b % gblocks == 0) {
            int64_t g = b / gblocks;
            if (g % 16 == 0) edge_gemm_scales(16, ws + r * ngroups, ngroups, g, table);
            wscale = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(table + g % 16 * 16)));
        }
        const uint8_t *p = rows + b * block_bytes;
        __m512i n[8], start = _mm512_setzero_si512();
        if (q4) {
            load16(p, row_bytes, (b & 3) == 0, n);
            for (int j = 0; j < 4; j++) {
                n[4 + j] = _mm512_and_si512(_mm512_srli_epi16(n[j], 4), low);
                n[j] = _mm512_and_si512(n[j], low);
            }
        } else {
            load16(p, row_bytes, (b & 1) == 0, n);
            load16(p + 16, row_bytes, 0, n + 4);
            for (int j = 0; j < 8; j++) start = _mm512_dpbusd_epi32(start, bias, n[j]);
            start = _mm512_sub_epi32(_mm512_setzero_si512(), start);
        }
        for (int64_t k = 0; k < nt; k++) {
            const int32_t *xk = (const int32_t *)(x + ((t + k) * nblocks + b) * 32);
            __m512i lo = q4 ? _mm512_set1_epi32(corr[k * nblocks + b]) : start, hi = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++) {
                __m512i x0 = _mm512_set1_epi32(xk[j]), x1 = _mm512_set1_epi32(xk[4 + j]);
                if (q4) {
                    lo = _mm512_dpbusd_epi32(lo, n[j], x0);
                    hi = _mm512_dpbusd_epi32(hi, n[4 + j], x1);
                } else {
                    lo = _mm512_dpbusd_epi32(lo, x0, n[j]);
                    hi = _mm512_dpbusd_epi32(hi, x1, n[4 + j]);
                }
            }
            __m512 scale = _mm512_mul_ps(wscale, _mm512_set1_ps(xs[(t + k) * nblocks + b]));
            __m512 sum = _mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi));
            _mm512_storeu_ps(acc + k * 16, _mm512_fmadd_ps(sum, scale, _mm512_loadu_ps(acc + k * 16)));
        }
    }
}

EDGE_VNNI static void gemm16_q4(EDGE_GEMM_TILE_ARGS) { gemm16(1, w, ws, nblocks, gblocks, ngroups, r, x, xs, corr, t, nt, acc); }
EDGE_VNNI static void gemm16_q8(EDGE_GEMM_TILE_ARGS) { gemm16(0, w, ws, nblocks, gblocks, ngroups, r, x, xs, corr, t, nt, acc); }

EDGE_VNNI void edge_avx512_matmul_q4(EDGE_MATMUL_ARGS(uint8_t)) {
    int64_t end = edge_gemm(1, 0, 16, gemm16_q4, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    if (end < r1) edge_avx512_rows_q4(w, ws, nblocks, gblocks, end, r1, x, xs, ntok, out, ors, ots);
}

EDGE_VNNI void edge_avx512_matmul_q8(EDGE_MATMUL_ARGS(int8_t)) {
    int64_t end = edge_gemm(0, 1, 16, gemm16_q8, (const uint8_t *)w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    if (end < r1) edge_avx512_rows_q8(w, ws, nblocks, gblocks, end, r1, x, xs, ntok, out, ors, ots);
}
#endif
