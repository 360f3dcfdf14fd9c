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

/// Declares one kernel family's token-wise q8 and q4 matrix kernels (see `edge_matmul_tokenwise`).
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
    void PREFIX##_swiglu(float *gate, const float *up, int64_t n);                                        \
    void PREFIX##_geglu(float *gate, const float *up, int64_t n);

/// Declares one vector width's compilation of the level-independent C (fits, GPTQ arithmetic, the offset
/// products): the same source, vectorised for the width's registers.
#define EDGE_DECLARE_WIDTH(PREFIX)                                                                      \
    uint16_t PREFIX##_fit_q4(const float *x, const float *w, int64_t n, int8_t *codes, int truncate);     \
    uint16_t PREFIX##_fit_q4a(const float *x, const float *w, int64_t n, int8_t *codes, int truncate);    \
    double PREFIX##_dot_f64(const double *a, const double *b, int64_t n);                                \
    void PREFIX##_dots_f64(const double *a, const double *b, int64_t n, int64_t segment, double *out);   \
    void PREFIX##_sub_scaled_f64(double *y, const double *x, double a, int64_t n);                       \
    void PREFIX##_gram_rows_f32(const float *a, const float *b, int64_t tokens, int64_t width, int64_t i0, int64_t i1, \
                                float *g);                                                               \
    void PREFIX##_offsets(const struct edge_kernels *k, int kind, int tokenwise, EDGE_MATMUL_ARGS(uint8_t));

struct edge_kernels;

EDGE_DECLARE_MATMUL(edge_generic)
EDGE_DECLARE_QUANTIZE(edge_generic)
EDGE_DECLARE_ATTENTION(edge_generic)
EDGE_DECLARE_WIDTH(edge_generic)
void edge_generic_f16_to_f32(const uint16_t *src, float *dst, int64_t n);
/// Rows packed sixteen at a time (packed.c, x86/packed512.c): see `edge_packed_matmul`.
#define EDGE_DECLARE_PACKED(PREFIX)                                                                     \
    void PREFIX##_packed(int kind, const uint8_t *p, int64_t nrows, int64_t nblocks, int64_t r0, int64_t r1, \
                         const int8_t *x, const float *xs, const int32_t *sums, int64_t ntok, float *out, int64_t ors,    \
                         int64_t ots);
EDGE_DECLARE_PACKED(edge_generic)
/// Code vectors per block of a packed group: q8 8 of 64 bytes, q4 and q4o 4 (two nibbles a byte).
static inline int edge_packed_vectors(int kind) { return kind == EDGE_PACKED_Q8 ? 8 : 4; }
/// The f16 block scales of a packed copy, [groups][nblocks][16] after its codes.
static inline uint16_t *edge_packed_scales(const void *packed, int kind, int64_t nrows, int64_t nblocks) {
    return (uint16_t *)((const uint8_t *)packed + nrows / 16 * nblocks * edge_packed_vectors(kind) * 64);
}
/// q4o's f16 block offsets, [groups][nblocks][16] after the scales.
static inline uint16_t *edge_packed_offsets(const void *packed, int kind, int64_t nrows, int64_t nblocks) {
    return edge_packed_scales(packed, kind, nrows, nblocks) + nrows / 16 * nblocks * 16;
}
/// Where a packed block's dot of stored codes with activations whose sum is `sum` starts, so that it ends at the dot
/// of the codes the block means: q8 stores code + 128, q4 code + 8, q4o its unsigned codes.
static inline int32_t edge_packed_start(int kind, int32_t sum) {
    return kind == EDGE_PACKED_Q8 ? -128 * sum : kind == EDGE_PACKED_Q4 ? -8 * sum : 0;
}
void edge_generic_decode_levels(const int8_t *levels, const uint8_t *w, int64_t nblocks, int8_t *out);
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
EDGE_DECLARE_QUANTIZE(edge_avx2)
EDGE_DECLARE_ATTENTION(edge_avx2)
EDGE_DECLARE_WIDTH(edge_avx2)
EDGE_DECLARE_WIDTH(edge_avx512)
void edge_avx2_f16_to_f32(const uint16_t *src, float *dst, int64_t n);
void edge_avx2_decode_levels(const int8_t *levels, const uint8_t *w, int64_t nblocks, int8_t *out);
/// The q4 fit's error sums at 16 candidate scales (x86/q4sums.c; see quantize.c's q4_sums_vec).
void edge_avx2_q4_sums(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq);
void edge_avx512_q4_sums(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq);
/// q5o and q6 products built in registers (x86/planes512.c), for up to `EDGE_PLANES_FUSED_TOKENS` tokens.
void edge_avx512_planes_q5o(EDGE_MATMUL_ARGS(uint8_t));
void edge_avx512_planes_q6(EDGE_MATMUL_ARGS(uint8_t));
/// q4o's product with its scales and offsets inside (x86/fused512.c, x86/kernels256.h): decode and token-wise.
void edge_avx512_fused_q4o(EDGE_MATMUL_ARGS(uint8_t));
/// The longest rows, in blocks, that the AVX-512 row decode takes (x86/decode512.c; 16,384 columns).
#define EDGE_DECODE_MAX_BLOCKS 512
/// Arguments of a row decode: rows of nblocks <= EDGE_DECODE_MAX_BLOCKS blocks, one f16 scale per block (with
/// per_channel, one per row).
#define EDGE_DECODE_ARGS                                                                                  \
    const uint8_t *w, const uint16_t *ws, int64_t nblocks, int per_channel, int64_t r0, int64_t r1, const int8_t *x, \
        const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots
/// Rows of q8 or q4 blocks with one scale per block or per row, each token on its own (decode and token-wise
/// batches; x86/decode512.c).
void edge_avx512_decode_q8(EDGE_DECODE_ARGS);
void edge_avx512_decode_q4(EDGE_DECODE_ARGS);
EDGE_DECLARE_PACKED(edge_avx512)
EDGE_DECLARE_PACKED(edge_avx2)
EDGE_DECLARE_PACKED(edge_avxvnni)
void edge_avx2_fused_q4o(EDGE_MATMUL_ARGS(uint8_t));
void edge_avxvnni_fused_q4o(EDGE_MATMUL_ARGS(uint8_t));
#endif
#if defined(__aarch64__)
EDGE_DECLARE_MATMUL(edge_neon)
EDGE_DECLARE_MATMUL(edge_dotprod)
EDGE_DECLARE_MATMUL(edge_i8mm)
EDGE_DECLARE_QUANTIZE(edge_neon)
EDGE_DECLARE_ATTENTION(edge_neon)
void edge_neon_decode_levels(const int8_t *levels, const uint8_t *w, int64_t nblocks, int8_t *out);
#endif

// One level's kernel table. `EDGE_KERNEL_ENTRIES(X)` lists every entry as X(name, return type, parameters,
// required): dispatch.c fills one table per level at start-up, each entry either the level's own kernel or, named
// explicitly there, a lower level's; `edge_kernel_source` reports which (the C kernel test lists them and fails on
// an unset required entry). Only dispatch.c looks at levels; every other file receives the table.
#define EDGE_KERNEL_ENTRIES(X)                                                                                        \
    X(quantize, void, (const float *x, int64_t nblocks, int8_t *q, float *s), 1)                                       \
    X(matmul_q8, void, (EDGE_MATMUL_ARGS(int8_t)), 1)                                                                 \
    X(matmul_q4, void, (EDGE_MATMUL_ARGS(uint8_t)), 1)                                                                \
    X(tokenwise_q8, void, (EDGE_MATMUL_ARGS(int8_t)), 1)                                                              \
    X(tokenwise_q4, void, (EDGE_MATMUL_ARGS(uint8_t)), 1)                                                             \
    X(planes_q5o, void, (EDGE_MATMUL_ARGS(uint8_t)), 0)                                                               \
    X(planes_q6, void, (EDGE_MATMUL_ARGS(uint8_t)), 0)                                                                \
    X(fused_q4o, void, (EDGE_MATMUL_ARGS(uint8_t)), 0)                                                                \
    X(offsets, void, (const struct edge_kernels *k, int kind, int tokenwise, EDGE_MATMUL_ARGS(uint8_t)), 1)             \
    X(packed, void, (int kind, const uint8_t *p, int64_t nrows, int64_t nblocks, int64_t r0, int64_t r1, const int8_t *x,   \
                     const float *xs, const int32_t *sums, int64_t ntok, float *out, int64_t ors, int64_t ots), 1)     \
    X(decode_levels, void, (const int8_t *levels, const uint8_t *w, int64_t nblocks, int8_t *out), 1)                 \
    X(f16_to_f32, void, (const uint16_t *src, float *dst, int64_t n), 1)                                             \
    X(attn_values_q8, void, (const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales,    \
                             int64_t npos, int64_t hd, float *out, int64_t ostride), 1)                               \
    X(attn_scores_f16, void, (const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out), 1)            \
    X(attn_values_f16, void, (const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out), 1)            \
    X(scale_max, float, (float *row, int64_t n, float scale), 1)                                                      \
    X(exp_sum, float, (float *row, int64_t n, float max), 1)                                                          \
    X(swiglu, void, (float *gate, const float *up, int64_t n), 1)                                                     \
    X(geglu, void, (float *gate, const float *up, int64_t n), 1)                                                      \
    X(fit_q4, uint16_t, (const float *x, const float *w, int64_t n, int8_t *codes, int truncate), 1)                   \
    X(fit_q4a, uint16_t, (const float *x, const float *w, int64_t n, int8_t *codes, int truncate), 1)                  \
    X(dot_f64, double, (const double *a, const double *b, int64_t n), 1)                                              \
    X(dots_f64, void, (const double *a, const double *b, int64_t n, int64_t segment, double *out), 1)                 \
    X(sub_scaled_f64, void, (double *y, const double *x, double a, int64_t n), 1)                                     \
    X(gram_rows_f32, void, (const float *a, const float *b, int64_t tokens, int64_t width, int64_t i0, int64_t i1,    \
                            float *g), 1)

/// A level's kernels (`EDGE_KERNEL_ENTRIES`); the optional `planes_` and `fused_` entries are NULL where a level has none.
typedef struct edge_kernels {
#define EDGE_KERNEL_FIELD(NAME, RESULT, PARAMETERS, REQUIRED) RESULT(*NAME) PARAMETERS;
    EDGE_KERNEL_ENTRIES(EDGE_KERNEL_FIELD)
#undef EDGE_KERNEL_FIELD
} edge_kernels;

/// The table of level `isa` (a value outside the levels: the generic table).
const edge_kernels *edge_kernels_at(int isa);

/// A weight scheme's matrix product over a level's kernels. `tokenwise`: each token computed exactly as a call
/// with that token alone would compute it (only for schemes whose `edge_scheme_kernel.tokenwise` is set).
typedef void (*edge_scheme_product)(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void));

/// One scheme's kernel: its product and whether the product has a token-wise form (the others are called token
/// by token). Each scheme's file defines its own with `EDGE_SCHEME`.
struct edge_scheme_kernel {
    edge_scheme_product product;
    int tokenwise;
};

/// Defines `edge_scheme_NAME()`, the scheme's kernel: `PRODUCT`, with a token-wise form when `TOKENWISE`.
#define EDGE_SCHEME(NAME, PRODUCT, TOKENWISE)                                                           \
    const edge_scheme_kernel *edge_scheme_##NAME(void) {                                                \
        static const edge_scheme_kernel kernel = { PRODUCT, TOKENWISE };                                \
        return &kernel;                                                                                 \
    }

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

/// A 64-byte aligned buffer of at least `bytes` bytes that belongs to the calling thread and slot (0-6) until its next call with that
/// slot: the composite kernels' scratch, kept between calls (scratch.c). Never freed by the caller.
void *edge_scratch(int slot, size_t bytes);

/// Most tokens the register-built q5o and q6 products take (decode, and residual activations' two rows); larger
/// batches decode rows to q8 blocks for the q8 GEMM tiles.
enum { EDGE_PLANES_FUSED_TOKENS = 2 };

/// Whether the `fused_q4o` product takes groups of `gblocks` blocks: one per block, an even number (a block pair shares
/// its group), or the whole row. It serves decode (up to `EDGE_PLANES_FUSED_TOKENS` tokens) and token-wise batches,
/// so that a verified token is computed exactly as its decode step computes it.
static inline int edge_fused_groups(int64_t gblocks, int64_t nblocks, int64_t ntok, int tokenwise) {
    return (tokenwise || ntok <= EDGE_PLANES_FUSED_TOKENS) && (gblocks == 1 || gblocks % 2 == 0 || gblocks >= nblocks);
}

/// Decodes `nblocks` q5o blocks (20 bytes each) into q8 blocks of their codes n - 16 (planes.c).
void edge_decode_q5o(const uint8_t *w, int64_t nblocks, int8_t *out);

/// IEEE float to half bits, round to nearest even; overflow gives infinity (convert.c).
uint16_t edge_float_to_half(float f);

/// The scale index range of group g: blocks [g * gblocks, min((g + 1) * gblocks, nblocks)).
static inline int64_t edge_group_end(int64_t g, int64_t gblocks, int64_t nblocks) {
    return (g + 1) * gblocks < nblocks ? (g + 1) * gblocks : nblocks;
}

#endif
