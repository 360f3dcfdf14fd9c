// What the per-ISA kernel files share: half-float decoding and the signatures dispatch.c calls.
#ifndef EDGE_KERNELS_INTERNAL_H
#define EDGE_KERNELS_INTERNAL_H

#include "EdgeKernels.h"
#include <string.h>

/// A matrix kernel: rows [r0, r1) of a quantized matrix times `ntok` quantized activations.
#define EDGE_MATMUL_ARGS(WTYPE)                                                                         \
    const WTYPE *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t r0, int64_t r1,      \
        const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots

/// Declares one kernel family's q8 and q4 matrix kernels.
#define EDGE_DECLARE_MATMUL(PREFIX)                                                                     \
    void PREFIX##_matmul_q8(EDGE_MATMUL_ARGS(int8_t));                                                  \
    void PREFIX##_matmul_q4(EDGE_MATMUL_ARGS(uint8_t));

/// Declares one kernel family's token-wise q8 and q4 matrix kernels (see `edge_matmul_q8_tokenwise`).
#define EDGE_DECLARE_TOKENWISE(PREFIX)                                                                  \
    void PREFIX##_tokenwise_q8(EDGE_MATMUL_ARGS(int8_t));                                               \
    void PREFIX##_tokenwise_q4(EDGE_MATMUL_ARGS(uint8_t));

/// An activation quantizer (see `edge_quantize_q8_blocks`).
#define EDGE_DECLARE_QUANTIZE(PREFIX) void PREFIX##_quantize(const float *x, int64_t nblocks, int8_t *q, float *s);

/// Declares one kernel family's attention kernels (see EdgeKernels.h).
#define EDGE_DECLARE_ATTENTION(PREFIX)                                                                  \
    void PREFIX##_attn_values_q8(const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales, \
                                 int64_t npos, int64_t hd, float *out, int64_t ostride);                 \
    void PREFIX##_attn_scores_f16(const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out); \
    void PREFIX##_attn_values_f16(const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out); \
    float PREFIX##_scale_max(float *row, int64_t n, float scale);                                        \
    float PREFIX##_exp_sum(float *row, int64_t n, float max);                                          \
    void PREFIX##_swiglu(float *gate, const float *up, int64_t n);

EDGE_DECLARE_MATMUL(edge_generic)
EDGE_DECLARE_QUANTIZE(edge_generic)
EDGE_DECLARE_ATTENTION(edge_generic)
#if defined(__x86_64__)
EDGE_DECLARE_MATMUL(edge_avx2)
EDGE_DECLARE_MATMUL(edge_avxvnni)
EDGE_DECLARE_MATMUL(edge_avx512)
/// 256-bit EVEX `vpdpbusd` kernels: the AVX-512 level's path for group sizes its block pairs cannot split.
EDGE_DECLARE_MATMUL(edge_vnni256)
EDGE_DECLARE_TOKENWISE(edge_avx2)
EDGE_DECLARE_TOKENWISE(edge_avxvnni)
EDGE_DECLARE_TOKENWISE(edge_avx512)
EDGE_DECLARE_TOKENWISE(edge_vnni256)
/// The AVX2 quantizer and attention kernels serve every x86 SIMD level.
EDGE_DECLARE_QUANTIZE(edge_avx2)
EDGE_DECLARE_ATTENTION(edge_avx2)
#endif
#if defined(__aarch64__)
EDGE_DECLARE_MATMUL(edge_neon)
EDGE_DECLARE_MATMUL(edge_dotprod)
EDGE_DECLARE_MATMUL(edge_i8mm)
/// The NEON quantizer and attention kernels serve every arm64 level.
EDGE_DECLARE_QUANTIZE(edge_neon)
EDGE_DECLARE_ATTENTION(edge_neon)
#endif

/// IEEE half to float, for scalar code (the SIMD files convert with their own instructions).
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

/// A 64-byte aligned buffer of at least `bytes` bytes that belongs to the calling thread and slot (0-5) until its next call with that
/// slot: the composite kernels' scratch, kept between calls (scratch.c). Never freed by the caller.
void *edge_scratch(int slot, size_t bytes);

#if defined(__x86_64__)
/// q5o and q6 products built in registers (x86/planes512.c), for up to `EDGE_PLANES_FUSED_TOKENS` tokens.
void edge_avx512_matmul_q5o(EDGE_MATMUL_ARGS(uint8_t));
void edge_avx512_matmul_q6(EDGE_MATMUL_ARGS(uint8_t));
#endif
/// Most tokens the register-built q5o and q6 products take (decode, and residual activations' two rows); larger
/// batches decode rows to q8 blocks for the q8 GEMM tiles.
enum { EDGE_PLANES_FUSED_TOKENS = 2 };

/// Decodes `nblocks` q5o blocks (20 bytes each) into q8 blocks of their codes n - 16 (planes.c).
void edge_decode_q5o(const uint8_t *w, int64_t nblocks, int8_t *out);

/// IEEE float to half bits, round to nearest even; overflow gives infinity (quantize.c).
uint16_t edge_float_to_half(float f);

/// The scale index range of group g: blocks [g * gblocks, min((g + 1) * gblocks, nblocks)).
static inline int64_t edge_group_end(int64_t g, int64_t gblocks, int64_t nblocks) {
    return (g + 1) * gblocks < nblocks ? (g + 1) * gblocks : nblocks;
}

#endif
