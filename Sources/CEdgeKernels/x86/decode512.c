// Decode at the AVX-512 VNNI level of q8 and q4 rows with one scale per block (up to EDGE_DECODE_MAX_BLOCKS blocks),
// and token-wise q4 batches, each token as its decode step computes it. Rows go four at a time (two, or one, when
// four would span more than 8 KiB), sharing each activation load; the rows are one stretch of memory, and a
// prefetch sweeps the stretch some groups ahead in address order (with a prefetch per row instead, four interleaved
// streams ran at half speed from DRAM). A row's block scales are one f16 load and one multiply by the token's
// activation scales per 16 blocks, and each block pair's lanes take theirs with one permute. q4 activations are
// reordered once per token to the nibbles' order (a block pair's 32 packed bytes, broadcast to both halves of a
// register, are their low nibbles then their high ones), so a pair's weights are one load, one shift and one mask.
// Against rows one at a time (long rows) and in pairs (short ones), one thread: q4 +33% from DRAM and +40% from L3,
// q8 equal from DRAM (bandwidth-bound) and +30% from L3; the Gemma 3 shape's 262,144 x 640 q8 head from DRAM 2.3x
// (its rows in pairs had a prefetch per row).
#if defined(__x86_64__)
#include "../internal.h"
#include <immintrin.h>

#define EDGE_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/// The largest stretch of rows taken together, in bytes: four rows while they fit, else two, else one (four q8 rows
/// of 4,096 columns, 16 KiB, ran 30-45% slower from DRAM together than one by one; two q4 rows of 5,632 columns
/// 17% faster).
#define DECODE_GROUP_MAX_BYTES 8192

/// The activations and q4 corrections of one token, laid out per block pair (64 bytes, a missing second block zero).
typedef struct {
    const int8_t *x;
    const float *scales;
    /// How many rows go together (4, 2 or 1), and the prefetch distance: a whole number of such groups of more than
    /// 4 KiB, or 4 KiB for rows one at a time.
    int grouped;
    int64_t ahead;
    __m512i corrections[EDGE_DECODE_MAX_BLOCKS / 2];
    int8_t reordered[EDGE_DECODE_MAX_BLOCKS * 32];
} decode_token;

/// Token `x` (nblocks blocks, scales xs) ready for the rows: q4 activations reordered to
/// [b.x[0..15], b1.x[0..15], b.x[16..31], b1.x[16..31]] per pair with their corrections -8 * sum(x).
EDGE_VNNI static inline __attribute__((always_inline)) void decode_token_prepare(const int q4, const int8_t *x, const float *xs,
                                                                                 int64_t nblocks, decode_token *tok) {
    tok->x = x;
    tok->scales = xs;
    int64_t group = 4 * nblocks * (q4 ? 16 : 32);
    tok->grouped = group <= DECODE_GROUP_MAX_BYTES ? 4 : group / 2 <= DECODE_GROUP_MAX_BYTES ? 2 : 1;
    group = group / 4 * tok->grouped;
    tok->ahead = tok->grouped > 1 ? (4096 / group + 1) * group : 4096;
    if (!q4) return;
    for (int64_t b = 0; b < nblocks; b += 2) {
        __m512i v = _mm512_maskz_loadu_epi8(b + 2 <= nblocks ? ~0ULL : 0xFFFFFFFFULL, x + b * 32);
        v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
        _mm512_storeu_si512(tok->reordered + b * 32, v);
        __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), v);
        tok->corrections[b / 2] = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
    }
    tok->x = tok->reordered;
}

/// One block pair of one row (with `half`, the row's last single block): its per-lane dots with the token.
EDGE_VNNI static inline __attribute__((always_inline)) __m512i decode_pair_dot(const int q4, const int half, const uint8_t *wb,
                                                                              const decode_token *tok, int64_t b) {
    if (q4) {
        __m256i packed = half ? _mm256_maskz_loadu_epi8(0xFFFF, wb) : _mm256_loadu_si256((const __m256i *)wb);
        const __m512i shifts = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
        __m512i n = _mm512_and_si512(_mm512_srlv_epi64(_mm512_broadcast_i64x4(packed), shifts), _mm512_set1_epi8(0x0F));
        return _mm512_dpbusd_epi32(tok->corrections[b / 2], n, _mm512_loadu_si512(tok->x + b * 32));
    }
    const __mmask64 blocks = half ? 0xFFFFFFFFULL : ~0ULL;
    __m512i w = half ? _mm512_maskz_loadu_epi8(blocks, wb) : _mm512_loadu_si512(wb);
    __m512i x = half ? _mm512_maskz_loadu_epi8(blocks, tok->x + b * 32) : _mm512_loadu_si512(tok->x + b * 32);
    __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx);
}

/// Block pair b (with `half`, the last single block) of R rows starting at `rows`, into their accumulators; the pair's
/// scales are in c[i][h].
EDGE_VNNI static inline __attribute__((always_inline)) void decode_step(const int q4, const int half, const int h, const int R,
                                                                       const uint8_t *rows, int64_t nblocks, int64_t b,
                                                                       __m512i second, __m512 c[][2], const decode_token *tok,
                                                                       __m512 *acc) {
    const __m512i at = _mm512_add_epi32(second, _mm512_set1_epi32((int)(b & 15)));
    for (int i = 0; i < R; i++) {
        const uint8_t *wb = rows + (i * nblocks + b) * (q4 ? 16 : 32);
        // The rows' groups lie one after another: a group `ahead` bytes on is swept in address order, a pair's
        // worth of bytes per row and step.
        if (!half) _mm_prefetch((const char *)rows + tok->ahead + (b / 2 * R + i) * 2 * (q4 ? 16 : 32), _MM_HINT_T0);
        __m512 scales = _mm512_permutexvar_ps(at, c[i][h]);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(decode_pair_dot(q4, half, wb, tok, b)), scales, acc[i]);
    }
}

/// Rows [r, r + R) against the token: out[(r + i) * ors].
EDGE_VNNI static inline __attribute__((always_inline)) void decode_rows(const int q4, const int R, const uint8_t *w,
                                                                       const uint16_t *ws, int64_t nblocks, int64_t r,
                                                                       const decode_token *tok, float *out, int64_t ors) {
    const int64_t block_bytes = q4 ? 16 : 32;
    // Lane l of a pair's dots belongs to its first or second block: q8 lanes 0-7 / 8-15, q4 lanes 0-3 and 8-11 / 4-7 and 12-15.
    const __m512i second = q4 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
                              : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 c[4][2], acc[4];
    for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps();
    const uint8_t *rows = w + r * nblocks * block_bytes;
    // Segments of 32 blocks: blocks 0-15 of a segment take their scales from c[i][0], blocks 16-31 from c[i][1]
    // (16 being even, no pair straddles).
    for (int64_t seg = 0; seg < nblocks; seg += 32) {
        for (int h = 0; h < 2 && seg + 16 * h < nblocks; h++) {
            int64_t n = nblocks - seg - 16 * h;
            __mmask16 m = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
            __m512 token_scales = _mm512_maskz_loadu_ps(m, tok->scales + seg + 16 * h);
            // Plain loads where 16 scales remain: masked loads do not train the hardware prefetcher (from DRAM,
            // decode ran at half speed with them).
            for (int i = 0; i < R; i++) {
                const uint16_t *p = ws + (r + i) * nblocks + seg + 16 * h;
                __m256i words = n >= 16 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(m, p);
                c[i][h] = _mm512_mul_ps(_mm512_cvtph_ps(words), token_scales);
            }
        }
        int64_t b = seg, end = seg + 32 < nblocks ? seg + 32 : nblocks, low = seg + 16 < end ? seg + 16 : end;
        for (; b + 2 <= low; b += 2) decode_step(q4, 0, 0, R, rows, nblocks, b, second, c, tok, acc);
        if (b < low) decode_step(q4, 1, 0, R, rows, nblocks, b++, second, c, tok, acc);
        for (; b + 2 <= end; b += 2) decode_step(q4, 0, 1, R, rows, nblocks, b, second, c, tok, acc);
        if (b < end) decode_step(q4, 1, 1, R, rows, nblocks, b, second, c, tok, acc);
    }
    for (int i = 0; i < R; i++) out[(r + i) * ors] = _mm512_reduce_add_ps(acc[i]);
}

EDGE_VNNI static inline __attribute__((always_inline)) void row_decode(const int q4, const uint8_t *w, const uint16_t *ws,
                                                                         int64_t nblocks, int64_t r0, int64_t r1, const int8_t *x,
                                                                         const float *xs, int64_t ntok, float *out, int64_t ors,
                                                                         int64_t ots) {
    decode_token tok;
    for (int64_t t = 0; t < ntok; t++) {
        decode_token_prepare(q4, x + t * nblocks * 32, xs + t * nblocks, nblocks, &tok);
        int64_t r = r0;
        if (tok.grouped == 2)
            for (; r + 2 <= r1; r += 2) decode_rows(q4, 2, w, ws, nblocks, r, &tok, out + t * ots, ors);
        if (tok.grouped == 4) {
            for (; r + 4 <= r1; r += 4) decode_rows(q4, 4, w, ws, nblocks, r, &tok, out + t * ots, ors);
            for (; r + 2 <= r1; r += 2) decode_rows(q4, 2, w, ws, nblocks, r, &tok, out + t * ots, ors);
        }
        for (; r < r1; r++) decode_rows(q4, 1, w, ws, nblocks, r, &tok, out + t * ots, ors);
    }
}

EDGE_VNNI void edge_avx512_decode_q8(EDGE_DECODE_ARGS) { row_decode(0, w, ws, nblocks, r0, r1, x, xs, ntok, out, ors, ots); }
EDGE_VNNI void edge_avx512_decode_q4(EDGE_DECODE_ARGS) { row_decode(1, w, ws, nblocks, r0, r1, x, xs, ntok, out, ors, ots); }
#endif
