// q5o and q6: 5- and 6-bit codes as q4's nibbles plus planes of high bits (see EdgeKernels.h), the schemes that
// hold GGUF Q5_0, Q5_1, Q5_K and Q6_K without a second rounding. The product decodes one block of a row to 32 int8
// codes and takes its integer dots with every token's activation block; the same C is compiled for each level's
// registers (one wrapper per vector width, as q4a.c's).
#include "exact.h"
#include "internal.h"

/// The codes of one block: n - 16 for q5o (n in [0, 31]), n - 32 for q6 (n in [0, 63]).
EDGE_INLINE void planes_decode(int bits, const uint8_t *b, int8_t *c) {
    uint8_t n[32];
    for (int j = 0; j < 16; j++) {
        n[j] = b[j] & 15;
        n[j + 16] = b[j] >> 4;
    }
    if (bits == 5) {
        uint32_t h;
        memcpy(&h, b + 16, sizeof h);
        for (int j = 0; j < 32; j++) c[j] = (int8_t)((n[j] | ((h >> j) & 1) << 4) - 16);
    } else {
        for (int j = 0; j < 32; j++) c[j] = (int8_t)((n[j] | ((b[16 + j % 8] >> (2 * (j / 8))) & 3) << 4) - 32);
    }
}

/// Σ c[i] x[i] over 16 lanes.
EDGE_INLINE int32_t planes_dot16(const int8_t *c, const int8_t *x) {
    int32_t sum = 0;
    for (int i = 0; i < 16; i++) sum += (int32_t)c[i] * (int32_t)x[i];
    return sum;
}

/// The product for `bits` 5 (q5o: per group d, m; weight d n + m = d c + (m + 16 d)) or 6 (q6: per block the
/// scales of its two halves; weight s_h c).
EDGE_INLINE void planes_matmul(int bits, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t r0, int64_t r1,
                               const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    const int64_t block_bytes = bits == 5 ? 20 : 24, ngroups = (nblocks + gblocks - 1) / gblocks;
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t t = 0; t < ntok; t++) out[r * ors + t * ots] = 0;
        for (int64_t b = 0; b < nblocks; b++) {
            int8_t c[32];
            planes_decode(bits, w + (r * nblocks + b) * block_bytes, c);
            const uint16_t *pair = ws + 2 * (r * ngroups + b / gblocks);
            const float s0 = edge_half_to_float(pair[0]), s1 = edge_half_to_float(pair[1]);
            for (int64_t t = 0; t < ntok; t++) {
                const int8_t *xb = x + (t * nblocks + b) * 32;
                const int32_t d0 = planes_dot16(c, xb), d1 = planes_dot16(c + 16, xb + 16);
                float v;
                if (bits == 5) {
                    int32_t sum = 0;
                    for (int i = 0; i < 32; i++) sum += xb[i];
                    v = s0 * (float)(d0 + d1) + (s1 + 16 * s0) * (float)sum;
                } else {
                    v = s0 * (float)d0 + s1 * (float)d1;
                }
                out[r * ors + t * ots] += xs[t * nblocks + b] * v;
            }
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void planes_matmul_avx512(int bits, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t r0, int64_t r1,
                                 const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    planes_matmul(bits, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

__attribute__((target("avx2,fma")))
static void planes_matmul_avx2(int bits, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t r0, int64_t r1,
                               const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    planes_matmul(bits, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}
#endif

/// The level's wrapper of `planes_matmul`.
static void planes_matmul_level(int isa, int bits, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                                int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
#if defined(__x86_64__)
    if (isa == EDGE_ISA_AVX512_VNNI) return planes_matmul_avx512(bits, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    if (isa == EDGE_ISA_AVX2 || isa == EDGE_ISA_AVX_VNNI) return planes_matmul_avx2(bits, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
#endif
    (void)isa;
    planes_matmul(bits, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

void edge_matmul_q5o(int isa, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                     int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                     float *out, int64_t ors, int64_t ots) {
    planes_matmul_level(isa, 5, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

void edge_matmul_q6(int isa, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                    int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                    float *out, int64_t ors, int64_t ots) {
    planes_matmul_level(isa, 6, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}
