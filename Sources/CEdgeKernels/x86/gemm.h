// The x86 GEMM for prompt batches, shared by the 16-row AVX-512 tile (x86/avx512.c) and the 8-row
// 256-bit ones (x86/kernels256.h). A tile holds one row per 32-bit lane: each row's 16-byte block is
// loaded and transposed in registers so that register j holds dword j of every row, whose low and high
// nibbles are the weights 4j..4j+3 and 16+4j..16+4j+3. A token's block is then eight broadcast dwords
// of x; the eight dot steps leave every row's block dot in its own lane, and one convert, multiply and
// FMA scale all the tile's rows (the row-major kernels spend those per row and block, and their
// horizontal sums per row and token). q4 nibbles are unsigned (code + 8), so each dot starts from
// -8 * sum(x), computed here once per token and block for every tile; q8 tiles make x or w unsigned
// their own way. q8 blocks are two such 16-byte halves. Weights are transposed once per
// block and chunk of up to 64 tokens; the weight scales once per 16 groups. The including file defines
// GEMM_ATTR, its target attribute.
#include "../internal.h"
#include <immintrin.h>

/// The most tokens a chunk holds (accumulators of a tile: 16 rows x 64 tokens, 4 KiB).
#define EDGE_GEMM_TOKENS 64
/// The shortest rows the tiles take, in blocks.
#define EDGE_GEMM_MIN_BLOCKS 8
/// The most corrections a chunk holds: tokens x blocks per row (32 KiB).
#define EDGE_GEMM_CORRECTIONS 8192

/// A tile: rows [r, r + R) times tokens [t, t + nt): acc[k * R + i] = row r + i, token t + k. w is q4 or
/// q8 blocks; for q4, corr holds the chunk's corrections, token k's block b at k * nblocks + b.
#define EDGE_GEMM_TILE_ARGS                                                                              \
    const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t ngroups, int64_t r, \
        const int8_t *x, const float *xs, const int32_t *corr, int64_t t, int64_t nt, float *acc
typedef void (*edge_gemm_tile)(EDGE_GEMM_TILE_ARGS);

/// -8 * sum(x) of each activation block of tokens [t, t + nt).
GEMM_ATTR static void edge_gemm_corrections(const int8_t *x, int64_t nblocks, int64_t t, int64_t nt, int32_t *corr) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < nt * nblocks; i++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + (t * nblocks + i) * 32));
        __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16);
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        corr[i] = -8 * _mm_cvtsi128_si32(h);
    }
}

/// 8 x 8 transposes of 16-bit elements in each 128-bit lane: lane l of c[j] holds element j of lane l
/// of x[0..7].
GEMM_ATTR static inline void edge_gemm_transpose8x8_epi16(const __m256i *x, __m256i *c) {
    __m256i a[8], b[8];
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm256_unpacklo_epi16(x[2 * i], x[2 * i + 1]);
        a[2 * i + 1] = _mm256_unpackhi_epi16(x[2 * i], x[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {
        b[4 * h] = _mm256_unpacklo_epi32(a[4 * h], a[4 * h + 2]);
        b[4 * h + 1] = _mm256_unpackhi_epi32(a[4 * h], a[4 * h + 2]);
        b[4 * h + 2] = _mm256_unpacklo_epi32(a[4 * h + 1], a[4 * h + 3]);
        b[4 * h + 3] = _mm256_unpackhi_epi32(a[4 * h + 1], a[4 * h + 3]);
    }
    for (int j = 0; j < 4; j++) {
        c[2 * j] = _mm256_unpacklo_epi64(b[j], b[4 + j]);
        c[2 * j + 1] = _mm256_unpackhi_epi64(b[j], b[4 + j]);
    }
}

/// The half scales of groups [g0, g0 + 16) (those below ngroups) of R = 8 or 16 rows whose scales start
/// at ws, transposed: table[j * R + i] = group g0 + j of row i. (A gather per block cost more than the
/// rest of a 4-token tile.) Prefetches the next tile's scales, which lie R rows apart and so escape the
/// hardware prefetcher.
GEMM_ATTR static void edge_gemm_scales(const int R, const uint16_t *ws, int64_t ngroups, int64_t g0, uint16_t *table) {
    if (g0 % 32 == 0)
        for (int i = R; i < 2 * R; i++) _mm_prefetch((const char *)(ws + i * ngroups + g0), _MM_HINT_T0);
    if (g0 + 16 > ngroups) {
        for (int64_t j = 0; j < ngroups - g0; j++)
            for (int i = 0; i < R; i++) table[j * R + i] = ws[i * ngroups + g0 + j];
        return;
    }
    __m256i rows[16], lo[8], hi[8];
    for (int i = 0; i < R; i++) rows[i] = _mm256_loadu_si256((const __m256i *)(ws + i * ngroups + g0));
    edge_gemm_transpose8x8_epi16(rows, lo);
    if (R == 8) {
        for (int j = 0; j < 8; j++) {
            _mm_storeu_si128((__m128i *)(table + j * 8), _mm256_castsi256_si128(lo[j]));
            _mm_storeu_si128((__m128i *)(table + (8 + j) * 8), _mm256_extracti128_si256(lo[j], 1));
        }
        return;
    }
    edge_gemm_transpose8x8_epi16(rows + 8, hi);
    for (int j = 0; j < 8; j++) {
        _mm256_storeu_si256((__m256i *)(table + j * 16), _mm256_permute2x128_si256(lo[j], hi[j], 0x20));
        _mm256_storeu_si256((__m256i *)(table + (8 + j) * 16), _mm256_permute2x128_si256(lo[j], hi[j], 0x31));
    }
}

/// The tiles of a matrix kernel for batches of two tokens or more: rows [r0, end) in R-row tiles, where
/// end is returned. Leaves every row to the caller's row-major kernel (end = r0) for single tokens
/// (decode, where the weight stream is all that matters), for rows shorter than EDGE_GEMM_MIN_BLOCKS
/// (attention scores over short heads, where a tile's fixed costs do not pay) and for q4 rows so long that
/// a chunk would hold fewer than two tokens; the rows past the last full tile too.
/// `unsigned_x`: the q8 tile multiplies x + 128 (unsigned bytes, `vpdpbusd`'s first operand) by the codes; the
/// biased activations are made here once per call (per tile and token they cost as many instructions as the dots).
GEMM_ATTR static int64_t edge_gemm(const int q4, const int unsigned_x, const int R, edge_gemm_tile tile, const uint8_t *w,
                                   const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t r0, int64_t r1,
                                   const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    int64_t chunk = q4 && EDGE_GEMM_CORRECTIONS / nblocks < EDGE_GEMM_TOKENS ? EDGE_GEMM_CORRECTIONS / nblocks : EDGE_GEMM_TOKENS;
    if (ntok < 2 || nblocks < EDGE_GEMM_MIN_BLOCKS || r1 - r0 < R || chunk < 2) return r0;
    if (!q4 && unsigned_x) {
        int8_t *biased = edge_scratch(5, (size_t)(ntok * nblocks * 32));
        const __m256i bias = _mm256_set1_epi8((char)0x80);
        for (int64_t i = 0; i < ntok * nblocks * 32; i += 32)
            _mm256_storeu_si256((__m256i *)(biased + i), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + i)), bias));
        x = biased;
    }
    int64_t ngroups = (nblocks + gblocks - 1) / gblocks;
    int64_t end = r0 + (r1 - r0) / R * R;
    int32_t corr[EDGE_GEMM_CORRECTIONS];
    float acc[EDGE_GEMM_TOKENS * 16];
    for (int64_t t = 0; t < ntok; t += chunk) {
        int64_t nt = ntok - t < chunk ? ntok - t : chunk;
        if (q4) edge_gemm_corrections(x, nblocks, t, nt, corr);
        for (int64_t r = r0; r < end; r += R) {
            tile(w, ws, nblocks, gblocks, ngroups, r, x, xs, corr, t, nt, acc);
            for (int64_t k = 0; k < nt; k++)
                for (int i = 0; i < R; i++) out[(r + i) * ors + (t + k) * ots] = acc[k * R + i];
        }
    }
    return end;
}
