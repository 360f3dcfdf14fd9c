// q5o and q6 products for a few tokens (decode) at the AVX-512 VNNI level: each block's unsigned codes are built in a
// register (nibbles, plus the plane's bits: q5o through the plane as a byte mask, q6 through 64-bit shifts) and
// multiplied by the activations with one 256-bit `vpdpbusd`; nothing is written back to memory. Batches take the
// decoded-q8 path of planes.c and q4a.c, where the q8 GEMM tiles pay.
#if defined(__x86_64__)
#include "../internal.h"
#include <immintrin.h>

#define EDGE_PLANES512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/// The 32 unsigned codes of a block: nibbles (weights 0-15 low, 16-31 high) plus 16 where the q5o plane has a bit.
EDGE_PLANES512 static inline __m256i codes_q5(const uint8_t *block) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)block), low = _mm_set1_epi8(0x0F);
    const __m256i n = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
    uint32_t plane;
    memcpy(&plane, block + 16, sizeof plane);
    return _mm256_mask_add_epi8(n, (__mmask32)plane, n, _mm256_set1_epi8(16));
}

/// The same for q6: bits 2 (j / 8) of plane byte j % 8, times 16, added to weight j's nibble.
EDGE_PLANES512 static inline __m256i codes_q6(const uint8_t *block) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)block), low = _mm_set1_epi8(0x0F);
    const __m256i n = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
    uint64_t plane;
    memcpy(&plane, block + 16, sizeof plane);
    const __m256i high = _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x((long long)plane), _mm256_set_epi64x(6, 4, 2, 0)),
                                          _mm256_set1_epi8(3));
    return _mm256_or_si256(n, _mm256_slli_epi16(high, 4));
}

/// Rows [r0, r1) times `ntok` tokens. q5o: per block xs (d Σ n x + m Σ x) with the group's (d, m); q6: per block
/// xs (s_0 Σ_{j<16} (n - 32) x + s_1 Σ_{j>=16} (n - 32) x). The lanes of a `vpdpbusd` sum 4 weights each: lanes 0-3
/// hold weights 0-15, lanes 4-7 weights 16-31, so q6's two scales are one vector. Σ x per lane (`sums`) is taken
/// once per call.
EDGE_PLANES512 static void planes_avx512(int bits, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                                         int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                                         float *out, int64_t ors, int64_t ots) {
    const int64_t block_bytes = bits == 5 ? 20 : 24, ngroups = (nblocks + gblocks - 1) / gblocks;
    // sums [ntok, nblocks]: per block, Σ x over each lane's 4 activations.
    __m256i *sums = edge_scratch(3, (size_t)(ntok * nblocks) * sizeof *sums);
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < ntok * nblocks; i++)
        sums[i] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, _mm256_loadu_si256((const __m256i *)(x + i * 32)));
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + r * nblocks * block_bytes;
        for (int64_t t = 0; t < ntok; t++) {
            __m256 acc = _mm256_setzero_ps();
            for (int64_t b = 0; b < nblocks; b++) {
                const uint16_t *pair = ws + 2 * (r * ngroups + b / gblocks);
                const __m256i xb = _mm256_loadu_si256((const __m256i *)(x + (t * nblocks + b) * 32));
                const float s = xs[t * nblocks + b];
                if (bits == 5) {
                    const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), codes_q5(row + b * 20), xb);
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(_cvtsh_ss(pair[0]) * s), acc);
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[t * nblocks + b]), _mm256_set1_ps(_cvtsh_ss(pair[1]) * s), acc);
                } else {
                    // Σ (n - 32) x = Σ n x - 32 Σ x, exact in int32.
                    const __m256i dot = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), codes_q6(row + b * 24), xb),
                                                         _mm256_slli_epi32(sums[t * nblocks + b], 5));
                    const __m256 scales = _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(pair[1]) * s), _mm_set1_ps(_cvtsh_ss(pair[0]) * s));
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scales, acc);
                }
            }
            const __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            const __m128 quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
            out[r * ors + t * ots] = _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)));
        }
    }
}

void edge_avx512_planes_q5o(EDGE_MATMUL_ARGS(uint8_t)) { planes_avx512(5, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots); }

void edge_avx512_planes_q6(EDGE_MATMUL_ARGS(uint8_t)) { planes_avx512(6, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots); }
#endif
