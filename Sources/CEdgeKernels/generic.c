// The generic level: portable C, one row times one token at a time. It is also the reference the SIMD
// levels are tested against (tests/kernels), and it mirrors Kernels/ReferenceKernels.swift exactly.
#include "internal.h"
#include <math.h>

void edge_generic_quantize(const float *x, int64_t nblocks, int8_t *q, float *s) {
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

static inline int32_t dot_q8(const int8_t *w, const int8_t *x) {
    int32_t sum = 0;
    for (int i = 0; i < 32; i++) sum += (int32_t)w[i] * (int32_t)x[i];
    return sum;
}

static inline int32_t dot_q4(const uint8_t *w, const int8_t *x) {
    int32_t sum = 0;
    for (int i = 0; i < 16; i++) {
        sum += ((int32_t)(w[i] & 0x0F) - 8) * (int32_t)x[i];
        sum += ((int32_t)(w[i] >> 4) - 8) * (int32_t)x[i + 16];
    }
    return sum;
}

// acc += dot(block) * (activation scale * weight scale), block by block in row order.
#define EDGE_GENERIC_MATMUL(NAME, WTYPE, BLOCKBYTES, DOT)                                               \
    void NAME(EDGE_MATMUL_ARGS(WTYPE)) {                                                                \
        int64_t ngroups = (nblocks + gblocks - 1) / gblocks;                                            \
        for (int64_t r = r0; r < r1; r++) {                                                             \
            const WTYPE *wr = w + r * nblocks * BLOCKBYTES;                                             \
            for (int64_t t = 0; t < ntok; t++) {                                                        \
                const int8_t *xt = x + t * nblocks * 32;                                                \
                const float *st = xs + t * nblocks;                                                     \
                float acc = 0.0f;                                                                       \
                for (int64_t g = 0; g < ngroups; g++) {                                                 \
                    float wsg = edge_half_to_float(ws[r * ngroups + g]);                                \
                    for (int64_t b = g * gblocks, bend = edge_group_end(g, gblocks, nblocks); b < bend; b++) \
                        acc += (float)DOT(wr + b * BLOCKBYTES, xt + b * 32) * (st[b] * wsg);            \
                }                                                                                       \
                out[r * ors + t * ots] = acc;                                                           \
            }                                                                                           \
        }                                                                                               \
    }

EDGE_GENERIC_MATMUL(edge_generic_matmul_q8, int8_t, 32, dot_q8)
EDGE_GENERIC_MATMUL(edge_generic_matmul_q4, uint8_t, 16, dot_q4)

void edge_generic_attn_values_q8(const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales,
                                 int64_t npos, int64_t hd, float *out, int64_t ostride) {
    int64_t nb = hd / 32;
    for (int64_t q = 0; q < nq; q++)
        for (int64_t j = 0; j < npos; j++)
            for (int64_t b = 0; b < nb; b++) {
                float w = p[q * pstride + j] * edge_half_to_float(vscales[j * nb + b]);
                for (int64_t d = b * 32; d < b * 32 + 32; d++) out[q * ostride + d] += w * (float)v[j * hd + d];
            }
}

void edge_generic_attn_scores_f16(const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out) {
    for (int64_t j = 0; j < npos; j++) {
        float acc = 0.0f;
        for (int64_t d = 0; d < hd; d++) acc += q[d] * edge_half_to_float(k[j * hd + d]);
        out[j] = acc;
    }
}

void edge_generic_attn_values_f16(const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out) {
    for (int64_t j = 0; j < npos; j++)
        for (int64_t d = 0; d < hd; d++) out[d] += p[j] * edge_half_to_float(v[j * hd + d]);
}

float edge_generic_scale_max(float *row, int64_t n, float scale) {
    float max = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        row[j] *= scale;
        max = row[j] > max ? row[j] : max;
    }
    return max;
}

void edge_generic_swiglu(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void edge_generic_geglu(float *gate, const float *up, int64_t n) {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g))) * up[i];
    }
}

float edge_generic_exp_sum(float *row, int64_t n, float max) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - max);
        sum += row[j];
    }
    return sum;
}
