// 128-bit arm64 matrix kernels, one row x one token or R rows x T tokens per tile, instantiated per
// dot-product flavour: arm/neon.c (`smull`/`smlal2`/`sadalp`) and arm/dotprod.c (`sdot`). The including
// file defines
//   K128_ATTR              the functions' target attribute (may be empty),
//   K128_NAME(x)           the exported name of kernel x,
//   K128_DOT(w0, w1, x0, x1)  the exact int32 x4 partial dot of one block given as two 16-byte halves
//                          of signed codes (its lanes add up to the block's integer dot product).
// q4 blocks are unpacked to signed codes once per tile and shared by its tokens; each activation block
// is loaded once per tile and shared by its rows. Per row-token pair a float accumulator of 4 lanes
// takes the block's dot times activation scale x weight scale; per-channel rows apply the weight scale
// once at the end.
#include "blocks.h"

#define K128_INLINE static inline __attribute__((always_inline)) K128_ATTR

/// Rows [r, r + R) times tokens [t, t + T), every block of the rows.
K128_INLINE void k128_tile(const int q4, const int R, const int T, const int per_channel, const uint8_t *w,
                           const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t ngroups, int64_t r,
                           const int8_t *x, const float *xs, int64_t t, float *out, int64_t ors, int64_t ots) {
    const int64_t block_bytes = q4 ? 16 : 32, row_bytes = nblocks * block_bytes;
    float32x4_t acc[2][4];
    for (int i = 0; i < R; i++)
        for (int k = 0; k < T; k++) acc[i][k] = vdupq_n_f32(0.0f);
    for (int64_t g = 0; g < ngroups; g++) {
        float wscale[2];
        for (int i = 0; i < R; i++) wscale[i] = per_channel ? 1.0f : k128_half(ws[(r + i) * ngroups + g]);
        for (int64_t b = g * gblocks, bend = edge_group_end(g, gblocks, nblocks); b < bend; b++) {
            k128_block wb[2];
            for (int i = 0; i < R; i++) wb[i] = k128_load(q4, w + (r + i) * row_bytes + b * block_bytes);
            for (int k = 0; k < T; k++) {
                const int8_t *xp = x + (t + k) * nblocks * 32 + b * 32;
                int8x16_t x0 = vld1q_s8(xp), x1 = vld1q_s8(xp + 16);
                float xscale = xs[(t + k) * nblocks + b];
                for (int i = 0; i < R; i++) {
                    int32x4_t d = K128_DOT(wb[i].lo, wb[i].hi, x0, x1);
                    acc[i][k] = vfmaq_n_f32(acc[i][k], vcvtq_f32_s32(d), per_channel ? xscale : xscale * wscale[i]);
                }
            }
        }
    }
    for (int i = 0; i < R; i++) {
        float row_scale = per_channel ? k128_half(ws[r + i]) : 1.0f;
        for (int k = 0; k < T; k++) out[(r + i) * ors + (t + k) * ots] = vaddvq_f32(acc[i][k]) * row_scale;
    }
}

#define TILED_INLINE K128_INLINE
#define TILED_ATTR K128_ATTR
#define TILED_NAME(x) K128_NAME(x)
#define TILED_TILE k128_tile
#include "../tiled.h"
