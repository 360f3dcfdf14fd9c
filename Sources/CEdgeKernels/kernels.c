// Integer kernels: a generic C version (portable, auto-vectorised on arm64) and AVX2 / AVX-512 VNNI
// versions selected by the `isa` argument. The Swift scalar references in Kernels/ReferenceKernels.swift
// define the exact semantics these must match.
#include "EdgeKernels.h"
#include <math.h>
#include <string.h>

static inline float edge_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            int e = -1;
            do { e++; man <<= 1; } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// ---------------------------------------------------------------------------------------------
// Generic C
// ---------------------------------------------------------------------------------------------

static void quantize_generic(const float *x, int64_t nblocks, int8_t *q, float *s) {
    for (int64_t b = 0; b < nblocks; b++) {
        const float *xb = x + b * 32;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) {
            float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int i = 0; i < 32; i++) q[b * 32 + i] = (int8_t)nearbyintf(xb[i] * id);
        s[b] = d;
    }
}

static inline int32_t dot32_i8(const int8_t *a, const int8_t *b) {
    int32_t sum = 0;
    for (int i = 0; i < 32; i++) sum += (int32_t)a[i] * (int32_t)b[i];
    return sum;
}

static inline int32_t dot32_q4(const uint8_t *w, const int8_t *x) {
    int32_t sum = 0;
    for (int i = 0; i < 16; i++) {
        sum += ((int32_t)(w[i] & 0x0F) - 8) * (int32_t)x[i];
        sum += ((int32_t)(w[i] >> 4) - 8) * (int32_t)x[i + 16];
    }
    return sum;
}

#define EDGE_GENERIC_MATMUL(NAME, WTYPE, BLOCKBYTES, DOT)                                              \
    static void NAME(const WTYPE *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t r0, \
                     int64_t r1, const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) { \
        int64_t ngroups = (nblocks + gblocks - 1) / gblocks;                                           \
        for (int64_t r = r0; r < r1; r++) {                                                            \
            const WTYPE *wr = w + r * nblocks * BLOCKBYTES;                                            \
            for (int64_t t = 0; t < ntok; t++) {                                                       \
                const int8_t *xt = x + t * nblocks * 32;                                               \
                const float *st = xs + t * nblocks;                                                    \
                float acc = 0.0f;                                                                      \
                for (int64_t g = 0; g < ngroups; g++) {                                                \
                    float wsg = edge_half_to_float(ws[r * ngroups + g]);                               \
                    int64_t bend = (g + 1) * gblocks < nblocks ? (g + 1) * gblocks : nblocks;          \
                    for (int64_t b = g * gblocks; b < bend; b++)                                       \
                        acc += (float)DOT(wr + b * BLOCKBYTES, xt + b * 32) * (st[b] * wsg);           \
                }                                                                                      \
                out[r * ors + t * ots] = acc;                                                                 \
            }                                                                                          \
        }                                                                                              \
    }

EDGE_GENERIC_MATMUL(matmul_q8_generic, int8_t, 32, dot32_i8)
EDGE_GENERIC_MATMUL(matmul_q4_generic, uint8_t, 16, dot32_q4)

// ---------------------------------------------------------------------------------------------
// x86-64: AVX2 (+FMA, F16C) and AVX-512 VNNI (256-bit vpdpbusd)
// ---------------------------------------------------------------------------------------------
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define EDGE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define EDGE_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

EDGE_AVX2 static inline __m256i load_q8_avx2(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

EDGE_AVX2 static inline __m256i load_q4_avx2(const uint8_t *p) {
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0F)), _mm256_set1_epi8(8));
}

// The AVX2 helpers inline into the VNNI functions too (their features are a subset).
// Signed x signed int8 dot of 32 pairs into 8 int32 lanes: |w| (unsigned) times sign(w) * x (signed).
EDGE_AVX2 static inline __m256i dot_avx2(__m256i w, __m256i x) {
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}
EDGE_VNNI static inline __m256i dot_vnni(__m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

EDGE_AVX2 static inline float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define EDGE_SIMD_MATMUL(NAME, ATTR, WTYPE, BLOCKBYTES, LOAD, DOT, HSUM)                               \
    ATTR static void NAME(const WTYPE *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,        \
                          int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,      \
                          float *out, int64_t ors, int64_t ots) {                                                    \
        int64_t ngroups = (nblocks + gblocks - 1) / gblocks;                                           \
        for (int64_t r = r0; r < r1; r++) {                                                            \
            const WTYPE *wr = w + r * nblocks * BLOCKBYTES;                                            \
            for (int64_t t = 0; t < ntok; t++) {                                                       \
                const int8_t *xt = x + t * nblocks * 32;                                               \
                const float *st = xs + t * nblocks;                                                    \
                __m256 acc = _mm256_setzero_ps();                                                      \
                for (int64_t g = 0; g < ngroups; g++) {                                                \
                    float wsg = _cvtsh_ss(ws[r * ngroups + g]);                                        \
                    int64_t bend = (g + 1) * gblocks < nblocks ? (g + 1) * gblocks : nblocks;          \
                    for (int64_t b = g * gblocks; b < bend; b++) {                                     \
                        __m256i d = DOT(LOAD(wr + b * BLOCKBYTES), _mm256_loadu_si256((const __m256i *)(xt + b * 32))); \
                        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(st[b] * wsg), acc); \
                    }                                                                                  \
                }                                                                                      \
                out[r * ors + t * ots] = HSUM(acc);                                                           \
            }                                                                                          \
        }                                                                                              \
    }

EDGE_SIMD_MATMUL(matmul_q8_avx2, EDGE_AVX2, int8_t, 32, load_q8_avx2, dot_avx2, hsum_avx2)
EDGE_SIMD_MATMUL(matmul_q4_avx2, EDGE_AVX2, uint8_t, 16, load_q4_avx2, dot_avx2, hsum_avx2)
EDGE_SIMD_MATMUL(matmul_q8_vnni256, EDGE_VNNI, int8_t, 32, load_q8_avx2, dot_vnni, hsum_avx2)
EDGE_SIMD_MATMUL(matmul_q4_vnni256, EDGE_VNNI, uint8_t, 16, load_q4_avx2, dot_vnni, hsum_avx2)

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

EDGE_VNNI static inline __m512i dot_pair_q8(q8_pair w, const int8_t *x, __mmask64 blocks) {
    __m512i xv = _mm512_maskz_loadu_epi8(blocks, (const void *)x);
    __m512i sx = _mm512_mask_sub_epi8(xv, w.negative, _mm512_setzero_si512(), xv);
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

EDGE_VNNI static inline __m512i dot_pair_q4(q4_pair w, const int8_t *x, __mmask64 blocks) {
    __m512i xv = _mm512_maskz_loadu_epi8(blocks, (const void *)x);
    __m512i correction = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), xv);
    return _mm512_dpbusd_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), correction), w.nibbles, xv);
}

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

// One block pair (or, with HALF, the last single block) of a row against TILE tokens: the weights are
// prepared once and used for every token. Full pairs use plain loads: masked loads kept the hardware
// prefetcher from streaming weights (decode ran 3x slower from DRAM).
#define EDGE_AVX512_PAIR_STEP(TILE, PAIR, PREP, PAIR_DOT, BLOCKBYTES, HALF)                                  \
    {                                                                                                     \
        const __mmask64 blocks = HALF ? EDGE_HALF_PAIR : EDGE_FULL_PAIR;                                  \
        __m128 wsc = weight_scales(wsr, b, gblocks, single, per_channel, HALF);                           \
        /* Prefetch 4 KiB ahead in the weight stream (+8-10% decode from DRAM, measured A/B). */          \
        if (!HALF) _mm_prefetch((const char *)(wr + b * BLOCKBYTES) + 4096, _MM_HINT_T0);                   \
        PAIR wp = PREP(wr + b * BLOCKBYTES, blocks);                                                      \
        for (int k = 0; k < TILE; k++) {                                                                  \
            const float *sx = xs + (t + k) * nblocks + b;                                                 \
            __m128 s = HALF ? _mm_load_ss(sx) : _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)sx));   \
            __m512i d = PAIR_DOT(wp, x + (t + k) * nblocks * 32 + b * 32, blocks);                        \
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), pair_scales(_mm_mul_ps(s, wsc)), acc[k]);     \
        }                                                                                                 \
    }

// One row against TILE tokens.
#define EDGE_AVX512_ROW_TILE(TILE, PAIR, PREP, PAIR_DOT, BLOCKBYTES)                                        \
    {                                                                                                     \
        __m512 acc[TILE];                                                                                 \
        for (int k = 0; k < TILE; k++) acc[k] = _mm512_setzero_ps();                                      \
        int64_t b = 0;                                                                                    \
        for (; b + 2 <= nblocks; b += 2) EDGE_AVX512_PAIR_STEP(TILE, PAIR, PREP, PAIR_DOT, BLOCKBYTES, 0) \
        if (b < nblocks) EDGE_AVX512_PAIR_STEP(TILE, PAIR, PREP, PAIR_DOT, BLOCKBYTES, 1)                 \
        for (int k = 0; k < TILE; k++) {                                                                  \
            float total = _mm512_reduce_add_ps(acc[k]);                                                   \
            out[r * ors + (t + k) * ots] = per_channel ? total * _cvtsh_ss(wsr[0]) : total;               \
        }                                                                                                 \
    }

#define EDGE_AVX512_MATMUL(NAME, FALLBACK, WTYPE, BLOCKBYTES, PAIR, PREP, PAIR_DOT)                          \
    EDGE_VNNI static void NAME(const WTYPE *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,     \
                               int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,   \
                               float *out, int64_t ors, int64_t ots) {                                    \
        int per_channel = gblocks >= nblocks, single = gblocks == 1 && !per_channel;                   \
        if (!per_channel && !single && (gblocks & 1)) {                                                  \
            FALLBACK(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);                       \
            return;                                                                                      \
        }                                                                                                \
        int64_t ngroups = (nblocks + gblocks - 1) / gblocks;                                             \
        for (int64_t r = r0; r < r1; r++) {                                                              \
            const WTYPE *wr = w + r * nblocks * BLOCKBYTES;                                              \
            const uint16_t *wsr = ws + r * ngroups;                                                      \
            int64_t t = 0;                                                                               \
            for (; t + 8 <= ntok; t += 8) EDGE_AVX512_ROW_TILE(8, PAIR, PREP, PAIR_DOT, BLOCKBYTES)      \
            for (; t + 4 <= ntok; t += 4) EDGE_AVX512_ROW_TILE(4, PAIR, PREP, PAIR_DOT, BLOCKBYTES)      \
            for (; t < ntok; t++) EDGE_AVX512_ROW_TILE(1, PAIR, PREP, PAIR_DOT, BLOCKBYTES)              \
        }                                                                                                \
    }

EDGE_AVX512_MATMUL(matmul_q8_vnni, matmul_q8_vnni256, int8_t, 32, q8_pair, prep_pair_q8, dot_pair_q8)
EDGE_AVX512_MATMUL(matmul_q4_vnni, matmul_q4_vnni256, uint8_t, 16, q4_pair, prep_pair_q4, dot_pair_q4)

EDGE_AVX2 static void quantize_avx2(const float *x, int64_t nblocks, int8_t *q, float *s) {
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

void edge_quantize_q8_blocks(int isa, const float *x, int64_t nblocks, int8_t *codes, float *scales) {
#if defined(__x86_64__) || defined(_M_X64)
    if (isa >= EDGE_ISA_AVX2) { quantize_avx2(x, nblocks, codes, scales); return; }
#endif
    (void)isa;
    quantize_generic(x, nblocks, codes, scales);
}

// Public entry points: the best kernel the requested level allows.
#if defined(__x86_64__) || defined(_M_X64)
#define EDGE_DISPATCH(VNNI, AVX2, GENERIC, ...)                                   \
    if (isa >= EDGE_ISA_AVX512_VNNI) { VNNI(__VA_ARGS__); return; }               \
    if (isa >= EDGE_ISA_AVX2) { AVX2(__VA_ARGS__); return; }                      \
    GENERIC(__VA_ARGS__);
#else
#define EDGE_DISPATCH(VNNI, AVX2, GENERIC, ...) (void)isa; GENERIC(__VA_ARGS__);
#endif

void edge_matmul_q8(int isa, const int8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                    int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                    float *out, int64_t ors, int64_t ots) {
    EDGE_DISPATCH(matmul_q8_vnni, matmul_q8_avx2, matmul_q8_generic, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots)
}

void edge_matmul_q4(int isa, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                    int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                    float *out, int64_t ors, int64_t ots) {
    EDGE_DISPATCH(matmul_q4_vnni, matmul_q4_avx2, matmul_q4_generic, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots)
}
