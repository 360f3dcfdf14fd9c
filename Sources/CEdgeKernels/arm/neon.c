// The plain NEON level (Advanced SIMD, every arm64 core, e.g. Cortex-A72 in the Raspberry Pi 4):
// 8 x 8 -> 16-bit products (`smull`, `smlal2`) whose pairs stay within int16 (at most 2 * 127 * 127),
// widened and added into int32 lanes (`saddlp`, `sadalp`). Also the activation quantizer of every arm64
// level.
#if defined(__aarch64__)
#define K128_ATTR
#define K128_NAME(x) edge_neon_##x

#include "blocks.h"
#include <math.h>

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

// Attention over q8/f16 caches. f16: values in chunks of 32 dimensions kept in eight accumulators
// across every position; scores four dimensions per `fcvtl` + `fmla`, with a scalar tail.

// Values: for 4 dimensions and up to 8 queries at a time, each position's codes are widened and scaled
// once and added to every query's accumulator with one FMA by its probability.
void edge_neon_attn_values_q8(const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales,
                              int64_t npos, int64_t hd, float *out, int64_t ostride) {
    int64_t nb = hd / 32;
    float scale[128];
    for (int64_t j0 = 0; j0 < npos; j0 += 128) {
        int64_t jn = npos - j0 < 128 ? npos - j0 : 128;
        for (int64_t b = 0; b < nb; b++) {
            for (int64_t j = 0; j < jn; j++) scale[j] = k128_half(vscales[(j0 + j) * nb + b]);
            for (int64_t d = b * 32; d < b * 32 + 32; d += 8) {
                for (int64_t q0 = 0; q0 < nq; q0 += 8) {
                    int qn = (int)(nq - q0 < 8 ? nq - q0 : 8);
                    float32x4_t lo[8], hi[8];
                    for (int i = 0; i < qn; i++) {
                        lo[i] = vld1q_f32(out + (q0 + i) * ostride + d);
                        hi[i] = vld1q_f32(out + (q0 + i) * ostride + d + 4);
                    }
                    for (int64_t j = 0; j < jn; j++) {
                        int16x8_t codes = vmovl_s8(vld1_s8(v + (j0 + j) * hd + d));
                        float32x4_t rlo = vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(codes))), scale[j]);
                        float32x4_t rhi = vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(codes)), scale[j]);
                        for (int i = 0; i < qn; i++) {
                            float w = p[(q0 + i) * pstride + j0 + j];
                            lo[i] = vfmaq_n_f32(lo[i], rlo, w);
                            hi[i] = vfmaq_n_f32(hi[i], rhi, w);
                        }
                    }
                    for (int i = 0; i < qn; i++) {
                        vst1q_f32(out + (q0 + i) * ostride + d, lo[i]);
                        vst1q_f32(out + (q0 + i) * ostride + d + 4, hi[i]);
                    }
                }
            }
        }
    }
}

void edge_neon_attn_scores_f16(const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out) {
    int64_t vec = hd & ~(int64_t)3;
    for (int64_t j = 0; j < npos; j++) {
        const uint16_t *row = k + j * hd;
        float32x4_t acc = vdupq_n_f32(0.0f);
        for (int64_t d = 0; d < vec; d += 4)
            acc = vfmaq_f32(acc, vld1q_f32(q + d), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(row + d))));
        float total = vaddvq_f32(acc);
        for (int64_t d = vec; d < hd; d++) total += q[d] * k128_half(row[d]);
        out[j] = total;
    }
}

void edge_neon_attn_values_f16(const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out) {
    int64_t vec = hd & ~(int64_t)3;
    for (int64_t d0 = 0; d0 < vec; d0 += 32) {
        int n = (int)((vec - d0 < 32 ? vec - d0 : 32) / 4);
        float32x4_t acc[8];
        for (int i = 0; i < n; i++) acc[i] = vld1q_f32(out + d0 + 4 * i);
        for (int64_t j = 0; j < npos; j++)
            for (int i = 0; i < n; i++)
                acc[i] = vfmaq_n_f32(acc[i], vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + j * hd + d0 + 4 * i))), p[j]);
        for (int i = 0; i < n; i++) vst1q_f32(out + d0 + 4 * i, acc[i]);
    }
    for (int64_t j = 0; j < npos; j++)
        for (int64_t d = vec; d < hd; d++) out[d] += p[j] * k128_half(v[j * hd + d]);
}

float edge_neon_scale_max(float *row, int64_t n, float scale) {
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        float32x4_t v = vmulq_n_f32(vld1q_f32(row + j), scale);
        vst1q_f32(row + j, v);
        m = vmaxq_f32(m, v);
    }
    float max = vmaxvq_f32(m);
    for (; j < n; j++) {
        row[j] *= scale;
        max = row[j] > max ? row[j] : max;
    }
    return max;
}

/// e^x in four lanes, as x86/avx2.c's `avx2_exp` (EdgeKernels.h, `edge_exp_sum`).
static inline __attribute__((always_inline)) float32x4_t neon_exp(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.33654475f);
    const uint32x4_t under = vcltq_f32(x, lo);
    x = vminq_f32(vdupq_n_f32(88.0f), vmaxq_f32(lo, x));
    float32x4_t k = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, k, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, k, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    float32x4_t y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)), 23);
    float32x4_t out = vmulq_f32(y, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(out), under));
}

/// g / (1 + e^a) * u in four lanes: SwiGLU with a = -g, GeGLU (tanh GELU) with a = -2 sqrt(2 / pi) (g + 0.044715 g^3).
static inline __attribute__((always_inline)) float32x4_t neon_gated4(int gelu, float32x4_t g, float32x4_t u) {
    float32x4_t a = vnegq_f32(g);
    if (gelu) a = vmulq_f32(vfmaq_f32(vdupq_n_f32(1.0f), vmulq_f32(g, g), vdupq_n_f32(0.044715f)), vmulq_n_f32(g, -1.5957691216057308f));
    return vmulq_f32(vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), neon_exp(a))), u);
}

static inline __attribute__((always_inline)) void neon_gated(int gelu, float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(gate + i, neon_gated4(gelu, vld1q_f32(gate + i), vld1q_f32(up + i)));
    if (i < n) {
        // The tail from zero-padded copies.
        float g[4], u[4];
        for (int k = 0; k < 4; k++) g[k] = i + k < n ? gate[i + k] : 0.0f, u[k] = i + k < n ? up[i + k] : 0.0f;
        vst1q_f32(g, neon_gated4(gelu, vld1q_f32(g), vld1q_f32(u)));
        for (int k = 0; i + k < n; k++) gate[i + k] = g[k];
    }
}

void edge_neon_swiglu(float *gate, const float *up, int64_t n) { neon_gated(0, gate, up, n); }

void edge_neon_geglu(float *gate, const float *up, int64_t n) { neon_gated(1, gate, up, n); }

float edge_neon_exp_sum(float *row, int64_t n, float max) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        float32x4_t e = neon_exp(vsubq_f32(vld1q_f32(row + j), vdupq_n_f32(max)));
        vst1q_f32(row + j, e);
        acc = vaddq_f32(acc, e);
    }
    if (j < n) {
        // The tail through the same exp, from a padded copy (the padding's exp is 0).
        float tail[4];
        for (int i = 0; i < 4; i++) tail[i] = j + i < n ? row[j + i] : -INFINITY;
        float32x4_t e = neon_exp(vsubq_f32(vld1q_f32(tail), vdupq_n_f32(max)));
        vst1q_f32(tail, e);
        acc = vaddq_f32(acc, e);
        for (int i = 0; j + i < n; i++) row[j + i] = tail[i];
    }
    return vaddvq_f32(acc);
}
#endif
