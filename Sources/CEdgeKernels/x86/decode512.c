// Decode at the AVX-512 VNNI level of q8 and q4 rows with one scale per block or per row (up to
// EDGE_DECODE_MAX_BLOCKS blocks), and token-wise q4 batches, each token as its decode step computes it. Rows go four
// at a time (two, or one, when four would span more than 8 KiB), sharing each activation load; the rows are one
// stretch of memory, and a prefetch sweeps the stretch some groups ahead in address order (with a prefetch per row
// instead, four interleaved streams ran at half speed from DRAM). A row's block scales are one f16 load and one
// multiply by the token's activation scales per 16 blocks, and each block pair's lanes take theirs with one permute
// (rows with one scale take the token's alone, and the row's scale once at the end, as avx512.c's row tiles do, so
// q8 sums are theirs bit for bit). q4 activations are reordered once per token to the nibbles' order (a block pair's
// 32 packed bytes, broadcast to both halves of a register, are their low nibbles then their high ones), so a pair's
// weights are one load, one shift and one mask.
// Against rows one at a time (long rows) and in pairs (short ones), one thread: q4 +33% from DRAM and +40% from L3,
// q8 equal from DRAM (bandwidth-bound) and +30% from L3; the Gemma 3 shape's 262,144 x 640 q8 head from DRAM 2.3x
// (its rows in pairs had a prefetch per row); SmolLM2's q8 file (one scale per row) decodes 1.35x faster.
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
    const __m512i *corrections;
    const float *scales;
    /// How many rows go together (4, 2 or 1), and the prefetch distance: a whole number of such groups of more than
    /// 4 KiB, or 4 KiB for rows one at a time.
    int grouped;
    int64_t ahead;
} decode_token;

/// Bytes of scratch a prepared q4 token takes: its reordered activations and one correction vector per block pair.
static inline int64_t decode_token_bytes(int64_t nblocks) { return (nblocks + 1) / 2 * 128; }

/// Token `x` (nblocks blocks, scales xs) ready for the rows: q4 activations reordered into `buffer`
/// (decode_token_bytes) to [b.x[0..15], b1.x[0..15], b.x[16..31], b1.x[16..31]] per pair, with their corrections
/// -8 * sum(x).
EDGE_VNNI static inline __attribute__((always_inline)) void decode_token_prepare(const int q4, const int8_t *x, const float *xs,
                                                                                 int64_t nblocks, int8_t *buffer,
                                                                                 decode_token *tok) {
    tok->x = x;
    tok->scales = xs;
    int64_t group = 4 * nblocks * (q4 ? 16 : 32);
    tok->grouped = group <= DECODE_GROUP_MAX_BYTES ? 4 : group / 2 <= DECODE_GROUP_MAX_BYTES ? 2 : 1;
    group = group / 4 * tok->grouped;
    tok->ahead = tok->grouped > 1 ? (4096 / group + 1) * group : 4096;
    if (!q4) return;
    __m512i *corrections = (__m512i *)(buffer + (nblocks + 1) / 2 * 64);
    for (int64_t b = 0; b < nblocks; b += 2) {
        __m512i v = _mm512_maskz_loadu_epi8(b + 2 <= nblocks ? ~0ULL : 0xFFFFFFFFULL, x + b * 32);
        v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
        _mm512_store_si512(buffer + b * 32, v);
        __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), v);
        corrections[b / 2] = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
    }
    tok->x = buffer;
    tok->corrections = corrections;
}

/// One row's block pair prepared for any number of tokens: q4 nibbles in the reordered activations' order, or
/// |w| and w's sign mask for q8.
typedef struct { __m512i w; __mmask64 negative; } decode_pair;

EDGE_VNNI static inline __attribute__((always_inline)) decode_pair decode_prep(const int q4, const int half, const uint8_t *wb) {
    decode_pair p;
    if (q4) {
        __m256i packed = half ? _mm256_maskz_loadu_epi8(0xFFFF, wb) : _mm256_loadu_si256((const __m256i *)wb);
        const __m512i shifts = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
        p.w = _mm512_and_si512(_mm512_srlv_epi64(_mm512_broadcast_i64x4(packed), shifts), _mm512_set1_epi8(0x0F));
        p.negative = 0;
        return p;
    }
    __m512i w = half ? _mm512_maskz_loadu_epi8(0xFFFFFFFFULL, wb) : _mm512_loadu_si512(wb);
    p.w = _mm512_abs_epi8(w);
    p.negative = _mm512_movepi8_mask(w);
    return p;
}

/// A prepared pair's per-lane dots with one token.
EDGE_VNNI static inline __attribute__((always_inline)) __m512i decode_dot(const int q4, const int half, decode_pair p,
                                                                         const decode_token *tok, int64_t b) {
    if (q4) return _mm512_dpbusd_epi32(tok->corrections[b / 2], p.w, _mm512_loadu_si512(tok->x + b * 32));
    __m512i x = half ? _mm512_maskz_loadu_epi8(0xFFFFFFFFULL, tok->x + b * 32) : _mm512_loadu_si512(tok->x + b * 32);
    __m512i sx = _mm512_mask_sub_epi8(x, p.negative, _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), p.w, sx);
}

/// Which block of a pair each 32-bit lane of its dots belongs to (0 or 1): q8 lanes 0-7 / 8-15, q4 lanes 0-3 and
/// 8-11 / 4-7 and 12-15 (the reordered activations' order).
EDGE_VNNI static inline __m512i decode_second_lanes(const int q4) {
    return q4 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
              : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
}

/// The n (at most 16 kept, mask m) f16 scale words at p as floats. Plain loads where 16 remain: masked loads do not
/// train the hardware prefetcher (from DRAM, decode ran at half speed with them).
EDGE_VNNI static inline __m512 decode_scale_words(const uint16_t *p, int64_t n, __mmask16 m) {
    return _mm512_cvtph_ps(n >= 16 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(m, p));
}

/// A row's sum from its accumulator lanes, times the row's scale when rows have one (per_channel), as the row-major
/// kernels of avx512.c finish it.
EDGE_VNNI static inline float decode_total(__m512 acc, const uint16_t *ws, int per_channel, int64_t row) {
    const float total = _mm512_reduce_add_ps(acc);
    return per_channel ? total * _cvtsh_ss(ws[row]) : total;
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
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(decode_dot(q4, half, decode_prep(q4, half, wb), tok, b)), scales, acc[i]);
    }
}

/// Rows [r, r + R) against the token: out[(r + i) * ors].
EDGE_VNNI static inline __attribute__((always_inline)) void decode_rows(const int q4, const int R, const uint8_t *w,
                                                                       const uint16_t *ws, int64_t nblocks, int per_channel,
                                                                       int64_t r, const decode_token *token, float *out,
                                                                       int64_t ors) {
    // A local copy, whose fields stay in registers (through the pointer they were reloaded every step: -20%).
    const decode_token copy = *token, *tok = &copy;
    const int64_t block_bytes = q4 ? 16 : 32;
    const __m512i second = decode_second_lanes(q4);
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
            for (int i = 0; i < R; i++)
                c[i][h] = per_channel ? token_scales
                                      : _mm512_mul_ps(decode_scale_words(ws + (r + i) * nblocks + seg + 16 * h, n, m), token_scales);
        }
        int64_t b = seg, end = seg + 32 < nblocks ? seg + 32 : nblocks, low = seg + 16 < end ? seg + 16 : end;
        for (; b + 2 <= low; b += 2) decode_step(q4, 0, 0, R, rows, nblocks, b, second, c, tok, acc);
        if (b < low) decode_step(q4, 1, 0, R, rows, nblocks, b++, second, c, tok, acc);
        for (; b + 2 <= end; b += 2) decode_step(q4, 0, 1, R, rows, nblocks, b, second, c, tok, acc);
        if (b < end) decode_step(q4, 1, 1, R, rows, nblocks, b, second, c, tok, acc);
    }
    for (int i = 0; i < R; i++) out[(r + i) * ors] = decode_total(acc[i], ws, per_channel, r + i);
}

/// Block pair b of R rows against T tokens; each (row, token) takes the same dot, scale product (w's scale times x's)
/// and order as decode_step with that token alone. A nonzero `ahead` prefetches the row groups that far on, as
/// decode_step does.
EDGE_VNNI static inline __attribute__((always_inline)) void decode_step_tokens(const int q4, const int half, const int h, const int R,
                                                                              const int T, const uint8_t *rows, int64_t nblocks,
                                                                              int64_t b, __m512i second, __m512 cw[][2],
                                                                              __m512 xsv[][2], const decode_token *tok,
                                                                              int64_t ahead, __m512 acc[][4]) {
    const __m512i at = _mm512_add_epi32(second, _mm512_set1_epi32((int)(b & 15)));
    __m512 token_scales[4];
    for (int k = 0; k < T; k++) token_scales[k] = _mm512_permutexvar_ps(at, xsv[k][h]);
    for (int i = 0; i < R; i++) {
        const uint8_t *wb = rows + (i * nblocks + b) * (q4 ? 16 : 32);
        if (ahead && !half) _mm_prefetch((const char *)rows + ahead + (b / 2 * R + i) * 2 * (q4 ? 16 : 32), _MM_HINT_T0);
        decode_pair p = decode_prep(q4, half, wb);
        __m512 row_scales = _mm512_permutexvar_ps(at, cw[i][h]);
        for (int k = 0; k < T; k++) {
            __m512 scales = _mm512_mul_ps(row_scales, token_scales[k]);
            acc[i][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(decode_dot(q4, half, p, tok + k, b)), scales, acc[i][k]);
        }
    }
}

/// Rows [r, r + R) against tokens tok[0, T): out[(r + i) * ors + k * ots], each (row, token) as decode_rows computes it
/// for that token alone (token-wise batches: a row pair's weights prepared once for up to four tokens); prefetching
/// `ahead` bytes on when nonzero.
EDGE_VNNI static inline __attribute__((always_inline)) void decode_rows_tokens(const int q4, const int R, const int T, const uint8_t *w,
                                                                              const uint16_t *ws, int64_t nblocks, int per_channel,
                                                                              int64_t r, const decode_token *tok, int64_t ahead,
                                                                              float *out, int64_t ors, int64_t ots) {
    const __m512i second = decode_second_lanes(q4);
    __m512 cw[2][2], xsv[4][2], acc[2][4];
    for (int i = 0; i < R; i++)
        for (int k = 0; k < T; k++) acc[i][k] = _mm512_setzero_ps();
    const uint8_t *rows = w + r * nblocks * (q4 ? 16 : 32);
    for (int64_t seg = 0; seg < nblocks; seg += 32) {
        for (int h = 0; h < 2 && seg + 16 * h < nblocks; h++) {
            int64_t n = nblocks - seg - 16 * h;
            __mmask16 m = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
            for (int k = 0; k < T; k++) xsv[k][h] = _mm512_maskz_loadu_ps(m, tok[k].scales + seg + 16 * h);
            for (int i = 0; i < R; i++)
                cw[i][h] = per_channel ? _mm512_set1_ps(1.0f) : decode_scale_words(ws + (r + i) * nblocks + seg + 16 * h, n, m);
        }
        int64_t b = seg, end = seg + 32 < nblocks ? seg + 32 : nblocks, low = seg + 16 < end ? seg + 16 : end;
        for (; b + 2 <= low; b += 2) decode_step_tokens(q4, 0, 0, R, T, rows, nblocks, b, second, cw, xsv, tok, ahead, acc);
        if (b < low) decode_step_tokens(q4, 1, 0, R, T, rows, nblocks, b++, second, cw, xsv, tok, ahead, acc);
        for (; b + 2 <= end; b += 2) decode_step_tokens(q4, 0, 1, R, T, rows, nblocks, b, second, cw, xsv, tok, ahead, acc);
        if (b < end) decode_step_tokens(q4, 1, 1, R, T, rows, nblocks, b, second, cw, xsv, tok, ahead, acc);
    }
    for (int i = 0; i < R; i++)
        for (int k = 0; k < T; k++) out[(r + i) * ors + k * ots] = decode_total(acc[i][k], ws, per_channel, r + i);
}

/// The most tokens prepared at a time for token-wise batches: each row pair meets them four at a time while its
/// weights stay in L1, so the weights come from memory once per 16 tokens.
#define DECODE_TOKENS_MAX 16

/// Rows [r0, r1) against n (at most DECODE_TOKENS_MAX) prepared tokens: each row pair against the tokens four at a time.
EDGE_VNNI static inline __attribute__((always_inline)) void decode_tokens(const int q4, const uint8_t *w, const uint16_t *ws,
                                                                         int64_t nblocks, int per_channel, int64_t r0, int64_t r1,
                                                                         const decode_token *tok, int n, float *out, int64_t ors,
                                                                         int64_t ots) {
    // Row pairs lie one after another: the first token group prefetches the pair some 4 KiB on.
    const int64_t pair_bytes = 2 * nblocks * (q4 ? 16 : 32), ahead = (4096 / pair_bytes + 1) * pair_bytes;
    for (int64_t r = r0; r < r1; r += 2) {
        const int pair = r + 2 <= r1;
        for (int t = 0; t < n; t += 4) {
            float *o = out + t * ots;
            const int64_t a = t ? 0 : ahead;
            switch ((n - t < 4 ? n - t : 4) + 4 * pair) {
            case 8: decode_rows_tokens(q4, 2, 4, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            case 7: decode_rows_tokens(q4, 2, 3, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            case 6: decode_rows_tokens(q4, 2, 2, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            case 5: decode_rows_tokens(q4, 2, 1, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            case 4: decode_rows_tokens(q4, 1, 4, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            case 3: decode_rows_tokens(q4, 1, 3, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            case 2: decode_rows_tokens(q4, 1, 2, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            default: decode_rows_tokens(q4, 1, 1, w, ws, nblocks, per_channel, r, tok + t, a, o, ors, ots); break;
            }
        }
    }
}

EDGE_VNNI static inline __attribute__((always_inline)) void row_decode(const int q4, const uint8_t *w, const uint16_t *ws,
                                                                         int64_t nblocks, int per_channel, int64_t r0, int64_t r1,
                                                                         const int8_t *x,
                                                                         const float *xs, int64_t ntok, float *out, int64_t ors,
                                                                         int64_t ots) {
    const int64_t bytes = decode_token_bytes(nblocks);
    const int64_t chunk = ntok < DECODE_TOKENS_MAX ? ntok : DECODE_TOKENS_MAX;
    int8_t *buffer = q4 ? edge_scratch(6, (size_t)(chunk * bytes)) : NULL;
    decode_token tok[DECODE_TOKENS_MAX];
    if (ntok == 1) {
        decode_token_prepare(q4, x, xs, nblocks, buffer, tok);
        int64_t r = r0;
        if (tok->grouped == 2)
            for (; r + 2 <= r1; r += 2) decode_rows(q4, 2, w, ws, nblocks, per_channel, r, tok, out, ors);
        if (tok->grouped == 4) {
            for (; r + 4 <= r1; r += 4) decode_rows(q4, 4, w, ws, nblocks, per_channel, r, tok, out, ors);
            for (; r + 2 <= r1; r += 2) decode_rows(q4, 2, w, ws, nblocks, per_channel, r, tok, out, ors);
        }
        for (; r < r1; r++) decode_rows(q4, 1, w, ws, nblocks, per_channel, r, tok, out, ors);
        return;
    }
    for (int64_t t = 0; t < ntok; t += chunk) {
        const int n = (int)(ntok - t < chunk ? ntok - t : chunk);
        for (int k = 0; k < n; k++)
            decode_token_prepare(q4, x + (t + k) * nblocks * 32, xs + (t + k) * nblocks, nblocks, q4 ? buffer + k * bytes : NULL, tok + k);
        decode_tokens(q4, w, ws, nblocks, per_channel, r0, r1, tok, n, out + t * ots, ors, ots);
    }
}

EDGE_VNNI void edge_avx512_decode_q8(EDGE_DECODE_ARGS) { row_decode(0, w, ws, nblocks, per_channel, r0, r1, x, xs, ntok, out, ors, ots); }
EDGE_VNNI void edge_avx512_decode_q4(EDGE_DECODE_ARGS) { row_decode(1, w, ws, nblocks, per_channel, r0, r1, x, xs, ntok, out, ors, ots); }
#endif
