// 256-bit x86 matrix kernels, instantiated once per dot-product flavour: x86/avx2.c (`vpmaddubsw`),
// x86/avxvnni.c (VEX `vpdpbusd`) and x86/vnni256.c (EVEX `vpdpbusd`). The including file defines
//   K256_ATTR               the functions' target attribute,
//   K256_NAME(x)            the exported name of kernel x,
//   K256_Q8_DOT(a, w, x)    int32 x8 partial dot of a q8 block: a = |w|, w = codes, x = activation codes,
//   K256_Q4_CORR(x)         what every row's q4 dot with x subtracts (the 8 * x part), computed once per
//                           activation block and shared by the rows of a tile,
//   K256_Q4_PART(n, x, c)   the q4 block's partial dot before widening: n = unsigned nibbles (code + 8),
//                           c = the correction of x,
//   K256_Q4_WIDEN(p)        a part as int32 x8 lanes that add up to the block's dot,
//   K256_Q4_PAIR(p0, p1)    two blocks' parts as int32 x8: lanes 0, 1, 4, 5 add up to block 0's dot,
//                           lanes 2, 3, 6, 7 to block 1's (the layout `vphaddd` of two widened parts gives),
//   K256_DPBUSD(acc, u, s)  where the level has it, `vpdpbusd` (the GEMM tiles' dot step; without it
//                           they use `vpmaddubsw`).
// Every partial dot is exact: no lane overflows, and the lanes add up to the block's integer dot product.
//
// Structure: R rows x T tokens per tile (register-blocked GEMM for prompt batches, one row x one token
// for decode). Each weight block is loaded and unpacked once per tile, each activation block and its
// q4 correction once per tile and shared by its rows. With one scale per block (groups of 32) or per row,
// blocks go in quads: the four dots are reduced into one vector (lane j and j + 4 hold block j), converted
// once and multiplied by the four blocks' scales in one step; other group sizes and the last blocks of a
// row go block by block. Per-channel rows apply the weight scale once at the end. Weights stream with
// plain loads and a software prefetch 4 KiB ahead. Batches of two tokens or more go to the 8-row GEMM
// tiles of x86/gemm.h instead.
#include "../internal.h"
#include <immintrin.h>

#define K256_INLINE static inline __attribute__((always_inline)) K256_ATTR

/// One weight block of one row, prepared for every token of a tile: q8 keeps |w| and w, q4 the nibbles.
typedef struct { __m256i a, w; } k256_block;

K256_INLINE k256_block prep_q8(const uint8_t *p) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    k256_block b = { _mm256_sign_epi8(v, v), v };
    return b;
}

K256_INLINE k256_block prep_q4(const uint8_t *p) {
    __m128i packed = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    k256_block b = { _mm256_and_si256(both, _mm256_set1_epi8(0x0F)), _mm256_setzero_si256() };
    return b;
}

K256_INLINE float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

K256_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Prepares block b of rows [r, r + R), prefetching each row's stream 4 KiB ahead once per cache line.
K256_INLINE void k256_prep(const int q4, const int R, const uint8_t *w, int64_t row_bytes, int64_t r, int64_t b,
                           k256_block *wb) {
    const int64_t block_bytes = q4 ? 16 : 32;
    for (int i = 0; i < R; i++) {
        const uint8_t *p = w + (r + i) * row_bytes + b * block_bytes;
        if (((b * block_bytes) & 63) == 0) _mm_prefetch((const char *)p + 4096, _MM_HINT_T0);
        wb[i] = q4 ? prep_q4(p) : prep_q8(p);
    }
}

/// Blocks b, b + 1 of rows [r, r + R) times tokens [t, t + T): pair[i][k] in the K256_Q4_PAIR layout.
K256_INLINE void k256_pair(const int q4, const int R, const int T, const uint8_t *w, int64_t row_bytes, int64_t nblocks,
                           int64_t r, int64_t b, const int8_t *x, int64_t t, __m256i pair[2][4]) {
    k256_block w0[2], w1[2];
    k256_prep(q4, R, w, row_bytes, r, b, w0);
    k256_prep(q4, R, w, row_bytes, r, b + 1, w1);
    for (int k = 0; k < T; k++) {
        const int8_t *xp = x + (t + k) * nblocks * 32 + b * 32;
        __m256i x0 = _mm256_loadu_si256((const __m256i *)xp), x1 = _mm256_loadu_si256((const __m256i *)(xp + 32));
        if (q4) {
            __m256i c0 = K256_Q4_CORR(x0), c1 = K256_Q4_CORR(x1);
            for (int i = 0; i < R; i++) pair[i][k] = K256_Q4_PAIR(K256_Q4_PART(w0[i].a, x0, c0), K256_Q4_PART(w1[i].a, x1, c1));
        } else {
            for (int i = 0; i < R; i++)
                pair[i][k] = _mm256_hadd_epi32(K256_Q8_DOT(w0[i].a, w0[i].w, x0), K256_Q8_DOT(w1[i].a, w1[i].w, x1));
        }
    }
}

/// Rows [r, r + R) times tokens [t, t + T), every block of the rows.
K256_INLINE void k256_tile(const int q4, const int R, const int T, const int per_channel, const uint8_t *w,
                           const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t ngroups, int64_t r,
                           const int8_t *x, const float *xs, int64_t t, float *out, int64_t ors, int64_t ots) {
    const int64_t block_bytes = q4 ? 16 : 32, row_bytes = nblocks * block_bytes;
    __m256 acc[2][4];
    for (int i = 0; i < R; i++)
        for (int k = 0; k < T; k++) acc[i][k] = _mm256_setzero_ps();
    int64_t done = 0;
    // Quads everywhere except q8 per-channel batches, where the block-by-block walk measured 15% faster
    // (s110m pp128 1,310 vs 1,080). So q4 matrices and g32 q8 ones (the output head) sum each row-token
    // pair in the same order whatever the batch, and give bit-identical results alone or batched.
    if (gblocks == 1 || (per_channel && (q4 || T == 1))) {
        for (; done + 4 <= nblocks; done += 4) {
            __m256i p01[2][4], p23[2][4];
            k256_pair(q4, R, T, w, row_bytes, nblocks, r, done, x, t, p01);
            k256_pair(q4, R, T, w, row_bytes, nblocks, r, done + 2, x, t, p23);
            __m128 wscale[2];
            for (int i = 0; i < R; i++)
                wscale[i] = per_channel ? _mm_set1_ps(1.0f) : _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(ws + (r + i) * ngroups + done)));
            for (int k = 0; k < T; k++) {
                __m128 xscale = _mm_loadu_ps(xs + (t + k) * nblocks + done);
                for (int i = 0; i < R; i++) {
                    __m128 s4 = per_channel ? xscale : _mm_mul_ps(xscale, wscale[i]);
                    __m256 quad = _mm256_cvtepi32_ps(_mm256_hadd_epi32(p01[i][k], p23[i][k]));
                    acc[i][k] = _mm256_fmadd_ps(quad, _mm256_set_m128(s4, s4), acc[i][k]);
                }
            }
        }
    }
    for (int64_t g = done / gblocks; g < ngroups; g++) {
        __m256 wscale[2];
        for (int i = 0; i < R; i++)
            wscale[i] = per_channel ? _mm256_set1_ps(1.0f) : _mm256_set1_ps(_cvtsh_ss(ws[(r + i) * ngroups + g]));
        for (int64_t b = done > g * gblocks ? done : g * gblocks, bend = edge_group_end(g, gblocks, nblocks); b < bend; b++) {
            k256_block wb[2];
            k256_prep(q4, R, w, row_bytes, r, b, wb);
            for (int k = 0; k < T; k++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (t + k) * nblocks * 32 + b * 32));
                __m256 xscale = _mm256_broadcast_ss(xs + (t + k) * nblocks + b);
                __m256i corr = q4 ? K256_Q4_CORR(xv) : _mm256_setzero_si256();
                for (int i = 0; i < R; i++) {
                    __m256i d = q4 ? K256_Q4_WIDEN(K256_Q4_PART(wb[i].a, xv, corr)) : K256_Q8_DOT(wb[i].a, wb[i].w, xv);
                    __m256 scale = per_channel ? xscale : _mm256_mul_ps(xscale, wscale[i]);
                    acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, acc[i][k]);
                }
            }
        }
    }
    for (int i = 0; i < R; i++) {
        float row_scale = per_channel ? _cvtsh_ss(ws[r + i]) : 1.0f;
        for (int k = 0; k < T; k++) out[(r + i) * ors + (t + k) * ots] = hsum256(acc[i][k]) * row_scale;
    }
}

#define TILED_INLINE K256_INLINE
#define TILED_ATTR static K256_ATTR
#define TILED_NAME(x) k256_rows_##x
#define TILED_TILE k256_tile
#include "../tiled.h"

#define GEMM_ATTR K256_ATTR
#include "gemm.h"

/// The eight rows' dots of one block with token x (x86/gemm.h), from start. q4: n are the nibbles. q8:
/// n are the codes and aw their magnitudes; with `vpdpbusd`, x + 128 (unsigned, biased by edge_gemm) times the codes (start
/// takes off 128 * sum(w)); with `vpmaddubsw`, |w| times x with w's sign, widened per step (a pair can
/// reach 2 * 127 * 127).
K256_INLINE __m256i k256_gemm_dot(const int q4, const __m256i *n, const __m256i *aw, const int32_t *xk, __m256i start) {
#if defined(K256_DPBUSD)
    (void)aw;
    __m256i lo = start, hi = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        __m256i x0 = _mm256_set1_epi32(xk[j]), x1 = _mm256_set1_epi32(xk[4 + j]);
        lo = q4 ? K256_DPBUSD(lo, n[j], x0) : K256_DPBUSD(lo, x0, n[j]);
        hi = q4 ? K256_DPBUSD(hi, n[4 + j], x1) : K256_DPBUSD(hi, x1, n[4 + j]);
    }
    return _mm256_add_epi32(lo, hi);
#else
    const __m256i ones = _mm256_set1_epi16(1);
    if (!q4) {
        __m256i sum = start;
        for (int j = 0; j < 8; j++)
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(aw[j], _mm256_sign_epi8(_mm256_set1_epi32(xk[j]), n[j])), ones));
        return sum;
    }
    // A q4 `vpmaddubsw` pair is at most 2 * 15 * 127 = 3810: the eight steps add up in int16 (at most
    // 30480) before one `vpmaddwd` widens them.
    __m256i s = _mm256_maddubs_epi16(n[0], _mm256_set1_epi32(xk[0]));
    for (int j = 1; j < 8; j++) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(n[j], _mm256_set1_epi32(xk[j])));
    return _mm256_add_epi32(start, _mm256_madd_epi16(s, ones));
#endif
}

/// Dwords [4h, 4h + 4) of block b of rows [0, 8) (rows row_bytes apart), transposed: d[j] holds dword
/// 4h + j of every row. Prefetches the next tile's rows 8 + k and 12 + k, as x86/avx512.c does.
K256_INLINE void k256_load8(const uint8_t *p, int64_t row_bytes, int prefetch, __m256i *d) {
    __m256i a[4];
    for (int k = 0; k < 4; k++) {
        // a[k]: rows k and 4 + k in its two 128-bit lanes.
        const uint8_t *q = p + k * row_bytes;
        if (prefetch) {
            _mm_prefetch((const char *)(q + 8 * row_bytes), _MM_HINT_T0);
            _mm_prefetch((const char *)(q + 12 * row_bytes), _MM_HINT_T0);
        }
        a[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q)),
                                       _mm_loadu_si128((const __m128i *)(q + 4 * row_bytes)), 1);
    }
    __m256i t0 = _mm256_unpacklo_epi32(a[0], a[1]), t1 = _mm256_unpackhi_epi32(a[0], a[1]);
    __m256i t2 = _mm256_unpacklo_epi32(a[2], a[3]), t3 = _mm256_unpackhi_epi32(a[2], a[3]);
    d[0] = _mm256_unpacklo_epi64(t0, t2);
    d[1] = _mm256_unpackhi_epi64(t0, t2);
    d[2] = _mm256_unpacklo_epi64(t1, t3);
    d[3] = _mm256_unpackhi_epi64(t1, t3);
}

/// The 8-row GEMM tile (x86/gemm.h): lane i of every register is row r + i.
K256_INLINE void k256_gemm8(const int q4, EDGE_GEMM_TILE_ARGS) {
    const int64_t block_bytes = q4 ? 16 : 32, row_bytes = nblocks * block_bytes;
    const uint8_t *rows = w + r * row_bytes;
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int64_t k = 0; k < nt; k++) _mm256_storeu_ps(acc + k * 8, _mm256_setzero_ps());
    uint16_t table[128];
    __m256 wscale = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++) {
        if (b % gblocks == 0) {
            int64_t g = b / gblocks;
            if (g % 16 == 0) edge_gemm_scales(8, ws + r * ngroups, ngroups, g, table);
            wscale = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(table + g % 16 * 8)));
        }
        const uint8_t *p = rows + b * block_bytes;
        __m256i n[8], aw[8], start = _mm256_setzero_si256();
        if (q4) {
            k256_load8(p, row_bytes, (b & 3) == 0, n);
            for (int j = 0; j < 4; j++) {
                n[4 + j] = _mm256_and_si256(_mm256_srli_epi16(n[j], 4), low);
                n[j] = _mm256_and_si256(n[j], low);
            }
        } else {
            k256_load8(p, row_bytes, (b & 1) == 0, n);
            k256_load8(p + 16, row_bytes, 0, n + 4);
#if defined(K256_DPBUSD)
            for (int j = 0; j < 8; j++) start = K256_DPBUSD(start, _mm256_set1_epi8((char)0x80), n[j]);
            start = _mm256_sub_epi32(_mm256_setzero_si256(), start);
#else
            for (int j = 0; j < 8; j++) aw[j] = _mm256_sign_epi8(n[j], n[j]);
#endif
        }
        for (int64_t k = 0; k < nt; k++) {
            const int32_t *xk = (const int32_t *)(x + ((t + k) * nblocks + b) * 32);
            __m256i dot = k256_gemm_dot(q4, n, aw, xk, q4 ? _mm256_set1_epi32(corr[k * nblocks + b]) : start);
            __m256 scale = _mm256_mul_ps(wscale, _mm256_set1_ps(xs[(t + k) * nblocks + b]));
            _mm256_storeu_ps(acc + k * 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, _mm256_loadu_ps(acc + k * 8)));
        }
    }
}

static K256_ATTR void k256_gemm8_q4(EDGE_GEMM_TILE_ARGS) { k256_gemm8(1, w, ws, nblocks, gblocks, ngroups, r, x, xs, corr, t, nt, acc); }
static K256_ATTR void k256_gemm8_q8(EDGE_GEMM_TILE_ARGS) { k256_gemm8(0, w, ws, nblocks, gblocks, ngroups, r, x, xs, corr, t, nt, acc); }

#if defined(K256_DPBUSD)
#define K256_UNSIGNED_X 1
#else
#define K256_UNSIGNED_X 0
#endif

K256_ATTR void K256_NAME(matmul_q8)(EDGE_MATMUL_ARGS(int8_t)) {
    int64_t end = edge_gemm(0, K256_UNSIGNED_X, 8, k256_gemm8_q8, (const uint8_t *)w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    if (end < r1) k256_rows_matmul_q8(w, ws, nblocks, gblocks, end, r1, x, xs, ntok, out, ors, ots);
}

K256_ATTR void K256_NAME(matmul_q4)(EDGE_MATMUL_ARGS(uint8_t)) {
    int64_t end = edge_gemm(1, 0, 8, k256_gemm8_q4, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    if (end < r1) k256_rows_matmul_q4(w, ws, nblocks, gblocks, end, r1, x, xs, ntok, out, ors, ots);
}

/// The row-major kernels alone (the q8 edge_matmul_tokenwise): each token's result is its decode result, bit for bit.
/// Per-channel q8 tiles of several tokens sum in another order than one token's (see k256_tile), so those rows go
/// one token at a time.
K256_ATTR void K256_NAME(tokenwise_q8)(EDGE_MATMUL_ARGS(int8_t)) {
    if (gblocks < nblocks) {
        k256_rows_matmul_q8(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
        return;
    }
    for (int64_t t = 0; t < ntok; t++)
        k256_rows_matmul_q8(w, ws, nblocks, gblocks, r0, r1, x + t * nblocks * 32, xs + t * nblocks, 1, out + t * ots, ors, ots);
}

K256_ATTR void K256_NAME(tokenwise_q4)(EDGE_MATMUL_ARGS(uint8_t)) { k256_rows_matmul_q4(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots); }

#ifndef K256_WITHOUT_FUSED_Q4O
/// q4o for a few tokens and token-wise batches (the level's `fused_q4o`, as x86/fused512.c at 512 bits): per row and
/// token Σ_b xs_b (d_g Σ n x + m_g Σ x_b), a block per step, Σ x_b taken once per call instead of the offset pass of
/// q4a.c; each (row, token) summed in one order whatever `ntok`. `single`: each block has its own (d, m) pair.
K256_INLINE void k256_fused_q4o(int single, EDGE_MATMUL_ARGS(uint8_t)) {
    const int64_t ngroups = (nblocks + gblocks - 1) / gblocks;
    float *sums = edge_scratch(1, (size_t)(ntok * nblocks) * sizeof *sums);  // [ntok, nblocks]: xs_b Σ x_b
    for (int64_t i = 0; i < ntok * nblocks; i++) {
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) sum += x[i * 32 + j];
        sums[i] = xs[i] * (float)sum;
    }
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * nblocks * 16;
        const uint16_t *pairs = ws + 2 * r * ngroups;
        for (int64_t t = 0; t < ntok; t++) {
            __m256 acc = _mm256_setzero_ps();
            float offsets = 0;
            for (int64_t b = 0; b < nblocks; b++) {
                const uint16_t *pair = pairs + 2 * (single ? b : b / gblocks);
                if (t == 0 && (b & 3) == 0) _mm_prefetch((const char *)(row + b * 16) + 4096, _MM_HINT_T0);
                const __m256i xb = _mm256_loadu_si256((const __m256i *)(x + (t * nblocks + b) * 32));
                const __m256i dot = K256_Q4_WIDEN(K256_Q4_PART(prep_q4(row + b * 16).a, xb, zero));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(_cvtsh_ss(pair[0]) * xs[t * nblocks + b]), acc);
                offsets += _cvtsh_ss(pair[1]) * sums[t * nblocks + b];
            }
            out[r * ors + t * ots] = hsum256(acc) + offsets;
        }
    }
}

K256_ATTR void K256_NAME(fused_q4o)(EDGE_MATMUL_ARGS(uint8_t)) {
    if (gblocks == 1) return k256_fused_q4o(1, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    k256_fused_q4o(0, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}
#endif
