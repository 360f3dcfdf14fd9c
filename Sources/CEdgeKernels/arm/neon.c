// The plain NEON level (Advanced SIMD, every arm64 core, e.g. Cortex-A72 in the Raspberry Pi 4):
// 8 x 8 -> 16-bit products (`smull`, `smlal2`) whose pairs stay within int16 (at most 2 * 127 * 127),
// widened and added into int32 lanes (`saddlp`, `sadalp`). Also the activation quantizer of every arm64
// level.
#if defined(__aarch64__)
#define K128_ATTR
#define K128_NAME(x) edge_neon_##x

#include "blocks.h"

static inline __attribute__((always_inline)) int32x4_t neon_dot(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    int16x8_t a = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
    int16x8_t b = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
    return vpadalq_s16(vpaddlq_s16(a), b);
}
#define K128_DOT(w0, w1, x0, x1) neon_dot((w0), (w1), (x0), (x1))
#include "kernels128.h"

/// Same arithmetic as the generic quantizer (max |x| / 127, x * (1 / d) rounded to nearest even), so
/// the codes and scales are bit-identical; the rounded values lie in [-127, 127], so narrowing is exact.
void edge_neon_quantize(const float *x, int64_t nblocks, int8_t *q, float *s) {
    for (int64_t b = 0; b < nblocks; b++) {
        const float *xb = x + b * 32;
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(xb + 4 * i);
            m = vmaxq_f32(m, vabsq_f32(v[i]));
        }
        float amax = vmaxvq_f32(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int16x8_t h[4];
        for (int i = 0; i < 4; i++) {
            int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[2 * i], id));
            int32x4_t c = vcvtnq_s32_f32(vmulq_n_f32(v[2 * i + 1], id));
            h[i] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(c));
        }
        vst1q_s8(q + b * 32, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8(q + b * 32 + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
        s[b] = d;
    }
}
#endif
