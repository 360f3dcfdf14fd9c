// The i8mm level (FEAT_I8MM: Apple M2 and later, Cortex-A510/A710/X2 and later, Graviton 3): prompt
// batches as 2x2 tiles of (rows x tokens) through `smmla`, which multiplies a 2x8 int8 matrix by the
// transpose of another into 2x2 int32. A block of two rows is interleaved once (8 bytes of row 0, then
// 8 of row 1, four times per block), so are two tokens' activations, and four `smmla` give the block's
// four row-token dot products exactly, each in its own lane: no horizontal sums. Decode (one token),
// an odd last row and an odd last token run on the dot-product kernels.
#if defined(__aarch64__)
#include "blocks.h"

#define I8MM_ATTR __attribute__((target("arch=armv8.6-a+dotprod+i8mm")))
#define I8MM_INLINE static inline __attribute__((always_inline)) I8MM_ATTR

/// Two 32-byte blocks as four registers [a bytes 8c..8c+7 | b bytes 8c..8c+7], c = 0..3.
typedef struct { int8x16_t c[4]; } i8mm_pair;

I8MM_INLINE int8x16_t zip64(int8x16_t a, int8x16_t b, int high) {
    int64x2_t a64 = vreinterpretq_s64_s8(a), b64 = vreinterpretq_s64_s8(b);
    return vreinterpretq_s8_s64(high ? vzip2q_s64(a64, b64) : vzip1q_s64(a64, b64));
}

I8MM_INLINE i8mm_pair interleave(k128_block a, k128_block b) {
    i8mm_pair p = { { zip64(a.lo, b.lo, 0), zip64(a.lo, b.lo, 1), zip64(a.hi, b.hi, 0), zip64(a.hi, b.hi, 1) } };
    return p;
}

/// Row pairs [r, r + 2 RP) times token pairs [t, t + 2 TP); accumulator lanes are r0t0, r0t1, r1t0, r1t1.
I8MM_INLINE void i8mm_tile(const int q4, const int RP, const int TP, const int per_channel, const uint8_t *w,
                           const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t ngroups, int64_t r,
                           const int8_t *x, const float *xs, int64_t t, float *out, int64_t ors, int64_t ots) {
    const int64_t block_bytes = q4 ? 16 : 32, row_bytes = nblocks * block_bytes;
    float32x4_t acc[2][2];
    for (int i = 0; i < RP; i++)
        for (int k = 0; k < TP; k++) acc[i][k] = vdupq_n_f32(0.0f);
    for (int64_t g = 0; g < ngroups; g++) {
        float32x4_t wscale[2];
        for (int i = 0; i < RP; i++) {
            float s0 = per_channel ? 1.0f : k128_half(ws[(r + 2 * i) * ngroups + g]);
            float s1 = per_channel ? 1.0f : k128_half(ws[(r + 2 * i + 1) * ngroups + g]);
            float32x4_t v = { s0, s0, s1, s1 };
            wscale[i] = v;
        }
        for (int64_t b = g * gblocks, bend = edge_group_end(g, gblocks, nblocks); b < bend; b++) {
            i8mm_pair wp[2];
            for (int i = 0; i < RP; i++) {
                const uint8_t *p = w + (r + 2 * i) * row_bytes + b * block_bytes;
                wp[i] = interleave(k128_load(q4, p), k128_load(q4, p + row_bytes));
            }
            for (int k = 0; k < TP; k++) {
                const int8_t *x0 = x + (t + 2 * k) * nblocks * 32 + b * 32, *x1 = x0 + nblocks * 32;
                k128_block a = { vld1q_s8(x0), vld1q_s8(x0 + 16) }, c = { vld1q_s8(x1), vld1q_s8(x1 + 16) };
                i8mm_pair xp = interleave(a, c);
                float s0 = xs[(t + 2 * k) * nblocks + b], s1 = xs[(t + 2 * k + 1) * nblocks + b];
                float32x4_t xscale = { s0, s1, s0, s1 };
                for (int i = 0; i < RP; i++) {
                    int32x4_t d = vdupq_n_s32(0);
                    for (int j = 0; j < 4; j++) d = vmmlaq_s32(d, wp[i].c[j], xp.c[j]);
                    acc[i][k] = vfmaq_f32(acc[i][k], vcvtq_f32_s32(d), per_channel ? xscale : vmulq_f32(xscale, wscale[i]));
                }
            }
        }
    }
    for (int i = 0; i < RP; i++) {
        float s0 = per_channel ? k128_half(ws[r + 2 * i]) : 1.0f;
        float s1 = per_channel ? k128_half(ws[r + 2 * i + 1]) : 1.0f;
        for (int k = 0; k < TP; k++) {
            float lanes[4];
            vst1q_f32(lanes, acc[i][k]);
            float *o = out + (r + 2 * i) * ors + (t + 2 * k) * ots;
            o[0] = lanes[0] * s0;
            o[ots] = lanes[1] * s0;
            o[ors] = lanes[2] * s1;
            o[ors + ots] = lanes[3] * s1;
        }
    }
}

/// Rows [r, r + 2 RP) against tokens [0, tpairs): tiles of two token pairs, then one.
I8MM_INLINE void i8mm_rows(const int q4, const int RP, const int per_channel, const uint8_t *w, const uint16_t *ws,
                           int64_t nblocks, int64_t gblocks, int64_t ngroups, int64_t r, const int8_t *x,
                           const float *xs, int64_t tpairs, float *out, int64_t ors, int64_t ots) {
    int64_t t = 0;
    for (; t + 4 <= tpairs; t += 4) i8mm_tile(q4, RP, 2, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, t, out, ors, ots);
    for (; t + 2 <= tpairs; t += 2) i8mm_tile(q4, RP, 1, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, t, out, ors, ots);
}

I8MM_INLINE void i8mm_matmul(const int q4, const int per_channel, const uint8_t *w, const uint16_t *ws,
                             int64_t nblocks, int64_t gblocks, int64_t r0, int64_t r1, const int8_t *x,
                             const float *xs, int64_t tpairs, float *out, int64_t ors, int64_t ots) {
    int64_t ngroups = (nblocks + gblocks - 1) / gblocks, r = r0;
    for (; r + 4 <= r1; r += 4) i8mm_rows(q4, 2, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, tpairs, out, ors, ots);
    for (; r + 2 <= r1; r += 2) i8mm_rows(q4, 1, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, tpairs, out, ors, ots);
}

/// Row pairs and token pairs on `smmla`; what is left over (an odd row, an odd token) on `sdot`.
#define EDGE_I8MM_MATMUL(NAME, WTYPE, Q4, SDOT)                                                         \
    I8MM_ATTR void NAME(EDGE_MATMUL_ARGS(WTYPE)) {                                                      \
        int64_t tpairs = ntok & ~(int64_t)1, rpairs_end = r0 + ((r1 - r0) & ~(int64_t)1);             \
        if (tpairs == 0) {                                                                              \
            SDOT(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);                          \
            return;                                                                                     \
        }                                                                                               \
        const uint8_t *wb = (const uint8_t *)w;                                                         \
        if (gblocks >= nblocks) i8mm_matmul(Q4, 1, wb, ws, nblocks, gblocks, r0, rpairs_end, x, xs, tpairs, out, ors, ots); \
        else i8mm_matmul(Q4, 0, wb, ws, nblocks, gblocks, r0, rpairs_end, x, xs, tpairs, out, ors, ots); \
        if (rpairs_end < r1) SDOT(w, ws, nblocks, gblocks, rpairs_end, r1, x, xs, ntok, out, ors, ots); \
        if (tpairs < ntok)                                                                              \
            SDOT(w, ws, nblocks, gblocks, r0, rpairs_end, x + tpairs * nblocks * 32, xs + tpairs * nblocks, 1, \
                 out + tpairs * ots, ors, ots);                                                         \
    }

EDGE_I8MM_MATMUL(edge_i8mm_matmul_q8, int8_t, 0, edge_dotprod_matmul_q8)
EDGE_I8MM_MATMUL(edge_i8mm_matmul_q4, uint8_t, 1, edge_dotprod_matmul_q4)
#endif
